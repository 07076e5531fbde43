// Helpers for the io tests: a scratch directory, raw file bytes, and a small valid
// safetensors file whose header the corruption tests rewrite.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace freeswim::io::test {

// A fresh directory under $TMPDIR (or /tmp), removed with everything in it on destruction.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  std::string file(const std::string& name) const { return path_ + "/" + name; }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

std::vector<uint8_t> read_bytes(const std::string& path);
void write_bytes(const std::string& path, const std::vector<uint8_t>& bytes);

// A file split into its parts: the header text and the data section.
struct Parts {
  std::string header;
  std::vector<uint8_t> data;
};
Parts split(const std::vector<uint8_t>& file);
// Reassembles a file; the length field says header.size().
std::vector<uint8_t> join(const Parts& parts);

// Writes the reference file used by the corruption tests and returns its path. It holds
//   alpha F32 [2, 3] at bytes [0, 24), gamma F32 [3] at [24, 36), beta BF16 [4] at [36, 44).
std::string write_valid_file(const TempDir& dir, const std::string& name = "valid.safetensors");

// The message of the freeswim::Error `f` throws; records a test failure when it throws none.
std::string error_of(const std::function<void()>& f);

}  // namespace freeswim::io::test
