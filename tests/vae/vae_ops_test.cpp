// The VAE's CPU ops against direct loops written from their definitions.
#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "core/error.h"
#include "ops/ops.h"

namespace freeswim {
namespace {

Tensor random_tensor(const Shape& s, uint32_t seed) {
  std::mt19937 gen(seed);
  std::uniform_real_distribution<float> u(-1.f, 1.f);
  std::vector<float> v(static_cast<size_t>(shape_numel(s)));
  for (float& x : v) x = u(gen);
  return Tensor::from_vector(s, v);
}

// Direct 3D convolution with zero padding.
Tensor naive_conv3d(const Tensor& x, const Tensor& w, const Tensor& b, const ops::Conv3dParams& p) {
  const int64_t Ci = x.dim(0), F = x.dim(1), H = x.dim(2), W = x.dim(3);
  const int64_t Co = w.dim(0), kt = w.dim(2), kh = w.dim(3), kw = w.dim(4);
  const int64_t Fo = (F + p.pad_front + p.pad_back - kt) / p.stride_t + 1;
  const int64_t Ho = (H + p.pad_top + p.pad_bottom - kh) / p.stride_h + 1;
  const int64_t Wo = (W + p.pad_left + p.pad_right - kw) / p.stride_w + 1;
  Tensor y = Tensor::zeros({Co, Fo, Ho, Wo});
  const float *xd = x.data<float>(), *wd = w.data<float>();
  float* yd = y.data<float>();
  for (int64_t co = 0; co < Co; ++co)
    for (int64_t fo = 0; fo < Fo; ++fo)
      for (int64_t ho = 0; ho < Ho; ++ho)
        for (int64_t wo = 0; wo < Wo; ++wo) {
          double acc = b.defined() ? b.data<float>()[co] : 0.0;
          for (int64_t ci = 0; ci < Ci; ++ci)
            for (int64_t a = 0; a < kt; ++a)
              for (int64_t bb = 0; bb < kh; ++bb)
                for (int64_t c = 0; c < kw; ++c) {
                  const int64_t f = fo * p.stride_t + a - p.pad_front,
                                h = ho * p.stride_h + bb - p.pad_top,
                                ww = wo * p.stride_w + c - p.pad_left;
                  if (f < 0 || f >= F || h < 0 || h >= H || ww < 0 || ww >= W) continue;
                  acc += static_cast<double>(xd[((ci * F + f) * H + h) * W + ww]) *
                         wd[(((co * Ci + ci) * kt + a) * kh + bb) * kw + c];
                }
          yd[((co * Fo + fo) * Ho + ho) * Wo + wo] = static_cast<float>(acc);
        }
  return y;
}

TEST(VaeOps, Conv3dMatchesDirectConvolution) {
  struct Case {
    Shape x, w;
    ops::Conv3dParams p;
    bool bias;
  };
  ops::Conv3dParams causal;  // the VAE's 3x3x3: two frames of history, 'same' spatially
  causal.pad_front = 2;
  causal.pad_top = causal.pad_bottom = causal.pad_left = causal.pad_right = 1;
  ops::Conv3dParams down;  // ZeroPad2d((0,1,0,1)) + stride 2
  down.pad_bottom = down.pad_right = 1;
  down.stride_h = down.stride_w = 2;
  ops::Conv3dParams time;  // (3,1,1) stride 2 in time
  time.stride_t = 2;
  ops::Conv3dParams odd;  // asymmetric everything
  odd.pad_front = 1, odd.pad_back = 2, odd.pad_top = 0, odd.pad_bottom = 2, odd.pad_left = 3,
  odd.pad_right = 1;
  odd.stride_t = 2, odd.stride_h = 3, odd.stride_w = 1;
  const std::vector<Case> cases{
      {{5, 3, 7, 9}, {4, 5, 3, 3, 3}, causal, true}, {{6, 2, 8, 10}, {3, 6, 1, 3, 3}, down, true},
      {{4, 5, 3, 4}, {4, 4, 3, 1, 1}, time, false},  {{7, 2, 5, 6}, {8, 7, 1, 1, 1}, {}, true},
      {{3, 4, 6, 5}, {2, 3, 2, 3, 2}, odd, true},
  };
  uint32_t seed = 1;
  for (const Case& c : cases) {
    const Tensor x = random_tensor(c.x, seed++), w = random_tensor(c.w, seed++);
    const Tensor b = c.bias ? random_tensor({c.w[0]}, seed++) : Tensor{};
    const Tensor got = ops::conv3d(x, w, b, c.p), want = naive_conv3d(x, w, b, c.p);
    ASSERT_EQ(got.shape(), want.shape());
    EXPECT_LT(relative_l2(got, want), 1e-6) << shape_str(c.x) << " * " << shape_str(c.w);
  }
}

TEST(VaeOps, Conv3dRejectsMismatchedChannels) {
  EXPECT_THROW(
      ops::conv3d(random_tensor({3, 1, 4, 4}, 1), random_tensor({2, 4, 1, 1, 1}, 2), {}, {}),
      Error);
}

TEST(VaeOps, RmsNormChannelsIsNormalizeTimesSqrtCTimesGamma) {
  const Tensor x = random_tensor({6, 2, 3, 5}, 3), g = random_tensor({6}, 4),
               b = random_tensor({6}, 5);
  for (bool silu : {false, true}) {
    const Tensor y = ops::rms_norm_channels(x, g, b, silu);
    const float *xd = x.data<float>(), *gd = g.data<float>(), *bd = b.data<float>(),
                *yd = y.data<float>();
    const int64_t N = 30;
    for (int64_t p = 0; p < N; ++p) {
      double ss = 0;
      for (int64_t c = 0; c < 6; ++c) ss += xd[c * N + p] * xd[c * N + p];
      for (int64_t c = 0; c < 6; ++c) {
        double v = xd[c * N + p] / std::sqrt(ss) * std::sqrt(6.0) * gd[c] + bd[c];
        if (silu) v = v / (1 + std::exp(-v));
        EXPECT_NEAR(yd[c * N + p], v, 1e-5);
      }
    }
  }
  // An all-zero position stays zero (the norm is floored, not divided by zero).
  const Tensor z = ops::rms_norm_channels(Tensor::zeros({4, 1, 1, 2}), Tensor{});
  for (float v : z.to_float_vector()) EXPECT_EQ(v, 0.f);
}

TEST(VaeOps, UpsampleConcatSliceTransposeClampAffine) {
  const Tensor x = random_tensor({2, 3, 4, 5}, 6);
  const Tensor up = ops::upsample_nearest2x(x);
  ASSERT_EQ(up.shape(), (Shape{2, 3, 8, 10}));
  for (int64_t i = 0; i < up.numel(); ++i) {
    const int64_t w = i % 10, h = (i / 10) % 8, cf = i / 80;
    EXPECT_EQ(up.data<float>()[i], x.data<float>()[(cf * 4 + h / 2) * 5 + w / 2]);
  }
  for (int dim = 0; dim < 4; ++dim) {
    const int64_t n = x.dim(dim);
    const Tensor a = ops::slice(x, dim, 0, 1), b = ops::slice(x, dim, 1, n);
    const Tensor joined = ops::concat(a, b, dim);
    ASSERT_EQ(joined.shape(), x.shape());
    EXPECT_EQ(joined.to_float_vector(), x.to_float_vector()) << "dim " << dim;
  }
  const Tensor s = ops::slice(x, 1, 1, 3);  // frames 1, 2
  EXPECT_EQ(s.data<float>()[0], x.data<float>()[20]);
  EXPECT_EQ(s.data<float>()[40], x.data<float>()[60 + 20]);
  EXPECT_THROW(ops::slice(x, 1, 2, 4), Error);

  const Tensor m = random_tensor({37, 45}, 7), t = ops::transpose2d(m);
  ASSERT_EQ(t.shape(), (Shape{45, 37}));
  for (int64_t i = 0; i < 37; ++i)
    for (int64_t j = 0; j < 45; ++j)
      EXPECT_EQ(t.data<float>()[j * 37 + i], m.data<float>()[i * 45 + j]);

  const Tensor c = ops::clamp(ops::channel_affine(x, Tensor::from_vector({2}, {3.f, -2.f}),
                                                  Tensor::from_vector({2}, {0.5f, 0.f})),
                              -1.f, 1.f);
  for (int64_t i = 0; i < x.numel(); ++i) {
    const float v = i < 60 ? 3.f * x.data<float>()[i] + 0.5f : -2.f * x.data<float>()[i];
    EXPECT_FLOAT_EQ(c.data<float>()[i], std::min(1.f, std::max(-1.f, v)));
  }
}

TEST(VaeOps, AccumulateTileAddsWeightedAtOffset) {
  Tensor acc = Tensor::zeros({2, 4, 6, 7});
  const Tensor tile = random_tensor({2, 2, 3, 4}, 8), w = random_tensor({3, 4}, 9);
  ops::accumulate_tile(acc, tile, w, 1, 2, 3);
  ops::accumulate_tile(acc, tile, {}, 1, 2, 3);
  for (int64_t c = 0; c < 2; ++c)
    for (int64_t f = 0; f < 4; ++f)
      for (int64_t y = 0; y < 6; ++y)
        for (int64_t x = 0; x < 7; ++x) {
          const float got = acc.data<float>()[((c * 4 + f) * 6 + y) * 7 + x];
          const bool inside = f >= 1 && f < 3 && y >= 2 && y < 5 && x >= 3;
          if (!inside) {
            EXPECT_EQ(got, 0.f);
            continue;
          }
          const float v = tile.data<float>()[((c * 2 + f - 1) * 3 + y - 2) * 4 + x - 3];
          EXPECT_FLOAT_EQ(got, v * w.data<float>()[(y - 2) * 4 + x - 3] + v);
        }
  EXPECT_THROW(ops::accumulate_tile(acc, tile, {}, 3, 0, 0), Error);  // frames past the end
}

}  // namespace
}  // namespace freeswim
