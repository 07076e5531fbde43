// Instantiates the attention kernel for the supported head sizes and launches it. Kept free of
// host-side error formatting (fmt's compile-time format strings do not pass nvcc).
#include "ops/cuda/attention/flash_kernel.cuh"

namespace freeswim::attention::detail {
namespace {

template <int D, bool kWindow>
cudaError_t launch(const Params& p, dim3 grid, cudaStream_t stream) {
  const auto kernel = attention_kernel<D, kWindow>;
  constexpr int kSmem = sizeof(Smem<D>);
  // The opt-in above 48 KB is per kernel and per device; setting it again is cheap.
  const cudaError_t e =
      cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, kSmem);
  if (e != cudaSuccess) return e;
  kernel<<<grid, kThreads, kSmem, stream>>>(p);
  return cudaGetLastError();
}

}  // namespace

cudaError_t launch_attention(const Params& p, int head_dim, bool window, dim3 grid,
                             cudaStream_t stream) {
  if (head_dim == 64)
    return window ? launch<64, true>(p, grid, stream) : launch<64, false>(p, grid, stream);
  if (head_dim == 128)
    return window ? launch<128, true>(p, grid, stream) : launch<128, false>(p, grid, stream);
  return cudaErrorInvalidValue;
}

}  // namespace freeswim::attention::detail
