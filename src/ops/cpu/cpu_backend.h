// The CPU backend: fp32 throughout, OpenBLAS for matrix products, parallel_for for the rest.
// It is the oracle every other backend is tested against, so it favours plain, exact code.
#pragma once

#include "ops/ops.h"

namespace freeswim::ops::cpu {

Backend& cpu_backend();

// Throws unless t is a defined f32 cpu tensor; the message names the op and the argument.
void require_f32(const Tensor& t, const char* op, const char* arg);

// Elements per thread chunk of the elementwise loops (parallel_for's grain).
inline constexpr int64_t kGrain = 1 << 14;

// Attention kernels of the CPU backend (cpu_attention.cpp).
Tensor attention_full(const Tensor& q, const Tensor& k, const Tensor& v, float scale);
Tensor attention_window(const Tensor& q, const Tensor& k, const Tensor& v, float scale,
                        const WindowGeometry& g);

// Text encoder ops (cpu_text_ops.cpp).
Tensor embedding(const Tensor& table, const std::vector<int32_t>& ids);
Tensor mul(const Tensor& a, const Tensor& b);
Tensor attention_bias(const Tensor& q, const Tensor& k, const Tensor& v, float scale,
                      const Tensor& bias, const Tensor& key_mask);

// Video VAE ops (cpu_conv.cpp, cpu_vae_ops.cpp).
Tensor conv3d(const Tensor& x, const Tensor& w, const Tensor& b, const Conv3dParams& p);
Tensor rms_norm_channels(const Tensor& x, const Tensor& gamma, const Tensor& bias, bool silu);
Tensor upsample_nearest2x(const Tensor& x);
Tensor concat(const Tensor& a, const Tensor& b, int dim);
Tensor slice(const Tensor& x, int dim, int64_t begin, int64_t end);
Tensor transpose2d(const Tensor& x);
Tensor clamp(const Tensor& x, float lo, float hi);
Tensor channel_affine(const Tensor& x, const Tensor& scale, const Tensor& shift);
void accumulate_tile(Tensor& acc, const Tensor& tile, const Tensor& weight, int64_t f0, int64_t y0,
                     int64_t x0);

}  // namespace freeswim::ops::cpu
