// safetensors files: an 8-byte little-endian header length, a JSON header mapping tensor names
// to {dtype, shape, data_offsets}, then the raw bytes. Files are memory-mapped and validated
// once, completely, before any tensor is handed out (see docs/safetensors.md for the rules).
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <nlohmann/json_fwd.hpp>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "core/tensor.h"
#include "io/fp8_scales.h"
#include "io/gguf.h"
#include "io/tensor_info.h"

namespace freeswim::io {

class SafetensorsFile {
 public:
  // Maps and validates `path`; throws Error naming the file (and the tensor) on any defect.
  static std::shared_ptr<const SafetensorsFile> open(const std::string& path);
  // Validates an in-memory image (what the fuzzer drives). `label` names it in errors. The
  // bytes are borrowed: they must outlive the returned object.
  static std::shared_ptr<const SafetensorsFile> parse(const std::string& label,
                                                      const uint8_t* bytes, size_t size);

  const std::string& path() const { return path_; }
  const std::vector<TensorInfo>& tensors() const { return tensors_; }
  const TensorInfo* find(std::string_view name) const;  // nullptr when absent
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  const uint8_t* bytes(const TensorInfo& t) const { return data_ + t.begin; }

  // A CPU tensor viewing the mapped bytes in the stored dtype; keeps the mapping alive.
  // Throws Error naming the file and tensor when absent.
  Tensor tensor(std::string_view name) const;

  ~SafetensorsFile();
  SafetensorsFile(const SafetensorsFile&) = delete;
  SafetensorsFile& operator=(const SafetensorsFile&) = delete;

 private:
  SafetensorsFile() = default;
  // Validates the image `bytes[0, size)` and fills the members; throws Error naming path_.
  void load(const uint8_t* bytes, size_t size);
  void load_entry(const std::string& name, const nlohmann::json& entry, size_t data_size);
  std::string path_;
  std::vector<TensorInfo> tensors_;  // sorted by name
  std::map<std::string, std::string> metadata_;
  const uint8_t* data_ = nullptr;  // start of the data section
  void* map_ = nullptr;            // mmap base (nullptr for parse())
  size_t map_size_ = 0;
  std::weak_ptr<const SafetensorsFile> self_;
};

// Writes tensors (any device; copied to host) as a safetensors file. The file is written to
// `path + ".tmp"` and renamed, so a reader never sees a partial file.
void write_safetensors(const std::string& path,
                       const std::vector<std::pair<std::string, Tensor>>& tensors,
                       const std::map<std::string, std::string>& metadata = {});

// One checkpoint made of one or more safetensors files: a single file, a
// `*.safetensors.index.json` (its weight_map names the shards, relative to the index), or a
// directory holding exactly one of those. Names must be unique across shards. A GGUF file (by
// its magic, whatever its name; or the one `*.gguf` of a directory without safetensors) is a
// checkpoint too: its tensors come out in their PyTorch shape, the block formats dequantised to
// f32 (io/gguf.h).
//
// fp8 weights (F8_E4M3, F8_E5M2) come out of tensor() as f32, multiplied by their ComfyUI scale
// when the file has one (io/fp8_scales.h); the scales, markers and layer configurations are not
// among names() and cannot be looked up: the checkpoint is seen as the weights it stands for.
class TensorSource {
 public:
  static TensorSource open(const std::string& path);
  std::vector<std::string> names() const;  // sorted
  bool contains(std::string_view name) const;
  // As stored (an fp8 weight's dtype is its fp8 type; tensor() gives f32).
  const TensorInfo* find(std::string_view name) const;
  // Throws Error naming the checkpoint and the tensor when absent. Floating-point tensors come
  // out as F32, BF16 or F16 (fp8 dequantised to F32); integer tensors as stored.
  Tensor tensor(std::string_view name) const;
  // "safetensors"; with fp8 weights, which kinds and scales (for `freeswim info`).
  std::string storage_summary() const;
  const Fp8Scales& fp8() const { return fp8_; }
  // The GGUF file when the checkpoint is one (its metadata: architecture, tokenizer), else null.
  const GgufFile* gguf() const { return gguf_.get(); }
  // The file that holds `name` (for error messages).
  const std::string& file_of(std::string_view name) const;
  const std::string& path() const { return path_; }

 private:
  void resolve_fp8();

  std::string path_;
  std::vector<std::shared_ptr<const SafetensorsFile>> files_;
  std::map<std::string, size_t, std::less<>> index_;  // name -> file (auxiliary tensors too)
  Fp8Scales fp8_;
  std::shared_ptr<const GgufFile> gguf_;
  std::vector<TensorInfo> gguf_infos_;  // sorted by name; dtype: what tensor() returns
};

}  // namespace freeswim::io
