// Launchers of the CUDA backend's own kernels (elementwise, norms, layout, rotary, a plain
// matrix product for fp32 activations and a plain attention). They take raw device pointers,
// enqueue on the backend's stream and return the launch status; the Backend checks arguments
// and turns a failure into freeswim::Error. Activation dtypes are F32 or BF16; arithmetic is
// fp32 throughout.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

#include "core/dtype.h"
#include "freeswim/window_geometry.h"

namespace freeswim::ops::cuda::kernels {

// dst[i] = src[i] converted (src F32, BF16 or F16; dst F32 or BF16).
cudaError_t convert(const void* src, DType src_t, void* dst, DType dst_t, int64_t n);

enum class Unary { gelu_tanh, silu };
cudaError_t unary(Unary op, const void* x, void* y, DType t, int64_t n);

// y[i] = a[i] + b[i % nb]; y has a's dtype.
cudaError_t add(const void* a, DType a_t, const void* b, DType b_t, void* y, int64_t n, int64_t nb);

// x[i] += y[i] * gate[i % D] (gate f32, or null for 1), rounded to x's dtype.
cudaError_t add_gated(void* x, DType x_t, const void* y, DType y_t, const float* gate, int64_t n,
                      int64_t D);

// Row-wise LayerNorm (+ optional affine, + optional modulation (1 + scale), shift); vectors f32.
cudaError_t layer_norm(const void* x, void* y, DType t, int64_t rows, int64_t D, float eps,
                       const float* weight, const float* bias, const float* scale,
                       const float* shift);
cudaError_t rms_norm(const void* x, void* y, DType t, int64_t rows, int64_t D, float eps,
                     const float* weight);

// In place on x [T*H*W, heads, 2*pairs]: each token's heads*head_dim values RMS-normalised
// (times weight, f32 or null), then rotated as rope_3d does; fp32 with one rounding on store.
cudaError_t rms_norm_rope_3d(void* x, DType t, int T, int H, int W, int heads, float eps,
                             const float* weight, const float* frame, const float* row,
                             const float* col, int pairs);

// In place rotation of x [T*H*W, heads, 2*pairs] by the product of the three axes' (cos, sin)
// tables [positions, pairs, 2] (ops::Rope3D).
cudaError_t rope_3d(void* x, DType t, int T, int H, int W, int heads, const float* frame,
                    const float* row, const float* col, int pairs);

// Layout moves of elements of `elem_bytes` (2 or 4) bytes; shapes as ops.h states.
cudaError_t patchify(const void* x, void* y, int elem_bytes, int64_t C, int64_t F, int64_t H,
                     int64_t W, int pt, int ph, int pw);
cudaError_t unpatchify(const void* x, void* y, int elem_bytes, int64_t C, int T, int Hg, int Wg,
                       int pt, int ph, int pw);

// y[M, N] = x[M, K] w[N, K]^T (+ b[N]) with one warp per output; for the few-row fp32 products
// of the timestep path and as the fallback of cuBLASLt.
cudaError_t linear_simple(const void* x, DType x_t, const void* w, DType w_t, const void* b,
                          DType b_t, void* y, DType y_t, int64_t M, int64_t N, int64_t K);
// y[m, n] += b[n] (y BF16 or F32, b F32 or BF16).
cudaError_t add_bias_rows(void* y, DType y_t, const void* b, DType b_t, int64_t M, int64_t N);

// softmax(scale q k^T) v per head, any head_dim <= 256, q [nq, heads, d], k, v [nk, heads, d],
// all of dtype t; with `window` (nq == nk == window->tokens()) each query sees its inward window.
cudaError_t attention_plain(const void* q, const void* k, const void* v, void* out, DType t,
                            int64_t nq, int64_t nk, int heads, int head_dim, float scale,
                            const WindowGeometry* window);

}  // namespace freeswim::ops::cuda::kernels
