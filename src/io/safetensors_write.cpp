// Writing safetensors files in the layout every reader accepts: tensors packed back to back
// with no gaps (the reference reader insists on that), largest element size first so that
// every tensor starts aligned to its element size, header padded with spaces to 8 bytes.
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <nlohmann/json.hpp>
#include <numeric>
#include <set>
#include <system_error>

#include "core/error.h"
#include "io/safetensors.h"

namespace freeswim::io {

namespace {

// Owns the temporary file until it is renamed into place; removes it on any failure.
class TempFile {
 public:
  TempFile(std::string tmp, std::string final_path)
      : tmp_(std::move(tmp)), final_(std::move(final_path)) {
    fd_ = ::open(tmp_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    FS_CHECK(fd_ >= 0, "{}: cannot create: {}", tmp_, errno_text());
  }
  ~TempFile() {
    if (fd_ >= 0) ::close(fd_);
    if (!committed_) ::unlink(tmp_.c_str());
  }
  TempFile(const TempFile&) = delete;
  TempFile& operator=(const TempFile&) = delete;

  void write(const void* data, size_t n) {
    const char* p = static_cast<const char*>(data);
    while (n > 0) {
      ssize_t w = ::write(fd_, p, n);
      if (w < 0 && errno == EINTR) continue;
      FS_CHECK(w > 0, "{}: write failed: {}", tmp_, errno_text());
      p += w;
      n -= static_cast<size_t>(w);
    }
  }

  // Durable before visible: flush to disk, then rename over the destination.
  void commit() {
    FS_CHECK(::fsync(fd_) == 0, "{}: fsync failed: {}", tmp_, errno_text());
    int rc = ::close(fd_);
    fd_ = -1;
    FS_CHECK(rc == 0, "{}: close failed: {}", tmp_, errno_text());
    FS_CHECK(std::rename(tmp_.c_str(), final_.c_str()) == 0, "{}: cannot rename {} into place: {}",
             final_, tmp_, errno_text());
    committed_ = true;
  }

 private:
  std::string tmp_, final_;
  int fd_ = -1;
  bool committed_ = false;
};

}  // namespace

void write_safetensors(const std::string& path,
                       const std::vector<std::pair<std::string, Tensor>>& tensors,
                       const std::map<std::string, std::string>& metadata) {
  std::set<std::string_view> names;
  for (const auto& [name, t] : tensors) {
    FS_CHECK(name != "__metadata__", "{}: '__metadata__' is reserved and cannot name a tensor",
             path);
    FS_CHECK(names.insert(name).second, "{}: tensor '{}' given twice", path, name);
    FS_CHECK(t.defined(), "{}: tensor '{}' is undefined", path, name);
  }

  std::vector<size_t> order(tensors.size());
  std::iota(order.begin(), order.end(), size_t{0});
  std::sort(order.begin(), order.end(), [&](size_t a, size_t b) {
    size_t sa = dtype_size(tensors[a].second.dtype()), sb = dtype_size(tensors[b].second.dtype());
    return sa != sb ? sa > sb : tensors[a].first < tensors[b].first;
  });

  nlohmann::json header = nlohmann::json::object();
  if (!metadata.empty()) header["__metadata__"] = metadata;
  size_t offset = 0;
  for (size_t i : order) {
    const auto& [name, t] = tensors[i];
    header[name] = {{"dtype", std::string(dtype_name(t.dtype()))},
                    {"shape", t.shape()},
                    {"data_offsets", {offset, offset + t.nbytes()}}};
    offset += t.nbytes();
  }
  std::string text;
  try {
    text = header.dump();
  } catch (const nlohmann::json::exception& e) {
    fail("{}: cannot encode the header (tensor names and metadata must be UTF-8): {}", path,
         e.what());
  }
  text.append((8 - text.size() % 8) % 8, ' ');

  TempFile out(path + ".tmp", path);
  uint8_t len[8];
  for (int i = 0; i < 8; ++i) len[i] = static_cast<uint8_t>(uint64_t{text.size()} >> (8 * i));
  out.write(len, sizeof len);
  out.write(text.data(), text.size());
  for (size_t i : order) {
    const Tensor host = tensors[i].second.to(Device::CPU);
    out.write(host.raw(), host.nbytes());
  }
  out.commit();
}

}  // namespace freeswim::io
