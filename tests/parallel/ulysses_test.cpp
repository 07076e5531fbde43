// Ulysses attention over LocalGroup: P = 1, 2, 4 ranks, window and dense, against the engine's
// unsplit attention of the whole sequence; even and uneven (padded) token counts.
#include "parallel/ulysses.h"

#include <gtest/gtest.h>

#include <cstring>

#include "core/error.h"
#include "core/rng.h"
#include "parallel/local_group.h"

namespace freeswim::parallel {
namespace {

// Rank r's slab of a [tokens, heads, d] tensor, padded with `fill` to split.slab rows.
Tensor slab_of(const Tensor& x, const TokenSplit& s, int r, float fill) {
  Tensor out = Tensor::empty({s.slab, x.dim(1), x.dim(2)});
  const int64_t row = x.dim(1) * x.dim(2);
  float* o = out.data<float>();
  for (int64_t i = 0; i < out.numel(); ++i) o[i] = fill;
  const int64_t n = s.end(r) - s.begin(r);
  if (n > 0) {
    std::memcpy(o, x.data<float>() + s.begin(r) * row, static_cast<size_t>(n * row) * 4);
  }
  return out;
}

void check(const WindowGeometry& grid, int heads, int P, bool windowed) {
  const int d = 8;
  const int64_t N = grid.tokens();
  const Tensor q = rng::normal_tensor({N, heads, d}, 11);
  const Tensor k = rng::normal_tensor({N, heads, d}, 12);
  const Tensor v = rng::normal_tensor({N, heads, d}, 13);
  const float scale = 0.3f;
  const WindowGeometry* w = windowed ? &grid : nullptr;
  const Tensor whole = ops::attention(q, k, v, scale, w);
  const TokenSplit s = TokenSplit::make(N, P);
  LocalGroup g(P);
  std::vector<Tensor> out(static_cast<size_t>(P));
  g.run([&](Communicator& c) {
    const int r = c.rank();
    // Padding rows hold large values: they must not reach any real token.
    out[static_cast<size_t>(r)] = ulysses_attention(
        c, s, slab_of(q, s, r, 50.f), slab_of(k, s, r, 50.f), slab_of(v, s, r, 50.f), scale, w);
  });
  const int64_t row = heads * d;
  for (int r = 0; r < P; ++r) {
    const Tensor& o = out[static_cast<size_t>(r)];
    ASSERT_EQ(o.shape(), (Shape{s.slab, heads, d}));
    const int64_t n = s.end(r) - s.begin(r);
    const float* a = o.data<float>();
    const float* b = whole.data<float>() + s.begin(r) * row;
    for (int64_t i = 0; i < n * row; ++i) {
      ASSERT_EQ(a[i], b[i]) << "P " << P << " rank " << r << " element " << i
                            << (windowed ? " window" : " dense");
    }
    for (int64_t i = n * row; i < s.slab * row; ++i) ASSERT_EQ(a[i], 0.f);
  }
}

TEST(Ulysses, EqualsUnsplitAttentionBitwise) {
  const WindowGeometry even{2, 5, 6, 1, 2};  // 60 tokens: 1, 2 and 4 ranks split evenly
  for (int P : {1, 2, 4}) {
    for (bool windowed : {true, false}) check(even, 4, P, windowed);
  }
}

TEST(Ulysses, UnevenTokensArePadded) {
  const WindowGeometry uneven{2, 5, 7, 2, 1};  // 70 tokens: slabs of 18 on 4 ranks, 2 padding
  for (int P : {2, 4}) {
    for (bool windowed : {true, false}) check(uneven, 8, P, windowed);
  }
  const TokenSplit s = TokenSplit::make(5, 4);  // slabs of 2: rank 3 holds only padding
  EXPECT_EQ(s.slab, 2);
  EXPECT_EQ(s.begin(3), 5);
  EXPECT_EQ(s.end(3), 5);
  check(WindowGeometry{1, 1, 5, 0, 1}, 4, 4, true);
}

TEST(Ulysses, HeadsNotAMultipleOfRanksIsAClearError) {
  const TokenSplit s = TokenSplit::make(8, 4);
  LocalGroup g(4);
  try {
    g.run([&](Communicator& c) {
      const Tensor x = rng::normal_tensor({2, 6, 8}, 1);
      ulysses_attention(c, s, x, x, x, 1.f, nullptr);
    });
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("6 heads is not a multiple of the 4 ranks"),
              std::string::npos)
        << e.what();
  }
}

}  // namespace
}  // namespace freeswim::parallel
