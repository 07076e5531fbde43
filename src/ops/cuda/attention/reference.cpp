// CPU fp32 attention, written for clarity: one query at a time, keys chosen by the predicate
// window_visible() straight from the geometry header (not the kernel's tiling), softmax in double
// for the sum so that the oracle is well below the bf16 kernel's error.
#include <cmath>
#include <vector>

#include "core/error.h"
#include "ops/cuda/attention/attention.h"

namespace freeswim::attention {
namespace {

template <typename Visible>
void attend(const float* q, const float* k, const float* v, float* out, int64_t n_q, int64_t n_kv,
            int heads, int d, float scale, Visible visible) {
  std::vector<float> score(static_cast<size_t>(n_kv));
  std::vector<double> acc(static_cast<size_t>(d));
  for (int h = 0; h < heads; ++h) {
    for (int64_t i = 0; i < n_q; ++i) {
      const float* qi = q + (i * heads + h) * d;
      float mx = -INFINITY;
      for (int64_t j = 0; j < n_kv; ++j) {
        if (!visible(i, j)) continue;
        const float* kj = k + (j * heads + h) * d;
        float dot = 0.f;
        for (int c = 0; c < d; ++c) dot += qi[c] * kj[c];
        score[static_cast<size_t>(j)] = dot * scale;
        mx = std::max(mx, dot * scale);
      }
      double sum = 0;
      std::fill(acc.begin(), acc.end(), 0.0);
      for (int64_t j = 0; j < n_kv; ++j) {
        if (!visible(i, j)) continue;
        const double p = std::exp(static_cast<double>(score[static_cast<size_t>(j)] - mx));
        sum += p;
        const float* vj = v + (j * heads + h) * d;
        for (int c = 0; c < d; ++c) acc[static_cast<size_t>(c)] += p * vj[c];
      }
      float* oi = out + (i * heads + h) * d;
      for (int c = 0; c < d; ++c) oi[c] = static_cast<float>(acc[static_cast<size_t>(c)] / sum);
    }
  }
}

}  // namespace

void window_attention_reference(const float* q, const float* k, const float* v, float* out,
                                int heads, int head_dim, const WindowGeometry& g, float scale) {
  FS_CHECK(g.T > 0 && g.H > 0 && g.W > 0 && g.dh >= 0 && g.dw >= 0,
           "window attention reference: bad geometry {}x{}x{} half window {}x{}", g.T, g.H, g.W,
           g.dh, g.dw);
  attend(q, k, v, out, g.tokens(), g.tokens(), heads, head_dim, scale,
         [&](int64_t i, int64_t j) { return window_visible(g, i, j); });
}

void dense_attention_reference(const float* q, const float* k, const float* v, float* out,
                               int64_t n_q, int64_t n_kv, int heads, int head_dim, float scale) {
  FS_CHECK(n_q > 0 && n_kv > 0, "dense attention reference: bad sizes n_q={} n_kv={}", n_q, n_kv);
  attend(q, k, v, out, n_q, n_kv, heads, head_dim, scale, [](int64_t, int64_t) { return true; });
}

}  // namespace freeswim::attention
