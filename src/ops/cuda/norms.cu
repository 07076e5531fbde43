// LayerNorm (+ affine, + adaLN modulation) and RMSNorm over the last dimension: one block per
// row, statistics in fp32 (mean first, then the centred second moment, as the CPU oracle).
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

}  // namespace

// Rows go on grid.x (up to 2^31 - 1), enough for any token count of a video.
cudaError_t layer_norm(const void* x, void* y, DType t, int64_t rows, int64_t D, float eps,
                       const float* weight, const float* bias, const float* scale,
                       const float* shift) {
  if (rows == 0 || D == 0) return cudaSuccess;
  if (rows >= (int64_t{1} << 31)) return cudaErrorInvalidConfiguration;
  const unsigned g = static_cast<unsigned>(rows);
  if (t == DType::BF16)
    layer_norm_kernel<<<g, kThreads, 0, stream()>>>(static_cast<const __nv_bfloat16*>(x),
                                                    static_cast<__nv_bfloat16*>(y), D, eps, weight,
                                                    bias, scale, shift);
  else if (t == DType::F32)
    layer_norm_kernel<<<g, kThreads, 0, stream()>>>(
        static_cast<const float*>(x), static_cast<float*>(y), D, eps, weight, bias, scale, shift);
  else
    return cudaErrorInvalidValue;
  return cudaGetLastError();
}

cudaError_t rms_norm(const void* x, void* y, DType t, int64_t rows, int64_t D, float eps,
                     const float* weight) {
  if (rows == 0 || D == 0) return cudaSuccess;
  if (rows >= (int64_t{1} << 31)) return cudaErrorInvalidConfiguration;
  const unsigned g = static_cast<unsigned>(rows);
  if (t == DType::BF16)
    rms_norm_kernel<<<g, kThreads, 0, stream()>>>(static_cast<const __nv_bfloat16*>(x),
                                                  static_cast<__nv_bfloat16*>(y), D, eps, weight);
  else if (t == DType::F32)
    rms_norm_kernel<<<g, kThreads, 0, stream()>>>(static_cast<const float*>(x),
                                                  static_cast<float*>(y), D, eps, weight);
  else
    return cudaErrorInvalidValue;
  return cudaGetLastError();
}

}  // namespace freeswim::ops::cuda::kernels
