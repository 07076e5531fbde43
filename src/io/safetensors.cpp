// Reading safetensors files: map, validate every header field against the file, hand out
// views. The rules are listed in docs/safetensors.md; each check below names the rule it
// enforces in its message.
#include "io/safetensors.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <limits>
#include <optional>
#include <system_error>

#include "core/error.h"
#include "io/strict_json.h"

namespace freeswim::io {

namespace {

using Json = nlohmann::json;

// Same ceiling as the reference implementation: a header is a few hundred bytes per tensor,
// so anything larger is corrupt, and refusing it bounds what parsing may allocate.
constexpr uint64_t kMaxHeaderBytes = 100'000'000;
// Top-level object -> tensor entry -> shape / data_offsets array.
constexpr int kMaxHeaderDepth = 3;

std::optional<DType> dtype_from_name(const std::string& s) {
  for (DType t : {DType::F32, DType::BF16, DType::F16, DType::I64, DType::I32, DType::U8,
                  DType::F8_E4M3, DType::F8_E5M2}) {
    if (s == dtype_name(t)) return t;
  }
  return std::nullopt;
}

}  // namespace

std::shared_ptr<const SafetensorsFile> SafetensorsFile::open(const std::string& path) {
  // O_NONBLOCK: a FIFO given by mistake must be refused below, not block the open.
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
  FS_CHECK(fd >= 0, "{}: cannot open: {}", path, errno_text());
  struct stat st {};
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    fail("{}: not a regular file", path);
  }
  const size_t size = static_cast<size_t>(st.st_size);
  auto file = std::shared_ptr<SafetensorsFile>(new SafetensorsFile());
  file->path_ = path;
  file->self_ = file;
  // mmap refuses a zero length; such a file is rejected by load() with the right message.
  if (size > 0) {
    void* p = ::mmap(nullptr, size, PROT_READ, MAP_PRIVATE, fd, 0);
    if (p == MAP_FAILED) {
      std::string why = errno_text();
      ::close(fd);
      fail("{}: cannot map {} bytes: {}", path, size, why);
    }
    file->map_ = p;
    file->map_size_ = size;
  }
  ::close(fd);  // the mapping stays valid without the descriptor
  // On a throw, `file` is destroyed here and its destructor unmaps.
  file->load(static_cast<const uint8_t*>(file->map_), size);
  return file;
}

std::shared_ptr<const SafetensorsFile> SafetensorsFile::parse(const std::string& label,
                                                              const uint8_t* bytes, size_t size) {
  auto file = std::shared_ptr<SafetensorsFile>(new SafetensorsFile());
  file->path_ = label;
  file->self_ = file;
  file->load(bytes, size);
  return file;
}

SafetensorsFile::~SafetensorsFile() {
  if (map_) ::munmap(map_, map_size_);
}

void SafetensorsFile::load(const uint8_t* bytes, size_t size) {
  FS_CHECK(size >= 8, "{}: file is {} bytes, shorter than the 8-byte header length", path_, size);
  uint64_t header_len = 0;
  for (int i = 0; i < 8; ++i) header_len |= static_cast<uint64_t>(bytes[i]) << (8 * i);
  // Both limits are checked before anything is allocated for the header.
  FS_CHECK(header_len <= size - 8,
           "{}: header length {} runs past the end of the file ({} bytes; truncated or not a "
           "safetensors file)",
           path_, header_len, size);
  FS_CHECK(header_len <= kMaxHeaderBytes, "{}: header length {} exceeds the limit of {} bytes",
           path_, header_len, kMaxHeaderBytes);

  const std::string_view text(reinterpret_cast<const char*>(bytes + 8),
                              static_cast<size_t>(header_len));
  const Json header = parse_json_strict(text, path_ + " (header)", kMaxHeaderDepth);
  FS_CHECK(header.is_object(), "{}: header is JSON but not an object", path_);

  const size_t data_size = size - 8 - static_cast<size_t>(header_len);
  for (const auto& [name, entry] : header.items()) {
    if (name == "__metadata__") {
      FS_CHECK(entry.is_object(), "{}: __metadata__ must be an object of strings", path_);
      for (const auto& [key, value] : entry.items()) {
        FS_CHECK(value.is_string(), "{}: __metadata__ entry '{}' is not a string", path_, key);
        metadata_.emplace(key, value.get<std::string>());
      }
    } else {
      load_entry(name, entry, data_size);
    }
  }

  // No two tensors may share a byte. Empty tensors hold no bytes, so they cannot overlap.
  std::vector<const TensorInfo*> by_begin;
  for (const TensorInfo& t : tensors_) {
    if (t.nbytes > 0) by_begin.push_back(&t);
  }
  std::sort(by_begin.begin(), by_begin.end(),
            [](const TensorInfo* a, const TensorInfo* b) { return a->begin < b->begin; });
  for (size_t i = 1; i < by_begin.size(); ++i) {
    const TensorInfo& prev = *by_begin[i - 1];
    const TensorInfo& cur = *by_begin[i];
    FS_CHECK(prev.begin + prev.nbytes <= cur.begin,
             "{}: tensors '{}' (bytes {}..{}) and '{}' (bytes {}..{}) overlap", path_, prev.name,
             prev.begin, prev.begin + prev.nbytes, cur.name, cur.begin, cur.begin + cur.nbytes);
  }

  std::sort(tensors_.begin(), tensors_.end(),
            [](const TensorInfo& a, const TensorInfo& b) { return a.name < b.name; });
  data_ = bytes + 8 + header_len;
}

