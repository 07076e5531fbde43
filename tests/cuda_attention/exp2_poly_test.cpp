// The polynomial 2^x of the attention kernels' softmax (ops/cuda/attention/exp2_poly.h), on the
// CPU: relative error over the whole range the softmax feeds it (scores minus a running maximum
// that may lag by up to 8, down to the flush to zero), and the edge values.
#include "ops/cuda/attention/exp2_poly.h"

#include <gtest/gtest.h>

#include <cmath>
#include <limits>

namespace freeswim::attention {
namespace {

TEST(Exp2Poly, RelativeErrorBelowOneTenthOfABf16Rounding) {
  double worst = 0, at = 0;
  for (int i = 0; i <= 2000000; ++i) {
    const float x = -125.f + 133.f * static_cast<float>(i) / 2000000.f;
    const double want = std::exp2(static_cast<double>(x));
    const double err = std::abs(static_cast<double>(exp2_poly(x)) - want) / want;
    if (err > worst) {
      worst = err;
      at = x;
    }
  }
  EXPECT_LT(worst, 1e-4) << "at x = " << at;  // bf16 rounds P by up to 2^-9 = 2e-3
}

TEST(Exp2Poly, EdgesFlushAndIntegersAreClose) {
  EXPECT_EQ(exp2_poly(-std::numeric_limits<float>::infinity()), 0.f);
  EXPECT_EQ(exp2_poly(-126.f), 0.f);
  EXPECT_EQ(exp2_poly(-1000.f), 0.f);
  for (int j = -124; j <= 8; ++j)
    EXPECT_NEAR(exp2_poly(static_cast<float>(j)) / std::exp2(j), 1.0, 1e-4) << j;
  EXPECT_GT(exp2_poly(-124.9f), 0.f);
}

}  // namespace
}  // namespace freeswim::attention
