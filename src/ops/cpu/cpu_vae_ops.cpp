// Elementwise, normalisation and layout ops of the video VAE on the CPU ([C, F, H, W] activations).
#include <algorithm>
#include <cmath>

#include "core/error.h"
#include "core/threads.h"
#include "ops/cpu/cpu_backend.h"

namespace freeswim::ops::cpu {

namespace {

const float* per_channel(const Tensor& t, int64_t C, const char* op, const char* arg) {
  if (!t.defined()) return nullptr;
  require_f32(t, op, arg);
  FS_CHECK(t.numel() == C, "{}: {} has {} values, expected {}", op, arg, t.numel(), C);
  return t.data<float>();
}

int normalise_dim(const Tensor& x, int dim, const char* op) {
  const int d = dim < 0 ? dim + x.ndim() : dim;
  FS_CHECK(d >= 0 && d < x.ndim(), "{}: dim {} out of range for {}", op, dim, x.describe());
  return d;
}

// Product of the dims before / after `d`.
int64_t outer_of(const Shape& s, int d) {
  int64_t n = 1;
  for (int i = 0; i < d; ++i) n *= s[static_cast<size_t>(i)];
  return n;
}
int64_t inner_of(const Shape& s, int d) {
  int64_t n = 1;
  for (size_t i = static_cast<size_t>(d) + 1; i < s.size(); ++i) n *= s[i];
  return n;
}

}  // namespace

Tensor rms_norm_channels(const Tensor& x, const Tensor& gamma, const Tensor& bias, bool silu) {
  require_f32(x, "rms_norm_channels", "x");
  FS_CHECK(x.ndim() >= 1, "rms_norm_channels: x is a scalar");
  const int64_t C = x.dim(0), N = x.numel() / std::max<int64_t>(C, 1);
  const float* g = per_channel(gamma, C, "rms_norm_channels", "gamma");
  const float* bd = per_channel(bias, C, "rms_norm_channels", "bias");
  const float scale = std::sqrt(static_cast<float>(C));
  Tensor y = Tensor::empty(x.shape());
  const float* xd = x.data<float>();
  float* yd = y.data<float>();
  constexpr int64_t kBlock = 256;  // positions per pass: channel rows stay in cache
  parallel_for((N + kBlock - 1) / kBlock, 1, [&](int64_t b0, int64_t b1) {
    double ss[kBlock];
    float inv[kBlock];
    for (int64_t blk = b0; blk < b1; ++blk) {
      const int64_t p0 = blk * kBlock, n = std::min(kBlock, N - p0);
      std::fill(ss, ss + n, 0.0);
      for (int64_t c = 0; c < C; ++c) {
        const float* xr = xd + c * N + p0;
        for (int64_t j = 0; j < n; ++j) ss[j] += static_cast<double>(xr[j]) * xr[j];
      }
      // F.normalize divides by max(norm, 1e-12).
      for (int64_t j = 0; j < n; ++j)
        inv[j] = static_cast<float>(1.0 / std::max(std::sqrt(ss[j]), 1e-12));
      for (int64_t c = 0; c < C; ++c) {
        const float* xr = xd + c * N + p0;
        float* yr = yd + c * N + p0;
        const float gc = scale * (g ? g[c] : 1.f), bc = bd ? bd[c] : 0.f;
        for (int64_t j = 0; j < n; ++j) {
          float v = xr[j] * inv[j] * gc + bc;
          if (silu) v = v / (1.f + std::exp(-v));
          yr[j] = v;
        }
      }
    }
  });
  return y;
}

Tensor upsample_nearest2x(const Tensor& x) {
  require_f32(x, "upsample_nearest2x", "x");
  FS_CHECK(x.ndim() == 4, "upsample_nearest2x: expected [C, F, H, W], got {}", x.describe());
  const int64_t planes = x.dim(0) * x.dim(1), H = x.dim(2), W = x.dim(3);
  Tensor y = Tensor::empty({x.dim(0), x.dim(1), 2 * H, 2 * W});
  const float* xd = x.data<float>();
  float* yd = y.data<float>();
  parallel_for(planes * H, std::max<int64_t>(1, kGrain / std::max<int64_t>(W, 1)),
               [&](int64_t r0, int64_t r1) {
                 for (int64_t r = r0; r < r1; ++r) {
                   const float* src = xd + r * W;
                   float* dst = yd + r * 4 * W;  // output rows 2h and 2h + 1 of the same plane
                   for (int64_t w = 0; w < W; ++w) dst[2 * w] = dst[2 * w + 1] = src[w];
                   std::copy(dst, dst + 2 * W, dst + 2 * W);
                 }
               });
  return y;
}

Tensor concat(const Tensor& a, const Tensor& b, int dim) {
  require_f32(a, "concat", "a");
  require_f32(b, "concat", "b");
  const int d = normalise_dim(a, dim, "concat");
  Shape sa = a.shape(), sb = b.shape();
  FS_CHECK(sa.size() == sb.size(), "concat: {} vs {}", a.describe(), b.describe());
  for (size_t i = 0; i < sa.size(); ++i)
    FS_CHECK(static_cast<int>(i) == d || sa[i] == sb[i], "concat: {} vs {} along dim {}",
             a.describe(), b.describe(), d);
  Shape so = sa;
  so[static_cast<size_t>(d)] += sb[static_cast<size_t>(d)];
  Tensor y = Tensor::empty(so);
  const int64_t outer = outer_of(sa, d), na = sa[static_cast<size_t>(d)] * inner_of(sa, d),
                nb = sb[static_cast<size_t>(d)] * inner_of(sb, d);
  const float *ad = a.data<float>(), *bd = b.data<float>();
  float* yd = y.data<float>();
  for (int64_t o = 0; o < outer; ++o) {
    std::copy(ad + o * na, ad + (o + 1) * na, yd + o * (na + nb));
    std::copy(bd + o * nb, bd + (o + 1) * nb, yd + o * (na + nb) + na);
  }
  return y;
}

Tensor slice(const Tensor& x, int dim, int64_t begin, int64_t end) {
  require_f32(x, "slice", "x");
  const int d = normalise_dim(x, dim, "slice");
  const int64_t n = x.dim(d);
  FS_CHECK(0 <= begin && begin <= end && end <= n, "slice: [{}, {}) out of range for dim {} of {}",
           begin, end, d, x.describe());
  Shape so = x.shape();
  so[static_cast<size_t>(d)] = end - begin;
  Tensor y = Tensor::empty(so);
  const int64_t outer = outer_of(x.shape(), d), inner = inner_of(x.shape(), d),
                m = (end - begin) * inner;
  const float* xd = x.data<float>();
  float* yd = y.data<float>();
  for (int64_t o = 0; o < outer; ++o) {
    const float* src = xd + (o * n + begin) * inner;
    std::copy(src, src + m, yd + o * m);
  }
  return y;
}

Tensor transpose2d(const Tensor& x) {
  require_f32(x, "transpose2d", "x");
  FS_CHECK(x.ndim() == 2, "transpose2d: expected a 2-d tensor, got {}", x.describe());
  const int64_t A = x.dim(0), B = x.dim(1);
  Tensor y = Tensor::empty({B, A});
  const float* xd = x.data<float>();
  float* yd = y.data<float>();
  constexpr int64_t kTile = 32;  // square tiles keep both sides cache-friendly
  parallel_for((B + kTile - 1) / kTile, 1, [&](int64_t t0, int64_t t1) {
    for (int64_t bt = t0 * kTile; bt < std::min(B, t1 * kTile); bt += kTile)
      for (int64_t at = 0; at < A; at += kTile)
        for (int64_t bb = bt; bb < std::min(B, bt + kTile); ++bb)
          for (int64_t aa = at; aa < std::min(A, at + kTile); ++aa)
            yd[bb * A + aa] = xd[aa * B + bb];
  });
  return y;
}

Tensor clamp(const Tensor& x, float lo, float hi) {
  require_f32(x, "clamp", "x");
  Tensor y = Tensor::empty(x.shape());
  const float* xd = x.data<float>();
  float* yd = y.data<float>();
  parallel_for(x.numel(), kGrain, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) yd[i] = std::min(std::max(xd[i], lo), hi);
  });
  return y;
}

