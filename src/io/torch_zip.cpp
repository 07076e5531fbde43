#include "io/torch_zip.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <limits>
#include <map>

#include "core/error.h"
#include "io/torch_pickle.h"
#include "io/zip_reader.h"

namespace freeswim::io {

namespace {

// numel of a shape, or -1 when it overflows int64.
int64_t checked_numel(const Shape& shape) {
  int64_t n = 1;
  for (int64_t d : shape) {
    if (d != 0 && n > std::numeric_limits<int64_t>::max() / d) return -1;
    n *= d;
  }
  return n;
}

// Row-major contiguity; a dimension of size 1 may carry any stride (torch leaves it arbitrary).
bool contiguous(const Shape& shape, const std::vector<int64_t>& stride) {
  int64_t expected = 1;
  for (size_t d = shape.size(); d-- > 0;) {
    if (shape[d] == 0) return true;
    if (shape[d] != 1 && stride[d] != expected) return false;
    expected *= shape[d];
  }
  return true;
}

}  // namespace

void TorchZipFile::index(const uint8_t* bytes, size_t size) {
  data_ = bytes;
  std::vector<ZipEntry> entries = read_zip_directory(path_, bytes, size);
  std::map<std::string, const ZipEntry*, std::less<>> by_name;
  for (const ZipEntry& e : entries) by_name.emplace(e.name, &e);

  // torch.save names the records `<prefix>/...` with one prefix ("archive", or the file's
  // stem in older versions).
  std::string prefix;
  for (const ZipEntry& e : entries) {
    size_t slash = e.name.find('/');
    if (slash == std::string::npos || e.name.substr(slash) != "/data.pkl") continue;
    FS_CHECK(prefix.empty(), "'{}': the archive holds two pickles ('{}/data.pkl' and '{}')", path_,
             prefix, e.name);
    prefix = e.name.substr(0, slash);
  }
  FS_CHECK(!prefix.empty(),
           "'{}': zip archive without '<name>/data.pkl'; not a torch.save checkpoint", path_);
  if (auto it = by_name.find(prefix + "/byteorder"); it != by_name.end()) {
    std::string_view order(reinterpret_cast<const char*>(bytes + it->second->data_offset),
                           it->second->size);
    FS_CHECK(order == "little", "'{}': storages are stored '{}'-endian; only little-endian is read",
             path_, order.substr(0, 16));
  }
  const ZipEntry& pkl = *by_name.at(prefix + "/data.pkl");
  PickledStateDict dict = read_state_dict_pickle(path_, bytes + pkl.data_offset, pkl.size);

  for (const PickledTensor& t : dict.tensors) {
    const PickledStorage& s = dict.storages[t.storage];
    FS_CHECK(s.dtype.has_value(),
             "'{}': tensor '{}' is stored as torch.{}, which freeswim does not load", path_, t.name,
             s.type_name);
    const size_t esize = dtype_size(*s.dtype);
    auto it = by_name.find(prefix + "/data/" + s.key);
    FS_CHECK(it != by_name.end(),
             "'{}': tensor '{}': its storage '{}/data/{}' is missing from the archive", path_,
             t.name, prefix, s.key);
    const ZipEntry& e = *it->second;
    FS_CHECK(s.numel <= e.size / esize,
             "'{}': tensor '{}': storage '{}' claims {} elements of {} bytes but holds {} bytes",
             path_, t.name, s.key, s.numel, esize, e.size);
    int64_t numel = checked_numel(t.shape);
    FS_CHECK(numel >= 0, "'{}': tensor '{}': shape {} overflows", path_, t.name,
             shape_str(t.shape));
    // After the numel check, so that the running products of dimensions cannot overflow.
    FS_CHECK(contiguous(t.shape, t.stride),
             "'{}': tensor '{}' {} is not contiguous (strides {}); re-save it after .contiguous()",
             path_, t.name, shape_str(t.shape), shape_str(t.stride));
    FS_CHECK(static_cast<uint64_t>(t.offset) <= s.numel &&
                 static_cast<uint64_t>(numel) <= s.numel - static_cast<uint64_t>(t.offset),
             "'{}': tensor '{}' {} at offset {} exceeds its storage '{}' of {} elements", path_,
             t.name, shape_str(t.shape), t.offset, s.key, s.numel);
    TensorInfo info{t.name, *s.dtype, t.shape,
                    e.data_offset + static_cast<size_t>(t.offset) * esize,
                    static_cast<size_t>(numel) * esize};
    // torch aligns storages to 64 bytes; a misaligned view could not be read as its type.
    FS_CHECK(reinterpret_cast<uintptr_t>(bytes + info.begin) % esize == 0,
             "'{}': tensor '{}' starts at byte {}, not aligned to its {}-byte elements", path_,
             t.name, info.begin, esize);
    tensors_.push_back(std::move(info));
  }
  std::sort(tensors_.begin(), tensors_.end(),
            [](const TensorInfo& a, const TensorInfo& b) { return a.name < b.name; });
}

std::shared_ptr<const TorchZipFile> TorchZipFile::parse(const std::string& label,
                                                        const uint8_t* bytes, size_t size) {
  std::shared_ptr<TorchZipFile> f(new TorchZipFile());
  f->path_ = label;
  f->index(bytes, size);
  f->self_ = f;
  return f;
}

std::shared_ptr<const TorchZipFile> TorchZipFile::open(const std::string& path) {
  std::shared_ptr<TorchZipFile> f(new TorchZipFile());
  f->path_ = path;
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  FS_CHECK(fd >= 0, "cannot open '{}': {}", path, std::strerror(errno));
  struct stat st {};
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || st.st_size == 0) {
    ::close(fd);
    fail("'{}' is not a regular non-empty file", path);
  }
  void* map = ::mmap(nullptr, static_cast<size_t>(st.st_size), PROT_READ, MAP_PRIVATE, fd, 0);
  int err = errno;
  ::close(fd);
  FS_CHECK(map != MAP_FAILED, "cannot map '{}': {}", path, std::strerror(err));
  f->map_ = map;
  f->map_size_ = static_cast<size_t>(st.st_size);
  f->index(static_cast<const uint8_t*>(map), f->map_size_);  // the destructor unmaps on error
  f->self_ = f;
  return f;
}

TorchZipFile::~TorchZipFile() {
  if (map_) ::munmap(map_, map_size_);
}

const TensorInfo* TorchZipFile::find(std::string_view name) const {
  auto it = std::lower_bound(tensors_.begin(), tensors_.end(), name,
                             [](const TensorInfo& t, std::string_view n) { return t.name < n; });
  return it != tensors_.end() && it->name == name ? &*it : nullptr;
}

Tensor TorchZipFile::tensor(std::string_view name) const {
  const TensorInfo* t = find(name);
  FS_CHECK(t != nullptr, "'{}': no tensor named '{}'", path_, name);
  return Tensor::borrow(const_cast<uint8_t*>(bytes(*t)), t->shape, t->dtype, Device::CPU,
                        self_.lock());
}

bool looks_like_torch_zip(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  char magic[4] = {};
  return in.read(magic, 4) && std::memcmp(magic, "PK\x03\x04", 4) == 0;
}

}  // namespace freeswim::io
