// Elementwise kernels: dtype conversion, GELU / SiLU, broadcast add, gated residual add, bias.
// Grid-stride loops over int64 indices; fp32 arithmetic, rounding once on store.
#include "ops/cuda/kernel_util.cuh"
#include "ops/cuda/kernels.h"
#include "ops/cuda/stream.h"

namespace freeswim::ops::cuda::kernels {

namespace {

template <typename S, typename D>
__global__ void convert_kernel(const S* src, D* dst, int64_t n) {
  for (int64_t i = first_index(); i < n; i += grid_stride()) dst[i] = from_f<D>(to_f(src[i]));
}

template <typename T>
__global__ void unary_kernel(Unary op, const T* x, T* y, int64_t n) {
  for (int64_t i = first_index(); i < n; i += grid_stride()) {
    const float v = to_f(x[i]);
    float r;
    if (op == Unary::gelu_tanh) {
      const float c = 0.7978845608028654f;  // sqrt(2/pi), torch's gelu(approximate="tanh")
      r = 0.5f * v * (1.f + tanhf(c * (v + 0.044715f * v * v * v)));
    } else {
      r = v / (1.f + expf(-v));
    }
    y[i] = from_f<T>(r);
  }
}

template <typename A, typename B>
__global__ void add_kernel(const A* a, const B* b, A* y, int64_t n, int64_t nb) {
  for (int64_t i = first_index(); i < n; i += grid_stride())
    y[i] = from_f<A>(to_f(a[i]) + to_f(b[i % nb]));
}

template <typename X, typename Y>
__global__ void add_gated_kernel(X* x, const Y* y, const float* gate, int64_t n, int64_t D) {
  for (int64_t i = first_index(); i < n; i += grid_stride()) {
    const float g = gate ? gate[i % D] : 1.f;
    x[i] = from_f<X>(to_f(x[i]) + to_f(y[i]) * g);
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
  return with_type(dst_t, [&](auto d) {
    using D = decltype(d);
    switch (src_t) {
      case DType::F32:
        convert_kernel<<<g, kThreads, 0, stream()>>>(static_cast<const float*>(src),
                                                     static_cast<D*>(dst), n);
        break;
      case DType::BF16:
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
      bias_kernel<<<grid_for(n, kThreads), kThreads, 0, stream()>>>(static_cast<Y*>(y),
                                                                    static_cast<const B*>(b), n, N);
      return cudaGetLastError();
    });
  });
}

}  // namespace freeswim::ops::cuda::kernels
