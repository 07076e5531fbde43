// The VAE's 3D convolution on the GPU through cuDNN (legacy convolution API, fp32 data).
#pragma once

#include "core/tensor.h"
#include "ops/ops.h"

namespace freeswim::ops::cuda {

// ops.h's conv3d: x [Ci, F, H, W] (F32 or BF16), w [Co, Ci, kt, kh, kw] (F32 or BF16), b [Co]
// F32 or absent. Data in fp32 (inputs in bf16 are widened first); products in fp32 FMA or TF32
// tensor cores as p.precision says, accumulation in fp32; the result has x's dtype.
Tensor conv3d(const Tensor& x, const Tensor& w, const Tensor& b, const Conv3dParams& p);

// Which layouts the TF32 algorithm search may choose from: by default it times NCDHW and
// channels-last (NDHWC, transposed around the call) candidates together and keeps the fastest;
// tests pin one layout to check each path against the CPU. Algorithms are cached per layout
// setting. (FP32 always runs NCDHW.)
enum class ConvLayout { timed, ncdhw, channels_last };
void set_conv_layout(ConvLayout layout);

}  // namespace freeswim::ops::cuda
