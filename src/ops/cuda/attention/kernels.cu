// Instantiates the attention kernels for the supported head sizes and launches one. Kept free of
// host-side error formatting (fmt's compile-time format strings do not pass nvcc).
//
// FREESWIM_ATTENTION_KERNEL selects the kernel; unset = wide_fast, the fastest measured
// (docs/attention.md): warp-specialised, 128-key tiles, the fast softmax (kFast in
// ws_kernel.cuh). The others stay selectable so that the benchmark and the tests compare them in
// one binary: *_pp = the same with ping-pong turns between the consumer warpgroups, fast* = 64-key
// tiles with Q in registers, ws_ov_rq* / wide / wide_rq = the earlier softmax, ws = without
// overlap, wgmma = loads from all threads and a block barrier per tile (wgmma_kernel.cuh), mma =
// the mma.sync kernel (flash_kernel.cuh).
#include <cstdlib>
#include <cstring>
#include <iterator>
#include <string>

#include "ops/cuda/attention/flash_kernel.cuh"
#include "ops/cuda/attention/wgmma_kernel.cuh"
#include "ops/cuda/attention/ws_kernel.cuh"

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

template <int D, bool kWindow, bool kSched, bool kOverlap, bool kQRegs, int BK = kBlockK,
          int ST = kWsStages, int kFast = 0>
cudaError_t launch_ws(const Params& p, dim3 grid, cudaStream_t stream) {
  const auto kernel = attention_ws_kernel<D, kWindow, kSched, kOverlap, kQRegs, BK, ST, kFast>;
  constexpr int kSmem = sizeof(WsSmem<D, BK, ST>) + 1024;  // slack to align the swizzle atoms
  static_assert(kSmem <= 227 * 1024, "more shared memory than a Hopper block may have");
  const cudaError_t e =
      cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, kSmem);
  if (e != cudaSuccess) return e;
  kernel<<<grid, kWsThreads, kSmem, stream>>>(p);
  return cudaGetLastError();
}

enum class Variant {
  fast,
  fast_pp,
  fast_s6,
  wide_fast,
  wide_fast_pp,
  wide_fast_poly,
  ws_ov_rq_s6,
  wide,
  wide_rq,
  ws_ov_rq,
  ws_pp_ov_rq,
  ws,
  wgmma,
  mma
};
constexpr struct {
  const char* name;
  Variant v;
  int tile_keys;
} kVariants[] = {{"wide_fast", Variant::wide_fast, kBlockKWide},
                 {"wide_fast_pp", Variant::wide_fast_pp, kBlockKWide},
                 {"wide_fast_poly", Variant::wide_fast_poly, kBlockKWide},
                 {"fast", Variant::fast, kBlockK},
                 {"fast_pp", Variant::fast_pp, kBlockK},
                 {"fast_s6", Variant::fast_s6, kBlockK},
                 {"ws_ov_rq", Variant::ws_ov_rq, kBlockK},
                 {"ws_ov_rq_s6", Variant::ws_ov_rq_s6, kBlockK},
                 {"wide", Variant::wide, kBlockKWide},
                 {"wide_rq", Variant::wide_rq, kBlockKWide},
                 {"ws_pp_ov_rq", Variant::ws_pp_ov_rq, kBlockK},
                 {"ws", Variant::ws, kBlockK},
                 {"wgmma", Variant::wgmma, kBlockK},
                 {"mma", Variant::mma, kBlockK}};

// Index into kVariants, or -1 for an unknown name.
int variant_index() {
  static const int index = [] {
    const char* v = std::getenv("FREESWIM_ATTENTION_KERNEL");
    if (v == nullptr || *v == '\0') return 0;
    for (int i = 0; i < static_cast<int>(std::size(kVariants)); ++i)
      if (std::strcmp(v, kVariants[i].name) == 0) return i;
    return -1;
  }();
  return index;
}

template <int D, bool kWindow>
cudaError_t launch(const Params& p, dim3 grid, cudaStream_t stream) {
  const int i = variant_index();
  if (i < 0) return cudaErrorInvalidValue;
  switch (kVariants[i].v) {
    case Variant::fast:
      return launch_ws<D, kWindow, false, true, true, kBlockK, kWsStages, true>(p, grid, stream);
    case Variant::fast_pp:
      return launch_ws<D, kWindow, true, true, true, kBlockK, kWsStages, true>(p, grid, stream);
    case Variant::fast_s6:
      return launch_ws<D, kWindow, false, true, true, kBlockK, 6, true>(p, grid, stream);
    case Variant::wide_fast_pp:
      return launch_ws<D, kWindow, true, true, false, kBlockKWide, 3, true>(p, grid, stream);
    case Variant::wide_fast:
      return launch_ws<D, kWindow, false, true, false, kBlockKWide, 3, true>(p, grid, stream);
    case Variant::wide_fast_poly:  // a quarter of the exponentials on the FMA pipe (not measured)
      return launch_ws<D, kWindow, false, true, false, kBlockKWide, 3, 2>(p, grid, stream);
    case Variant::ws_ov_rq_s6:
      return launch_ws<D, kWindow, false, true, true, kBlockK, 6>(p, grid, stream);
    case Variant::wide:
      return launch_ws<D, kWindow, false, true, false, kBlockKWide, 3>(p, grid, stream);
    case Variant::wide_rq:
      return launch_ws<D, kWindow, false, true, true, kBlockKWide, 3>(p, grid, stream);
    case Variant::mma:
      return launch_mma<D, kWindow>(p, grid, stream);
    case Variant::wgmma:
      return launch_wgmma<D, kWindow>(p, grid, stream);
    case Variant::ws:
      return launch_ws<D, kWindow, false, false, false>(p, grid, stream);
    case Variant::ws_ov_rq:
      return launch_ws<D, kWindow, false, true, true>(p, grid, stream);
    case Variant::ws_pp_ov_rq:
      return launch_ws<D, kWindow, true, true, true>(p, grid, stream);
  }
  return cudaErrorInvalidValue;
}

}  // namespace

std::string attention_kernel_variants() {
  std::string names;
  for (const auto& v : kVariants) names += std::string(names.empty() ? "" : ", ") + v.name;
  return names;
}

const char* attention_kernel_variant() {
  const int i = variant_index();
  return i < 0 ? nullptr : kVariants[i].name;
}

int attention_kernel_tile_keys() {
  const int i = variant_index();
  return i < 0 ? kBlockK : kVariants[i].tile_keys;
}

cudaError_t launch_attention(const Params& p, int head_dim, bool window, dim3 grid,
                             cudaStream_t stream) {
  if (head_dim == 64)
    return window ? launch<64, true>(p, grid, stream) : launch<64, false>(p, grid, stream);
  if (head_dim == 128)
    return window ? launch<128, true>(p, grid, stream) : launch<128, false>(p, grid, stream);
  return cudaErrorInvalidValue;
}

}  // namespace freeswim::attention::detail
