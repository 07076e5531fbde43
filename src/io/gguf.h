// GGUF files (version 3): a header, typed key-value metadata, tensor descriptions, then the
// aligned tensor data. Files are memory-mapped and validated completely before any tensor is
// handed out; every count, length, offset and size is bounds-checked against the file with
// overflow-safe arithmetic (docs/gguf.md has the layout and the rules).
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/tensor.h"
#include "io/gguf_quants.h"

namespace freeswim::io {

// gguf_metadata_value_type.
enum class GgufValueType : uint32_t {
  UINT8 = 0,
  INT8 = 1,
  UINT16 = 2,
  INT16 = 3,
  UINT32 = 4,
  INT32 = 5,
  FLOAT32 = 6,
  BOOL = 7,
  STRING = 8,
  ARRAY = 9,
  UINT64 = 10,
  INT64 = 11,
  FLOAT64 = 12,
};

std::string gguf_value_type_name(GgufValueType t);

// One metadata value. Arrays of numbers or booleans keep their elements' bytes (little-endian)
// rather than one object each: a tokenizer's scores are 256k floats.
struct GgufValue {
  GgufValueType type = GgufValueType::UINT8;
  uint64_t bits = 0;  // a scalar number or boolean, its bytes zero-extended
  std::string str;    // STRING
  // ARRAY
  GgufValueType elem = GgufValueType::UINT8;
  uint64_t count = 0;
  std::vector<uint8_t> raw;          // numeric / boolean elements
  std::vector<std::string> strings;  // string elements
  std::vector<GgufValue> arrays;     // array elements

  bool is_integer() const;  // a scalar integer type
  // The value of a scalar integer type (int64 range), of FLOAT32/FLOAT64, of a STRING.
  std::optional<int64_t> integer() const;
  std::optional<double> number() const;
  std::optional<std::string_view> string() const;
  std::optional<bool> boolean() const;
  // Element i of a numeric array as int64 (integer types) or double (any numeric type).
  std::optional<int64_t> integer_at(uint64_t i) const;
  std::optional<double> number_at(uint64_t i) const;
  std::string describe() const;  // "UINT32", "ARRAY of 3 INT32"
};

struct GgufTensorInfo {
  std::string name;
  uint32_t type_id = 0;
  GgmlType type = GgmlType::F32;
  std::vector<uint64_t> dims;  // ggml order: dims[0] varies fastest
  // The shape in PyTorch order: dims reversed, or `comfy.gguf.orig_shape.<name>` when the file
  // stores the tensor reshaped (ComfyUI-GGUF's converter does for rows that are not whole blocks).
  Shape shape;
  bool reshaped = false;  // shape came from comfy.gguf.orig_shape
  uint64_t offset = 0;    // from the start of the data section
  size_t nbytes = 0;
};

class GgufFile {
 public:
  // Maps and validates `path`; throws Error naming the file (and the key or tensor).
  static std::shared_ptr<const GgufFile> open(const std::string& path);
  // Validates an in-memory image (what the fuzzer drives); the bytes must outlive the result.
  static std::shared_ptr<const GgufFile> parse(const std::string& label, const uint8_t* bytes,
                                               size_t size);

  const std::string& path() const { return path_; }
  uint32_t version() const { return version_; }
  uint64_t alignment() const { return alignment_; }
  const std::vector<GgufTensorInfo>& tensors() const { return tensors_; }  // sorted by name
  const GgufTensorInfo* find(std::string_view name) const;
  const std::map<std::string, GgufValue, std::less<>>& metadata() const { return metadata_; }
  const GgufValue* value(std::string_view key) const;  // nullptr when absent
  // A STRING value, or "" when absent; throws when the key holds another type.
  std::string string_value(std::string_view key) const;
  const uint8_t* bytes(const GgufTensorInfo& t) const { return data_ + t.offset; }

  // The tensor in its logical shape: F32, F16 and BF16 as views of the mapping (copied when
  // misaligned), the block formats dequantised to a new f32 tensor. Throws naming the tensor.
  Tensor tensor(std::string_view name) const;

  ~GgufFile();
  GgufFile(const GgufFile&) = delete;
  GgufFile& operator=(const GgufFile&) = delete;

 private:
  GgufFile() = default;
  void load(const uint8_t* bytes, size_t size);

  std::string path_;
  uint32_t version_ = 0;
  uint64_t alignment_ = 32;
  std::vector<GgufTensorInfo> tensors_;
  std::map<std::string, GgufValue, std::less<>> metadata_;
  const uint8_t* data_ = nullptr;
  void* map_ = nullptr;
  size_t map_size_ = 0;
  std::weak_ptr<const GgufFile> self_;
};

// True when the file starts with the GGUF magic.
bool looks_like_gguf(const std::string& path);

}  // namespace freeswim::io
