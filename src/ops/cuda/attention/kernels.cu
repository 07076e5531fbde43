// Instantiates the attention kernels for the supported head sizes and launches one. Kept free of
// host-side error formatting (fmt's compile-time format strings do not pass nvcc).
//
// The wgmma kernel (wgmma_kernel.cuh) is the default; FREESWIM_ATTENTION_KERNEL=mma selects the
// earlier mma.sync kernel (flash_kernel.cuh), kept for comparison in the benchmark and tests.
#include <cstdlib>
#include <cstring>

#include "ops/cuda/attention/flash_kernel.cuh"
#include "ops/cuda/attention/wgmma_kernel.cuh"

namespace freeswim::attention::detail {
namespace {

template <int D, bool kWindow>
cudaError_t launch_mma(const Params& p, dim3 grid, cudaStream_t stream) {
  const auto kernel = attention_kernel<D, kWindow>;
  constexpr int kSmem = sizeof(Smem<D>);
  // The opt-in above 48 KB is per kernel and per device; setting it again is cheap.
  const cudaError_t e =
      cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, kSmem);
  if (e != cudaSuccess) return e;
  kernel<<<grid, kThreads, kSmem, stream>>>(p);
  return cudaGetLastError();
}

template <int D, bool kWindow>
cudaError_t launch_wgmma(const Params& p, dim3 grid, cudaStream_t stream) {
  const auto kernel = attention_wgmma_kernel<D, kWindow>;
  constexpr int kSmem = sizeof(WSmem<D>) + 1024;  // slack to align the swizzle atoms
  const cudaError_t e =
      cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, kSmem);
  if (e != cudaSuccess) return e;
  kernel<<<grid, kThreads, kSmem, stream>>>(p);
  return cudaGetLastError();
}

bool use_mma() {
  static const bool mma = [] {
    const char* v = std::getenv("FREESWIM_ATTENTION_KERNEL");
    return v != nullptr && std::strcmp(v, "mma") == 0;
  }();
  return mma;
}

template <int D, bool kWindow>
cudaError_t launch(const Params& p, dim3 grid, cudaStream_t stream) {
  return use_mma() ? launch_mma<D, kWindow>(p, grid, stream)
                   : launch_wgmma<D, kWindow>(p, grid, stream);
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
