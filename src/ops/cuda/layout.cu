// Layout kernels (patchify, unpatchify) and the in-place 3D rotary embedding. Each thread
// computes one output element (one rotated pair for RoPE) from its index.
#include <cstdint>

#include "ops/cuda/kernel_util.cuh"
#include "ops/cuda/kernels.h"
#include "ops/cuda/stream.h"

namespace freeswim::ops::cuda::kernels {

namespace {

template <typename E>
__global__ void patchify_kernel(const E* x, E* y, int64_t C, int64_t F, int64_t H, int64_t W,
                                int pt, int ph, int pw) {
  const int64_t Hg = H / ph, Wg = W / pw, P = C * pt * ph * pw;
  const int64_t n = (F / pt) * Hg * Wg * P;
  for (int64_t o = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; o < n;
       o += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t tok = o / P;
    int64_t p = o % P;
    const int kw = static_cast<int>(p % pw);
    p /= pw;
    const int kh = static_cast<int>(p % ph);
    p /= ph;
    const int kt = static_cast<int>(p % pt);
    const int64_t c = p / pt;
    const int64_t w = tok % Wg, h = (tok / Wg) % Hg, t = tok / (Wg * Hg);
    y[o] = x[((c * F + t * pt + kt) * H + h * ph + kh) * W + w * pw + kw];
  }
}

template <typename E>
__global__ void unpatchify_kernel(const E* x, E* y, int64_t C, int T, int Hg, int Wg, int pt,
                                  int ph, int pw) {
  const int64_t F = int64_t{T} * pt, H = int64_t{Hg} * ph, W = int64_t{Wg} * pw;
  const int64_t P = int64_t{pt} * ph * pw * C;
  const int64_t n = C * F * H * W;
  for (int64_t o = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; o < n;
       o += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t xx = o % W, yy = (o / W) % H, f = (o / (W * H)) % F, c = o / (W * H * F);
    const int64_t t = f / pt, h = yy / ph, w = xx / pw;
    const int64_t kt = f % pt, kh = yy % ph, kw = xx % pw;
    y[o] = x[((t * Hg + h) * Wg + w) * P + ((kt * ph + kh) * pw + kw) * C + c];
  }
}

template <typename T>
__global__ void rope_kernel(T* x, int H, int W, int heads, int64_t tokens, const float* frame,
                            const float* row, const float* col, int pairs) {
  const int64_t n = tokens * heads * pairs;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int pair = static_cast<int>(i % pairs);
    const int64_t tok = i / pairs / heads;
    const float* f = frame + (tok / (int64_t{H} * W) * pairs + pair) * 2;
    const float* r = row + ((tok / W) % H * pairs + pair) * 2;
    const float* cl = col + (tok % W * pairs + pair) * 2;
    T* v = x + i * 2;  // pair `pair` of head (i / pairs) % heads of token tok
    const float a = to_f(v[0]), b = to_f(v[1]);
    const float c = f[0] * r[0] * cl[0], s = f[1] * r[1] * cl[1];
    v[0] = from_f<T>(a * c - b * s);
    v[1] = from_f<T>(a * s + b * c);
  }
}

}  // namespace

cudaError_t patchify(const void* x, void* y, int elem_bytes, int64_t C, int64_t F, int64_t H,
                     int64_t W, int pt, int ph, int pw) {
  const int64_t n = C * F * H * W;
  if (n == 0) return cudaSuccess;
  const unsigned g = grid_for(n, kThreads);
  if (elem_bytes == 2)
    patchify_kernel<<<g, kThreads, 0, stream()>>>(
        static_cast<const uint16_t*>(x), static_cast<uint16_t*>(y), C, F, H, W, pt, ph, pw);
  else if (elem_bytes == 4)
    patchify_kernel<<<g, kThreads, 0, stream()>>>(
        static_cast<const uint32_t*>(x), static_cast<uint32_t*>(y), C, F, H, W, pt, ph, pw);
  else
    return cudaErrorInvalidValue;
  return cudaGetLastError();
}

cudaError_t unpatchify(const void* x, void* y, int elem_bytes, int64_t C, int T, int Hg, int Wg,
                       int pt, int ph, int pw) {
  const int64_t n = C * T * pt * Hg * ph * Wg * pw;
  if (n == 0) return cudaSuccess;
  const unsigned g = grid_for(n, kThreads);
  if (elem_bytes == 2)
    unpatchify_kernel<<<g, kThreads, 0, stream()>>>(
        static_cast<const uint16_t*>(x), static_cast<uint16_t*>(y), C, T, Hg, Wg, pt, ph, pw);
  else if (elem_bytes == 4)
    unpatchify_kernel<<<g, kThreads, 0, stream()>>>(
        static_cast<const uint32_t*>(x), static_cast<uint32_t*>(y), C, T, Hg, Wg, pt, ph, pw);
  else
    return cudaErrorInvalidValue;
  return cudaGetLastError();
}

cudaError_t rope_3d(void* x, DType t, int T, int H, int W, int heads, const float* frame,
                    const float* row, const float* col, int pairs) {
  const int64_t tokens = int64_t{T} * H * W;
  const int64_t n = tokens * heads * pairs;
  if (n == 0) return cudaSuccess;
  const unsigned g = grid_for(n, kThreads);
  if (t == DType::BF16)
    rope_kernel<<<g, kThreads, 0, stream()>>>(static_cast<__nv_bfloat16*>(x), H, W, heads, tokens,
                                              frame, row, col, pairs);
  else if (t == DType::F32)
    rope_kernel<<<g, kThreads, 0, stream()>>>(static_cast<float*>(x), H, W, heads, tokens, frame,
                                              row, col, pairs);
  else
    return cudaErrorInvalidValue;
  return cudaGetLastError();
}

}  // namespace freeswim::ops::cuda::kernels
