// Instantiates the attention kernels for the supported head sizes and launches one. Kept free of
// host-side error formatting (fmt's compile-time format strings do not pass nvcc).
//
// FREESWIM_ATTENTION_KERNEL selects the kernel; unset = boxw, the fastest measured
// (docs/attention.md): for the window, box tiles fed by TMA (box_window.cuh) where the box plan
// costs at most kBoxTileAllowance more tiles than 128-key runs, else wide_fast (warp-specialised,
// 128-key tiles, the fast softmax: kFast in ws_kernel.cuh); for dense attention the same consumers
// fed by TMA with Q in registers (tma_dense.cuh), which `automatic` then prefers to cuDNN. The
// others stay selectable so that the benchmark and the tests compare them in one binary:
// wide_fast_tma_rq = the previous default (window always wide_fast), boxw_all = box tiles at
// every geometry, *_pp = ping-pong turns between the consumer warpgroups, fast* = 64-key tiles with
// Q in registers, ws_ov_rq* / wide / wide_rq = the earlier softmax, ws = without overlap, wgmma =
// loads from all threads and a block barrier per tile (wgmma_kernel.cuh), mma = the mma.sync
// kernel (flash_kernel.cuh), wide_fast_tma = Q in shared memory in the TMA dense kernel, tmaw* =
// the window fed by TMA in row segments, sum = row sums by the tensor cores, wide_lean = the pairs
// window producer.
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <iterator>
#include <string>

#include "ops/cuda/attention/box_window.cuh"
#include "ops/cuda/attention/flash_kernel.cuh"
#include "ops/cuda/attention/tma_dense.cuh"
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

// Launches a warp-specialised kernel (kWsThreads threads) whose shared memory is one Smem, with
// the slack that aligns its swizzle atoms to 1024 bytes.
template <class Smem, class Kernel, class... Args>
cudaError_t launch_ws_kernel(Kernel kernel, dim3 grid, cudaStream_t stream, const Args&... args) {
  constexpr int kSmem = sizeof(Smem) + 1024;
  static_assert(kSmem <= 227 * 1024, "more shared memory than a Hopper block may have");
  const cudaError_t e =
      cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, kSmem);
  if (e != cudaSuccess) return e;
  kernel<<<grid, kWsThreads, kSmem, stream>>>(args...);
  return cudaGetLastError();
}

template <int D, bool kWindow, bool kSched, bool kOverlap, bool kQRegs, int BK = kBlockK,
          int ST = kWsStages, int kFast = 0, bool kPairs = false>
cudaError_t launch_ws(const Params& p, dim3 grid, cudaStream_t stream) {
  return launch_ws_kernel<WsSmem<D, BK, ST>>(
      attention_ws_kernel<D, kWindow, kSched, kOverlap, kQRegs, BK, ST, kFast, kPairs>, grid,
      stream, p);
}

// cuTensorMapEncodeTiled through the runtime's driver entry point (no link to libcuda), or
// nullptr when the driver has none.
using EncodeTiled = CUresult (*)(CUtensorMap*, CUtensorMapDataType, cuuint32_t, void*,
                                 const cuuint64_t*, const cuuint64_t*, const cuuint32_t*,
                                 const cuuint32_t*, CUtensorMapInterleave, CUtensorMapSwizzle,
                                 CUtensorMapL2promotion, CUtensorMapFloatOOBfill);
EncodeTiled encode_tiled() {
  static const EncodeTiled fn = [] {
    void* f = nullptr;
    cudaDriverEntryPointQueryResult status{};
    if (cudaGetDriverEntryPointByVersion("cuTensorMapEncodeTiled", &f, 12000, cudaEnableDefault,
                                         &status) != cudaSuccess ||
        status != cudaDriverEntryPointSuccess)
      return EncodeTiled{nullptr};
    return reinterpret_cast<EncodeTiled>(f);
  }();
  return fn;
}

// [tokens, heads, D] bf16 as the 3-D tensor (D, heads, tokens), boxes of 64 x 1 x box_tokens,
// 128-byte swizzle, zeros outside. False when the driver refuses (e.g. a misaligned base).
bool encode_tokens_map(CUtensorMap& map, const void* base, int d, int heads, int tokens,
                       int box_tokens) {
  const EncodeTiled fn = encode_tiled();
  if (fn == nullptr || (reinterpret_cast<uintptr_t>(base) & 15u) != 0) return false;
  const auto elem = static_cast<cuuint64_t>(sizeof(__nv_bfloat16));
  const cuuint64_t dims[3] = {static_cast<cuuint64_t>(d), static_cast<cuuint64_t>(heads),
                              static_cast<cuuint64_t>(tokens)};
  const cuuint64_t strides[2] = {d * elem, static_cast<cuuint64_t>(heads) * d * elem};
  const cuuint32_t box[3] = {64, 1, static_cast<cuuint32_t>(box_tokens)};
  const cuuint32_t unit[3] = {1, 1, 1};
  return fn(&map, CU_TENSOR_MAP_DATA_TYPE_BFLOAT16, 3, const_cast<void*>(base), dims, strides, box,
            unit, CU_TENSOR_MAP_INTERLEAVE_NONE, CU_TENSOR_MAP_SWIZZLE_128B,
            CU_TENSOR_MAP_L2_PROMOTION_L2_256B, CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE) == CUDA_SUCCESS;
}

