// 3D convolution on the CPU as im2col + OpenBLAS sgemm, one output frame and one block of output
// pixels at a time, so the column buffer stays bounded (a few tens of MB) whatever the frame size.
#include <cblas.h>

#include <algorithm>
#include <memory>

#include "core/error.h"
#include "core/threads.h"
#include "ops/cpu/cpu_backend.h"

namespace freeswim::ops::cpu {

namespace {

// Upper bound on column-buffer elements (K x pixels); 16 Mi floats = 64 MB.
constexpr int64_t kColumnBudget = int64_t{1} << 24;

int64_t out_size(int64_t in, int pad0, int pad1, int64_t k, int stride) {
  return (in + pad0 + pad1 - k) / stride + 1;
}

}  // namespace

Tensor conv3d(const Tensor& x, const Tensor& w, const Tensor& b, const Conv3dParams& p) {
  FS_CHECK(x.defined() && w.defined() && x.dtype() == DType::F32 && w.dtype() == DType::F32 &&
               x.device() == Device::CPU && w.device() == Device::CPU,
           "conv3d: x and weight must be f32 cpu tensors");
  FS_CHECK(x.ndim() == 4 && w.ndim() == 5 && w.dim(1) == x.dim(0),
           "conv3d: x {} does not match weight {}", x.describe(), w.describe());
  FS_CHECK(p.stride_t > 0 && p.stride_h > 0 && p.stride_w > 0 && p.pad_front >= 0 &&
               p.pad_back >= 0 && p.pad_top >= 0 && p.pad_bottom >= 0 && p.pad_left >= 0 &&
               p.pad_right >= 0,
           "conv3d: negative padding or non-positive stride");
  const int64_t Ci = x.dim(0), Fi = x.dim(1), Hi = x.dim(2), Wi = x.dim(3);
  const int64_t Co = w.dim(0), kt = w.dim(2), kh = w.dim(3), kw = w.dim(4);
  const int64_t Fo = out_size(Fi, p.pad_front, p.pad_back, kt, p.stride_t);
  const int64_t Ho = out_size(Hi, p.pad_top, p.pad_bottom, kh, p.stride_h);
  const int64_t Wo = out_size(Wi, p.pad_left, p.pad_right, kw, p.stride_w);
  FS_CHECK(Fi + p.pad_front + p.pad_back >= kt && Hi + p.pad_top + p.pad_bottom >= kh &&
               Wi + p.pad_left + p.pad_right >= kw,
           "conv3d: input {} is smaller than the kernel {}", x.describe(), w.describe());
  if (b.defined())
    FS_CHECK(b.dtype() == DType::F32 && b.device() == Device::CPU && b.numel() == Co,
             "conv3d: bias {} does not match weight {}", b.describe(), w.describe());

  Tensor y = Tensor::empty({Co, Fo, Ho, Wo});
  float* yd = y.data<float>();
  const float* xd = x.data<float>();
  const float* wd = w.data<float>();
  const int64_t K = Ci * kt * kh * kw, P = Ho * Wo, frame_in = Hi * Wi;
  const int64_t out_frame_stride = Fo * P;  // distance between channels of y

  // Bias first, then every product accumulates into y (beta = 1).
  parallel_for(Co * Fo, std::max<int64_t>(1, (1 << 14) / std::max<int64_t>(P, 1)),
               [&](int64_t lo, int64_t hi) {
                 for (int64_t r = lo; r < hi; ++r)
                   std::fill(yd + r * P, yd + (r + 1) * P,
                             b.defined() ? b.data<float>()[r / Fo] : 0.f);
               });
  if (K == 0 || P == 0) return y;

  // A 1x1x1 stride-1 unpadded convolution reads its columns straight from x.
  const bool pointwise = kt == 1 && kh == 1 && kw == 1 && p.stride_h == 1 && p.stride_w == 1 &&
                         p.pad_top == 0 && p.pad_bottom == 0 && p.pad_left == 0 && p.pad_right == 0;
  const int64_t block = std::clamp<int64_t>(kColumnBudget / K, 1, P);
  // Not zeroed: the column fill below writes every element the product reads.
  std::unique_ptr<float[]> col(pointwise ? nullptr : new float[static_cast<size_t>(K * block)]);

  for (int64_t fo = 0; fo < Fo; ++fo) {
    if (pointwise) {
      const int64_t fi = fo * p.stride_t - p.pad_front;
      if (fi < 0 || fi >= Fi) continue;  // a zero-padded frame contributes nothing
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, static_cast<int>(Co),
                  static_cast<int>(P), static_cast<int>(K), 1.f, wd, static_cast<int>(K),
                  xd + fi * frame_in, static_cast<int>(Fi * frame_in), 1.f, yd + fo * P,
                  static_cast<int>(out_frame_stride));
      continue;
    }
    for (int64_t p0 = 0; p0 < P; p0 += block) {
      const int64_t n = std::min(block, P - p0);
      // col[k, j] = padded x at the tap k of output pixel p0 + j, filled one output row at a
      // time: the taps inside the frame are a strided (stride 1: contiguous) run of one input
      // row, the rest zeros. No division per pixel, which made this loop most of a CPU decode.
      parallel_for(K, 1, [&](int64_t k0, int64_t k1) {
        for (int64_t k = k0; k < k1; ++k) {
          const int64_t c = k % kw, bb = (k / kw) % kh, a = (k / (kw * kh)) % kt,
                        ci = k / (kw * kh * kt);
          float* row = col.get() + k * n;
          const int64_t fi = fo * p.stride_t + a - p.pad_front;
          if (fi < 0 || fi >= Fi) {
            std::fill(row, row + n, 0.f);
            continue;
          }
          const float* plane = xd + (ci * Fi + fi) * frame_in;
          // Input column of output column wo: wo * stride_w + off, inside [0, Wi) for wo in
          // [wo_first, wo_end).
          const int64_t off = c - p.pad_left, sw = p.stride_w;
          const int64_t wo_first = off >= 0 ? 0 : (-off + sw - 1) / sw;
          const int64_t wo_end = Wi - 1 - off >= 0 ? (Wi - 1 - off) / sw + 1 : 0;
          for (int64_t j = 0; j < n;) {
            const int64_t pix = p0 + j, ho = pix / Wo, wo0 = pix % Wo;
            const int64_t len = std::min(Wo - wo0, n - j);  // output pixels left in this row
            float* out = row + j;                           // out[i] is output column wo0 + i
            const int64_t hi = ho * p.stride_h + bb - p.pad_top;
            const int64_t z0 = std::clamp(wo_first, wo0, wo0 + len) - wo0;
            const int64_t z1 =
                (hi >= 0 && hi < Hi) ? std::clamp(wo_end, wo0 + z0, wo0 + len) - wo0 : z0;
            std::fill(out, out + z0, 0.f);
            if (z1 > z0) {
              const float* src = plane + hi * Wi + (wo0 + z0) * sw + off;
              if (sw == 1) {
                std::copy(src, src + (z1 - z0), out + z0);
              } else {
                for (int64_t i = 0; i < z1 - z0; ++i) out[z0 + i] = src[i * sw];
              }
            }
            std::fill(out + z1, out + len, 0.f);
            j += len;
          }
        }
      });
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, static_cast<int>(Co),
                  static_cast<int>(n), static_cast<int>(K), 1.f, wd, static_cast<int>(K), col.get(),
                  static_cast<int>(n), 1.f, yd + fo * P + p0, static_cast<int>(out_frame_stride));
    }
  }
  return y;
}

}  // namespace freeswim::ops::cpu