Tensor channel_affine(const Tensor& x, const Tensor& scale, const Tensor& shift) {
  require_f32(x, "channel_affine", "x");
  FS_CHECK(x.ndim() >= 1, "channel_affine: x is a scalar");
  const int64_t C = x.dim(0), N = x.numel() / std::max<int64_t>(C, 1);
  const float* sc = per_channel(scale, C, "channel_affine", "scale");
  const float* sh = per_channel(shift, C, "channel_affine", "shift");
  Tensor y = Tensor::empty(x.shape());
  const float* xd = x.data<float>();
  float* yd = y.data<float>();
  for (int64_t c = 0; c < C; ++c) {
    const float s = sc ? sc[c] : 1.f, t = sh ? sh[c] : 0.f;
    for (int64_t i = 0; i < N; ++i) yd[c * N + i] = xd[c * N + i] * s + t;
  }
  return y;
}

void accumulate_tile(Tensor& acc, const Tensor& tile, const Tensor& weight, int64_t f0, int64_t y0,
                     int64_t x0) {
  require_f32(acc, "accumulate_tile", "acc");
  require_f32(tile, "accumulate_tile", "tile");
  FS_CHECK(acc.ndim() == 4 && tile.ndim() == 4 && acc.dim(0) == tile.dim(0) && f0 >= 0 && y0 >= 0 &&
               x0 >= 0 && f0 + tile.dim(1) <= acc.dim(1) && y0 + tile.dim(2) <= acc.dim(2) &&
               x0 + tile.dim(3) <= acc.dim(3),
           "accumulate_tile: tile {} at ({}, {}, {}) does not fit in {}", tile.describe(), f0, y0,
           x0, acc.describe());
  const int64_t C = tile.dim(0), f = tile.dim(1), h = tile.dim(2), w = tile.dim(3);
  const float* wd = nullptr;
  if (weight.defined()) {
    require_f32(weight, "accumulate_tile", "weight");
    FS_CHECK(weight.numel() == h * w, "accumulate_tile: weight {} does not match tile {}",
             weight.describe(), tile.describe());
    wd = weight.data<float>();
  }
  const int64_t F = acc.dim(1), H = acc.dim(2), W = acc.dim(3);
  const float* td = tile.data<float>();
  float* ad = acc.data<float>();
  parallel_for(C * f * h, std::max<int64_t>(1, kGrain / std::max<int64_t>(w, 1)),
               [&](int64_t r0, int64_t r1) {
                 for (int64_t r = r0; r < r1; ++r) {
                   const int64_t yy = r % h, ff = (r / h) % f, c = r / (h * f);
                   const float* src = td + r * w;
                   float* dst = ad + ((c * F + f0 + ff) * H + y0 + yy) * W + x0;
                   if (wd) {
                     const float* wr = wd + yy * w;
                     for (int64_t xx = 0; xx < w; ++xx) dst[xx] += src[xx] * wr[xx];
                   } else {
                     for (int64_t xx = 0; xx < w; ++xx) dst[xx] += src[xx];
                   }
                 }
               });
}

}  // namespace freeswim::ops::cpu
