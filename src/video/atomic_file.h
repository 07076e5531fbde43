// Output files appear whole or not at all: everything is written to a temporary file in the
// destination's directory (same file system, so the final rename is atomic) and renamed only
// when complete. If anything fails before commit(), the destructor removes the temporary.
#pragma once

#include <string>

namespace freeswim::video {

class AtomicFile {
 public:
  // Creates the temporary beside `final_path`; throws Error naming `final_path` when the
  // directory is missing or not writable.
  explicit AtomicFile(std::string final_path);
  ~AtomicFile();
  AtomicFile(const AtomicFile&) = delete;
  AtomicFile& operator=(const AtomicFile&) = delete;

  const std::string& temp_path() const { return temp_; }
  const std::string& final_path() const { return final_; }
  // Renames the temporary onto the final path (replacing an older file there).
  void commit();

 private:
  std::string final_;
  std::string temp_;
  bool committed_ = false;
};

}  // namespace freeswim::video
