// Errors: every failure the user can cause (bad file, bad flag, bad shape) is reported by
// throwing freeswim::Error with a message that names the file, tensor or flag. The CLI
// catches it at the top, prints it and exits non-zero; nothing aborts.
#pragma once

#include <fmt/format.h>

#include <stdexcept>
#include <string>

namespace freeswim {

class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& what) : std::runtime_error(what) {}
};

// Out of memory on a device; the message says which flag would help.
class OutOfMemory : public Error {
 public:
  using Error::Error;
};

// The text of the current errno ("No such file or directory"), for the message of a failed
// system call.
std::string errno_text();

template <typename... Args>
[[noreturn]] void fail(fmt::format_string<Args...> f, Args&&... args) {
  throw Error(fmt::format(f, std::forward<Args>(args)...));
}

}  // namespace freeswim

// FS_CHECK(cond, "format {}", args...): throws freeswim::Error when cond is false.
#define FS_CHECK(cond, ...)                     \
  do {                                          \
    if (!(cond)) ::freeswim::fail(__VA_ARGS__); \
  } while (0)
