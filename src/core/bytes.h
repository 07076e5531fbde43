// Byte counts in GiB, for messages and for sizes given in GiB (FREESWIM_GPU_MEMORY_LIMIT).
#pragma once

#include <cstddef>

namespace freeswim {

inline constexpr double kBytesPerGiB = 1024.0 * 1024.0 * 1024.0;

inline constexpr double gib(size_t bytes) {
  return static_cast<double>(bytes) / kBytesPerGiB;
}

}  // namespace freeswim
