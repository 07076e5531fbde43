// A minimal zip writer for test fixtures: stored entries whose data is aligned to 64 bytes
// through a padding extra field in the local header, as torch.save lays out its archives.
// With `zip64`, every size and offset goes through the zip64 records, which real checkpoints
// over 4 GB need, so the reader's zip64 path is exercised on small files.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace freeswim::test {

struct ZipFixtureEntry {
  std::string name;
  std::string data;
  uint16_t method = 0;  // 0 = stored; anything else marks the entry compressed
};

std::string write_zip(const std::vector<ZipFixtureEntry>& entries, bool zip64 = false);

}  // namespace freeswim::test
