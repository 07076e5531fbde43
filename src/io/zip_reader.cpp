#include "io/zip_reader.h"

#include <algorithm>
#include <set>

#include "core/error.h"

namespace freeswim::io {

namespace {

// Signatures and fixed record sizes from the zip specification (APPNOTE.TXT).
constexpr uint32_t kEndOfDirSig = 0x06054b50;
constexpr uint32_t kZip64EndOfDirSig = 0x06064b50;
constexpr uint32_t kZip64LocatorSig = 0x07064b50;
constexpr uint32_t kCentralSig = 0x02014b50;
constexpr uint32_t kLocalSig = 0x04034b50;
constexpr size_t kEndOfDirSize = 22;
constexpr size_t kZip64LocatorSize = 20;
constexpr size_t kZip64EndOfDirSize = 56;
constexpr size_t kCentralSize = 46;
constexpr size_t kLocalSize = 30;
constexpr uint16_t kZip64ExtraId = 0x0001;

// Little-endian reads from an image whose bounds the caller has checked.
uint64_t le(const uint8_t* p, int n) {
  uint64_t v = 0;
  for (int i = n - 1; i >= 0; --i) v = v << 8 | p[i];
  return v;
}

struct Reader {
  const std::string& label;
  const uint8_t* bytes;
  size_t size;

