// Elementwise kernels: dtype conversion, GELU / SiLU, broadcast add, gated residual add, bias.
// Grid-stride loops over int64 indices; fp32 arithmetic, rounding once on store.
#include "ops/cuda/kernel_util.cuh"
#include "ops/cuda/kernels.h"
#include "ops/cuda/stream.h"

namespace freeswim::ops::cuda::kernels {

namespace {

// The hot passes (GELU after the FFN's up-projection, the gated residual adds, bias adds) move
// gigabytes per DiT block at 1080p: they run as 8-value vectors (one 16-byte access per bf16
// operand, see load8 / store8) with 32-bit indices, where the operands are 16-byte aligned, the
// broadcast period is a multiple of 8 and the vector count fits 30 bits; otherwise the scalar
// grid-stride loops below. On an H200 (FREESWIM_PROFILE, 2026-12-02) the scalar forms ran at
// about 1 TB/s (an int64 modulo and a 2-byte access per value); the copy ceiling is 4.25 TB/s.

// GELU, tanh form: 0.5 v (1 + tanh(u)) = v / (1 + exp(-2u)), u = sqrt(2/pi) (v + 0.044715 v^3),
// the same function as torch's gelu(approximate="tanh"). For bf16 results the exponential is
// the hardware ex2 (__expf, relative error about 2^-21 here) and the division the fast one: the
// error is some 1e-6 relative, far below bf16's 2^-9 rounding, and the tails stay relative
// (exp(-2u) overflows to +inf for very negative v, giving -0, the limit). fp32 results (the
// VAE, the CPU-parity tests at 1e-5) keep tanhf / expf.
template <typename T>
__device__ __forceinline__ float gelu_tanh_f(float v) {
  const float u = 0.7978845608028654f * (v + 0.044715f * v * v * v);
  if constexpr (sizeof(T) == 4) {
    return 0.5f * v * (1.f + tanhf(u));
  } else {
    return __fdividef(v, 1.f + __expf(-2.f * u));
  }
}

template <typename T>
__device__ __forceinline__ float silu_f(float v) {
  if constexpr (sizeof(T) == 4) {
    return v / (1.f + expf(-v));
  } else {
    return __fdividef(v, 1.f + __expf(-v));
  }
}

template <typename T>
__device__ __forceinline__ float unary_f(Unary op, float v) {
  return op == Unary::gelu_tanh ? gelu_tanh_f<T>(v) : silu_f<T>(v);
}

// Launch size of a vector kernel over `packs` 8-value packs: enough blocks to fill the GPU a few
// times, then grid-stride.
unsigned vector_grid(int64_t packs) {
  return grid_for(packs < (int64_t{1} << 26) ? packs : (int64_t{1} << 26), kThreads);
}

// Whether n values of period D (a broadcast vector's length; 8 for none) can take a vector
// kernel with 32-bit pack indices: below 2^30 packs, so that an index plus the grid's stride
// (at most 2^26, vector_grid) stays below 2^31.
bool vectorizable(int64_t n, int64_t D) {
  return n % 8 == 0 && D % 8 == 0 && n / 8 < (int64_t{1} << 30);
}

template <typename S, typename D>
__global__ void convert_kernel(const S* src, D* dst, int64_t n) {
  for (int64_t i = first_index(); i < n; i += grid_stride()) dst[i] = from_f<D>(to_f(src[i]));
}

template <typename S, typename D>
__global__ void convert_vec_kernel(const S* src, D* dst, int packs) {
  for (int i = first_index32(); i < packs; i += grid_stride32()) {
    float f[8];
    load8(src + int64_t{i} * 8, f);
    store8(dst + int64_t{i} * 8, f);
  }
}

template <typename T>
__global__ void unary_kernel(Unary op, const T* x, T* y, int64_t n) {
  for (int64_t i = first_index(); i < n; i += grid_stride())
    y[i] = from_f<T>(unary_f<T>(op, to_f(x[i])));
}

template <typename T>
__global__ void unary_vec_kernel(Unary op, const T* x, T* y, int packs) {
  for (int i = first_index32(); i < packs; i += grid_stride32()) {
    float f[8];
    load8(x + int64_t{i} * 8, f);
#pragma unroll
    for (int j = 0; j < 8; ++j) f[j] = unary_f<T>(op, f[j]);
    store8(y + int64_t{i} * 8, f);
  }
}

template <typename A, typename B>
__global__ void add_kernel(const A* a, const B* b, A* y, int64_t n, int64_t nb) {
  for (int64_t i = first_index(); i < n; i += grid_stride())
    y[i] = from_f<A>(to_f(a[i]) + to_f(b[i % nb]));
}

// y = a + b broadcast with period nb (b's packs: nb / 8).
template <typename A, typename B>
__global__ void add_vec_kernel(const A* a, const B* b, A* y, int packs, int b_packs) {
  for (int i = first_index32(); i < packs; i += grid_stride32()) {
    float f[8], g[8];
    load8(a + int64_t{i} * 8, f);
    load8(b + int64_t{i % b_packs} * 8, g);
#pragma unroll
    for (int j = 0; j < 8; ++j) f[j] += g[j];
    store8(y + int64_t{i} * 8, f);
  }
}

template <typename X, typename Y>
__global__ void add_gated_kernel(X* x, const Y* y, const float* gate, int64_t n, int64_t D) {
  for (int64_t i = first_index(); i < n; i += grid_stride()) {
    const float g = gate ? gate[i % D] : 1.f;
    x[i] = from_f<X>(to_f(x[i]) + to_f(y[i]) * g);
  }
}

// x += y * gate[column] (gate null: 1), rows of D values (D / 8 packs).
template <typename X, typename Y>
__global__ void add_gated_vec_kernel(X* x, const Y* y, const float* gate, int packs,
                                     int row_packs) {
  for (int i = first_index32(); i < packs; i += grid_stride32()) {
    float f[8], v[8], g[8];
    load8(x + int64_t{i} * 8, f);
    load8(y + int64_t{i} * 8, v);
    if (gate) {
      load8(gate + int64_t{i % row_packs} * 8, g);
    } else {
#pragma unroll
      for (int j = 0; j < 8; ++j) g[j] = 1.f;
    }
#pragma unroll
    for (int j = 0; j < 8; ++j) f[j] += v[j] * g[j];
    store8(x + int64_t{i} * 8, f);
  }
}

template <typename Y, typename B>
__global__ void bias_kernel(Y* y, const B* b, int64_t n, int64_t N) {
  for (int64_t i = first_index(); i < n; i += grid_stride())
    y[i] = from_f<Y>(to_f(y[i]) + to_f(b[i % N]));
}

}  // namespace

cudaError_t convert(const void* src, DType src_t, void* dst, DType dst_t, int64_t n) {
  if (n == 0) return cudaSuccess;
  const unsigned g = grid_for(n, kThreads);
  const bool vec = vectorizable(n, 8) && aligned16(src, dst);
  return with_type(dst_t, [&](auto d) {
    using D = decltype(d);
    switch (src_t) {
      case DType::F32:
        if (vec)
          convert_vec_kernel<<<vector_grid(n / 8), kThreads, 0, stream()>>>(
              static_cast<const float*>(src), static_cast<D*>(dst), static_cast<int>(n / 8));
        else
          convert_kernel<<<g, kThreads, 0, stream()>>>(static_cast<const float*>(src),
                                                       static_cast<D*>(dst), n);
        break;
      case DType::BF16:
        if (vec)
          convert_vec_kernel<<<vector_grid(n / 8), kThreads, 0, stream()>>>(
              static_cast<const __nv_bfloat16*>(src), static_cast<D*>(dst),
              static_cast<int>(n / 8));
        else
          convert_kernel<<<g, kThreads, 0, stream()>>>(static_cast<const __nv_bfloat16*>(src),
                                                       static_cast<D*>(dst), n);
        break;
      case DType::F16:
        convert_kernel<<<g, kThreads, 0, stream()>>>(static_cast<const __half*>(src),
                                                     static_cast<D*>(dst), n);
        break;
      default:
        return cudaErrorInvalidValue;
    }
    return cudaGetLastError();
  });
}

cudaError_t unary(Unary op, const void* x, void* y, DType t, int64_t n) {
  if (n == 0) return cudaSuccess;
  return with_type(t, [&](auto v) {
    using T = decltype(v);
    if (vectorizable(n, 8) && aligned16(x, y))
      unary_vec_kernel<<<vector_grid(n / 8), kThreads, 0, stream()>>>(
          op, static_cast<const T*>(x), static_cast<T*>(y), static_cast<int>(n / 8));
    else
      unary_kernel<<<grid_for(n, kThreads), kThreads, 0, stream()>>>(op, static_cast<const T*>(x),
                                                                     static_cast<T*>(y), n);
    return cudaGetLastError();
  });
}

cudaError_t add(const void* a, DType a_t, const void* b, DType b_t, void* y, int64_t n,
                int64_t nb) {
  if (n == 0) return cudaSuccess;
  return with_type(a_t, [&](auto av) {
    using A = decltype(av);
    return with_type(b_t, [&](auto bv) {
      using B = decltype(bv);
      if (vectorizable(n, nb) && aligned16(a, b, y))
        add_vec_kernel<<<vector_grid(n / 8), kThreads, 0, stream()>>>(
            static_cast<const A*>(a), static_cast<const B*>(b), static_cast<A*>(y),
            static_cast<int>(n / 8), static_cast<int>(nb / 8));
      else
        add_kernel<<<grid_for(n, kThreads), kThreads, 0, stream()>>>(
            static_cast<const A*>(a), static_cast<const B*>(b), static_cast<A*>(y), n, nb);
      return cudaGetLastError();
    });
  });
}

cudaError_t add_gated(void* x, DType x_t, const void* y, DType y_t, const float* gate, int64_t n,
                      int64_t D) {
  if (n == 0) return cudaSuccess;
  return with_type(x_t, [&](auto xv) {
    using X = decltype(xv);
    return with_type(y_t, [&](auto yv) {
      using Y = decltype(yv);
      if (vectorizable(n, D) && aligned16(x, y, gate))
        add_gated_vec_kernel<<<vector_grid(n / 8), kThreads, 0, stream()>>>(
            static_cast<X*>(x), static_cast<const Y*>(y), gate, static_cast<int>(n / 8),
            static_cast<int>(D / 8));
      else
        add_gated_kernel<<<grid_for(n, kThreads), kThreads, 0, stream()>>>(
            static_cast<X*>(x), static_cast<const Y*>(y), gate, n, D);
      return cudaGetLastError();
    });
  });
}

cudaError_t add_bias_rows(void* y, DType y_t, const void* b, DType b_t, int64_t M, int64_t N) {
  const int64_t n = M * N;
  if (n == 0) return cudaSuccess;
  return with_type(y_t, [&](auto yv) {
    using Y = decltype(yv);
    return with_type(b_t, [&](auto bv) {
      using B = decltype(bv);
      if (vectorizable(n, N) && aligned16(y, b))
        add_vec_kernel<<<vector_grid(n / 8), kThreads, 0, stream()>>>(
            static_cast<const Y*>(y), static_cast<const B*>(b), static_cast<Y*>(y),
            static_cast<int>(n / 8), static_cast<int>(N / 8));
      else
        bias_kernel<<<grid_for(n, kThreads), kThreads, 0, stream()>>>(
            static_cast<Y*>(y), static_cast<const B*>(b), n, N);
      return cudaGetLastError();
    });
  });
}

}  // namespace freeswim::ops::cuda::kernels
