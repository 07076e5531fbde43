// PyTorch checkpoints (`.pth`, `.pt`, `.ckpt`) in torch.save's zip format: a stored zip holding
// `<prefix>/data.pkl` (the pickled dict), `<prefix>/data/<key>` (one raw storage per key),
// `<prefix>/byteorder` and `<prefix>/version`. The file is memory-mapped; the pickle is read by
// a restricted unpickler (io/torch_pickle.h) that never runs code, and tensors are views of the
// mapped storages. Nested dicts (`{"state_dict": {...}}`) are flattened to dotted names, so a
// loader can treat this file exactly like a SafetensorsFile.
// Entry CRCs are not verified: that would read every byte of a many-GB file at open, which the
// mapping exists to avoid; sizes, offsets and the pickle are validated completely instead.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "core/tensor.h"
#include "io/safetensors.h"

namespace freeswim::io {

class TorchZipFile {
 public:
  // Maps and validates `path`; throws Error naming the file (and the tensor) on any defect.
  static std::shared_ptr<const TorchZipFile> open(const std::string& path);
  // Validates an in-memory image; `label` names it in errors. The bytes are borrowed: they
  // must outlive the returned object.
  static std::shared_ptr<const TorchZipFile> parse(const std::string& label, const uint8_t* bytes,
                                                   size_t size);

  const std::string& path() const { return path_; }
  // Sorted by name. TensorInfo::begin is the byte offset of the tensor's first element from
  // the start of the file (the "data section" of a zip checkpoint is the whole file).
  const std::vector<TensorInfo>& tensors() const { return tensors_; }
  const TensorInfo* find(std::string_view name) const;  // nullptr when absent
  const uint8_t* bytes(const TensorInfo& t) const { return data_ + t.begin; }

  // A CPU tensor viewing the mapped bytes in the stored dtype; keeps the mapping alive.
  // Throws Error naming the file and tensor when absent.
  Tensor tensor(std::string_view name) const;

  ~TorchZipFile();
  TorchZipFile(const TorchZipFile&) = delete;
  TorchZipFile& operator=(const TorchZipFile&) = delete;

 private:
  TorchZipFile() = default;
  void index(const uint8_t* bytes, size_t size);

  std::string path_;
  std::vector<TensorInfo> tensors_;  // sorted by name
  const uint8_t* data_ = nullptr;    // start of the file image
  void* map_ = nullptr;              // mmap base (nullptr for parse())
  size_t map_size_ = 0;
  std::weak_ptr<const TorchZipFile> self_;
};

// True when the file starts like a zip archive (what torch.save writes since PyTorch 1.6).
bool looks_like_torch_zip(const std::string& path);

}  // namespace freeswim::io
