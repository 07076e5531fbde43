// Reading GGUF files: map, validate everything the header claims against the file, hand out
// tensors. The rules are listed in docs/gguf.md; each check below states the rule in its message.
#include "io/gguf.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <fstream>
#include <limits>
#include <system_error>

#include "core/error.h"

namespace freeswim::io {

namespace {

constexpr uint64_t kInt64Max = static_cast<uint64_t>(std::numeric_limits<int64_t>::max());
constexpr uint64_t kMaxKeyBytes = 65535;  // the specification's limit for keys
constexpr uint64_t kMaxNameBytes = 1024;  // tensor names (ggml: 64; ComfyUI-GGUF: 127)
constexpr uint32_t kMaxDims = 8;          // ggml: 4; ComfyUI-GGUF writes 5-d conv weights
constexpr int kMaxArrayDepth = 3;         // arrays of arrays of arrays
constexpr uint64_t kMaxAlignment = 1u << 30;
constexpr std::string_view kOrigShapePrefix = "comfy.gguf.orig_shape.";

size_t scalar_size(GgufValueType t) {
  switch (t) {
    case GgufValueType::UINT8:
    case GgufValueType::INT8:
    case GgufValueType::BOOL:
      return 1;
    case GgufValueType::UINT16:
    case GgufValueType::INT16:
      return 2;
    case GgufValueType::UINT32:
    case GgufValueType::INT32:
    case GgufValueType::FLOAT32:
      return 4;
    case GgufValueType::UINT64:
    case GgufValueType::INT64:
    case GgufValueType::FLOAT64:
      return 8;
    case GgufValueType::STRING:
    case GgufValueType::ARRAY:
      return 0;
  }
  return 0;
}

bool known_value_type(uint32_t t) {
  return t <= static_cast<uint32_t>(GgufValueType::FLOAT64);
}

// Little-endian reads with a bounds check before each; `what` names the field in errors.
class Reader {
 public:
  Reader(const std::string& label, const uint8_t* p, size_t n) : label_(label), p_(p), n_(n) {}
  size_t pos() const { return pos_; }
  size_t left() const { return n_ - pos_; }

  void need(uint64_t bytes, std::string_view what) const {
    FS_CHECK(bytes <= left(),
             "{}: {} needs {} bytes at offset {}, but the file has only {} left (truncated or a "
             "lying count)",
             label_, what, bytes, pos_, left());
  }
  uint64_t uint(size_t bytes, std::string_view what) {
    need(bytes, what);
    uint64_t v = 0;
    for (size_t i = 0; i < bytes; ++i) v |= static_cast<uint64_t>(p_[pos_ + i]) << (8 * i);
    pos_ += bytes;
    return v;
  }
  uint32_t u32(std::string_view what) { return static_cast<uint32_t>(uint(4, what)); }
  uint64_t u64(std::string_view what) { return uint(8, what); }
  std::string str(std::string_view what, uint64_t max_bytes) {
    const uint64_t len = u64(what);
    FS_CHECK(len <= left(),
             "{}: {} claims a string of {} bytes at offset {}, but the file has only {} left",
             label_, what, len, pos_, left());
    FS_CHECK(len <= max_bytes, "{}: {} is a string of {} bytes, more than the limit of {}", label_,
             what, len, max_bytes);
    std::string s(reinterpret_cast<const char*>(p_ + pos_), static_cast<size_t>(len));
    pos_ += static_cast<size_t>(len);
    return s;
  }
  void bytes(size_t n, std::vector<uint8_t>& out, std::string_view what) {
    need(n, what);
    out.assign(p_ + pos_, p_ + pos_ + n);
    pos_ += n;
  }

