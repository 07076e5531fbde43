// FreeSwim's attention policy, kept apart from the kernels: which keys a query sees in each
// branch, which branch's cross-attention the other uses, and what is cached. The DiT asks this
// module what to do; the kernels only receive tensors, a scale and a window geometry.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "core/tensor.h"
#include "freeswim/attention_cache.h"  // CrossAttentionCache
#include "freeswim/window_geometry.h"

namespace freeswim {

// The forward kinds a pipeline step calls.
enum class StepKind {
  Stock,   // stock Wan: full self-attention, scale 1/sqrt(head_dim), own cross-attention
  Dual,    // window branch + full branch; the full branch's cross-attention overrides
  Guide,   // Dual, and every block's full-branch cross-attention output is cached
  Reuse,   // window branch alone; each block's cross-attention output comes from the cache
  Uncond,  // window branch alone with its own cross-attention (the unconditional pass)
};

std::string step_kind_name(StepKind k);

// Settings of the high-resolution stage's attention.
struct FreeSwimParams {
  int dh = 0, dw = 0;     // half window (rows, columns) in tokens; from the base grid
  double attn_scale = 0;  // scale of both self-attention branches
};

// Half window of a base (native) token grid: floor(Hb/2), floor(Wb/2).
FreeSwimParams freeswim_params_for_base_grid(int base_h, int base_w, int head_dim);

// sqrt(log(2N) / log(N) / head_dim): keeps the attention entropy of N-token frames when a
// query sees 2N keys. N = tokens per frame at the base size. Throws for N < 2.
double freeswim_attention_scale(int64_t n_base_tokens, int head_dim);

}  // namespace freeswim
