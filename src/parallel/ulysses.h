// Ulysses sequence-parallel attention (docs/multi_gpu.md). Each of P ranks holds a slab of the
// sequence's tokens with all heads; one all-to-all turns that into the whole sequence with
// heads / P heads, the engine's attention op (window or dense, unchanged) runs on it, and a
// second all-to-all turns the output back into the rank's token slab. Attention is independent
// per head, so the result equals the unsplit attention's rows of the slab.
#pragma once

#include <cstdint>

#include "freeswim/window_geometry.h"
#include "ops/ops.h"
#include "parallel/communicator.h"

namespace freeswim::parallel {

// How a sequence of `tokens` tokens is cut into `parts` token slabs. Every slab has the same
// `slab` = ceil(tokens / parts) rows (all-to-all needs equal chunks); rank r holds tokens
// [begin(r), end(r)) in its first rows and padding after them. Only the last ranks have padding,
// so after the exchange to whole sequences the padding rows are the last rows of the sequence,
// where they are cut off before the attention op and appended again after it: uneven token
// counts are padded, not refused, and the padding never reaches a real token.
struct TokenSplit {
  int64_t tokens = 0;
  int parts = 1;
  int64_t slab = 0;

  static TokenSplit make(int64_t tokens, int parts);
  int64_t begin(int rank) const;
  int64_t end(int rank) const;
  int64_t padded_tokens() const { return slab * parts; }
};

// q, k, v: this rank's [split.slab, heads, head_dim] (rows past the rank's real tokens are
// padding of any value); heads must be a multiple of comm.size() (Error naming both). `window`
// (or null for dense attention) is the geometry of the whole sequence, as for ops::attention.
// When `rope` is given, q and k are rotated by it after the exchange, on the whole sequence of
// fewer heads, so every token gets its global position. Returns this rank's [split.slab, heads,
// head_dim] output, padding rows zero.
Tensor ulysses_attention(Communicator& comm, const TokenSplit& split, const Tensor& q,
                         const Tensor& k, const Tensor& v, float scale,
                         const WindowGeometry* window, const ops::Rope3D* rope = nullptr);

}  // namespace freeswim::parallel
