// Bilinear resize: hand-computed half-pixel-centre values, layout equivalence, and the
// reference's upsampled frames from the golden pipeline case.
#include "pipeline/upsample.h"

#include <gtest/gtest.h>

#include <cmath>

#include "core/error.h"
#include "io/safetensors.h"

namespace freeswim::pipeline {
namespace {

// One frame [1, h, w, 3] whose channel c at (y, x) is value(y, x) + 100 c.
template <typename Fn>
Tensor frame_fhwc(int64_t h, int64_t w, Fn value) {
  Tensor t = Tensor::empty({1, h, w, 3});
  float* p = t.data<float>();
  for (int64_t y = 0; y < h; ++y)
    for (int64_t x = 0; x < w; ++x)
      for (int64_t c = 0; c < 3; ++c) p[(y * w + x) * 3 + c] = value(y, x) + 100.0f * c;
  return t;
}

float at_fhwc(const Tensor& t, int64_t f, int64_t y, int64_t x, int64_t c) {
  return t.data<float>()[((f * t.dim(1) + y) * t.dim(2) + x) * 3 + c];
}

TEST(Upsample, HalfPixelCentresAndClampedBorders) {
  // A ramp 0, 1, 2, 3 doubled: source x = (d + 0.5) / 2 - 0.5, clamped to [0, 3].
  const Tensor in = frame_fhwc(1, 4, [](int64_t, int64_t x) { return static_cast<float>(x); });
  const Tensor out = resize_bilinear(in, 1, 8, FrameLayout::FHWC);
  const float want[8] = {0.0f, 0.25f, 0.75f, 1.25f, 1.75f, 2.25f, 2.75f, 3.0f};
  for (int64_t x = 0; x < 8; ++x) {
    EXPECT_FLOAT_EQ(at_fhwc(out, 0, 0, x, 0), want[x]) << x;
    EXPECT_FLOAT_EQ(at_fhwc(out, 0, 0, x, 2), want[x] + 200.0f) << x;
  }
}

TEST(Upsample, DownscaleSamplesBetweenPixels) {
  // INTER_LINEAR (not INTER_AREA) when shrinking: 4 -> 2 samples at 0.5 and 2.5.
  const Tensor in =
      frame_fhwc(4, 4, [](int64_t y, int64_t x) { return static_cast<float>(x + 10 * y); });
  const Tensor out = resize_bilinear(in, 2, 2, FrameLayout::FHWC);
  EXPECT_FLOAT_EQ(at_fhwc(out, 0, 0, 0, 0), 0.5f + 5.0f);
  EXPECT_FLOAT_EQ(at_fhwc(out, 0, 0, 1, 0), 2.5f + 5.0f);
  EXPECT_FLOAT_EQ(at_fhwc(out, 0, 1, 1, 0), 2.5f + 25.0f);
}

TEST(Upsample, SeparableOnANonSquareScale) {
  // Bilinear interpolation of a bilinear function is exact away from the clamped borders, and
  // x and y scale independently (3x horizontally, 2.5x vertically).
  const auto f = [](int64_t y, int64_t x) {
    return 0.3f * static_cast<float>(x) - 0.7f * static_cast<float>(y);
  };
  const Tensor out = resize_bilinear(frame_fhwc(4, 5, f), 10, 15, FrameLayout::FHWC);
  for (int64_t y = 0; y < 10; ++y)
    for (int64_t x = 0; x < 15; ++x) {
      const double sx = std::clamp((x + 0.5) * 5.0 / 15.0 - 0.5, 0.0, 4.0);
      const double sy = std::clamp((y + 0.5) * 4.0 / 10.0 - 0.5, 0.0, 3.0);
      EXPECT_NEAR(at_fhwc(out, 0, y, x, 1), 0.3 * sx - 0.7 * sy + 100.0, 1e-5) << y << "," << x;
    }
}

TEST(Upsample, SameSizeIsIdentityAndLayoutsAgree) {
  Tensor frames = Tensor::empty({2, 6, 7, 3});
  float* p = frames.data<float>();
  for (int64_t i = 0; i < frames.numel(); ++i) p[i] = std::sin(0.37f * static_cast<float>(i));
  EXPECT_EQ(resize_bilinear(frames, 6, 7, FrameLayout::FHWC).to_float_vector(),
            frames.to_float_vector());
  const Tensor hwc = resize_bilinear(frames, 13, 9, FrameLayout::FHWC);
  const Tensor chw = resize_bilinear(fhwc_to_fchw(frames), 13, 9, FrameLayout::FCHW);
  EXPECT_EQ(chw.shape(), (Shape{2, 3, 13, 9}));
  EXPECT_EQ(fchw_to_fhwc(chw).to_float_vector(), hwc.to_float_vector());
  EXPECT_EQ(fchw_to_fhwc(fhwc_to_fchw(frames)).to_float_vector(), frames.to_float_vector());
}

TEST(Upsample, BadInputsRefused) {
  EXPECT_THROW(resize_bilinear(Tensor::zeros({2, 4, 4, 4}), 8, 8, FrameLayout::FHWC), Error);
  EXPECT_THROW(resize_bilinear(Tensor::zeros({2, 4, 4, 3}), 8, 8, FrameLayout::FCHW), Error);
  EXPECT_THROW(resize_bilinear(Tensor::zeros({4, 4, 3}), 8, 8, FrameLayout::FHWC), Error);
  EXPECT_THROW(resize_bilinear(Tensor::zeros({1, 4, 4, 3}), 0, 8, FrameLayout::FHWC), Error);
  EXPECT_THROW(resize_bilinear(Tensor::zeros({1, 4, 4, 3}, DType::BF16), 8, 8, FrameLayout::FHWC),
               Error);
}

// The reference pipeline's stage 2: t2v_frames [F, H, W, 3] -> upsampled_frames [F, 3, H', W'].
TEST(Upsample, MatchesReferencePipelineCase) {
  const std::string path = std::string(FREESWIM_GOLDEN_DIR) + "/pipeline_cases.safetensors";
  const auto file = io::SafetensorsFile::open(path);
  const Tensor base = file->tensor("t2v_frames").to(DType::F32).clone();
  const Tensor want = file->tensor("upsampled_frames").to(DType::F32).clone();
  ASSERT_EQ(base.ndim(), 4);
  ASSERT_EQ(want.ndim(), 4);
  const Tensor got =
      fhwc_to_fchw(resize_bilinear(base, want.dim(2), want.dim(3), FrameLayout::FHWC));
  ASSERT_EQ(got.shape(), want.shape());
  EXPECT_LT(relative_l2(got, want), 1e-5);
  const std::vector<float> g = got.to_float_vector(), w = want.to_float_vector();
  double worst = 0;
  for (size_t i = 0; i < g.size(); ++i)
    worst = std::max(worst, static_cast<double>(std::fabs(g[i] - w[i])));
  EXPECT_LT(worst, 1e-5);
  // Upsampling in the channel-first layout gives the same frames.
  const Tensor got_chw =
      resize_bilinear(fhwc_to_fchw(base), want.dim(2), want.dim(3), FrameLayout::FCHW);
  EXPECT_LT(relative_l2(got_chw, want), 1e-5);
}

}  // namespace
}  // namespace freeswim::pipeline
