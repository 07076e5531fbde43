#include "video/atomic_file.h"

#include <fcntl.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>

#include "core/error.h"

namespace freeswim::video {

namespace {

// Distinguishes temporaries of one process (several outputs may be written concurrently).
std::atomic<unsigned> g_sequence{0};

}  // namespace

AtomicFile::AtomicFile(std::string final_path) : final_(std::move(final_path)) {
  FS_CHECK(!final_.empty(), "output path is empty");
  const std::filesystem::path p(final_);
  FS_CHECK(p.has_filename(), "output path '{}' names a directory, not a file", final_);
  // A hidden name in the same directory: never mistaken for a finished output.
  const std::filesystem::path tmp =
      p.parent_path() /
      fmt::format(".{}.{}-{}.tmp", p.filename().string(), ::getpid(), g_sequence.fetch_add(1));
  temp_ = tmp.string();
  // O_EXCL: claim a fresh name; mode 0666 lets the umask decide, as for any ordinary file.
  const int fd = ::open(temp_.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
  if (fd < 0) {
    const int err = errno;
    fail("cannot write '{}': {} (while creating its temporary '{}')", final_, std::strerror(err),
         temp_);
  }
  ::close(fd);
}

AtomicFile::~AtomicFile() {
  if (!committed_) std::remove(temp_.c_str());
}

void AtomicFile::commit() {
  FS_CHECK(!committed_, "'{}' was already committed", final_);
  if (std::rename(temp_.c_str(), final_.c_str()) != 0) {
    const int err = errno;
    fail("cannot write '{}': renaming '{}' onto it failed: {}", final_, temp_, std::strerror(err));
  }
  committed_ = true;
}

}  // namespace freeswim::video