  // Throws unless [offset, offset + n) lies inside the image.
  void need(uint64_t offset, uint64_t n, const char* what) const {
    FS_CHECK(offset <= size && n <= size - offset,
             "'{}': zip {} at byte {} runs past the end of the file ({} bytes)", label, what,
             offset, size);
  }
  uint64_t u(uint64_t offset, int n) const { return le(bytes + offset, n); }
};

struct Directory {
  uint64_t entries = 0;
  uint64_t offset = 0;
  uint64_t size = 0;
};

Directory find_directory(const Reader& r) {
  const std::string& label = r.label;
  FS_CHECK(r.size >= kEndOfDirSize, "'{}': not a zip archive (file of {} bytes is too short)",
           label, r.size);
  // The end-of-directory record is followed only by a comment of at most 65535 bytes.
  size_t lowest = r.size > kEndOfDirSize + 0xffff ? r.size - kEndOfDirSize - 0xffff : 0;
  size_t eocd = r.size - kEndOfDirSize;
  while (true) {
    if (r.u(eocd, 4) == kEndOfDirSig && eocd + kEndOfDirSize + r.u(eocd + 20, 2) == r.size) break;
    FS_CHECK(eocd > lowest, "'{}': not a zip archive (no end-of-central-directory record)", label);
    --eocd;
  }
  FS_CHECK(r.u(eocd + 4, 2) == 0 && r.u(eocd + 6, 2) == 0,
           "'{}': multi-disk zip archives are not supported", label);
  Directory d{r.u(eocd + 10, 2), r.u(eocd + 16, 4), r.u(eocd + 12, 4)};
  // A zip64 locator sits just before the classic record when the archive needs 64-bit fields.
  if (eocd >= kZip64LocatorSize && r.u(eocd - kZip64LocatorSize, 4) == kZip64LocatorSig) {
    size_t loc = eocd - kZip64LocatorSize;
    FS_CHECK(r.u(loc + 4, 4) == 0 && r.u(loc + 16, 4) <= 1,
             "'{}': multi-disk zip64 archives are not supported", label);
    uint64_t z = r.u(loc + 8, 8);
    r.need(z, kZip64EndOfDirSize, "zip64 end-of-directory record");
    FS_CHECK(r.u(z, 4) == kZip64EndOfDirSig,
             "'{}': zip64 locator points at byte {}, which is not a zip64 end-of-directory record",
             label, z);
    FS_CHECK(r.u(z + 16, 4) == 0 && r.u(z + 20, 4) == 0,
             "'{}': multi-disk zip64 archives are not supported", label);
    d = Directory{r.u(z + 32, 8), r.u(z + 48, 8), r.u(z + 40, 8)};
  } else {
    FS_CHECK(d.entries != 0xffff && d.offset != 0xffffffff && d.size != 0xffffffff,
             "'{}': zip end-of-directory record asks for zip64 but has no zip64 locator", label);
  }
  r.need(d.offset, d.size, "central directory");
  // Each entry takes at least kCentralSize bytes, which bounds the count by the file.
  FS_CHECK(d.entries <= d.size / kCentralSize, "'{}': zip directory claims {} entries in {} bytes",
           label, d.entries, d.size);
  return d;
}

// Replaces the 32-bit fields that are saturated (0xffffffff) by their zip64 extra values.
void apply_zip64_extra(const Reader& r, uint64_t extra, uint64_t extra_len, const std::string& name,
                       uint64_t& usize, uint64_t& csize, uint64_t& local) {
  bool want_u = usize == 0xffffffff, want_c = csize == 0xffffffff, want_l = local == 0xffffffff;
  if (!want_u && !want_c && !want_l) return;
  uint64_t p = extra, end = extra + extra_len;
  while (p + 4 <= end) {
    uint64_t id = r.u(p, 2), len = r.u(p + 2, 2);
    FS_CHECK(p + 4 + len <= end, "'{}': zip entry '{}' has a malformed extra field", r.label, name);
    if (id == kZip64ExtraId) {
      uint64_t q = p + 4, qend = q + len;
      auto take = [&](uint64_t& field) {
        FS_CHECK(q + 8 <= qend, "'{}': zip entry '{}' has a short zip64 extra field", r.label,
                 name);
        field = r.u(q, 8);
        q += 8;
      };
      if (want_u) take(usize);
      if (want_c) take(csize);
      if (want_l) take(local);
      return;
    }
    p += 4 + len;
  }
  FS_CHECK(false, "'{}': zip entry '{}' needs a zip64 extra field and has none", r.label, name);
}

}  // namespace

std::vector<ZipEntry> read_zip_directory(const std::string& label, const uint8_t* bytes,
                                         size_t size) {
  Reader r{label, bytes, size};
  Directory dir = find_directory(r);
  std::vector<ZipEntry> entries;
  entries.reserve(dir.entries);
  std::set<std::string, std::less<>> names;
  uint64_t p = dir.offset, end = dir.offset + dir.size;
  for (uint64_t i = 0; i < dir.entries; ++i) {
    FS_CHECK(p + kCentralSize <= end && r.u(p, 4) == kCentralSig,
             "'{}': zip central directory entry {} at byte {} is corrupt", label, i, p);
    uint64_t flags = r.u(p + 8, 2), method = r.u(p + 10, 2);
    uint64_t csize = r.u(p + 20, 4), usize = r.u(p + 24, 4);
    uint64_t name_len = r.u(p + 28, 2), extra_len = r.u(p + 30, 2), comment_len = r.u(p + 32, 2);
    uint64_t local = r.u(p + 42, 4);
    uint64_t record = kCentralSize + name_len + extra_len + comment_len;
    FS_CHECK(p + record <= end, "'{}': zip central directory entry {} runs past the directory",
             label, i);
    std::string name(reinterpret_cast<const char*>(bytes + p + kCentralSize), name_len);
    apply_zip64_extra(r, p + kCentralSize + name_len, extra_len, name, usize, csize, local);
    FS_CHECK((flags & 1) == 0, "'{}': zip entry '{}' is encrypted", label, name);
    FS_CHECK(method == 0,
             "'{}': zip entry '{}' is compressed (method {}); torch checkpoints store entries "
             "uncompressed, re-save it with torch.save",
             label, name, method);
    FS_CHECK(csize == usize, "'{}': stored zip entry '{}' has compressed size {} != size {}", label,
             name, csize, usize);
    // The data follows the local header, whose own name and extra lengths may differ from the
    // central copy (torch pads the local extra field to align the data to 64 bytes).
    r.need(local, kLocalSize, "local header");
    FS_CHECK(r.u(local, 4) == kLocalSig, "'{}': zip entry '{}' has no local header at byte {}",
             label, name, local);
    uint64_t local_name = r.u(local + 26, 2), local_extra = r.u(local + 28, 2);
    r.need(local + kLocalSize, local_name + local_extra, "local header");
    uint64_t data = local + kLocalSize + local_name + local_extra;
    FS_CHECK(
        local_name == name_len && std::equal(name.begin(), name.end(), bytes + local + kLocalSize),
        "'{}': zip entry '{}': local header names another file", label, name);
    r.need(data, usize, ("data of entry '" + name + "'").c_str());
    FS_CHECK(names.insert(name).second, "'{}': zip entry '{}' appears twice", label, name);
    entries.push_back(ZipEntry{std::move(name), data, usize});
    p += record;
  }
  return entries;
}

}  // namespace freeswim::io