// The TMA dense kernel; the cp.async kernel of the same tiles where the maps cannot be made.
template <int D, bool kQRegs, bool kSched, int kFast = 1>
cudaError_t launch_tma_dense(const Params& p, dim3 grid, cudaStream_t stream) {
  constexpr int BK = kBlockKWide, ST = 3;
  DenseMaps maps{};
  if (!encode_tokens_map(maps.q, p.q, D, p.heads, p.n_q, kBlockQ) ||
      !encode_tokens_map(maps.k, p.k, D, p.heads, p.n_kv, BK) ||
      !encode_tokens_map(maps.v, p.v, D, p.heads, p.n_kv, BK))
    return launch_ws<D, false, false, true, false, BK, ST, kFast>(p, grid, stream);
  return launch_ws_kernel<WsSmem<D, BK, ST>>(
      attention_tma_dense_kernel<D, kQRegs, kSched, BK, ST, kFast>, grid, stream, p, maps);
}

// The window kernel fed by TMA (tma_dense.cuh): Q in 1-token boxes, K and V in boxes of 2^b
// tokens; the cp.async kernel of the same tiles where the maps cannot be made.
template <int D, bool kQRegs>
cudaError_t launch_tma_window(const Params& p, dim3 grid, cudaStream_t stream) {
  constexpr int BK = kBlockKWide, ST = 3;
  const auto tokens = static_cast<int>(p.g.tokens());
  WindowMaps maps{};
  bool ok = encode_tokens_map(maps.q, p.q, D, p.heads, tokens, 1);
  for (int b = 0; b < kBoxLevels && ok; ++b)
    ok = encode_tokens_map(maps.k[b], p.k, D, p.heads, tokens, 1 << b) &&
         encode_tokens_map(maps.v[b], p.v, D, p.heads, tokens, 1 << b);
  if (!ok) return launch_ws<D, true, false, true, false, BK, ST, true>(p, grid, stream);
  return launch_ws_kernel<WsSmem<D, BK, ST>>(attention_tma_window_kernel<D, kQRegs, BK, ST>, grid,
                                             stream, p, maps);
}

// [T, H, W, heads, D] bf16 as the 5-D tensor (D, heads, W, H, T), boxes of 64 x 1 x box_w x
// 128 / box_w x 1 (box tiles, window_plan.h), 128-byte swizzle, zeros outside.
bool encode_grid_map(CUtensorMap& map, const void* base, int d, int heads, const WindowGeometry& g,
                     int box_w) {
  const EncodeTiled fn = encode_tiled();
  if (fn == nullptr || (reinterpret_cast<uintptr_t>(base) & 15u) != 0) return false;
  const auto elem = static_cast<cuuint64_t>(sizeof(__nv_bfloat16));
  const cuuint64_t dims[5] = {static_cast<cuuint64_t>(d), static_cast<cuuint64_t>(heads),
                              static_cast<cuuint64_t>(g.W), static_cast<cuuint64_t>(g.H),
                              static_cast<cuuint64_t>(g.T)};
  const cuuint64_t token = static_cast<cuuint64_t>(heads) * d * elem;
  const cuuint64_t strides[4] = {d * elem, token, token * static_cast<cuuint64_t>(g.W),
                                 token * static_cast<cuuint64_t>(g.W) * g.H};
  const cuuint32_t box[5] = {64, 1, static_cast<cuuint32_t>(box_w),
                             static_cast<cuuint32_t>(kBlockKWide / box_w), 1};
  const cuuint32_t unit[5] = {1, 1, 1, 1, 1};
  return fn(&map, CU_TENSOR_MAP_DATA_TYPE_BFLOAT16, 5, const_cast<void*>(base), dims, strides, box,
            unit, CU_TENSOR_MAP_INTERLEAVE_NONE, CU_TENSOR_MAP_SWIZZLE_128B,
            CU_TENSOR_MAP_L2_PROMOTION_L2_256B, CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE) == CUDA_SUCCESS;
}

// The box-tile window kernel for the plan's box width; where the plan has runs (box_w = 0) or the
// maps cannot be made, wide_fast over the 128-key plan (re-planned: the grid follows the plan).
template <int D>
cudaError_t launch_box_window(const Params& p, dim3 grid, cudaStream_t stream) {
  constexpr int BK = kBlockKWide, ST = 3;
  BoxMaps maps{};
  const bool ok = p.plan.box_w > 0 &&
                  encode_tokens_map(maps.q, p.q, D, p.heads, static_cast<int>(p.g.tokens()), 1) &&
                  encode_grid_map(maps.k, p.k, D, p.heads, p.g, p.plan.box_w) &&
                  encode_grid_map(maps.v, p.v, D, p.heads, p.g, p.plan.box_w);
  if (!ok) {
    Params runs = p;
    runs.plan = choose_plan(p.g, BK);
    grid.x = static_cast<unsigned>(runs.plan.blocks());
    return launch_ws<D, true, false, true, false, BK, ST, true>(runs, grid, stream);
  }
  switch (p.plan.box_w) {
    case 4:
      return launch_ws_kernel<WsSmem<D, BK, ST>>(attention_box_window_kernel<D, 4, BK, ST>, grid,
                                                 stream, p, maps);
    case 8:
      return launch_ws_kernel<WsSmem<D, BK, ST>>(attention_box_window_kernel<D, 8, BK, ST>, grid,
                                                 stream, p, maps);
    case 16:
      return launch_ws_kernel<WsSmem<D, BK, ST>>(attention_box_window_kernel<D, 16, BK, ST>, grid,
                                                 stream, p, maps);
    default:
      return cudaErrorInvalidValue;
  }
}