 private:
  const std::string& label_;
  const uint8_t* p_;
  size_t n_;
  size_t pos_ = 0;
};

GgufValue read_value(Reader& r, const std::string& label, GgufValueType type,
                     const std::string& key, int depth) {
  GgufValue v;
  v.type = type;
  const std::string what = fmt::format("key '{}'", key);
  if (type == GgufValueType::STRING) {
    v.str = r.str(what, std::numeric_limits<uint64_t>::max());
    return v;
  }
  if (type != GgufValueType::ARRAY) {
    v.bits = r.uint(scalar_size(type), what);
    FS_CHECK(type != GgufValueType::BOOL || v.bits <= 1,
             "{}: key '{}': boolean byte {} is not 0 or 1", label, key, v.bits);
    return v;
  }
  const uint32_t elem = r.u32(what);
  FS_CHECK(known_value_type(elem), "{}: key '{}': unknown array element type {}", label, key, elem);
  v.elem = static_cast<GgufValueType>(elem);
  FS_CHECK(v.elem != GgufValueType::ARRAY || depth + 1 < kMaxArrayDepth,
           "{}: key '{}': arrays nested more than {} deep", label, key, kMaxArrayDepth);
  v.count = r.u64(what);
  // Every element takes at least this many bytes, so a count the file cannot hold is refused
  // before anything is allocated for it.
  const size_t min_elem = v.elem == GgufValueType::STRING  ? 8
                          : v.elem == GgufValueType::ARRAY ? 12
                                                           : scalar_size(v.elem);
  FS_CHECK(v.count <= r.left() / min_elem,
           "{}: key '{}': an array of {} {} elements cannot fit in the {} bytes left", label, key,
           v.count, gguf_value_type_name(v.elem), r.left());
  const size_t n = static_cast<size_t>(v.count);
  if (v.elem == GgufValueType::STRING) {
    v.strings.reserve(n);
    for (size_t i = 0; i < n; ++i) v.strings.push_back(r.str(what, r.left()));
  } else if (v.elem == GgufValueType::ARRAY) {
    v.arrays.reserve(n);
    for (size_t i = 0; i < n; ++i)
      v.arrays.push_back(read_value(r, label, GgufValueType::ARRAY, key, depth + 1));
  } else {
    r.bytes(n * min_elem, v.raw, what);
    if (v.elem == GgufValueType::BOOL)
      for (uint8_t b : v.raw)
        FS_CHECK(b <= 1, "{}: key '{}': boolean element {} is not 0 or 1", label, key, b);
  }
  return v;
}

int64_t signed_of(uint64_t bits, GgufValueType t) {
  switch (t) {
    case GgufValueType::INT8:
      return static_cast<int8_t>(bits);
    case GgufValueType::INT16:
      return static_cast<int16_t>(bits);
    case GgufValueType::INT32:
      return static_cast<int32_t>(bits);
    case GgufValueType::INT64:
      return static_cast<int64_t>(bits);
    default:
      return 0;
  }
}

bool is_signed(GgufValueType t) {
  return t == GgufValueType::INT8 || t == GgufValueType::INT16 || t == GgufValueType::INT32 ||
         t == GgufValueType::INT64;
}

bool is_unsigned(GgufValueType t) {
  return t == GgufValueType::UINT8 || t == GgufValueType::UINT16 || t == GgufValueType::UINT32 ||
         t == GgufValueType::UINT64;
}

std::optional<int64_t> integer_of(uint64_t bits, GgufValueType t) {
  if (is_signed(t)) return signed_of(bits, t);
  if (is_unsigned(t) && bits <= kInt64Max) return static_cast<int64_t>(bits);
  return std::nullopt;
}

std::optional<double> number_of(uint64_t bits, GgufValueType t) {
  if (t == GgufValueType::FLOAT32) {
    const uint32_t u = static_cast<uint32_t>(bits);
    float f;
    std::memcpy(&f, &u, 4);
    return f;
  }
  if (t == GgufValueType::FLOAT64) {
    double d;
    std::memcpy(&d, &bits, 8);
    return d;
  }
  if (is_unsigned(t)) return static_cast<double>(bits);
  if (is_signed(t)) return static_cast<double>(signed_of(bits, t));
  return std::nullopt;
}

}  // namespace

std::string gguf_value_type_name(GgufValueType t) {
  static const char* const names[] = {"UINT8",  "INT8",    "UINT16", "INT16",  "UINT32",
                                      "INT32",  "FLOAT32", "BOOL",   "STRING", "ARRAY",
                                      "UINT64", "INT64",   "FLOAT64"};
  const auto i = static_cast<uint32_t>(t);
  return i < std::size(names) ? names[i] : fmt::format("type {}", i);
}

bool GgufValue::is_integer() const {
  return is_signed(type) || is_unsigned(type);
}

std::optional<int64_t> GgufValue::integer() const {
  return integer_of(bits, type);
}

std::optional<double> GgufValue::number() const {
  return number_of(bits, type);
}

std::optional<std::string_view> GgufValue::string() const {
  if (type != GgufValueType::STRING) return std::nullopt;
  return std::string_view(str);
}

std::optional<bool> GgufValue::boolean() const {
  if (type != GgufValueType::BOOL) return std::nullopt;
  return bits != 0;
}

std::optional<int64_t> GgufValue::integer_at(uint64_t i) const {
  const size_t sz = scalar_size(elem);
  if (type != GgufValueType::ARRAY || sz == 0 || i >= count) return std::nullopt;
  uint64_t b = 0;
  for (size_t k = 0; k < sz; ++k) b |= static_cast<uint64_t>(raw[i * sz + k]) << (8 * k);
  return integer_of(b, elem);
}

std::optional<double> GgufValue::number_at(uint64_t i) const {
  const size_t sz = scalar_size(elem);
  if (type != GgufValueType::ARRAY || sz == 0 || i >= count) return std::nullopt;
  uint64_t b = 0;
  for (size_t k = 0; k < sz; ++k) b |= static_cast<uint64_t>(raw[i * sz + k]) << (8 * k);
  return number_of(b, elem);
}

std::string GgufValue::describe() const {
  if (type != GgufValueType::ARRAY) return gguf_value_type_name(type);
  return fmt::format("ARRAY of {} {}", count, gguf_value_type_name(elem));
}

std::shared_ptr<const GgufFile> GgufFile::open(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
  FS_CHECK(fd >= 0, "{}: cannot open: {}", path, errno_text());
  struct stat st {};
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    fail("{}: not a regular file", path);
  }
  const size_t size = static_cast<size_t>(st.st_size);
  auto file = std::shared_ptr<GgufFile>(new GgufFile());
  file->path_ = path;
  file->self_ = file;
  if (size > 0) {
    void* p = ::mmap(nullptr, size, PROT_READ, MAP_PRIVATE, fd, 0);
    if (p == MAP_FAILED) {
      const std::string why = errno_text();
      ::close(fd);
      fail("{}: cannot map {} bytes: {}", path, size, why);
    }
    file->map_ = p;
    file->map_size_ = size;
  }
  ::close(fd);
  file->load(static_cast<const uint8_t*>(file->map_), size);
  return file;
}

