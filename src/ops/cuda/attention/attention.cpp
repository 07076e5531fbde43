// The one launcher: argument checks, which path runs (Hopper or portable), the window plan, the
// tensor maps, and which kernel runs (kernels.cu: Hopper; portable_kernels.cu: every target).
#include "ops/cuda/attention/attention.h"

#include <cmath>
#include <cstdint>
#include <limits>

#include "core/error.h"
#include "ops/cuda/attention/params.h"
#include "ops/cuda/attention/row_steps.h"

namespace freeswim::attention {
namespace {

using detail::Params;

#ifdef FREESWIM_HAVE_HOPPER_KERNELS
using detail::TensorMaps;

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

// A bf16 tensor map with the given dims (innermost first), byte strides of dims 1.., and box, in
// the 128-byte swizzle the kernels read, zeros outside. False when the driver refuses (e.g. a
// base not 16-byte aligned).
template <int N>
bool encode(CUtensorMap& map, const void* base, const cuuint64_t (&dims)[N],
            const cuuint64_t (&strides)[N - 1], const cuuint32_t (&box)[N]) {
  const EncodeTiled fn = encode_tiled();
  if (fn == nullptr || (reinterpret_cast<uintptr_t>(base) & 15u) != 0) return false;
  cuuint32_t unit[N];
  for (cuuint32_t& u : unit) u = 1;
  return fn(&map, CU_TENSOR_MAP_DATA_TYPE_BFLOAT16, N, const_cast<void*>(base), dims, strides, box,
            unit, CU_TENSOR_MAP_INTERLEAVE_NONE, CU_TENSOR_MAP_SWIZZLE_128B,
            CU_TENSOR_MAP_L2_PROMOTION_L2_256B, CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE) == CUDA_SUCCESS;
}

constexpr cuuint64_t kElem = sizeof(__nv_bfloat16);

// [tokens, heads, d] as the 3-D tensor (d, heads, tokens), boxes of 64 x 1 x box_tokens.
bool encode_tokens(CUtensorMap& map, const void* base, int d, int heads, int64_t tokens,
                   int box_tokens) {
  const auto u = [](int64_t x) { return static_cast<cuuint64_t>(x); };
  return encode<3>(map, base, {u(d), u(heads), u(tokens)}, {d * kElem, u(heads) * d * kElem},
                   {64, 1, static_cast<cuuint32_t>(box_tokens)});
}

// [T, H, W, heads, d] as the 5-D tensor (d, heads, W, H, T), boxes of 64 x 1 x box_w x
// kTileKeys / box_w x 1 (box tiles, window_plan.h).
bool encode_grid(CUtensorMap& map, const void* base, int d, int heads, const WindowGeometry& g,
                 int box_w) {
  const auto u = [](int64_t x) { return static_cast<cuuint64_t>(x); };
  const cuuint64_t token = u(heads) * d * kElem;
  return encode<5>(
      map, base, {u(d), u(heads), u(g.W), u(g.H), u(g.T)},
      {d * kElem, token, token * u(g.W), token * u(g.W) * u(g.H)},
      {64, 1, static_cast<cuuint32_t>(box_w), static_cast<cuuint32_t>(kTileKeys / box_w), 1});
}

#endif  // FREESWIM_HAVE_HOPPER_KERNELS

void check_launch(cudaError_t e, const char* who) {
  FS_CHECK(e == cudaSuccess, "{}: kernel launch failed: {}", who, cudaGetErrorString(e));
}

int portable_blocks_per_sm(const AttentionOptions& options, const char* who) {
  FS_CHECK(options.portable_blocks_per_sm == 0 || options.portable_blocks_per_sm == 1,
           "{}: portable_blocks_per_sm = {} (0 or 1)", who, options.portable_blocks_per_sm);
  return options.portable_blocks_per_sm;
}

int portable_narrow(const AttentionOptions& options, const char* who) {
  switch (options.portable_block) {
    case PortableBlock::automatic:
      return -1;
    case PortableBlock::wide:
      return 0;
    case PortableBlock::narrow:
      return 1;
  }
  fail("{}: portable_block = {} (automatic, wide or narrow)", who,
       static_cast<int>(options.portable_block));
}

Params common(const void* q, const void* k, const void* v, void* out, int heads, int head_dim,
              float scale, const char* who) {
  FS_CHECK(q && k && v && out, "{}: null tensor pointer", who);
  FS_CHECK(heads > 0 && heads <= 65535, "{}: heads = {} (1..65535)", who, heads);
  FS_CHECK(head_dim == 64 || head_dim == 128, "{}: head_dim {} is not supported (64 or 128)", who,
           head_dim);
  FS_CHECK(std::isfinite(scale) && scale > 0.f, "{}: scale {} must be positive and finite", who,
           scale);
  Params p{};
  p.q = static_cast<const __nv_bfloat16*>(q);
  p.k = static_cast<const __nv_bfloat16*>(k);
  p.v = static_cast<const __nv_bfloat16*>(v);
  p.out = static_cast<__nv_bfloat16*>(out);
  p.heads = heads;
  p.scale_log2 = scale * 1.4426950408889634f;
  return p;
}

dim3 grid_of(const WindowPlan& plan, int heads) {
  return dim3(static_cast<unsigned>(plan.blocks()), static_cast<unsigned>(heads));
}

// Compute capability of the current device (0.0 when it cannot be read).
void current_capability(int& major, int& minor) {
  int dev = 0;
  major = minor = 0;
  if (cudaGetDevice(&dev) != cudaSuccess ||
      cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev) != cudaSuccess ||
      cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, dev) != cudaSuccess) {
    cudaGetLastError();
    major = minor = 0;
  }
}

}  // namespace