void SafetensorsFile::load_entry(const std::string& name, const Json& entry, size_t data_size) {
  FS_CHECK(entry.is_object(), "{}: tensor '{}': entry is not an object", path_, name);
  for (const auto& [key, value] : entry.items()) {
    FS_CHECK(key == "dtype" || key == "shape" || key == "data_offsets",
             "{}: tensor '{}': unexpected field '{}'", path_, name, key);
  }
  for (const char* key : {"dtype", "shape", "data_offsets"}) {
    FS_CHECK(entry.contains(key), "{}: tensor '{}': missing field '{}'", path_, name, key);
  }
  TensorInfo info;
  info.name = name;

  const Json& dtype = entry["dtype"];
  FS_CHECK(dtype.is_string(), "{}: tensor '{}': dtype is not a string", path_, name);
  std::optional<DType> dt = dtype_from_name(dtype.get<std::string>());
  FS_CHECK(
      dt.has_value(),
      "{}: tensor '{}': unknown dtype '{}' (supported: F32 BF16 F16 F8_E4M3 F8_E5M2 I64 I32 U8)",
      path_, name, dtype.get<std::string>());
  info.dtype = *dt;

  // Element count and byte count in uint64 with overflow checks; the element count must also
  // fit the int64 shape arithmetic of Tensor.
  const Json& shape = entry["shape"];
  FS_CHECK(shape.is_array(), "{}: tensor '{}': shape is not an array", path_, name);
  uint64_t numel = 1;
  for (const Json& d : shape) {
    FS_CHECK(d.is_number_integer(), "{}: tensor '{}': shape entry {} is not an integer", path_,
             name, d.dump());
    FS_CHECK(d.is_number_unsigned(), "{}: tensor '{}': negative dimension {} in shape", path_, name,
             d.dump());
    const uint64_t dim = d.get<uint64_t>();
    FS_CHECK(dim <= static_cast<uint64_t>(std::numeric_limits<int64_t>::max()) &&
                 !__builtin_mul_overflow(numel, dim, &numel) &&
                 numel <= static_cast<uint64_t>(std::numeric_limits<int64_t>::max()),
             "{}: tensor '{}': shape {} overflows the element count", path_, name, shape.dump());
    info.shape.push_back(static_cast<int64_t>(dim));
  }
  uint64_t nbytes = 0;
  FS_CHECK(!__builtin_mul_overflow(numel, dtype_size(info.dtype), &nbytes),
           "{}: tensor '{}': shape {} of {} overflows the byte count", path_, name, shape.dump(),
           dtype_name(info.dtype));

  const Json& offsets = entry["data_offsets"];
  FS_CHECK(offsets.is_array() && offsets.size() == 2,
           "{}: tensor '{}': data_offsets must be an array of two integers", path_, name);
  for (const Json& o : offsets) {
    FS_CHECK(o.is_number_unsigned(),
             "{}: tensor '{}': data_offsets entry {} is not a non-negative integer", path_, name,
             o.dump());
  }
  const uint64_t begin = offsets[0].get<uint64_t>();
  const uint64_t end = offsets[1].get<uint64_t>();
  FS_CHECK(begin <= end, "{}: tensor '{}': data_offsets [{}, {}] end before they begin", path_,
           name, begin, end);
  FS_CHECK(end <= data_size,
           "{}: tensor '{}': data_offsets [{}, {}] reach outside the data section ({} bytes)",
           path_, name, begin, end, data_size);
  FS_CHECK(end - begin == nbytes,
           "{}: tensor '{}': data_offsets [{}, {}] hold {} bytes but shape {} of {} needs {}",
           path_, name, begin, end, end - begin, shape.dump(), dtype_name(info.dtype), nbytes);
  info.begin = static_cast<size_t>(begin);
  info.nbytes = static_cast<size_t>(nbytes);
  tensors_.push_back(std::move(info));
}

const TensorInfo* SafetensorsFile::find(std::string_view name) const {
  auto it = std::lower_bound(tensors_.begin(), tensors_.end(), name,
                             [](const TensorInfo& t, std::string_view n) { return t.name < n; });
  return it != tensors_.end() && it->name == name ? &*it : nullptr;
}

Tensor SafetensorsFile::tensor(std::string_view name) const {
  const TensorInfo* info = find(name);
  FS_CHECK(info != nullptr, "{}: no tensor named '{}'", path_, name);
  const uint8_t* p = bytes(*info);
  // The format does not promise alignment (the header length is free), and reading a float
  // through a misaligned pointer is undefined; such tensors are copied instead of viewed.
  if (reinterpret_cast<uintptr_t>(p) % dtype_size(info->dtype) != 0) {
    Tensor copy = Tensor::empty(info->shape, info->dtype, Device::CPU);
    if (info->nbytes) std::memcpy(copy.raw(), p, info->nbytes);
    return copy;
  }
  // The view is read-only in fact (the mapping is PROT_READ); Tensor has no const storage.
  return Tensor::borrow(const_cast<uint8_t*>(p), info->shape, info->dtype, Device::CPU,
                        self_.lock());
}

}  // namespace freeswim::io
