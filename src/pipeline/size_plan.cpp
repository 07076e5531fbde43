#include "pipeline/size_plan.h"

#include <charconv>
#include <cstring>

#include "core/error.h"

namespace freeswim::pipeline {

namespace {

constexpr int64_t kMaxSide = 16384;  // H.264's limit, far above what fits in memory anyway

int64_t round_up(int64_t v, int64_t multiple) {
  return (v + multiple - 1) / multiple * multiple;
}

}  // namespace

std::string SizePlan::note() const {
  if (!cropped()) return {};
  return fmt::format("{}x{} is generated at {}x{} (multiples of 16) and centre-cropped to {}x{}",
                     width, height, gen_width, gen_height, width, height);
}

SizePlan plan_size(int64_t width, int64_t height, int64_t multiple, const std::string& flag) {
  FS_CHECK(multiple > 0, "{}: size multiple {} must be positive", flag, multiple);
  FS_CHECK(width > 0 && height > 0 && width <= kMaxSide && height <= kMaxSide,
           "{}: size {}x{} (width x height) must be between 1 and {} on each side", flag, width,
           height, kMaxSide);
  SizePlan p;
  p.width = width;
  p.height = height;
  p.gen_width = round_up(width, multiple);
  p.gen_height = round_up(height, multiple);
  // Centre crop; an odd excess leaves the extra pixel at the bottom / right.
  p.crop = CropBox{(p.gen_width - width) / 2, (p.gen_height - height) / 2, width, height};
  return p;
}

SizePlan parse_size(const std::string& text, int64_t multiple, const std::string& flag) {
  // WIDTHxHEIGHT, or WIDTH*HEIGHT as Wan's generate.py writes it (--size 1280*720).
  const size_t x = text.find_first_of("xX*");
  int64_t w = 0, h = 0;
  bool ok = x != std::string::npos && x > 0 && x + 1 < text.size();
  if (ok) {
    const char* b = text.data();
    const auto rw = std::from_chars(b, b + x, w);
    const auto rh = std::from_chars(b + x + 1, b + text.size(), h);
    ok = rw.ec == std::errc() && rw.ptr == b + x && rh.ec == std::errc() &&
         rh.ptr == b + text.size();
  }
  FS_CHECK(ok, "{}: '{}' is not a size; write WIDTHxHEIGHT (or WIDTH*HEIGHT), e.g. 1920x1080", flag,
           text);
  return plan_size(w, h, multiple, flag);
}

Tensor crop_frames(const Tensor& frames, const CropBox& box, FrameLayout layout) {
  const bool hwc = layout == FrameLayout::FHWC;
  FS_CHECK(frames.defined() && frames.device() == Device::CPU && frames.dtype() == DType::F32 &&
               frames.ndim() == 4 && (hwc ? frames.dim(3) : frames.dim(1)) == 3,
           "crop: frames must be a CPU F32 tensor laid out {}, got {}",
           hwc ? "[frames, height, width, 3]" : "[frames, 3, height, width]",
           frames.defined() ? frames.describe() : std::string("an undefined tensor"));
  const int64_t count = frames.dim(0);
  const int64_t h = hwc ? frames.dim(1) : frames.dim(2), w = hwc ? frames.dim(2) : frames.dim(3);
  FS_CHECK(box.x >= 0 && box.y >= 0 && box.width > 0 && box.height > 0 && box.x + box.width <= w &&
               box.y + box.height <= h,
           "crop: box {}x{} at ({}, {}) does not fit in {}x{} frames", box.width, box.height, box.x,
           box.y, w, h);
  Tensor out = Tensor::empty(hwc ? Shape{count, box.height, box.width, 3}
                                 : Shape{count, 3, box.height, box.width});
  const float* src = frames.data<float>();
  float* dst = out.data<float>();
  if (hwc) {
    // Each output row is one contiguous run of the input row.
    const size_t row_bytes = static_cast<size_t>(box.width) * 3 * sizeof(float);
    for (int64_t f = 0; f < count; ++f)
      for (int64_t y = 0; y < box.height; ++y)
        std::memcpy(dst + ((f * box.height + y) * box.width) * 3,
                    src + ((f * h + box.y + y) * w + box.x) * 3, row_bytes);
  } else {
    const size_t row_bytes = static_cast<size_t>(box.width) * sizeof(float);
    for (int64_t p = 0; p < count * 3; ++p)
      for (int64_t y = 0; y < box.height; ++y)
        std::memcpy(dst + (p * box.height + y) * box.width, src + (p * h + box.y + y) * w + box.x,
                    row_bytes);
  }
  return out;
}

}  // namespace freeswim::pipeline