bool portable_narrow_blocks(int head_dim) {
  FS_CHECK(head_dim == 64 || head_dim == 128, "portable_narrow_blocks: head_dim {} (64 or 128)",
           head_dim);
  bool narrow = false;
  const cudaError_t e = detail::portable_narrow_blocks(head_dim, narrow);
  if (e != cudaSuccess) cudaGetLastError();
  FS_CHECK(e == cudaSuccess, "portable_narrow_blocks: {}", cudaGetErrorString(e));
  return narrow;
}

bool hopper_kernels_built() {
#ifdef FREESWIM_HAVE_HOPPER_KERNELS
  return true;
#else
  return false;
#endif
}

AttentionPath resolve_attention_path(AttentionPath requested) {
  if (requested == AttentionPath::portable) return requested;
  int major = 0, minor = 0;
  current_capability(major, minor);
  // sm_90a machine code runs on compute capability 9.0 alone.
  const bool hopper_gpu = major == 9 && minor == 0;
  if (requested == AttentionPath::automatic)
    return hopper_kernels_built() && hopper_gpu ? AttentionPath::hopper : AttentionPath::portable;
  FS_CHECK(hopper_kernels_built(),
           "attention: the Hopper kernels were asked for, but this build has none (configure with "
           "FREESWIM_HOPPER_KERNELS=ON or 90a in FREESWIM_CUDA_ARCHS)");
  FS_CHECK(hopper_gpu,
           "attention: the Hopper kernels were asked for, but they run on compute capability 9.0 "
           "only and this GPU has {}.{}",
           major, minor);
  return AttentionPath::hopper;
}

namespace {

// The plan of the resolved path: the portable kernels tile the window by row runs only, over the
// zones of window_plan.h.
WindowPlan plan_for(const WindowGeometry& g, const AttentionOptions& options, AttentionPath path) {
  FS_CHECK(options.box_width == 0 || options.box_width == 4 || options.box_width == 8 ||
               options.box_width == 16,
           "window attention: box width {} (4, 8, 16 or 0)", options.box_width);
  if (path == AttentionPath::portable) {
    FS_CHECK(options.window_tiling != WindowTiling::box_tiles,
             "window attention: box tiles were asked for, but the portable kernels run row runs "
             "only (box tiles are the Hopper kernels')");
    // Costed in the wide blocks' steps of 64 keys (row_steps.h); narrow blocks walk the same plan
    // in steps of 32, for which the choice is the same at the 1.3B and 14B shapes (720p-4K).
    return choose_zoned_plan(g, kStepKeys);
  }
  return choose_window_plan(g, options.window_tiling, options.box_width);
}

}  // namespace

WindowPlan window_attention_plan(const WindowGeometry& g, const AttentionOptions& options) {
  return plan_for(g, options, resolve_attention_path(options.path));
}

