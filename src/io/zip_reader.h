// A reader for the central directory of an uncompressed ("stored") zip archive, which is what
// torch.save writes: every entry's bytes lie in the file as they are, so a memory-mapped file
// can hand them out as views. Zip64 records are handled (real checkpoints exceed 4 GB);
// compressed, encrypted and multi-disk archives are refused.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace freeswim::io {

struct ZipEntry {
  std::string name;
  uint64_t data_offset = 0;  // first byte of the entry's data, from the start of the archive
  uint64_t size = 0;         // bytes (stored: compressed size == uncompressed size)
};

// Reads and validates the whole directory of the archive image `bytes[0, size)`; every entry's
// local header and data range are checked against the image. `label` names the file in errors.
// Entries are returned in directory order; names are unique.
std::vector<ZipEntry> read_zip_directory(const std::string& label, const uint8_t* bytes,
                                         size_t size);

}  // namespace freeswim::io
