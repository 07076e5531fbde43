// Float frames <-> 8-bit RGB. Frames are CPU f32 tensors [F, H, W, 3] with values in [0, 1]
// (what the pipeline decodes); 8-bit output rounds x * 255 to nearest, ties to even, exactly as
// the reference's numpy `(x * 255).round().astype(uint8)` does after clipping.
#pragma once

#include <cmath>
#include <cstdint>
#include <string>

#include "core/tensor.h"

namespace freeswim::video {

inline uint8_t float_to_u8(float x) {
  const float c = x < 0.0f ? 0.0f : (x > 1.0f ? 1.0f : x);
  return static_cast<uint8_t>(std::nearbyint(c * 255.0f));
}

// Throws Error naming `what` unless `frames` is a CPU f32 [F >= 1, H >= 1, W >= 1, 3] tensor.
void check_frames(const Tensor& frames, const std::string& what);

// One frame (H * W * 3 floats) to packed RGB24; throws Error naming `what` and the frame
// index when it holds NaN (a broken decode must not become a black video silently).
void frame_to_rgb24(const float* src, int64_t pixels, uint8_t* dst, const std::string& what,
                    int64_t frame_index);

}  // namespace freeswim::video
