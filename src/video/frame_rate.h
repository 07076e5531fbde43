// A frame rate as a fraction, so 30000/1001 (NTSC) read from a user's video is written back
// exactly; whole rates (Wan's 16 fps) are num/1.
#pragma once

#include <string>

namespace freeswim::video {

struct FrameRate {
  int num = 16;
  int den = 1;

  double value() const { return static_cast<double>(num) / den; }
  std::string str() const;  // "16" or "30000/1001"
  // Nearest fraction with a denominator up to 1001 (exact for whole and NTSC rates); throws
  // Error naming the value unless it is finite and in (0, 1000].
  static FrameRate from_double(double fps);
};

}  // namespace freeswim::video