std::shared_ptr<const GgufFile> GgufFile::parse(const std::string& label, const uint8_t* bytes,
                                                size_t size) {
  auto file = std::shared_ptr<GgufFile>(new GgufFile());
  file->path_ = label;
  file->self_ = file;
  file->load(bytes, size);
  return file;
}

GgufFile::~GgufFile() {
  if (map_) ::munmap(map_, map_size_);
}

void GgufFile::load(const uint8_t* bytes, size_t size) {
  Reader r(path_, bytes, size);
  FS_CHECK(size >= 4 && std::memcmp(bytes, "GGUF", 4) == 0,
           "{}: not a GGUF file (it does not start with the bytes 'GGUF')", path_);
  r.uint(4, "the magic");
  version_ = r.u32("the version");
  FS_CHECK(version_ != 0x03000000u,
           "{}: a big-endian GGUF file (version field 0x03000000); only little-endian files are "
           "read",
           path_);
  FS_CHECK(version_ == 3, "{}: GGUF version {}; only version 3 is read (convert older files again)",
           path_, version_);
  const uint64_t n_tensors = r.u64("the tensor count");
  const uint64_t n_kv = r.u64("the metadata count");
  // Smallest entries: a key-value is a key length, a type and one byte; a tensor description a
  // name length, a dimension count, one dimension, a type and an offset.
  FS_CHECK(n_kv <= r.left() / 13, "{}: {} metadata entries cannot fit in the {} bytes left", path_,
           n_kv, r.left());
  FS_CHECK(n_tensors <= r.left() / 32, "{}: {} tensor descriptions cannot fit in the {} bytes left",
           path_, n_tensors, r.left());

  for (uint64_t i = 0; i < n_kv; ++i) {
    std::string key = r.str(fmt::format("the key of metadata entry {}", i), kMaxKeyBytes);
    FS_CHECK(!key.empty(), "{}: metadata entry {} has an empty key", path_, i);
    const uint32_t type = r.u32(fmt::format("key '{}'", key));
    FS_CHECK(known_value_type(type), "{}: key '{}': unknown value type {}", path_, key, type);
    GgufValue v = read_value(r, path_, static_cast<GgufValueType>(type), key, 0);
    auto [it, fresh] = metadata_.emplace(std::move(key), std::move(v));
    FS_CHECK(fresh, "{}: key '{}' appears twice", path_, it->first);
  }

  if (const GgufValue* a = value("general.alignment")) {
    const std::optional<int64_t> n = a->integer();
    FS_CHECK(a->is_integer() && n && *n > 0 && static_cast<uint64_t>(*n) <= kMaxAlignment &&
                 (*n & (*n - 1)) == 0,
             "{}: general.alignment must be a power of two up to 2^30, got {} {}", path_,
             a->describe(), n ? std::to_string(*n) : "");
    alignment_ = static_cast<uint64_t>(*n);
  }

  tensors_.reserve(static_cast<size_t>(n_tensors));
  for (uint64_t i = 0; i < n_tensors; ++i) {
    GgufTensorInfo t;
    t.name = r.str(fmt::format("the name of tensor {}", i), kMaxNameBytes);
    FS_CHECK(!t.name.empty(), "{}: tensor {} has an empty name", path_, i);
    const std::string what = fmt::format("tensor '{}'", t.name);
    const uint32_t n_dims = r.u32(what);
    FS_CHECK(n_dims >= 1 && n_dims <= kMaxDims, "{}: tensor '{}' has {} dimensions (1 to {} read)",
             path_, t.name, n_dims, kMaxDims);
    // The product of the non-zero dimensions must fit int64 too: shapes are multiplied out in
    // the reverse order later, where a zero would come too late to stop an overflow.
    uint64_t numel = 1, nonzero = 1;
    for (uint32_t d = 0; d < n_dims; ++d) {
      const uint64_t dim = r.u64(what);
      FS_CHECK(dim <= kInt64Max && !__builtin_mul_overflow(numel, dim, &numel) &&
                   (dim == 0 || !__builtin_mul_overflow(nonzero, dim, &nonzero)) &&
                   nonzero <= kInt64Max,
               "{}: tensor '{}': dimensions overflow the element count (dimension {} is {})", path_,
               t.name, d, dim);
      t.dims.push_back(dim);
    }
    t.type_id = r.u32(what);
    const GgmlTypeInfo* info = ggml_type_info(t.type_id);
    FS_CHECK(info != nullptr, "{}: tensor '{}' has type {}, which this engine does not read ({})",
             path_, t.name, ggml_type_name(t.type_id), ggml_supported_types());
    t.type = info->type;
    FS_CHECK(t.dims[0] % static_cast<uint64_t>(info->block) == 0,
             "{}: tensor '{}' of type {} has rows of {} values, not whole blocks of {}", path_,
             t.name, info->name, t.dims[0], info->block);
    uint64_t nbytes = 0;
    FS_CHECK(!__builtin_mul_overflow(numel / static_cast<uint64_t>(info->block), info->block_bytes,
                                     &nbytes) &&
                 nbytes <= std::numeric_limits<size_t>::max(),
             "{}: tensor '{}' overflows the byte count", path_, t.name);
    t.nbytes = static_cast<size_t>(nbytes);
    t.offset = r.u64(what);
    FS_CHECK(t.offset % alignment_ == 0,
             "{}: tensor '{}' starts at {}, not a multiple of the alignment {}", path_, t.name,
             t.offset, alignment_);
    for (auto d = t.dims.rbegin(); d != t.dims.rend(); ++d)
      t.shape.push_back(static_cast<int64_t>(*d));
    tensors_.push_back(std::move(t));
  }

  // The data section starts at the next multiple of the alignment.
  const uint64_t end_of_infos = r.pos();
  const uint64_t data_start = (end_of_infos + alignment_ - 1) / alignment_ * alignment_;
  const uint64_t data_size = data_start <= size ? size - data_start : 0;
  for (const GgufTensorInfo& t : tensors_) {
    FS_CHECK(t.offset <= data_size && t.nbytes <= data_size - t.offset,
             "{}: tensor '{}' (bytes {}..{} of the data section) reaches outside the data section "
             "({} bytes; truncated?)",
             path_, t.name, t.offset, t.offset + t.nbytes, data_size);
  }
  std::sort(tensors_.begin(), tensors_.end(),
            [](const GgufTensorInfo& a, const GgufTensorInfo& b) { return a.name < b.name; });
  for (size_t i = 1; i < tensors_.size(); ++i)
    FS_CHECK(tensors_[i - 1].name != tensors_[i].name, "{}: tensor '{}' is described twice", path_,
             tensors_[i].name);
  std::vector<const GgufTensorInfo*> by_offset;
  for (const GgufTensorInfo& t : tensors_)
    if (t.nbytes > 0) by_offset.push_back(&t);
  std::sort(by_offset.begin(), by_offset.end(),
            [](const GgufTensorInfo* a, const GgufTensorInfo* b) { return a->offset < b->offset; });
  for (size_t i = 1; i < by_offset.size(); ++i) {
    const GgufTensorInfo& a = *by_offset[i - 1];
    const GgufTensorInfo& b = *by_offset[i];
    FS_CHECK(a.offset + a.nbytes <= b.offset, "{}: tensors '{}' and '{}' overlap", path_, a.name,
             b.name);
  }

  // ComfyUI-GGUF's true shapes of reshaped tensors.
  for (const auto& [key, v] : metadata_) {
    if (key.compare(0, kOrigShapePrefix.size(), kOrigShapePrefix) != 0) continue;
    const std::string name = key.substr(kOrigShapePrefix.size());
    auto it =
        std::lower_bound(tensors_.begin(), tensors_.end(), name,
                         [](const GgufTensorInfo& t, const std::string& n) { return t.name < n; });
    FS_CHECK(it != tensors_.end() && it->name == name,
             "{}: key '{}' gives the shape of tensor '{}', which the file does not hold", path_,
             key, name);
    FS_CHECK(v.type == GgufValueType::ARRAY && v.count >= 1 && v.count <= kMaxDims &&
                 (is_signed(v.elem) || is_unsigned(v.elem)),
             "{}: key '{}' must be an array of 1 to {} integers, got {}", path_, key, kMaxDims,
             v.describe());
    Shape shape;
    uint64_t numel = 1, nonzero = 1;
    for (uint64_t i = 0; i < v.count; ++i) {
      const std::optional<int64_t> d = v.integer_at(i);
      FS_CHECK(
          d && *d >= 0 && !__builtin_mul_overflow(numel, static_cast<uint64_t>(*d), &numel) &&
              (*d == 0 || !__builtin_mul_overflow(nonzero, static_cast<uint64_t>(*d), &nonzero)) &&
              nonzero <= kInt64Max,
          "{}: key '{}': dimension {} is negative or overflows the element count", path_, key, i);
      shape.push_back(*d);
    }
    FS_CHECK(static_cast<int64_t>(numel) == shape_numel(it->shape),
             "{}: key '{}' gives tensor '{}' the shape {} ({} values), but it stores {} values",
             path_, key, name, shape_str(shape), numel, shape_numel(it->shape));
    it->shape = std::move(shape);
    it->reshaped = true;
  }
  data_ = bytes + std::min<uint64_t>(data_start, size);
}

