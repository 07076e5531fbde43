#include "core/environment.h"

#include <cstdlib>
#include <string>

#include "core/bytes.h"
#include "core/error.h"

namespace freeswim {

Environment read_environment() {
  Environment env;
  if (const char* v = std::getenv("FREESWIM_GPU_MEMORY_LIMIT"); v != nullptr && *v != '\0') {
    char* end = nullptr;
    const double g = std::strtod(v, &end);
    FS_CHECK(end != v && *end == '\0' && g > 0 && g <= 1e6,
             "FREESWIM_GPU_MEMORY_LIMIT={}: expected a positive size in GiB, e.g. 22.35", v);
    env.gpu_memory_limit = static_cast<size_t>(g * kBytesPerGiB);
  }
  if (const char* v = std::getenv("FREESWIM_PROFILE"))
    env.profile = *v != '\0' && std::string(v) != "0";
  return env;
}

}  // namespace freeswim
