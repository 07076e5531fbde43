// softmax(scale q k^T + bias) v with padded keys left out: the UMT5 encoder's attention, and the
// fp32 attention of the VAE's middle block (no bias, no mask, head_dim up to 512). One warp per
// (query, head) with an online softmax; these attentions are small (512 text tokens, or one
// latent frame of the VAE), so a plain kernel suffices.
#include <cmath>

#include "ops/cuda/kernel_util.cuh"
#include "ops/cuda/stream.h"
#include "ops/cuda/vae_kernels.h"

namespace freeswim::ops::cuda::kernels {

namespace {

constexpr int kWarps = 4;  // warps per block
constexpr int kE = kMaxBiasedHeadDim / 32;

template <typename T, typename B>
__global__ void biased_attention_kernel(const T* q, const T* k, const T* v, T* out, int64_t nq,
                                        int64_t nk, int heads, int d, float scale, const B* bias,
                                        const float* key_mask) {
  const int lane = threadIdx.x & 31;
  const int64_t item = static_cast<int64_t>(blockIdx.x) * kWarps + (threadIdx.x >> 5);
  if (item >= nq * heads) return;  // whole warps leave together
  const int64_t qi = item / heads;
  const int head = static_cast<int>(item % heads);
  const int64_t row = static_cast<int64_t>(heads) * d;
  // With every key padded, the references' finite mask value leaves a uniform softmax over all
  // keys: scores of 0 for every key reproduce it.
  bool any_key = key_mask == nullptr;
  if (key_mask)
    for (int64_t j = lane; j < nk && !any_key; j += 32) any_key = key_mask[j] != 0.f;
  any_key = __any_sync(0xffffffffu, any_key);
  const bool uniform = !any_key;
  float qv[kE], acc[kE];
  for (int e = 0; e < kE; ++e) {
    const int c = lane + 32 * e;
    qv[e] = c < d ? to_f(q[qi * row + int64_t{head} * d + c]) : 0.f;
    acc[e] = 0.f;
  }
  float m = -INFINITY, l = 0.f;
  for (int64_t kj = 0; kj < nk; ++kj) {
    if (key_mask && !uniform && key_mask[kj] == 0.f) continue;  // the same for the whole warp
    const T* kr = k + kj * row + int64_t{head} * d;
    const T* vr = v + kj * row + int64_t{head} * d;
    float s = 0.f;
    if (!uniform) {
      for (int e = 0; e < kE; ++e) {
        const int c = lane + 32 * e;
        if (c < d) s += qv[e] * to_f(kr[c]);
      }
      s = warp_sum(s) * scale;
      if (bias) s += to_f(bias[(qi * nk + kj) * heads + head]);
    }
    const float m_new = fmaxf(m, s);
    const float corr = expf(m - m_new), p = expf(s - m_new);
    l = l * corr + p;
    for (int e = 0; e < kE; ++e) {
      const int c = lane + 32 * e;
      acc[e] = acc[e] * corr + (c < d ? p * to_f(vr[c]) : 0.f);
    }
    m = m_new;
  }
  for (int e = 0; e < kE; ++e) {
    const int c = lane + 32 * e;
    if (c < d) out[qi * row + int64_t{head} * d + c] = from_f<T>(acc[e] / l);
  }
}

// Softmax of each row of s [rows, cols] in place, fp32: one block per row (max, then the sum of
// exponentials, then the division).
__global__ void softmax_rows_kernel(float* s, int64_t cols) {
  __shared__ float scratch[32];
  float* r = s + static_cast<int64_t>(blockIdx.x) * cols;
  float m = -INFINITY;
  for (int64_t j = threadIdx.x; j < cols; j += blockDim.x) m = fmaxf(m, r[j]);
  // The block's maximum: warp maxima through shared memory, as block_sum does for sums.
  for (int o = 16; o > 0; o >>= 1) m = fmaxf(m, __shfl_xor_sync(0xffffffffu, m, o));
  __syncthreads();
  if ((threadIdx.x & 31) == 0) scratch[threadIdx.x >> 5] = m;
  __syncthreads();
  m = (threadIdx.x & 31) < (blockDim.x >> 5) ? scratch[threadIdx.x & 31] : -INFINITY;
  for (int o = 16; o > 0; o >>= 1) m = fmaxf(m, __shfl_xor_sync(0xffffffffu, m, o));
  float sum = 0.f;
  for (int64_t j = threadIdx.x; j < cols; j += blockDim.x) {
    const float e = expf(r[j] - m);
    r[j] = e;
    sum += e;
  }
  const float inv = 1.f / block_sum(sum, scratch);
  for (int64_t j = threadIdx.x; j < cols; j += blockDim.x) r[j] *= inv;
}

}  // namespace

cudaError_t softmax_rows_f32(float* s, int64_t rows, int64_t cols) {
  if (rows == 0 || cols == 0) return cudaSuccess;
  if (rows >= (int64_t{1} << 31)) return cudaErrorInvalidConfiguration;
  softmax_rows_kernel<<<static_cast<unsigned>(rows), kThreads, 0, stream()>>>(s, cols);
  return cudaGetLastError();
}

cudaError_t attention_bias(const void* q, const void* k, const void* v, void* out, DType t,
                           int64_t nq, int64_t nk, int heads, int head_dim, float scale,
                           const void* bias, DType bias_t, const float* key_mask) {
  if (head_dim <= 0 || head_dim > kMaxBiasedHeadDim || nk <= 0) return cudaErrorInvalidValue;
  const int64_t items = nq * heads;
  if (items == 0) return cudaSuccess;
  const unsigned grid = grid_for(items, kWarps);
  return with_type(t, [&](auto tv) {
    using T = decltype(tv);
    return with_type(bias_t, [&](auto bv) {
      using B = decltype(bv);
      biased_attention_kernel<<<grid, 32 * kWarps, 0, stream()>>>(
          static_cast<const T*>(q), static_cast<const T*>(k), static_cast<const T*>(v),
          static_cast<T*>(out), nq, nk, heads, head_dim, scale, static_cast<const B*>(bias),
          key_mask);
      return cudaGetLastError();
    });
  });
}

}  // namespace freeswim::ops::cuda::kernels
