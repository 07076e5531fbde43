// Plain (not tensor-core) kernels for the cases the fast paths do not cover: the few-row fp32
// products of the timestep path, and attention with a head size the Hopper kernels of
// fs_cuda_attention do not take (the tiny test models use head_dim 32). One warp per output
// element / per (query, head); fp32 accumulation.
#include <cmath>

#include "ops/cuda/kernel_util.cuh"
#include "ops/cuda/kernels.h"
#include "ops/cuda/stream.h"

namespace freeswim::ops::cuda::kernels {

namespace {

constexpr int kWarps = 8;
constexpr int kMaxHeadDim = 256;

template <typename X, typename Wt, typename B, typename Y>
__global__ void linear_kernel(const X* x, const Wt* w, const B* b, Y* y, int64_t M, int64_t N,
                              int64_t K) {
  const int lane = threadIdx.x & 31;
  const int64_t first = static_cast<int64_t>(blockIdx.x) * kWarps + (threadIdx.x >> 5);
  for (int64_t o = first; o < M * N; o += static_cast<int64_t>(gridDim.x) * kWarps) {
    const int64_t m = o / N, n = o % N;
    float s = 0.f;
    for (int64_t k = lane; k < K; k += 32) s += to_f(x[m * K + k]) * to_f(w[n * K + k]);
    s = warp_sum(s);
    if (lane == 0) y[o] = from_f<Y>(s + (b ? to_f(b[n]) : 0.f));
  }
}

template <typename T>
__global__ void attention_kernel(const T* q, const T* k, const T* v, T* out, int64_t nq, int64_t nk,
                                 int heads, int d, float scale, WindowGeometry g, bool windowed) {
  constexpr int E = kMaxHeadDim / 32;
  const int lane = threadIdx.x & 31;
  const int64_t item = static_cast<int64_t>(blockIdx.x) * kWarps + (threadIdx.x >> 5);
  if (item >= nq * heads) return;
  const int64_t qi = item / heads;
  const int head = static_cast<int>(item % heads);
  const int64_t row = static_cast<int64_t>(heads) * d;
  float qv[E], acc[E];
  for (int e = 0; e < E; ++e) {
    const int c = lane + 32 * e;
    qv[e] = c < d ? to_f(q[qi * row + int64_t{head} * d + c]) * scale : 0.f;
    acc[e] = 0.f;
  }
  float m = -INFINITY, l = 0.f;
  auto visit = [&](int64_t kj) {
    const T* kr = k + kj * row + int64_t{head} * d;
    const T* vr = v + kj * row + int64_t{head} * d;
    float s = 0.f;
    for (int e = 0; e < E; ++e) {
      const int c = lane + 32 * e;
      if (c < d) s += qv[e] * to_f(kr[c]);
    }
    s = warp_sum(s);
    const float m_new = fmaxf(m, s);
    const float corr = expf(m - m_new), p = expf(s - m_new);
    l = l * corr + p;
    for (int e = 0; e < E; ++e) {
      const int c = lane + 32 * e;
      acc[e] = acc[e] * corr + (c < d ? p * to_f(vr[c]) : 0.f);
    }
    m = m_new;
  };
  if (windowed) {
    const int qh = static_cast<int>((qi / g.W) % g.H), qw = static_cast<int>(qi % g.W);
    const int hs = window_start(qh, g.H, g.dh), ws = window_start(qw, g.W, g.dw);
    const int eh = window_extent(g.H, g.dh), ew = window_extent(g.W, g.dw);
    for (int t = 0; t < g.T; ++t)
      for (int h = hs; h < hs + eh; ++h)
        for (int w = ws; w < ws + ew; ++w) visit((int64_t{t} * g.H + h) * g.W + w);
  } else {
    for (int64_t kj = 0; kj < nk; ++kj) visit(kj);
  }
  const float inv = 1.f / l;
  for (int e = 0; e < E; ++e) {
    const int c = lane + 32 * e;
    if (c < d) out[qi * row + int64_t{head} * d + c] = from_f<T>(acc[e] * inv);
  }
}

}  // namespace

cudaError_t linear_simple(const void* x, DType x_t, const void* w, DType w_t, const void* b,
                          DType b_t, void* y, DType y_t, int64_t M, int64_t N, int64_t K) {
  const int64_t outputs = M * N;
  if (outputs == 0) return cudaSuccess;
  const unsigned g = grid_for(outputs, kWarps);
  return with_type(x_t, [&](auto xv) {
    using X = decltype(xv);
    return with_type(w_t, [&](auto wv) {
      using Wt = decltype(wv);
      return with_type(y_t, [&](auto yv) {
        using Y = decltype(yv);
        return with_type(b_t, [&](auto bv) {
          using B = decltype(bv);
          linear_kernel<<<g, kWarps * 32, 0, stream()>>>(
              static_cast<const X*>(x), static_cast<const Wt*>(w), static_cast<const B*>(b),
              static_cast<Y*>(y), M, N, K);
          return cudaGetLastError();
        });
      });
    });
  });
}

cudaError_t attention_plain(const void* q, const void* k, const void* v, void* out, DType t,
                            int64_t nq, int64_t nk, int heads, int head_dim, float scale,
                            const WindowGeometry* window) {
  if (head_dim <= 0 || head_dim > kMaxHeadDim) return cudaErrorInvalidValue;
  const int64_t items = nq * heads;
  if (items == 0) return cudaSuccess;
  const int64_t blocks = (items + kWarps - 1) / kWarps;
  if (blocks >= (int64_t{1} << 31)) return cudaErrorInvalidConfiguration;
  const WindowGeometry g = window ? *window : WindowGeometry{};
  return with_type(t, [&](auto tv) {
    using T = decltype(tv);
    attention_kernel<<<static_cast<unsigned>(blocks), kWarps * 32, 0, stream()>>>(
        static_cast<const T*>(q), static_cast<const T*>(k), static_cast<const T*>(v),
        static_cast<T*>(out), nq, nk, heads, head_dim, scale, g, window != nullptr);
    return cudaGetLastError();
  });
}

}  // namespace freeswim::ops::cuda::kernels
