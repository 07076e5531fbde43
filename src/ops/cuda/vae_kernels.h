// Launchers of the video VAE's (and the text encoder's elementwise) kernels of the CUDA backend.
// Raw device pointers, enqueued on the backend's stream, launch status returned; the Backend
// checks shapes. Activations are F32 or BF16 (the VAE runs in F32 on the GPU); per-channel
// vectors are F32; arithmetic is fp32 and rounds once on store.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

#include "core/dtype.h"

namespace freeswim::ops::cuda::kernels {

// y [C, F+pf+pb, H+pt+pb2, W+pl+pr] = x [C, F, H, W] surrounded by zeros (explicit asymmetric
// padding before a cuDNN convolution, which pads symmetrically only). F32 only.
cudaError_t pad3d(const float* x, float* y, int64_t C, int64_t F, int64_t H, int64_t W, int pf,
                  int pb, int pt, int pbot, int pl, int pr);

// x [C, N]: y[c, j] = x[c, j] / max(|x[:, j]|_2, 1e-12) * sqrt(C) * gamma[c] (+ bias[c]),
// then SiLU when `silu`. gamma and bias f32 or null.
cudaError_t rms_norm_channels(const void* x, void* y, DType t, int64_t C, int64_t N,
                              const float* gamma, const float* bias, bool silu);

// [planes, H, W] -> [planes, 2H, 2W], nearest neighbour.
cudaError_t upsample_nearest2x(const void* x, void* y, DType t, int64_t planes, int64_t H,
                               int64_t W);

// Block copy: dst[o * dst_row + dst_off + i] = src[o * src_row + src_off + i] for o < outer,
// i < m (elements of `elem_bytes` bytes: 2 or 4). Concat is two of these, slice one.
cudaError_t copy_blocks(const void* src, int64_t src_row, int64_t src_off, void* dst,
                        int64_t dst_row, int64_t dst_off, int64_t outer, int64_t m, int elem_bytes);

// [A, B] -> [B, A] (elements of 2 or 4 bytes).
cudaError_t transpose2d(const void* x, void* y, int elem_bytes, int64_t A, int64_t B);

// w [Co, Ci, K] -> y [Co, K, Ci] (fp32): a convolution weight to the channels-last filter layout.
cudaError_t weight_to_nhwc(const float* w, float* y, int64_t Co, int64_t Ci, int64_t K);

cudaError_t clamp(const void* x, void* y, DType t, int64_t n, float lo, float hi);

// y[c, i] = x[c, i] * scale[c] + shift[c] over x [C, N] (scale / shift f32 or null).
cudaError_t channel_affine(const void* x, void* y, DType t, int64_t C, int64_t N,
                           const float* scale, const float* shift);

// acc[c, f0 + f, y0 + yy, x0 + xx] += tile[c, f, yy, xx] * weight[yy, xx] (weight f32 or null);
// acc [C, F, H, W], tile [C, f, h, w]; acc and tile of dtype t.
cudaError_t accumulate_tile(void* acc, const void* tile, DType t, const float* weight, int64_t C,
                            int64_t F, int64_t H, int64_t W, int64_t f, int64_t h, int64_t w,
                            int64_t f0, int64_t y0, int64_t x0);

// y[i] = a[i] * b[i]; y has a's dtype.
cudaError_t mul(const void* a, DType a_t, const void* b, DType b_t, void* y, int64_t n);

// y[r, :] = table[ids[r], :] for r < rows (ids int32 on the device, checked on the host).
cudaError_t gather_rows(const void* table, const int32_t* ids, void* y, int elem_bytes,
                        int64_t rows, int64_t D);

// softmax(scale q k^T + bias) v per head over the keys whose key_mask is nonzero (every key, with
// scores of 0, when all are masked). q [nq, heads, d], k, v [nk, heads, d], out like q, all of
// dtype t; bias [nq, nk, heads] of bias_t or null; key_mask [nk] f32 or null. head_dim up to
// kMaxBiasedHeadDim.
constexpr int kMaxBiasedHeadDim = 512;
cudaError_t attention_bias(const void* q, const void* k, const void* v, void* out, DType t,
                           int64_t nq, int64_t nk, int heads, int head_dim, float scale,
                           const void* bias, DType bias_t, const float* key_mask);

// Softmax along each row of s [rows, cols] (fp32, in place).
cudaError_t softmax_rows_f32(float* s, int64_t rows, int64_t cols);

}  // namespace freeswim::ops::cuda::kernels
