#include "video/frame_rate.h"

#include <cmath>

#include "core/error.h"

namespace freeswim::video {

std::string FrameRate::str() const {
  return den == 1 ? std::to_string(num) : fmt::format("{}/{}", num, den);
}

FrameRate FrameRate::from_double(double fps) {
  FS_CHECK(std::isfinite(fps) && fps > 0 && fps <= 1000, "frame rate {} is out of range (0, 1000]",
           fps);
  // Whole rates first, then the NTSC family (n * 1000 / 1001), then the closest small fraction.
  if (std::fabs(fps - std::round(fps)) < 1e-9) return {static_cast<int>(std::lround(fps)), 1};
  const double ntsc = fps * 1001.0 / 1000.0;
  if (std::fabs(ntsc - std::round(ntsc)) < 1e-6)
    return {static_cast<int>(std::lround(ntsc)) * 1000, 1001};
  FrameRate best{static_cast<int>(std::lround(fps)), 1};
  double best_err = std::fabs(best.value() - fps);
  for (int den = 2; den <= 1001; ++den) {
    const int num = static_cast<int>(std::lround(fps * den));
    const double err = std::fabs(static_cast<double>(num) / den - fps);
    if (num > 0 && err < best_err - 1e-12) {
      best = {num, den};
      best_err = err;
    }
  }
  return best;
}

}  // namespace freeswim::video
