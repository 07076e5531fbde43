// The size rule: asked sizes become multiples of 16 for the model, then are centre-cropped back.
#include "pipeline/size_plan.h"

#include <gtest/gtest.h>

#include "core/error.h"

namespace freeswim::pipeline {
namespace {

TEST(SizePlan, FullHdIsMadeAt1088AndCroppedBack) {
  const SizePlan p = parse_size("1920x1080");
  EXPECT_EQ(p.gen_width, 1920);
  EXPECT_EQ(p.gen_height, 1088);
  EXPECT_EQ(p.crop.x, 0);
  EXPECT_EQ(p.crop.y, 4);
  EXPECT_EQ(p.crop.width, 1920);
  EXPECT_EQ(p.crop.height, 1080);
  EXPECT_TRUE(p.cropped());
  EXPECT_NE(p.note().find("1920x1088"), std::string::npos);
}

TEST(SizePlan, MultiplesAreKeptAndOddExcessGoesBottomRight) {
  const SizePlan a = plan_size(832, 480);
  EXPECT_FALSE(a.cropped());
  EXPECT_EQ(a.note(), "");
  EXPECT_EQ(a.crop.x, 0);
  EXPECT_EQ(a.crop.height, 480);
  const SizePlan b = parse_size("3840X2150");  // 2150 -> 2160: 10 extra rows, 5 above
  EXPECT_EQ(b.gen_height, 2160);
  EXPECT_EQ(b.crop.y, 5);
  const SizePlan c = plan_size(1001, 17);  // 1001 -> 1008 (7 extra: 3 left), 17 -> 32 (15: 7 above)
  EXPECT_EQ(c.gen_width, 1008);
  EXPECT_EQ(c.crop.x, 3);
  EXPECT_EQ(c.gen_height, 32);
  EXPECT_EQ(c.crop.y, 7);
}

TEST(SizePlan, WansStarSpelling) {
  const SizePlan p = parse_size("1280*720");
  const SizePlan q = parse_size("1280x720");
  EXPECT_EQ(p.width, q.width);
  EXPECT_EQ(p.height, q.height);
  EXPECT_EQ(p.width, 1280);
}

TEST(SizePlan, BadSizesNameTheFlag) {
  for (const char* text :
       {"", "1920", "1920x", "x1080", "1920x1080x3", "19a0x1080", "-16x16", "1920*", "*1080",
        "1920*1080*3", "1920x*1080", "0x1080", "1920x0", "99999x16", "1920 x1080", "1920x1080 "}) {
    try {
      parse_size(text);
      ADD_FAILURE() << "'" << text << "' accepted";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("--size"), std::string::npos) << e.what();
    }
  }
  EXPECT_THROW(plan_size(16, 16, 0), Error);
}

Tensor numbered(const Shape& s) {
  Tensor t = Tensor::empty(s);
  for (int64_t i = 0; i < t.numel(); ++i) t.data<float>()[i] = static_cast<float>(i);
  return t;
}

TEST(SizePlan, CropTakesTheBoxInBothLayouts) {
  const Tensor hwc = numbered({2, 6, 5, 3});
  const CropBox box{1, 2, 3, 4};
  const Tensor c = crop_frames(hwc, box, FrameLayout::FHWC);
  ASSERT_EQ(c.shape(), (Shape{2, 4, 3, 3}));
  for (int64_t f = 0; f < 2; ++f)
    for (int64_t y = 0; y < 4; ++y)
      for (int64_t x = 0; x < 3; ++x)
        for (int64_t ch = 0; ch < 3; ++ch)
          EXPECT_EQ(c.data<float>()[((f * 4 + y) * 3 + x) * 3 + ch],
                    hwc.data<float>()[((f * 6 + y + 2) * 5 + x + 1) * 3 + ch]);
  const Tensor chw = numbered({2, 3, 6, 5});
  const Tensor d = crop_frames(chw, box, FrameLayout::FCHW);
  ASSERT_EQ(d.shape(), (Shape{2, 3, 4, 3}));
  for (int64_t p = 0; p < 6; ++p)
    for (int64_t y = 0; y < 4; ++y)
      for (int64_t x = 0; x < 3; ++x)
        EXPECT_EQ(d.data<float>()[(p * 4 + y) * 3 + x],
                  chw.data<float>()[(p * 6 + y + 2) * 5 + x + 1]);
}

TEST(SizePlan, CropOfThePlanRestoresTheAskedSize) {
  const SizePlan p = plan_size(40, 24);  // generated at 48x32
  const Tensor gen = numbered({1, p.gen_height, p.gen_width, 3});
  const Tensor out = crop_frames(gen, p.crop, FrameLayout::FHWC);
  EXPECT_EQ(out.shape(), (Shape{1, 24, 40, 3}));
  EXPECT_EQ(out.data<float>()[0], gen.data<float>()[(4 * 48 + 4) * 3]);
}

TEST(SizePlan, CropOutsideTheFrameRefused) {
  const Tensor t = Tensor::zeros({1, 4, 4, 3});
  EXPECT_THROW(crop_frames(t, CropBox{1, 0, 4, 4}, FrameLayout::FHWC), Error);
  EXPECT_THROW(crop_frames(t, CropBox{0, 0, 0, 4}, FrameLayout::FHWC), Error);
  EXPECT_THROW(crop_frames(t, CropBox{-1, 0, 2, 2}, FrameLayout::FHWC), Error);
  EXPECT_THROW(crop_frames(t, CropBox{0, 0, 2, 2}, FrameLayout::FCHW), Error);
}

}  // namespace
}  // namespace freeswim::pipeline
