#include "test_zip_writer.h"

namespace freeswim::test {

namespace {

void put(std::string& out, uint64_t v, int n) {
  for (int i = 0; i < n; ++i) out += static_cast<char>((v >> (8 * i)) & 0xff);
}

// CRC-32 (IEEE, reflected), bit by bit: fixtures are small.
uint32_t crc32(const std::string& data) {
  uint32_t c = 0xffffffff;
  for (unsigned char b : data) {
    c ^= b;
    for (int k = 0; k < 8; ++k) c = (c >> 1) ^ (0xedb88320u & (0u - (c & 1u)));
  }
  return ~c;
}

}  // namespace

std::string write_zip(const std::vector<ZipFixtureEntry>& entries, bool zip64) {
  std::string out, central;
  const uint32_t sat = 0xffffffff;
  for (const ZipFixtureEntry& e : entries) {
    uint64_t local = out.size();
    // Pad the local extra field so that the data starts on a 64-byte boundary.
    uint64_t before = local + 30 + e.name.size() + 4;
    uint64_t pad = (64 - before % 64) % 64;
    put(out, 0x04034b50, 4);
    put(out, zip64 ? 45 : 20, 2);
    put(out, 0, 2);  // flags
    put(out, e.method, 2);
    put(out, 0, 4);  // time, date
    put(out, crc32(e.data), 4);
    put(out, e.data.size(), 4);
    put(out, e.data.size(), 4);
    put(out, e.name.size(), 2);
    put(out, 4 + pad, 2);
    out += e.name;
    put(out, 0x4246, 2);  // "FB": torch's padding field id
    put(out, pad, 2);
    out.append(pad, 'Z');
    out += e.data;

    put(central, 0x02014b50, 4);
    put(central, zip64 ? 45 : 20, 2);
    put(central, zip64 ? 45 : 20, 2);
    put(central, 0, 2);
    put(central, e.method, 2);
    put(central, 0, 4);
    put(central, crc32(e.data), 4);
    put(central, zip64 ? sat : e.data.size(), 4);
    put(central, zip64 ? sat : e.data.size(), 4);
    put(central, e.name.size(), 2);
    put(central, zip64 ? 28 : 0, 2);
    put(central, 0, 2);  // comment
    put(central, 0, 2);  // disk
    put(central, 0, 2);
    put(central, 0, 4);
    put(central, zip64 ? sat : local, 4);
    central += e.name;
    if (zip64) {
      put(central, 0x0001, 2);
      put(central, 24, 2);
      put(central, e.data.size(), 8);
      put(central, e.data.size(), 8);
      put(central, local, 8);
    }
  }
  uint64_t cd_offset = out.size();
  out += central;
  if (zip64) {
    uint64_t z = out.size();
    put(out, 0x06064b50, 4);
    put(out, 44, 8);
    put(out, 45, 2);
    put(out, 45, 2);
    put(out, 0, 4);
    put(out, 0, 4);
    put(out, entries.size(), 8);
    put(out, entries.size(), 8);
    put(out, central.size(), 8);
    put(out, cd_offset, 8);
    put(out, 0x07064b50, 4);
    put(out, 0, 4);
    put(out, z, 8);
    put(out, 1, 4);
  }
  put(out, 0x06054b50, 4);
  put(out, 0, 2);
  put(out, 0, 2);
  put(out, zip64 ? 0xffff : entries.size(), 2);
  put(out, zip64 ? 0xffff : entries.size(), 2);
  put(out, zip64 ? sat : central.size(), 4);
  put(out, zip64 ? sat : cd_offset, 4);
  put(out, 0, 2);
  return out;
}

}  // namespace freeswim::test