void window_attention_forward(const void* q, const void* k, const void* v, void* out, int heads,
                              int head_dim, const WindowGeometry& g, float scale,
                              cudaStream_t stream, const AttentionOptions& options) {
  constexpr const char* who = "window attention";
  Params p = common(q, k, v, out, heads, head_dim, scale, who);
  FS_CHECK(g.T > 0 && g.H > 0 && g.W > 0, "{}: empty token grid {}x{}x{}", who, g.T, g.H, g.W);
  FS_CHECK(g.dh >= 0 && g.dw >= 0, "{}: negative half window {}x{}", who, g.dh, g.dw);
  FS_CHECK(g.tokens() < std::numeric_limits<int>::max(), "{}: {} tokens exceed 2^31", who,
           g.tokens());
  // Key positions are kept in 16 bits (tile_ring.cuh).
  FS_CHECK(g.H < 16384 && g.W < 16384, "{}: token grid {}x{} exceeds 16383 rows or columns", who,
           g.H, g.W);
  p.g = g;
  const AttentionPath path = resolve_attention_path(options.path);
  p.plan = plan_for(g, options, path);
  FS_CHECK(p.plan.blocks() < std::numeric_limits<int>::max(), "{}: too many query blocks", who);
  if (path == AttentionPath::portable) {
    check_launch(detail::launch_portable(p, true, head_dim, grid_of(p.plan, heads), stream,
                                         portable_blocks_per_sm(options, who),
                                         portable_narrow(options, who)),
                 who);
    return;
  }
#ifdef FREESWIM_HAVE_HOPPER_KERNELS
  if (p.plan.box_w > 0) {
    TensorMaps maps{};
    if (encode_tokens(maps.q, q, head_dim, heads, g.tokens(), 1) &&
        encode_grid(maps.k, k, head_dim, heads, g, p.plan.box_w) &&
        encode_grid(maps.v, v, head_dim, heads, g, p.plan.box_w)) {
      check_launch(detail::launch_box_tiles(p, maps, head_dim, grid_of(p.plan, heads), stream),
                   who);
      return;
    }
    FS_CHECK(options.window_tiling == WindowTiling::automatic,
             "{}: box tiles were asked for, but the tensor maps cannot be made", who);
    p.plan = choose_row_plan(g);  // no tensor maps: the row-run kernel with its own plan
  }
  check_launch(detail::launch_row_runs(p, true, head_dim, grid_of(p.plan, heads), stream), who);
#endif
}

void dense_attention_forward(const void* q, const void* k, const void* v, void* out, int64_t n_q,
                             int64_t n_kv, int heads, int head_dim, float scale,
                             cudaStream_t stream, const AttentionOptions& options) {
  constexpr const char* who = "dense attention";
  Params p = common(q, k, v, out, heads, head_dim, scale, who);
  FS_CHECK(n_q > 0 && n_kv > 0, "{}: n_q = {}, n_kv = {} must be positive", who, n_q, n_kv);
  FS_CHECK(
      n_q < std::numeric_limits<int>::max() && n_kv < std::numeric_limits<int>::max() - kTileKeys,
      "{}: n_q = {} or n_kv = {} exceeds 2^31", who, n_q, n_kv);
  p.n_q = static_cast<int>(n_q);
  p.n_kv = static_cast<int>(n_kv);
  const dim3 grid(static_cast<unsigned>((n_q + kBlockQ - 1) / kBlockQ),
                  static_cast<unsigned>(heads));
  if (resolve_attention_path(options.path) == AttentionPath::portable) {
    FS_CHECK(options.dense_feed != DenseFeed::tma,
             "{}: TMA feed was asked for, but the portable kernels load by cp.async", who);
    check_launch(detail::launch_portable(p, false, head_dim, grid, stream,
                                         portable_blocks_per_sm(options, who),
                                         portable_narrow(options, who)),
                 who);
    return;
  }
#ifdef FREESWIM_HAVE_HOPPER_KERNELS
  if (options.dense_feed != DenseFeed::cp_async) {
    TensorMaps maps{};
    if (encode_tokens(maps.q, q, head_dim, heads, n_q, kBlockQ) &&
        encode_tokens(maps.k, k, head_dim, heads, n_kv, kTileKeys) &&
        encode_tokens(maps.v, v, head_dim, heads, n_kv, kTileKeys)) {
      check_launch(detail::launch_dense_tma(p, maps, head_dim, grid, stream), who);
      return;
    }
    FS_CHECK(options.dense_feed == DenseFeed::automatic,
             "{}: TMA feed was asked for, but the tensor maps cannot be made", who);
  }
  check_launch(detail::launch_row_runs(p, false, head_dim, grid, stream), who);
#endif
}

}  // namespace freeswim::attention