enum class Variant {
  fast,
  fast_pp,
  fast_s6,
  wide_fast,
  wide_fast_pp,
  wide_fast_tma,
  wide_fast_tma_rq,
  wide_fast_tma_rq_pp,
  tmaw,
  tmaw_rq,
  sum,
  wide_lean,
  boxw,
  boxw_all,
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
  bool dense_tma = false;  // its dense kernel is fed by TMA (faster than cuDNN's SDPA)
  int box_tiles = 0;       // window plan: 0 runs, 1 box tiles where they pay, 2 box tiles always
} kVariants[] = {{"boxw", Variant::boxw, kBlockKWide, true, 1},
                 {"wide_fast_tma_rq", Variant::wide_fast_tma_rq, kBlockKWide, true},
                 {"boxw_all", Variant::boxw_all, kBlockKWide, true, 2},
                 {"sum", Variant::sum, kBlockKWide, true},
                 {"wide_lean", Variant::wide_lean, kBlockKWide, true},
                 {"tmaw", Variant::tmaw, kBlockKWide, true},
                 {"tmaw_rq", Variant::tmaw_rq, kBlockKWide, true},
                 {"wide_fast_tma_rq_pp", Variant::wide_fast_tma_rq_pp, kBlockKWide, true},
                 {"wide_fast_tma", Variant::wide_fast_tma, kBlockKWide, true},
                 {"wide_fast", Variant::wide_fast, kBlockKWide},
                 {"wide_fast_pp", Variant::wide_fast_pp, kBlockKWide},
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
    case Variant::wide_fast_tma:  // window: wide_fast; dense: the TMA producer (tma_dense.cuh)
      if constexpr (!kWindow) return launch_tma_dense<D, false, false>(p, grid, stream);
      return launch_ws<D, kWindow, false, true, false, kBlockKWide, 3, true>(p, grid, stream);
    case Variant::wide_fast_tma_rq:  // the same with Q in registers in the dense kernel
      if constexpr (!kWindow) return launch_tma_dense<D, true, false>(p, grid, stream);
      return launch_ws<D, kWindow, false, true, false, kBlockKWide, 3, true>(p, grid, stream);
    case Variant::wide_fast_tma_rq_pp:  // + ping-pong turns in the dense kernel
      if constexpr (!kWindow) return launch_tma_dense<D, true, true>(p, grid, stream);
      return launch_ws<D, kWindow, false, true, false, kBlockKWide, 3, true>(p, grid, stream);
    case Variant::sum:  // wide_fast_tma_rq with the row sums by the tensor cores (kFast == 2)
      if constexpr (!kWindow) return launch_tma_dense<D, true, false, 2>(p, grid, stream);
      return launch_ws<D, kWindow, false, true, false, kBlockKWide, 3, 2>(p, grid, stream);
    case Variant::wide_lean:  // window: the pairs producer (ws_kernel.cuh); dense: TMA, Q in regs
      if constexpr (!kWindow) return launch_tma_dense<D, true, false>(p, grid, stream);
      return launch_ws<D, kWindow, false, true, false, kBlockKWide, 3, true, kWindow>(p, grid,
                                                                                      stream);
    case Variant::boxw:  // window: box tiles (the plan says where); dense: TMA, Q in registers
    case Variant::boxw_all:
      if constexpr (kWindow) return launch_box_window<D>(p, grid, stream);
      return launch_tma_dense<D, true, false>(p, grid, stream);
    case Variant::tmaw:  // window and dense fed by TMA (dense with Q in registers)
      if constexpr (kWindow) return launch_tma_window<D, false>(p, grid, stream);
      return launch_tma_dense<D, true, false>(p, grid, stream);
    case Variant::tmaw_rq:  // the same with Q in registers in the window kernel too
      if constexpr (kWindow) return launch_tma_window<D, true>(p, grid, stream);
      return launch_tma_dense<D, true, false>(p, grid, stream);
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

bool attention_kernel_dense_tma() {
  const int i = variant_index();
  return i >= 0 && kVariants[i].dense_tma;
}

WindowPlan attention_kernel_window_plan(const WindowGeometry& g) {
  const int i = variant_index();
  if (i >= 0 && kVariants[i].box_tiles > 0)
    return choose_window_plan(g, true, kVariants[i].box_tiles == 2);
  return choose_plan(g, i < 0 ? kBlockK : kVariants[i].tile_keys);
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
