// LayerNorm (+ affine, + adaLN modulation) and RMSNorm over the last dimension: one block per
// row, statistics in fp32 (mean first, then the centred second moment, as the CPU oracle); and
// the DiT's q/k RMSNorm fused with the rotary embedding.
#include "ops/cuda/kernel_util.cuh"
#include "ops/cuda/kernels.h"
#include "ops/cuda/stream.h"

namespace freeswim::ops::cuda::kernels {

namespace {

template <typename T>
__global__ void layer_norm_kernel(const T* x, T* y, int64_t D, float eps, const float* weight,
                                  const float* bias, const float* scale, const float* shift) {
  __shared__ float scratch[32];
  const T* xr = x + static_cast<int64_t>(blockIdx.x) * D;
  T* yr = y + static_cast<int64_t>(blockIdx.x) * D;
  float s = 0.f;
  for (int64_t i = threadIdx.x; i < D; i += blockDim.x) s += to_f(xr[i]);
  const float mean = block_sum(s, scratch) / static_cast<float>(D);
  float v = 0.f;
  for (int64_t i = threadIdx.x; i < D; i += blockDim.x) {
    const float d = to_f(xr[i]) - mean;
    v += d * d;
  }
  const float inv = rsqrtf(block_sum(v, scratch) / static_cast<float>(D) + eps);
  for (int64_t i = threadIdx.x; i < D; i += blockDim.x) {
    float r = (to_f(xr[i]) - mean) * inv;
    if (weight) r *= weight[i];
    if (bias) r += bias[i];
    if (scale) r *= 1.f + scale[i];
    if (shift) r += shift[i];
    yr[i] = from_f<T>(r);
  }
}

// The same with one 8-value pack per thread (blockDim.x = D / 8, D <= 8192): the row is read once
// into registers with 16-byte loads, where the kernel above reads it three times, two bytes at a
// time. Same arithmetic order per value; the sums are grouped differently (the oracle tolerance
// of the GPU tests covers that).
__device__ __forceinline__ void load8_or_const(const float* p, int64_t i, float c, float (&f)[8]) {
  if (p) {
    load8(p + i, f);
  } else {
#pragma unroll
    for (int j = 0; j < 8; ++j) f[j] = c;
  }
}

template <typename T>
__global__ void layer_norm_vec_kernel(const T* x, T* y, int64_t D, float eps, const float* weight,
                                      const float* bias, const float* scale, const float* shift) {
  __shared__ float scratch[32];
  const int64_t i = int64_t{threadIdx.x} * 8;
  const int64_t row = static_cast<int64_t>(blockIdx.x) * D;
  float v[8];
  load8(x + row + i, v);
  float s = 0.f;
#pragma unroll
  for (int j = 0; j < 8; ++j) s += v[j];
  const float mean = block_sum(s, scratch) / static_cast<float>(D);
  float q = 0.f;
#pragma unroll
  for (int j = 0; j < 8; ++j) {
    v[j] -= mean;
    q += v[j] * v[j];
  }
  const float inv = rsqrtf(block_sum(q, scratch) / static_cast<float>(D) + eps);
  float w[8], b[8], sc[8], sh[8];
  load8_or_const(weight, i, 1.f, w);
  load8_or_const(bias, i, 0.f, b);
  load8_or_const(scale, i, 0.f, sc);
  load8_or_const(shift, i, 0.f, sh);
#pragma unroll
  for (int j = 0; j < 8; ++j) {
    float r = v[j] * inv;
    if (weight) r *= w[j];
    if (bias) r += b[j];
    if (scale) r *= 1.f + sc[j];
    if (shift) r += sh[j];
    v[j] = r;
  }
  store8(y + row + i, v);
}

template <typename T>
__global__ void rms_norm_vec_kernel(const T* x, T* y, int64_t D, float eps, const float* weight) {
  __shared__ float scratch[32];
  const int64_t i = int64_t{threadIdx.x} * 8;
  const int64_t row = static_cast<int64_t>(blockIdx.x) * D;
  float v[8];
  load8(x + row + i, v);
  float s = 0.f;
#pragma unroll
  for (int j = 0; j < 8; ++j) s += v[j] * v[j];
  const float inv = rsqrtf(block_sum(s, scratch) / static_cast<float>(D) + eps);
  float w[8];
  load8_or_const(weight, i, 1.f, w);
#pragma unroll
  for (int j = 0; j < 8; ++j) v[j] = v[j] * inv * w[j];
  store8(y + row + i, v);
}

// Threads of the vector norms: one per pack, a whole number of warps (block_sum's requirement),
// or 0 when the row does not suit them.
int vec_norm_threads(int64_t D, const void* x, const void* y, const float* a, const float* b,
                     const float* c, const float* d) {
  if (D % 256 != 0 || D / 8 > 1024 || !aligned16(x, y, a, b, c, d)) return 0;
  return static_cast<int>(D / 8);
}

template <typename T>
__global__ void rms_norm_kernel(const T* x, T* y, int64_t D, float eps, const float* weight) {
  __shared__ float scratch[32];
  const T* xr = x + static_cast<int64_t>(blockIdx.x) * D;
  T* yr = y + static_cast<int64_t>(blockIdx.x) * D;
  float s = 0.f;
  for (int64_t i = threadIdx.x; i < D; i += blockDim.x) {
    const float v = to_f(xr[i]);
    s += v * v;
  }
  const float inv = rsqrtf(block_sum(s, scratch) / static_cast<float>(D) + eps);
  for (int64_t i = threadIdx.x; i < D; i += blockDim.x)
    yr[i] = from_f<T>(to_f(xr[i]) * inv * (weight ? weight[i] : 1.f));
}

// RMSNorm over a token's heads * head_dim values, then the 3D rotation of every head, in place:
// one block per token. Each thread reads and writes the same (even, odd) pairs in both loops, and
// block_sum's barriers order every read of the first loop before any write of the second.
template <typename T>
__global__ void rms_norm_rope_kernel(T* x, int H, int W, int heads, float eps, const float* weight,
                                     const float* frame, const float* row, const float* col,
                                     int half) {
  __shared__ float scratch[32];  // half: pairs per head
  const int pairs = heads * half;
  const int64_t tok = blockIdx.x;
  T* xr = x + tok * 2 * pairs;
  float s = 0.f;
  for (int p = threadIdx.x; p < pairs; p += blockDim.x) {
    const float a = to_f(xr[2 * p]), b = to_f(xr[2 * p + 1]);
    s += a * a + b * b;
  }
  const float inv = rsqrtf(block_sum(s, scratch) / static_cast<float>(2 * pairs) + eps);
  // The token's grid position, once per block (the unfused rope kernel divides per pair).
  const int64_t hw = int64_t{H} * W;
  const float* ft = frame + (tok / hw) * half * 2;
  const float* rt = row + ((tok / W) % H) * half * 2;
  const float* ct = col + (tok % W) * half * 2;
  for (int p = threadIdx.x; p < pairs; p += blockDim.x) {
    const int j = p % half;
    const float c = ft[2 * j] * rt[2 * j] * ct[2 * j];
    const float s = ft[2 * j + 1] * rt[2 * j + 1] * ct[2 * j + 1];
    const float wa = weight ? weight[2 * p] : 1.f, wb = weight ? weight[2 * p + 1] : 1.f;
    const float a = to_f(xr[2 * p]) * inv * wa, b = to_f(xr[2 * p + 1]) * inv * wb;
    xr[2 * p] = from_f<T>(a * c - b * s);
    xr[2 * p + 1] = from_f<T>(a * s + b * c);
  }
}

// The same with four pairs (one 16-byte pack of bf16) per thread, a token per block of
// ceil(pairs / 4) threads rounded up to whole warps: the token is read once into registers.
// Same arithmetic per value as above.
template <typename T>
__global__ void rms_norm_rope_vec_kernel(T* x, int H, int W, int heads, float eps,
                                         const float* weight, const float* frame, const float* row,
                                         const float* col, int half) {
  __shared__ float scratch[32];
  const int pairs = heads * half;
  const int pk = static_cast<int>(threadIdx.x);
  const bool active = pk < pairs / 4;
  const int64_t tok = blockIdx.x;
  T* xr = x + tok * 2 * pairs;
  float v[8];
  float s = 0.f;
  if (active) {
    load8(xr + 8 * pk, v);
#pragma unroll
    for (int j = 0; j < 8; ++j) s += v[j] * v[j];
  }
  const float inv = rsqrtf(block_sum(s, scratch) / static_cast<float>(2 * pairs) + eps);
  if (!active) return;  // after the block's last barrier
  const int64_t hw = int64_t{H} * W;
  const float* ft = frame + (tok / hw) * half * 2;
  const float* rt = row + ((tok / W) % H) * half * 2;
  const float* ct = col + (tok % W) * half * 2;
  float w[8];
  load8_or_const(weight, 8 * pk, 1.f, w);
#pragma unroll
  for (int q = 0; q < 4; ++q) {
    const int j = (4 * pk + q) % half;
    const float c = ft[2 * j] * rt[2 * j] * ct[2 * j];
    const float s = ft[2 * j + 1] * rt[2 * j + 1] * ct[2 * j + 1];
    const float a = v[2 * q] * inv * w[2 * q], b = v[2 * q + 1] * inv * w[2 * q + 1];
    v[2 * q] = a * c - b * s;
    v[2 * q + 1] = a * s + b * c;
  }
  store8(xr + 8 * pk, v);
}

}  // namespace

cudaError_t rms_norm_rope_3d(void* x, DType t, int T, int H, int W, int heads, float eps,
                             const float* weight, const float* frame, const float* row,
                             const float* col, int half) {
  const int64_t tokens = int64_t{T} * H * W;
  if (tokens == 0 || heads == 0 || half == 0) return cudaSuccess;
  if (tokens >= (int64_t{1} << 31)) return cudaErrorInvalidConfiguration;
  const unsigned g = static_cast<unsigned>(tokens);
  const int pairs = heads * half;
  const bool vec = pairs % 4 == 0 && pairs / 4 <= 1024 && aligned16(x, weight);
  return with_type(t, [&](auto v) {
    using E = decltype(v);
    E* xe = static_cast<E*>(x);
    if (vec)
      rms_norm_rope_vec_kernel<<<g, (pairs / 4 + 31) / 32 * 32, 0, stream()>>>(
          xe, H, W, heads, eps, weight, frame, row, col, half);
    else
      rms_norm_rope_kernel<<<g, kThreads, 0, stream()>>>(xe, H, W, heads, eps, weight, frame, row,
                                                         col, half);
    return cudaGetLastError();
  });
}

// Rows go on grid.x (up to 2^31 - 1), enough for any token count of a video.
cudaError_t layer_norm(const void* x, void* y, DType t, int64_t rows, int64_t D, float eps,
                       const float* weight, const float* bias, const float* scale,
                       const float* shift) {
  if (rows == 0 || D == 0) return cudaSuccess;
  if (rows >= (int64_t{1} << 31)) return cudaErrorInvalidConfiguration;
  const unsigned g = static_cast<unsigned>(rows);
  const int vt = vec_norm_threads(D, x, y, weight, bias, scale, shift);
  return with_type(t, [&](auto v) {
    using E = decltype(v);
    const E* xe = static_cast<const E*>(x);
    E* ye = static_cast<E*>(y);
    if (vt > 0)
      layer_norm_vec_kernel<<<g, vt, 0, stream()>>>(xe, ye, D, eps, weight, bias, scale, shift);
    else
      layer_norm_kernel<<<g, kThreads, 0, stream()>>>(xe, ye, D, eps, weight, bias, scale, shift);
    return cudaGetLastError();
  });
}

cudaError_t rms_norm(const void* x, void* y, DType t, int64_t rows, int64_t D, float eps,
                     const float* weight) {
  if (rows == 0 || D == 0) return cudaSuccess;
  if (rows >= (int64_t{1} << 31)) return cudaErrorInvalidConfiguration;
  const unsigned g = static_cast<unsigned>(rows);
  const int vt = vec_norm_threads(D, x, y, weight, nullptr, nullptr, nullptr);
  return with_type(t, [&](auto v) {
    using E = decltype(v);
    const E* xe = static_cast<const E*>(x);
    E* ye = static_cast<E*>(y);
    if (vt > 0)
      rms_norm_vec_kernel<<<g, vt, 0, stream()>>>(xe, ye, D, eps, weight);
    else
      rms_norm_kernel<<<g, kThreads, 0, stream()>>>(xe, ye, D, eps, weight);
    return cudaGetLastError();
  });
}

}  // namespace freeswim::ops::cuda::kernels
