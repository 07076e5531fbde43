// Host entry points: argument checks, the window tiling plan, launch.
#include "ops/cuda/attention/attention.h"

#include <cmath>
#include <cstdlib>
#include <limits>
#include <string>

#include "core/error.h"
#include "ops/cuda/attention/cudnn_sdpa.h"
#include "ops/cuda/attention/params.h"

namespace freeswim::attention {
namespace {

using detail::Params;

void run(const Params& p, int head_dim, bool window, dim3 grid, cudaStream_t stream,
         const char* who) {
  FS_CHECK(detail::attention_kernel_variant() != nullptr,
           "{}: FREESWIM_ATTENTION_KERNEL={} is not one of {}", who,
           std::getenv("FREESWIM_ATTENTION_KERNEL"), detail::attention_kernel_variants());
  const cudaError_t e = detail::launch_attention(p, head_dim, window, grid, stream);
  FS_CHECK(e == cudaSuccess, "{}: kernel launch failed: {}", who, cudaGetErrorString(e));
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

// FREESWIM_DENSE_ATTENTION (auto, cudnn or own) overrides `automatic`, so that a benchmark can
// time whole forwards with either dense path.
DenseImpl dense_choice(DenseImpl impl) {
  static const DenseImpl forced = [] {
    const char* v = std::getenv("FREESWIM_DENSE_ATTENTION");
    const std::string s = v ? v : "";
    if (s.empty() || s == "auto") return DenseImpl::automatic;
    if (s == "cudnn") return DenseImpl::cudnn;
    FS_CHECK(s == "own", "FREESWIM_DENSE_ATTENTION={} is not one of auto, cudnn, own", s);
    return DenseImpl::own;
  }();
  return impl == DenseImpl::automatic ? forced : impl;
}

}  // namespace

const char* attention_kernel_name() {
  return detail::attention_kernel_variant();
}

int window_attention_tile_keys() {
  return detail::attention_kernel_tile_keys();
}

WindowPlan window_attention_plan(const WindowGeometry& g) {
  return detail::attention_kernel_window_plan(g);
}

void window_attention_forward(const void* q, const void* k, const void* v, void* out, int heads,
                              int head_dim, const WindowGeometry& g, float scale,
                              cudaStream_t stream) {
  constexpr const char* who = "window attention";
  Params p = common(q, k, v, out, heads, head_dim, scale, who);
  FS_CHECK(g.T > 0 && g.H > 0 && g.W > 0, "{}: empty token grid {}x{}x{}", who, g.T, g.H, g.W);
  FS_CHECK(g.dh >= 0 && g.dw >= 0, "{}: negative half window {}x{}", who, g.dh, g.dw);
  FS_CHECK(g.tokens() < std::numeric_limits<int>::max(), "{}: {} tokens exceed 2^31", who,
           g.tokens());
  // The warp-specialised kernels keep key positions in 16 bits (KeyPos16).
  FS_CHECK(g.H < 16384 && g.W < 16384, "{}: token grid {}x{} exceeds 16383 rows or columns", who,
           g.H, g.W);
  p.g = g;
  p.plan = detail::attention_kernel_window_plan(g);
  FS_CHECK(p.plan.blocks() < std::numeric_limits<int>::max(), "{}: too many query blocks", who);
  run(p, head_dim, true, dim3(static_cast<unsigned>(p.plan.blocks()), heads), stream, who);
}

void dense_attention_forward(const void* q, const void* k, const void* v, void* out, int64_t n_q,
                             int64_t n_kv, int heads, int head_dim, float scale,
                             cudaStream_t stream, DenseImpl impl) {
  constexpr const char* who = "dense attention";
  Params p = common(q, k, v, out, heads, head_dim, scale, who);
  FS_CHECK(n_q > 0 && n_kv > 0, "{}: n_q = {}, n_kv = {} must be positive", who, n_q, n_kv);
  impl = dense_choice(impl);
  if (impl == DenseImpl::automatic && detail::attention_kernel_dense_tma()) impl = DenseImpl::own;
  if (impl != DenseImpl::own) {
    std::string why;
    if (detail::cudnn_sdpa_forward(q, k, v, out, n_q, n_kv, heads, head_dim, scale, stream, &why))
      return;
    FS_CHECK(impl == DenseImpl::automatic,
             "{}: cuDNN SDPA cannot run n_q {}, n_kv {}, heads {}, head_dim {}: {}", who, n_q, n_kv,
             heads, head_dim, why);
  }
  FS_CHECK(
      n_q < std::numeric_limits<int>::max() && n_kv < std::numeric_limits<int>::max() - kBlockKWide,
      "{}: n_q = {} or n_kv = {} exceeds 2^31", who, n_q, n_kv);
  p.n_q = static_cast<int>(n_q);
  p.n_kv = static_cast<int>(n_kv);
  const auto blocks = static_cast<unsigned>((n_q + kBlockQ - 1) / kBlockQ);
  run(p, head_dim, false, dim3(blocks, heads), stream, who);
}

}  // namespace freeswim::attention
