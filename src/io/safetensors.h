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

namespace freeswim::io {

struct TensorInfo {
  std::string name;
  DType dtype = DType::F32;
  Shape shape;
  size_t begin = 0;  // byte offset into the data section
  size_t nbytes = 0;
};

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
// directory holding exactly one of those. Names must be unique across shards.
class TensorSource {
 public:
  static TensorSource open(const std::string& path);
  std::vector<std::string> names() const;  // sorted
  bool contains(std::string_view name) const;
  const TensorInfo* find(std::string_view name) const;
  // Throws Error naming the checkpoint and the tensor when absent.
  Tensor tensor(std::string_view name) const;
  // The file that holds `name` (for error messages).
  const std::string& file_of(std::string_view name) const;
  const std::string& path() const { return path_; }

 private:
  std::string path_;
  std::vector<std::shared_ptr<const SafetensorsFile>> files_;
  std::map<std::string, size_t, std::less<>> index_;  // name -> file
};

}  // namespace freeswim::io
