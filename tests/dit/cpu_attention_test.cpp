// CPU attention kernels against a brute-force masked softmax in double precision.
#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "core/error.h"
#include "ops/ops.h"

namespace freeswim {
namespace {

Tensor random_tensor(const Shape& s, std::mt19937& gen) {
  std::normal_distribution<float> dist;
  Tensor t = Tensor::empty(s);
  for (int64_t i = 0; i < t.numel(); ++i) t.data<float>()[i] = dist(gen);
  return t;
}

Tensor brute_force(const Tensor& q, const Tensor& k, const Tensor& v, float scale,
                   const WindowGeometry* g) {
  const int64_t nq = q.dim(0), nk = k.dim(0), H = q.dim(1), D = q.dim(2);
  Tensor out = Tensor::zeros(q.shape());
  for (int64_t h = 0; h < H; ++h)
    for (int64_t i = 0; i < nq; ++i) {
      std::vector<double> s(static_cast<size_t>(nk));
      double m = -INFINITY;
      for (int64_t j = 0; j < nk; ++j) {
        if (g && !window_visible(*g, i, j)) {
          s[static_cast<size_t>(j)] = -INFINITY;
          continue;
        }
        double acc = 0;
        for (int64_t d = 0; d < D; ++d)
          acc += static_cast<double>(q.data<float>()[(i * H + h) * D + d]) *
                 k.data<float>()[(j * H + h) * D + d];
        s[static_cast<size_t>(j)] = acc * scale;
        m = std::max(m, s[static_cast<size_t>(j)]);
      }
      double sum = 0;
      for (auto& x : s) sum += (x = std::exp(x - m));
      for (int64_t d = 0; d < D; ++d) {
        double acc = 0;
        for (int64_t j = 0; j < nk; ++j)
          acc += s[static_cast<size_t>(j)] * v.data<float>()[(j * H + h) * D + d];
        out.data<float>()[(i * H + h) * D + d] = static_cast<float>(acc / sum);
      }
    }
  return out;
}

TEST(CpuAttention, FullMatchesBruteForceWithDifferentKeyCount) {
  std::mt19937 gen(1);
  Tensor q = random_tensor({70, 3, 16}, gen), k = random_tensor({13, 3, 16}, gen),
         v = random_tensor({13, 3, 16}, gen);
  EXPECT_LT(relative_l2(ops::attention(q, k, v, 0.3f), brute_force(q, k, v, 0.3f, nullptr)), 1e-6);
}

TEST(CpuAttention, WindowMatchesBruteForceOnAwkwardGrids) {
  std::mt19937 gen(2);
  const WindowGeometry grids[] = {
      {3, 6, 8, 2, 3}, {1, 5, 7, 1, 2}, {2, 3, 10, 4, 1}, {2, 4, 4, 5, 5}, {1, 1, 1, 0, 0}};
  for (const WindowGeometry& g : grids) {
    const int64_t n = g.tokens();
    Tensor q = random_tensor({n, 2, 8}, gen), k = random_tensor({n, 2, 8}, gen),
           v = random_tensor({n, 2, 8}, gen);
    EXPECT_LT(relative_l2(ops::attention(q, k, v, 0.4f, &g), brute_force(q, k, v, 0.4f, &g)), 1e-6)
        << g.T << "x" << g.H << "x" << g.W << " half " << g.dh << "x" << g.dw;
  }
}

TEST(CpuAttention, RejectsMismatchedShapes) {
  std::mt19937 gen(3);
  Tensor q = random_tensor({12, 2, 8}, gen), k = random_tensor({12, 2, 4}, gen);
  EXPECT_THROW(ops::attention(q, k, k, 1.f), Error);
  const WindowGeometry g{1, 3, 5, 1, 1};  // 15 tokens, not 12
  Tensor k2 = random_tensor({12, 2, 8}, gen);
  EXPECT_THROW(ops::attention(q, k2, k2, 1.f, &g), Error);
}

}  // namespace
}  // namespace freeswim
