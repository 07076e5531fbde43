#include "core/error.h"

#include <cerrno>
#include <system_error>

namespace freeswim {

std::string errno_text() {
  return std::error_code(errno, std::system_category()).message();
}

}  // namespace freeswim
