#include "sched/video2video.h"

#include <algorithm>
#include <cmath>

#include "core/error.h"

namespace freeswim::sched {

Video2VideoStart video2video_start(int num_steps, double strength) {
  FS_CHECK(num_steps >= 1, "--steps must be at least 1, got {}", num_steps);
  FS_CHECK(std::isfinite(strength) && strength > 0.0 && strength <= 1.0,
           "--strength must be in (0, 1], got {}", strength);
  // Truncation of the double product, as Python's int() does.
  const int init = std::min(static_cast<int>(static_cast<double>(num_steps) * strength), num_steps);
  FS_CHECK(init >= 1,
           "--strength {} with {} steps runs no denoising step (int({} * {}) = 0); raise "
           "--strength or --steps",
           strength, num_steps, num_steps, strength);
  Video2VideoStart s;
  s.t_start = std::max(num_steps - init, 0);
  s.steps_run = num_steps - s.t_start;
  return s;
}

}  // namespace freeswim::sched
