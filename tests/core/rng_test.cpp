// Philox-4x32-10 against the published known answers, and the properties the pipeline relies
// on: values depend on (seed, index) only, never on the thread count or the request's offset.
#include "core/rng.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>

#include "core/error.h"

namespace freeswim::rng {
namespace {

struct Kat {
  PhiloxBlock counter;
  uint32_t k0, k1;
  PhiloxBlock want;
};

// Random123's kat_vectors, the three "philox4x32 10" lines: counter, key, expected output.
TEST(Philox, KnownAnswers) {
  const Kat cases[] = {
      {{{0, 0, 0, 0}}, 0, 0, {{0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8}}},
      {{{0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff}},
       0xffffffff,
       0xffffffff,
       {{0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd}}},
      {{{0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344}},
       0xa4093822,
       0x299f31d0,
       {{0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1}}},
  };
  for (const Kat& c : cases) {
    const PhiloxBlock got = philox4x32_10(c.counter, c.k0, c.k1);
    for (int i = 0; i < 4; ++i) EXPECT_EQ(got.v[i], c.want.v[i]) << "word " << i;
  }
}

TEST(Philox, ElementDependsOnSeedAndIndexOnly) {
  // Block k of the normal stream is normal4(seed, k), whatever the request that produced it.
  const uint64_t seed = 0x123456789abcdefull;
  const std::vector<float> all = normal(seed, 0, 103, 1);
  for (uint64_t block = 0; block < 25; ++block) {
    float four[4];
    normal4(seed, block, four);
    for (int j = 0; j < 4; ++j)
      EXPECT_EQ(all[block * 4 + j], four[j]) << "element " << block * 4 + j;
  }
  // Unaligned windows of the stream equal the same elements of the whole.
  for (uint64_t offset : {1u, 2u, 3u, 5u, 17u}) {
    const std::vector<float> part = normal(seed, offset, 60, 1);
    for (size_t i = 0; i < part.size(); ++i)
      EXPECT_EQ(part[i], all[offset + i]) << offset << "+" << i;
  }
}

TEST(Philox, SameValuesOnAnyThreadCount) {
  const int64_t n = 1'000'003;  // not a multiple of 4 nor of any thread count used
  const std::vector<float> one = normal(7, 11, n, 1);
  for (int threads : {2, 3, 8, 0}) {
    const std::vector<float> many = normal(7, 11, n, threads);
    ASSERT_EQ(many.size(), one.size());
    EXPECT_EQ(std::memcmp(many.data(), one.data(), one.size() * sizeof(float)), 0)
        << threads << " threads";
  }
}

TEST(Philox, SeedsGiveDifferentStreams) {
  const std::vector<float> a = normal(1, 0, 64);
  const std::vector<float> b = normal(2, 0, 64);
  const std::vector<float> c = normal(1ull << 32, 0, 64);  // high word of the seed matters too
  int same_ab = 0, same_ac = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    same_ab += a[i] == b[i];
    same_ac += a[i] == c[i];
  }
  EXPECT_EQ(same_ab, 0);
  EXPECT_EQ(same_ac, 0);
}

TEST(Philox, StandardNormalMoments) {
  const int64_t n = 1'000'000;
  const std::vector<float> x = normal(42, 0, n);
  double sum = 0, sum2 = 0, sum4 = 0;
  int64_t beyond_1 = 0;
  for (float v : x) {
    ASSERT_TRUE(std::isfinite(v));
    sum += v;
    sum2 += static_cast<double>(v) * v;
    sum4 += static_cast<double>(v) * v * v * v;
    beyond_1 += std::fabs(v) > 1.0f;
  }
  const double mean = sum / n;
  const double var = sum2 / n - mean * mean;
  // Standard errors at n = 1e6: mean 0.001, variance 0.0014, 4th moment 0.0098; 5 sigma bounds.
  EXPECT_NEAR(mean, 0.0, 0.005);
  EXPECT_NEAR(var, 1.0, 0.007);
  EXPECT_NEAR(sum4 / n, 3.0, 0.05);
  // P(|z| > 1) = 0.31731; binomial standard error 0.00047.
  EXPECT_NEAR(static_cast<double>(beyond_1) / n, 0.31731, 0.0025);
}

TEST(Philox, TensorFill) {
  const Tensor t = normal_tensor({2, 3, 5}, 9, 4);
  EXPECT_EQ(t.shape(), (Shape{2, 3, 5}));
  const std::vector<float> want = normal(9, 4, 30);
  const std::vector<float> got = t.to_float_vector();
  EXPECT_EQ(got, want);
  EXPECT_THROW(normal(9, 0, -1), Error);
}

}  // namespace
}  // namespace freeswim::rng
