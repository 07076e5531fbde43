// Kernels of the video VAE ops (and the text encoder's mul / embedding gather): padding for the
// convolution, the channel RMS norm, upsampling, block copies, transposition, clamp, per-channel
// affine and tile accumulation. Grid-stride loops over int64 indices, fp32 arithmetic.
#include "ops/cuda/kernel_util.cuh"
#include "ops/cuda/stream.h"
#include "ops/cuda/vae_kernels.h"

namespace freeswim::ops::cuda::kernels {

namespace {

// Calls fn(T{}) with an integer type of the element size (moves without arithmetic).
template <typename Fn>
cudaError_t with_bytes(int elem_bytes, Fn fn) {
  switch (elem_bytes) {
    case 2:
      return fn(uint16_t{});
    case 4:
      return fn(uint32_t{});
    default:
      return cudaErrorInvalidValue;
  }
}

__global__ void pad3d_kernel(const float* x, float* y, int64_t F, int64_t H, int64_t W, int64_t Fo,
                             int64_t Ho, int64_t Wo, int pf, int pt, int pl, int64_t n) {
  for (int64_t i = first_index(); i < n; i += grid_stride()) {
    const int64_t wo = i % Wo, ho = (i / Wo) % Ho, fo = (i / (Wo * Ho)) % Fo,
                  c = i / (Wo * Ho * Fo);
    const int64_t f = fo - pf, h = ho - pt, w = wo - pl;
    y[i] = (f >= 0 && f < F && h >= 0 && h < H && w >= 0 && w < W)
               ? x[((c * F + f) * H + h) * W + w]
               : 0.f;
  }
}

// One thread per position j: the channel loop reads x[c, j] for consecutive j across a warp,
// so every load is coalesced.
template <typename T>
__global__ void rms_channels_kernel(const T* x, T* y, int64_t C, int64_t N, const float* gamma,
                                    const float* bias, bool silu) {
  const float root_c = sqrtf(static_cast<float>(C));
  for (int64_t j = first_index(); j < N; j += grid_stride()) {
    float ss = 0.f;
    for (int64_t c = 0; c < C; ++c) {
      const float v = to_f(x[c * N + j]);
      ss = fmaf(v, v, ss);
    }
    const float inv = 1.f / fmaxf(sqrtf(ss), 1e-12f);  // F.normalize's eps
    for (int64_t c = 0; c < C; ++c) {
      float v =
          to_f(x[c * N + j]) * inv * root_c * (gamma ? gamma[c] : 1.f) + (bias ? bias[c] : 0.f);
      if (silu) v = v / (1.f + expf(-v));
      y[c * N + j] = from_f<T>(v);
    }
  }
}

template <typename T>
__global__ void upsample_kernel(const T* x, T* y, int64_t H, int64_t W, int64_t n) {
  const int64_t Wo = 2 * W, Ho = 2 * H;
  for (int64_t i = first_index(); i < n; i += grid_stride()) {
    const int64_t wo = i % Wo, ho = (i / Wo) % Ho, p = i / (Wo * Ho);
    y[i] = x[(p * H + ho / 2) * W + wo / 2];
  }
}

template <typename T>
__global__ void copy_blocks_kernel(const T* src, int64_t src_row, int64_t src_off, T* dst,
                                   int64_t dst_row, int64_t dst_off, int64_t m, int64_t n) {
  for (int64_t i = first_index(); i < n; i += grid_stride()) {
    const int64_t o = i / m, k = i % m;
    dst[o * dst_row + dst_off + k] = src[o * src_row + src_off + k];
  }
}

// The same in 16-byte units (every offset, length and pointer a multiple of 16 bytes), one outer
// row per grid row: no division per element.
__global__ void copy_blocks_vec_kernel(const uint4* src, int64_t src_row, int64_t src_off,
                                       uint4* dst, int64_t dst_row, int64_t dst_off, int64_t outer,
                                       int64_t m) {
  for (int64_t o = blockIdx.y; o < outer; o += gridDim.y) {
    const uint4* s = src + o * src_row + src_off;
    uint4* d = dst + o * dst_row + dst_off;
    for (int64_t k = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; k < m;
         k += static_cast<int64_t>(gridDim.x) * blockDim.x)
      d[k] = s[k];
  }
}

// w [Co, Ci, K] -> [Co, K, Ci]: a convolution weight from cuDNN's NCDHW filter layout to its
// NDHWC (channels-last) one.
__global__ void weight_to_nhwc_kernel(const float* w, float* y, int64_t Ci, int64_t K, int64_t n) {
  for (int64_t i = first_index(); i < n; i += grid_stride()) {
    const int64_t ci = i % Ci, k = (i / Ci) % K, co = i / (Ci * K);
    y[i] = w[(co * Ci + ci) * K + k];
  }
}

// 32x32 tiles through shared memory so that reads and writes are both row-contiguous. Tiles of
// A are visited in a grid-stride loop over blockIdx.y (gridDim.y is limited to 65535).
template <typename T>
__global__ void transpose_kernel(const T* x, T* y, int64_t A, int64_t B) {
  __shared__ T tile[32][33];
  const int64_t b0 = static_cast<int64_t>(blockIdx.x) * 32;
  for (int64_t a0 = static_cast<int64_t>(blockIdx.y) * 32; a0 < A;
       a0 += static_cast<int64_t>(gridDim.y) * 32) {
    for (int r = threadIdx.y; r < 32; r += blockDim.y) {
      const int64_t a = a0 + r, b = b0 + threadIdx.x;
      if (a < A && b < B) tile[r][threadIdx.x] = x[a * B + b];
    }
    __syncthreads();
    for (int r = threadIdx.y; r < 32; r += blockDim.y) {
      const int64_t b = b0 + r, a = a0 + threadIdx.x;
      if (a < A && b < B) y[b * A + a] = tile[threadIdx.x][r];
    }
    __syncthreads();  // the tile is refilled on the next pass
  }
}

template <typename T>
__global__ void clamp_kernel(const T* x, T* y, int64_t n, float lo, float hi) {
  for (int64_t i = first_index(); i < n; i += grid_stride())
    y[i] = from_f<T>(fminf(fmaxf(to_f(x[i]), lo), hi));
}

template <typename T>
__global__ void channel_affine_kernel(const T* x, T* y, int64_t N, const float* scale,
                                      const float* shift, int64_t n) {
  for (int64_t i = first_index(); i < n; i += grid_stride()) {
    const int64_t c = i / N;
    y[i] = from_f<T>(to_f(x[i]) * (scale ? scale[c] : 1.f) + (shift ? shift[c] : 0.f));
  }
}

// The same per channel, one channel per grid row (grid.y strides over C): no division per
// value, 8 values per access. Runs after every VAE convolution (its bias), over gigabytes of fp32
// activations at 1080p.
template <typename T>
__global__ void channel_affine_vec_kernel(const T* x, T* y, int64_t C, int packs,
                                          const float* scale, const float* shift) {
  for (int64_t c = blockIdx.y; c < C; c += gridDim.y) {
    const float a = scale ? scale[c] : 1.f, b = shift ? shift[c] : 0.f;
    const T* xc = x + c * packs * 8;
    T* yc = y + c * packs * 8;
    for (int i = first_index32(); i < packs; i += grid_stride32()) {
      float f[8];
      load8(xc + int64_t{i} * 8, f);
#pragma unroll
      for (int j = 0; j < 8; ++j) f[j] = f[j] * a + b;
      store8(yc + int64_t{i} * 8, f);
    }
  }
}

template <typename T>
__global__ void accumulate_kernel(T* acc, const T* tile, const float* weight, int64_t F, int64_t H,
                                  int64_t W, int64_t f, int64_t h, int64_t w, int64_t f0,
                                  int64_t y0, int64_t x0, int64_t n) {
  for (int64_t i = first_index(); i < n; i += grid_stride()) {
    const int64_t xx = i % w, yy = (i / w) % h, ff = (i / (w * h)) % f, c = i / (w * h * f);
    T& dst = acc[((c * F + f0 + ff) * H + y0 + yy) * W + x0 + xx];
    dst = from_f<T>(to_f(dst) + to_f(tile[i]) * (weight ? weight[yy * w + xx] : 1.f));
  }
}

template <typename A, typename B>
__global__ void mul_kernel(const A* a, const B* b, A* y, int64_t n) {
  for (int64_t i = first_index(); i < n; i += grid_stride())
    y[i] = from_f<A>(to_f(a[i]) * to_f(b[i]));
}

template <typename T>
__global__ void gather_kernel(const T* table, const int32_t* ids, T* y, int64_t D, int64_t n) {
  for (int64_t i = first_index(); i < n; i += grid_stride())
    y[i] = table[static_cast<int64_t>(ids[i / D]) * D + i % D];
}

}  // namespace

cudaError_t pad3d(const float* x, float* y, int64_t C, int64_t F, int64_t H, int64_t W, int pf,
                  int pb, int pt, int pbot, int pl, int pr) {
  const int64_t Fo = F + pf + pb, Ho = H + pt + pbot, Wo = W + pl + pr, n = C * Fo * Ho * Wo;
  if (n == 0) return cudaSuccess;
  pad3d_kernel<<<grid_for(n, kThreads), kThreads, 0, stream()>>>(x, y, F, H, W, Fo, Ho, Wo, pf, pt,
                                                                 pl, n);
  return cudaGetLastError();
}

cudaError_t rms_norm_channels(const void* x, void* y, DType t, int64_t C, int64_t N,
                              const float* gamma, const float* bias, bool silu) {
  if (C == 0 || N == 0) return cudaSuccess;
  return with_type(t, [&](auto v) {
    using T = decltype(v);
    rms_channels_kernel<<<grid_for(N, kThreads), kThreads, 0, stream()>>>(
        static_cast<const T*>(x), static_cast<T*>(y), C, N, gamma, bias, silu);
    return cudaGetLastError();
  });
}

cudaError_t upsample_nearest2x(const void* x, void* y, DType t, int64_t planes, int64_t H,
                               int64_t W) {
  const int64_t n = planes * 4 * H * W;
  if (n == 0) return cudaSuccess;
  return with_bytes(static_cast<int>(dtype_size(t)), [&](auto v) {
    using T = decltype(v);
    upsample_kernel<<<grid_for(n, kThreads), kThreads, 0, stream()>>>(static_cast<const T*>(x),
                                                                      static_cast<T*>(y), H, W, n);
    return cudaGetLastError();
  });
}

cudaError_t copy_blocks(const void* src, int64_t src_row, int64_t src_off, void* dst,
                        int64_t dst_row, int64_t dst_off, int64_t outer, int64_t m,
                        int elem_bytes) {
  const int64_t n = outer * m;
  if (n == 0) return cudaSuccess;
  const int64_t per = 16 / elem_bytes;  // elements per 16 bytes
  if (m % per == 0 && src_row % per == 0 && dst_row % per == 0 && src_off % per == 0 &&
      dst_off % per == 0 && aligned16(src, dst)) {
    const int64_t mv = m / per;
    const int64_t gx = (mv + kThreads - 1) / kThreads;
    const dim3 grid(static_cast<unsigned>(gx < 4096 ? gx : 4096),
                    static_cast<unsigned>(outer < 65535 ? outer : 65535));
    copy_blocks_vec_kernel<<<grid, kThreads, 0, stream()>>>(
        static_cast<const uint4*>(src), src_row / per, src_off / per, static_cast<uint4*>(dst),
        dst_row / per, dst_off / per, outer, mv);
    return cudaGetLastError();
  }
  return with_bytes(elem_bytes, [&](auto v) {
    using T = decltype(v);
    copy_blocks_kernel<<<grid_for(n, kThreads), kThreads, 0, stream()>>>(
        static_cast<const T*>(src), src_row, src_off, static_cast<T*>(dst), dst_row, dst_off, m, n);
    return cudaGetLastError();
  });
}

cudaError_t transpose2d(const void* x, void* y, int elem_bytes, int64_t A, int64_t B) {
  if (A == 0 || B == 0) return cudaSuccess;
  return with_bytes(elem_bytes, [&](auto v) {
    using T = decltype(v);
    if ((B + 31) / 32 > 0x7fffffff) return cudaErrorInvalidValue;
    const int64_t a_tiles = (A + 31) / 32;
    const dim3 grid(static_cast<unsigned>((B + 31) / 32),
                    static_cast<unsigned>(a_tiles < 65535 ? a_tiles : 65535));
    transpose_kernel<<<grid, dim3(32, 8), 0, stream()>>>(static_cast<const T*>(x),
                                                         static_cast<T*>(y), A, B);
    return cudaGetLastError();
  });
}

cudaError_t weight_to_nhwc(const float* w, float* y, int64_t Co, int64_t Ci, int64_t K) {
  const int64_t n = Co * Ci * K;
  if (n == 0) return cudaSuccess;
  weight_to_nhwc_kernel<<<grid_for(n, kThreads), kThreads, 0, stream()>>>(w, y, Ci, K, n);
  return cudaGetLastError();
}

cudaError_t clamp(const void* x, void* y, DType t, int64_t n, float lo, float hi) {
  if (n == 0) return cudaSuccess;
  return with_type(t, [&](auto v) {
    using T = decltype(v);
    clamp_kernel<<<grid_for(n, kThreads), kThreads, 0, stream()>>>(static_cast<const T*>(x),
                                                                   static_cast<T*>(y), n, lo, hi);
    return cudaGetLastError();
  });
}

cudaError_t channel_affine(const void* x, void* y, DType t, int64_t C, int64_t N,
                           const float* scale, const float* shift) {
  const int64_t n = C * N;
  if (n == 0) return cudaSuccess;
  return with_type(t, [&](auto v) {
    using T = decltype(v);
    if (N % 8 == 0 && N / 8 < (int64_t{1} << 30) && aligned16(x, y)) {  // index + stride < 2^31
      const int64_t packs = N / 8;
      // At most 256 blocks along one channel's row (grid-stride beyond), the channels on grid.y.
      const unsigned gx = grid_for(packs < 4 * kThreads * 64 ? packs : 4 * kThreads * 64, kThreads);
      const unsigned gy = static_cast<unsigned>(C < 65535 ? C : 65535);
      channel_affine_vec_kernel<<<dim3(gx, gy), kThreads, 0, stream()>>>(
          static_cast<const T*>(x), static_cast<T*>(y), C, static_cast<int>(packs), scale, shift);
    } else {
      channel_affine_kernel<<<grid_for(n, kThreads), kThreads, 0, stream()>>>(
          static_cast<const T*>(x), static_cast<T*>(y), N, scale, shift, n);
    }
    return cudaGetLastError();
  });
}

cudaError_t accumulate_tile(void* acc, const void* tile, DType t, const float* weight, int64_t C,
                            int64_t F, int64_t H, int64_t W, int64_t f, int64_t h, int64_t w,
                            int64_t f0, int64_t y0, int64_t x0) {
  const int64_t n = C * f * h * w;
  if (n == 0) return cudaSuccess;
  return with_type(t, [&](auto v) {
    using T = decltype(v);
    accumulate_kernel<<<grid_for(n, kThreads), kThreads, 0, stream()>>>(
        static_cast<T*>(acc), static_cast<const T*>(tile), weight, F, H, W, f, h, w, f0, y0, x0, n);
    return cudaGetLastError();
  });
}

cudaError_t mul(const void* a, DType a_t, const void* b, DType b_t, void* y, int64_t n) {
  if (n == 0) return cudaSuccess;
  return with_type(a_t, [&](auto av) {
    using A = decltype(av);
    return with_type(b_t, [&](auto bv) {
      using B = decltype(bv);
      mul_kernel<<<grid_for(n, kThreads), kThreads, 0, stream()>>>(
          static_cast<const A*>(a), static_cast<const B*>(b), static_cast<A*>(y), n);
      return cudaGetLastError();
    });
  });
}

cudaError_t gather_rows(const void* table, const int32_t* ids, void* y, int elem_bytes,
                        int64_t rows, int64_t D) {
  const int64_t n = rows * D;
  if (n == 0) return cudaSuccess;
  return with_bytes(elem_bytes, [&](auto v) {
    using T = decltype(v);
    gather_kernel<<<grid_for(n, kThreads), kThreads, 0, stream()>>>(static_cast<const T*>(table),
                                                                    ids, static_cast<T*>(y), D, n);
    return cudaGetLastError();
  });
}

}  // namespace freeswim::ops::cuda::kernels
