// A GGUF writer for the tests, with a simple quantiser for each block format the engine reads.
// The quantisers are this test's own (round to nearest with scales chosen so every value fits;
// not ggml's search): what they guarantee is the bound `quant_bound` states, which the tests
// check every dequantised value against.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "core/tensor.h"
#include "io/gguf.h"

namespace freeswim::formats {

using io::GgmlType;
using io::GgufValueType;

// float -> IEEE half, round to nearest even.
uint16_t to_f16(float x);

// Packed blocks of `x` (n a multiple of the type's block) in `type`.
std::vector<uint8_t> quantize(GgmlType type, const float* x, int64_t n);

// The largest error the quantiser above leaves on any value of one block `x` (block values),
// from the format's precision (docs/gguf.md, "Error of each type"):
//   Q8_0 a/254, Q4_0 a/14, Q5_0 a/30 (a = max|x| of the 32 values: half a step of a/127, a/7,
//   a/15); Q4_1 r/30, Q5_1 r/62 (r = max - min); Q3_K, Q6_K half of (a_g/3 or a_g/31 plus the
//   super-block's scale step); Q4_K, Q5_K half of (r_g/15 or r_g/31 plus the scale step) plus
//   the min step; F16 2^-11 and BF16 2^-8 relative; F32 exact. Plus 2^-9 a for the f16
//   rounding of the scales.
double quant_bound(GgmlType type, const float* x);

class GgufWriter {
 public:
  // Metadata in insertion order.
  void u32(const std::string& key, uint32_t v);
  void i32(const std::string& key, int32_t v);
  void f32(const std::string& key, float v);
  void boolean(const std::string& key, bool v);
  void string(const std::string& key, const std::string& v);
  void strings(const std::string& key, const std::vector<std::string>& v);
  void f32s(const std::string& key, const std::vector<float>& v);
  void i32s(const std::string& key, const std::vector<int32_t>& v);
  void u8s(const std::string& key, const std::vector<uint8_t>& v);
  // Any value: its type id and the encoded bytes after the type.
  void raw(const std::string& key, uint32_t type, const std::vector<uint8_t>& value_bytes);

  // A tensor of `type` with ggml dims (dims[0] fastest) and packed bytes.
  void tensor(const std::string& name, uint32_t type, const std::vector<uint64_t>& dims,
              std::vector<uint8_t> bytes);
  // A float tensor of PyTorch `shape`, quantised to `type`; with `reshape_rows` (> 0) the data is
  // stored as [numel / reshape_rows, reshape_rows] and comfy.gguf.orig_shape.<name> gives the
  // shape, as ComfyUI-GGUF's converter does for rows that are not whole blocks.
  void tensor(const std::string& name, GgmlType type, const Tensor& values,
              int64_t reshape_rows = 0);

  std::vector<uint8_t> bytes(uint32_t alignment = 32) const;
  void write(const std::string& path, uint32_t alignment = 32) const;

  // Offsets within the image of the last bytes() call, for corruption tests.
  struct Layout {
    size_t tensor_count_at = 0, kv_count_at = 0, data_start = 0;
    std::map<std::string, size_t> tensor_info_at;  // name length field of each tensor info
    std::map<std::string, size_t> kv_at;           // key length field of each entry
  };
  const Layout& layout() const { return layout_; }

 private:
  struct Kv {
    std::string key;
    uint32_t type;
    std::vector<uint8_t> value;
  };
  struct T {
    std::string name;
    uint32_t type;
    std::vector<uint64_t> dims;
    std::vector<uint8_t> data;
  };
  std::vector<Kv> kvs_;
  std::vector<T> tensors_;
  mutable Layout layout_;
};

}  // namespace freeswim::formats
