#include "parallel/ulysses.h"

#include "core/error.h"

namespace freeswim::parallel {

TokenSplit TokenSplit::make(int64_t tokens, int parts) {
  FS_CHECK(tokens > 0 && parts > 0, "token split: {} tokens over {} ranks", tokens, parts);
  TokenSplit s;
  s.tokens = tokens;
  s.parts = parts;
  s.slab = (tokens + parts - 1) / parts;
  return s;
}

int64_t TokenSplit::begin(int rank) const {
  return std::min(tokens, slab * rank);
}

int64_t TokenSplit::end(int rank) const {
  return std::min(tokens, slab * (rank + 1));
}

namespace {

// The whole sequence of a head group: [padded, h, d] -> its first `tokens` rows.
Tensor unpad(const Tensor& x, int64_t tokens) {
  return x.dim(0) == tokens ? x : x.slice0(0, tokens);
}

}  // namespace

Tensor ulysses_attention(Communicator& comm, const TokenSplit& split, const Tensor& q,
                         const Tensor& k, const Tensor& v, float scale,
                         const WindowGeometry* window, const ops::Rope3D* rope) {
  const int P = comm.size();
  FS_CHECK(split.parts == P, "{}: Ulysses attention: token split over {} ranks in a group of {}",
           comm.describe(), split.parts, P);
  for (const Tensor* t : {&q, &k, &v}) {
    FS_CHECK(t->defined() && t->ndim() == 3 && t->dim(0) == split.slab,
             "{}: Ulysses attention needs [{} tokens, heads, head_dim] slabs, got {}",
             comm.describe(), split.slab, t->defined() ? t->describe() : "nothing");
  }
  const int64_t heads = q.dim(1);
  FS_CHECK(heads % P == 0 && k.dim(1) == heads && v.dim(1) == heads,
           "{}: Ulysses attention splits heads over ranks: {} heads is not a multiple of the {} "
           "ranks",
           comm.describe(), heads, P);
  if (window) {
    FS_CHECK(window->tokens() == split.tokens,
             "{}: Ulysses attention: window grid of {} tokens for a sequence of {}",
             comm.describe(), window->tokens(), split.tokens);
  }
  // Token slab of all heads -> whole sequence of heads / P heads.
  Tensor qa = unpad(comm.all_to_all(q, 1, 0), split.tokens);
  Tensor ka = unpad(comm.all_to_all(k, 1, 0), split.tokens);
  const Tensor va = unpad(comm.all_to_all(v, 1, 0), split.tokens);
  if (rope) {
    ops::rope_3d(qa, *rope);
    ops::rope_3d(ka, *rope);
  }
  Tensor o = ops::attention(qa, ka, va, scale, window);
  if (split.padded_tokens() > split.tokens) {
    const Tensor pad = Tensor::zeros({split.padded_tokens() - split.tokens, o.dim(1), o.dim(2)},
                                     o.dtype(), o.device());
    o = ops::concat(o, pad, 0);
  }
  // Whole sequence of the head group -> token slab of all heads.
  return comm.all_to_all(o, 0, 1);
}

}  // namespace freeswim::parallel
