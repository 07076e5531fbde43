// Stage 2 of the coarse-to-fine pipeline: every frame of the base video resized bilinearly to
// the target size, with half-pixel centres exactly as OpenCV's INTER_LINEAR (and PyTorch's
// bilinear with align_corners=False): destination pixel d samples the source at
// (d + 0.5) * in / out - 0.5, clamped to the first / last pixel at the borders.
#pragma once

#include <cstdint>

#include "core/tensor.h"

namespace freeswim::pipeline {

// Where the colour channel sits: [F, H, W, 3] is how frames leave the VAE decode and enter the
// video writer; [F, 3, H, W] is PyTorch's image layout (what the reference's upsampled frames
// use).
enum class FrameLayout { FHWC, FCHW };

// Resizes CPU f32 frames (4-D, 3 channels, in `layout`) to out_h x out_w, keeping the layout.
// Computed in double per tap and rounded once to float. Throws Error naming the shapes when
// the input is not frames or a size is not positive.
Tensor resize_bilinear(const Tensor& frames, int64_t out_h, int64_t out_w, FrameLayout layout);

// Layout changes (copies).
Tensor fhwc_to_fchw(const Tensor& frames);
Tensor fchw_to_fhwc(const Tensor& frames);

}  // namespace freeswim::pipeline