const GgufTensorInfo* GgufFile::find(std::string_view name) const {
  auto it =
      std::lower_bound(tensors_.begin(), tensors_.end(), name,
                       [](const GgufTensorInfo& t, std::string_view n) { return t.name < n; });
  return it != tensors_.end() && it->name == name ? &*it : nullptr;
}

const GgufValue* GgufFile::value(std::string_view key) const {
  auto it = metadata_.find(key);
  return it == metadata_.end() ? nullptr : &it->second;
}

std::string GgufFile::string_value(std::string_view key) const {
  const GgufValue* v = value(key);
  if (v == nullptr) return "";
  FS_CHECK(v->type == GgufValueType::STRING, "{}: key '{}' is {}, expected STRING", path_, key,
           v->describe());
  return v->str;
}

Tensor GgufFile::tensor(std::string_view name) const {
  const GgufTensorInfo* t = find(name);
  FS_CHECK(t != nullptr, "{}: no tensor named '{}'", path_, name);
  const uint8_t* p = bytes(*t);
  DType view = DType::F32;
  switch (t->type) {
    case GgmlType::F32:
      view = DType::F32;
      break;
    case GgmlType::F16:
      view = DType::F16;
      break;
    case GgmlType::BF16:
      view = DType::BF16;
      break;
    default:
      return dequantize_tensor(t->type, p, t->shape);
  }
  if (reinterpret_cast<uintptr_t>(p) % dtype_size(view) != 0) {
    Tensor copy = Tensor::empty(t->shape, view, Device::CPU);
    if (t->nbytes) std::memcpy(copy.raw(), p, t->nbytes);
    return copy;
  }
  return Tensor::borrow(const_cast<uint8_t*>(p), t->shape, view, Device::CPU, self_.lock());
}

bool looks_like_gguf(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  char magic[4] = {};
  return in.read(magic, 4) && std::memcmp(magic, "GGUF", 4) == 0;
}

}  // namespace freeswim::io
