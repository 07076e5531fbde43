#include "pipeline/upsample.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "core/error.h"
#include "core/threads.h"

namespace freeswim::pipeline {

namespace {

// The two source taps and the weight of the second, for each destination index of one axis.
struct Taps {
  std::vector<int64_t> i0, i1;
  std::vector<double> w1;
};

Taps axis_taps(int64_t in, int64_t out) {
  Taps t;
  t.i0.resize(static_cast<size_t>(out));
  t.i1.resize(static_cast<size_t>(out));
  t.w1.resize(static_cast<size_t>(out));
  const double scale = static_cast<double>(in) / static_cast<double>(out);
  for (int64_t d = 0; d < out; ++d) {
    double src = (static_cast<double>(d) + 0.5) * scale - 0.5;
    // Left of the first pixel centre: the first pixel alone (OpenCV and PyTorch both clamp).
    if (src < 0) src = 0;
    int64_t i0 = static_cast<int64_t>(std::floor(src));
    double frac = src - static_cast<double>(i0);
    // Right of the last pixel centre: the last pixel alone.
    if (i0 >= in - 1) {
      i0 = in - 1;
      frac = 0;
    }
    const auto k = static_cast<size_t>(d);
    t.i0[k] = i0;
    t.i1[k] = std::min(i0 + 1, in - 1);
    t.w1[k] = frac;
  }
  return t;
}

void check_layout(const Tensor& frames, FrameLayout layout, const char* what) {
  FS_CHECK(frames.defined() && frames.device() == Device::CPU && frames.dtype() == DType::F32,
           "{}: frames must be a CPU F32 tensor, got {}", what,
           frames.defined() ? frames.describe() : std::string("an undefined tensor"));
  const bool ok =
      frames.ndim() == 4 && (layout == FrameLayout::FHWC ? frames.dim(3) == 3 : frames.dim(1) == 3);
  FS_CHECK(
      ok, "{}: frames must be laid out {}, got {}", what,
      layout == FrameLayout::FHWC ? "[frames, height, width, 3]" : "[frames, 3, height, width]",
      shape_str(frames.shape()));
}

}  // namespace

Tensor resize_bilinear(const Tensor& frames, int64_t out_h, int64_t out_w, FrameLayout layout) {
  check_layout(frames, layout, "bilinear resize");
  const bool hwc = layout == FrameLayout::FHWC;
  const int64_t count = frames.dim(0);
  const int64_t in_h = hwc ? frames.dim(1) : frames.dim(2);
  const int64_t in_w = hwc ? frames.dim(2) : frames.dim(3);
  FS_CHECK(in_h > 0 && in_w > 0 && out_h > 0 && out_w > 0,
           "bilinear resize: cannot resize {}x{} (width x height) frames to {}x{}", in_w, in_h,
           out_w, out_h);
  const Taps ty = axis_taps(in_h, out_h), tx = axis_taps(in_w, out_w);
  Tensor out = Tensor::empty(hwc ? Shape{count, out_h, out_w, 3} : Shape{count, 3, out_h, out_w});
  const float* src = frames.data<float>();
  float* dst = out.data<float>();
  // Element strides of (row, column, channel) in each layout.
  const int64_t s_row = hwc ? in_w * 3 : in_w, s_col = hwc ? 3 : 1, s_ch = hwc ? 1 : in_h * in_w;
  const int64_t d_row = hwc ? out_w * 3 : out_w, d_col = hwc ? 3 : 1,
                d_ch = hwc ? 1 : out_h * out_w;
  const int64_t in_frame = in_h * in_w * 3, out_frame = out_h * out_w * 3;
  // One (frame, channel) plane per task: every pixel is computed by one thread with the same
  // arithmetic, so the result does not depend on the thread count.
  parallel_for(count * 3, 1, [&](int64_t p0, int64_t p1) {
    for (int64_t plane = p0; plane < p1; ++plane) {
      const int64_t f = plane / 3, c = plane % 3;
      const float* s = src + f * in_frame + c * s_ch;
      float* d = dst + f * out_frame + c * d_ch;
      for (int64_t y = 0; y < out_h; ++y) {
        const auto ky = static_cast<size_t>(y);
        const float* r0 = s + ty.i0[ky] * s_row;
        const float* r1 = s + ty.i1[ky] * s_row;
        const double wy = ty.w1[ky];
        for (int64_t x = 0; x < out_w; ++x) {
          const auto kx = static_cast<size_t>(x);
          const int64_t c0 = tx.i0[kx] * s_col, c1 = tx.i1[kx] * s_col;
          const double wx = tx.w1[kx];
          const double top = r0[c0] + wx * (static_cast<double>(r0[c1]) - r0[c0]);
          const double bottom = r1[c0] + wx * (static_cast<double>(r1[c1]) - r1[c0]);
          d[y * d_row + x * d_col] = static_cast<float>(top + wy * (bottom - top));
        }
      }
    }
  });
  return out;
}

Tensor fhwc_to_fchw(const Tensor& frames) {
  check_layout(frames, FrameLayout::FHWC, "layout change");
  const int64_t f = frames.dim(0), h = frames.dim(1), w = frames.dim(2);
  Tensor out = Tensor::empty({f, 3, h, w});
  const float* s = frames.data<float>();
  float* d = out.data<float>();
  for (int64_t i = 0; i < f; ++i)
    for (int64_t p = 0; p < h * w; ++p)
      for (int64_t c = 0; c < 3; ++c) d[(i * 3 + c) * h * w + p] = s[(i * h * w + p) * 3 + c];
  return out;
}

Tensor fchw_to_fhwc(const Tensor& frames) {
  check_layout(frames, FrameLayout::FCHW, "layout change");
  const int64_t f = frames.dim(0), h = frames.dim(2), w = frames.dim(3);
  Tensor out = Tensor::empty({f, h, w, 3});
  const float* s = frames.data<float>();
  float* d = out.data<float>();
  for (int64_t i = 0; i < f; ++i)
    for (int64_t p = 0; p < h * w; ++p)
      for (int64_t c = 0; c < 3; ++c) d[(i * h * w + p) * 3 + c] = s[(i * 3 + c) * h * w + p];
  return out;
}

}  // namespace freeswim::pipeline
