#include "ops/cpu/cpu_backend.h"

#include <cblas.h>

#include <algorithm>
#include <cmath>

#include "core/error.h"
#include "core/threads.h"

namespace freeswim::ops::cpu {

void require_f32(const Tensor& t, const char* op, const char* arg) {
  FS_CHECK(t.defined(), "{}: {} is missing", op, arg);
  FS_CHECK(t.device() == Device::CPU && t.dtype() == DType::F32,
           "{}: {} must be an f32 cpu tensor, got {}", op, arg, t.describe());
}

namespace {

// Rows of a [.., features] tensor.
int64_t rows_of(const Tensor& x) {
  return x.ndim() == 0 ? 1 : x.numel() / x.dim(-1);
}

class CpuBackend final : public Backend {
 public:
  Device device() const override { return Device::CPU; }

  Tensor linear(const Tensor& x, const Tensor& w, const Tensor& b) override {
    require_f32(x, "linear", "x");
    require_f32(w, "linear", "weight");
    FS_CHECK(w.ndim() == 2 && x.dim(-1) == w.dim(1), "linear: x {} does not match weight {}",
             x.describe(), w.describe());
    const int64_t M = rows_of(x), K = w.dim(1), N = w.dim(0);
    Shape out_shape = x.shape();
    out_shape.back() = N;
    Tensor y = Tensor::empty(out_shape);
    float* yd = y.data<float>();
    float beta = 0.f;
    if (b.defined()) {
      require_f32(b, "linear", "bias");
      FS_CHECK(b.numel() == N, "linear: bias {} does not match weight {}", b.describe(),
               w.describe());
      const float* bd = b.data<float>();
      for (int64_t i = 0; i < M; ++i) std::copy(bd, bd + N, yd + i * N);
      beta = 1.f;
    }
    if (M > 0 && N > 0 && K > 0) {
      // One BLAS call per kLinearRowBlock rows (ops.h): OpenBLAS rounds a row differently
      // depending on the call's row count, so fixed blocks make a product split into row
      // chunks at block multiples bit-identical to the whole one.
      const float* xd = x.data<float>();
      for (int64_t r0 = 0; r0 < M; r0 += kLinearRowBlock) {
        const int64_t m = std::min(kLinearRowBlock, M - r0);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, static_cast<int>(m),
                    static_cast<int>(N), static_cast<int>(K), 1.f, xd + r0 * K, static_cast<int>(K),
                    w.data<float>(), static_cast<int>(K), beta, yd + r0 * N, static_cast<int>(N));
      }
    } else if (!b.defined()) {
      std::fill(yd, yd + M * N, 0.f);
    }
    return y;
  }

  Tensor gelu_tanh(const Tensor& x) override { return map(x, "gelu_tanh", gelu_tanh_value); }

  // The composition of linear and gelu_tanh, the GELU applied in place on the product.
  Tensor linear_gelu_tanh(const Tensor& x, const Tensor& w, const Tensor& b) override {
    Tensor y = linear(x, w, b);
    float* yd = y.data<float>();
    parallel_for(y.numel(), kGrain, [&](int64_t s, int64_t e) {
      for (int64_t i = s; i < e; ++i) yd[i] = gelu_tanh_value(yd[i]);
    });
    return y;
  }

  void linear_add_gated(Tensor& x, const Tensor& y, const Tensor& w, const Tensor& b,
                        const Tensor& gate) override {
    require_f32(x, "linear_add_gated", "x");
    FS_CHECK(x.ndim() >= 1 && x.dim(-1) == w.dim(0),
             "linear_add_gated: x {} does not match weight {}", x.describe(), w.describe());
    add_gated(x, linear(y, w, b), gate);
  }

  void rms_norm_rope_3d(Tensor& x, const Tensor& weight, float eps, const Rope3D& rope) override {
    require_f32(x, "rms_norm_rope_3d", "x");
    FS_CHECK(x.ndim() == 3, "rms_norm_rope_3d: x must be [tokens, heads, head_dim], got {}",
             x.describe());
    Tensor y = rms_norm(x.reshape({x.dim(0), x.dim(1) * x.dim(2)}), weight, eps).reshape(x.shape());
    rope_3d(y, rope);
    std::copy(y.data<float>(), y.data<float>() + y.numel(), x.data<float>());
  }

  Tensor silu(const Tensor& x) override {
    return map(x, "silu", [](float v) { return v / (1.f + std::exp(-v)); });
  }

  Tensor layer_norm(const Tensor& x, const Tensor& weight, const Tensor& bias, float eps,
                    const Tensor& scale, const Tensor& shift) override {
    require_f32(x, "layer_norm", "x");
    const int64_t D = x.dim(-1), M = rows_of(x);
    const float* wd = optional(weight, D, "layer_norm", "weight");
    const float* bd = optional(bias, D, "layer_norm", "bias");
    const float* sc = optional(scale, D, "layer_norm", "scale");
    const float* sh = optional(shift, D, "layer_norm", "shift");
    Tensor y = Tensor::empty(x.shape());
    const float* xd = x.data<float>();
    float* yd = y.data<float>();
    parallel_for(M, std::max<int64_t>(1, kGrain / std::max<int64_t>(D, 1)),
                 [&](int64_t b, int64_t e) {
                   for (int64_t r = b; r < e; ++r) {
                     const float* xr = xd + r * D;
                     float* yr = yd + r * D;
                     double mean = 0, var = 0;
                     for (int64_t i = 0; i < D; ++i) mean += xr[i];
                     mean /= static_cast<double>(D);
                     for (int64_t i = 0; i < D; ++i) var += (xr[i] - mean) * (xr[i] - mean);
                     var /= static_cast<double>(D);
                     const float inv = static_cast<float>(1.0 / std::sqrt(var + eps));
                     const float m = static_cast<float>(mean);
                     for (int64_t i = 0; i < D; ++i) {
                       float v = (xr[i] - m) * inv;
                       if (wd) v *= wd[i];
                       if (bd) v += bd[i];
                       if (sc) v *= 1.f + sc[i];
                       if (sh) v += sh[i];
                       yr[i] = v;
                     }
                   }
                 });
    return y;
  }

  Tensor rms_norm(const Tensor& x, const Tensor& weight, float eps) override {
    require_f32(x, "rms_norm", "x");
    const int64_t D = x.dim(-1), M = rows_of(x);
    const float* wd = optional(weight, D, "rms_norm", "weight");
    Tensor y = Tensor::empty(x.shape());
    const float* xd = x.data<float>();
    float* yd = y.data<float>();
    parallel_for(M, std::max<int64_t>(1, kGrain / std::max<int64_t>(D, 1)),
                 [&](int64_t b, int64_t e) {
                   for (int64_t r = b; r < e; ++r) {
                     const float* xr = xd + r * D;
                     double ss = 0;
                     for (int64_t i = 0; i < D; ++i) ss += static_cast<double>(xr[i]) * xr[i];
                     const float inv =
                         static_cast<float>(1.0 / std::sqrt(ss / static_cast<double>(D) + eps));
                     for (int64_t i = 0; i < D; ++i)
                       yd[r * D + i] = xr[i] * inv * (wd ? wd[i] : 1.f);
                   }
                 });
    return y;
  }

  void rope_3d(Tensor& x, const Rope3D& rope) override {
    require_f32(x, "rope_3d", "x");
    FS_CHECK(x.ndim() == 3 && x.dim(0) == int64_t{rope.T} * rope.H * rope.W,
             "rope_3d: x {} does not match grid {}x{}x{}", x.describe(), rope.T, rope.H, rope.W);
    const int64_t heads = x.dim(1), hd = x.dim(2), pairs = hd / 2;
    const Tensor* tables[3] = {&rope.frame, &rope.row, &rope.col};
    const int positions[3] = {rope.T, rope.H, rope.W};
    for (int i = 0; i < 3; ++i)
      FS_CHECK(tables[i]->ndim() == 3 && tables[i]->dim(0) >= positions[i] &&
                   tables[i]->dim(1) == pairs && tables[i]->dim(2) == 2 && hd % 2 == 0,
               "rope_3d: table {} {} does not cover [{}, {}, 2] for head_dim {}", i,
               tables[i]->describe(), positions[i], pairs, hd);
    const float* ft = rope.frame.data<float>();
    const float* rt = rope.row.data<float>();
    const float* ct = rope.col.data<float>();
    float* xd = x.data<float>();
    const int H = rope.H, W = rope.W;
    parallel_for(x.dim(0), 256, [&](int64_t b, int64_t e) {
      for (int64_t tok = b; tok < e; ++tok) {
        const int64_t t = tok / (int64_t{H} * W), h = (tok / W) % H, w = tok % W;
        const float* f = ft + t * pairs * 2;
        const float* r = rt + h * pairs * 2;
        const float* c = ct + w * pairs * 2;
        for (int64_t head = 0; head < heads; ++head) {
          float* v = xd + (tok * heads + head) * hd;
          for (int64_t j = 0; j < pairs; ++j) {
            const float cs = f[2 * j] * r[2 * j] * c[2 * j];
            const float sn = f[2 * j + 1] * r[2 * j + 1] * c[2 * j + 1];
            const float a = v[2 * j], bb = v[2 * j + 1];
            v[2 * j] = a * cs - bb * sn;
            v[2 * j + 1] = a * sn + bb * cs;
          }
        }
      }
    });
  }

  Tensor attention(const Tensor& q, const Tensor& k, const Tensor& v, float scale,
                   const WindowGeometry* window) override {
    require_f32(q, "attention", "q");
    require_f32(k, "attention", "k");
    require_f32(v, "attention", "v");
    FS_CHECK(q.ndim() == 3 && k.ndim() == 3 && v.ndim() == 3 && q.dim(1) == k.dim(1) &&
                 q.dim(2) == k.dim(2) && k.shape() == v.shape(),
             "attention: q {} k {} v {} do not match", q.describe(), k.describe(), v.describe());
    if (window) {
      FS_CHECK(q.dim(0) == window->tokens() && k.dim(0) == window->tokens(),
               "attention: window grid {}x{}x{} does not match {} query tokens", window->T,
               window->H, window->W, q.dim(0));
      return attention_window(q, k, v, scale, *window);
    }
    return attention_full(q, k, v, scale);
  }

  Tensor add(const Tensor& a, const Tensor& b) override {
    require_f32(a, "add", "a");
    require_f32(b, "add", "b");
    FS_CHECK(b.numel() > 0 && a.numel() % b.numel() == 0, "add: {} vs {}", a.describe(),
             b.describe());
    Tensor y = Tensor::empty(a.shape());
    const float *ad = a.data<float>(), *bd = b.data<float>();
    float* yd = y.data<float>();
    const int64_t nb = b.numel();
    for (int64_t i = 0; i < a.numel(); ++i) yd[i] = ad[i] + bd[i % nb];
    return y;
  }

  void add_gated(Tensor& x, const Tensor& y, const Tensor& gate) override {
    require_f32(x, "add_gated", "x");
    require_f32(y, "add_gated", "y");
    FS_CHECK(x.numel() == y.numel(), "add_gated: {} vs {}", x.describe(), y.describe());
    const int64_t D = x.dim(-1);
    const float* g = optional(gate, D, "add_gated", "gate");
    float* xd = x.data<float>();
    const float* yd = y.data<float>();
    parallel_for(x.numel(), kGrain, [&](int64_t b, int64_t e) {
      for (int64_t i = b; i < e; ++i) xd[i] += g ? yd[i] * g[i % D] : yd[i];
    });
  }

  Tensor patchify(const Tensor& x, int pt, int ph, int pw) override {
    require_f32(x, "patchify", "x");
    FS_CHECK(x.ndim() == 4, "patchify: expected [C, F, H, W], got {}", x.describe());
    const int64_t C = x.dim(0), F = x.dim(1), H = x.dim(2), W = x.dim(3);
    FS_CHECK(F % pt == 0 && H % ph == 0 && W % pw == 0,
             "patchify: {} is not divisible by patch {}x{}x{}", x.describe(), pt, ph, pw);
    const int64_t T = F / pt, Hg = H / ph, Wg = W / pw, P = C * pt * ph * pw;
    Tensor y = Tensor::empty({T * Hg * Wg, P});
    const float* xd = x.data<float>();
    float* yd = y.data<float>();
    for (int64_t t = 0; t < T; ++t)
      for (int64_t h = 0; h < Hg; ++h)
        for (int64_t w = 0; w < Wg; ++w) {
          float* row = yd + ((t * Hg + h) * Wg + w) * P;
          for (int64_t c = 0; c < C; ++c)
            for (int kt = 0; kt < pt; ++kt)
              for (int kh = 0; kh < ph; ++kh)
                for (int kw = 0; kw < pw; ++kw)
                  *row++ = xd[((c * F + t * pt + kt) * H + h * ph + kh) * W + w * pw + kw];
        }
    return y;
  }

  Tensor unpatchify(const Tensor& x, int T, int Hg, int Wg, int pt, int ph, int pw) override {
    require_f32(x, "unpatchify", "x");
    const int64_t P = x.dim(-1), patch = int64_t{pt} * ph * pw;
    FS_CHECK(x.ndim() == 2 && x.dim(0) == int64_t{T} * Hg * Wg && P % patch == 0,
             "unpatchify: {} does not match grid {}x{}x{}", x.describe(), T, Hg, Wg);
    const int64_t C = P / patch, F = int64_t{T} * pt, H = int64_t{Hg} * ph, W = int64_t{Wg} * pw;
    Tensor y = Tensor::empty({C, F, H, W});
    const float* xd = x.data<float>();
    float* yd = y.data<float>();
    for (int64_t t = 0; t < T; ++t)
      for (int64_t h = 0; h < Hg; ++h)
        for (int64_t w = 0; w < Wg; ++w) {
          const float* row = xd + ((t * Hg + h) * Wg + w) * P;
          for (int kt = 0; kt < pt; ++kt)
            for (int kh = 0; kh < ph; ++kh)
              for (int kw = 0; kw < pw; ++kw)
                for (int64_t c = 0; c < C; ++c)
                  yd[((c * F + t * pt + kt) * H + h * ph + kh) * W + w * pw + kw] = *row++;
        }
    return y;
  }

  Tensor to_compute(const Tensor& x) override { return x.to(DType::F32); }

  Tensor embedding(const Tensor& table, const std::vector<int32_t>& ids) override {
    return cpu::embedding(table, ids);
  }
  Tensor mul(const Tensor& a, const Tensor& b) override { return cpu::mul(a, b); }
  Tensor attention_bias(const Tensor& q, const Tensor& k, const Tensor& v, float scale,
                        const Tensor& bias, const Tensor& key_mask) override {
    return cpu::attention_bias(q, k, v, scale, bias, key_mask);
  }

  Tensor conv3d(const Tensor& x, const Tensor& w, const Tensor& b, const Conv3dParams& p) override {
    return cpu::conv3d(x, w, b, p);
  }
  Tensor rms_norm_channels(const Tensor& x, const Tensor& gamma, const Tensor& bias,
                           bool silu) override {
    return cpu::rms_norm_channels(x, gamma, bias, silu);
  }
  Tensor upsample_nearest2x(const Tensor& x) override { return cpu::upsample_nearest2x(x); }
  Tensor concat(const Tensor& a, const Tensor& b, int dim) override {
    return cpu::concat(a, b, dim);
  }
  Tensor slice(const Tensor& x, int dim, int64_t begin, int64_t end) override {
    return cpu::slice(x, dim, begin, end);
  }
  Tensor transpose2d(const Tensor& x) override { return cpu::transpose2d(x); }
  Tensor clamp(const Tensor& x, float lo, float hi) override { return cpu::clamp(x, lo, hi); }
  Tensor channel_affine(const Tensor& x, const Tensor& scale, const Tensor& shift) override {
    return cpu::channel_affine(x, scale, shift);
  }
  void accumulate_tile(Tensor& acc, const Tensor& tile, const Tensor& weight, int64_t f0,
                       int64_t y0, int64_t x0) override {
    cpu::accumulate_tile(acc, tile, weight, f0, y0, x0);
  }

 private:
  template <typename Fn>
  static Tensor map(const Tensor& x, const char* op, Fn fn) {
    require_f32(x, op, "x");
    Tensor y = Tensor::empty(x.shape());
    const float* xd = x.data<float>();
    float* yd = y.data<float>();
    parallel_for(x.numel(), kGrain, [&](int64_t b, int64_t e) {
      for (int64_t i = b; i < e; ++i) yd[i] = fn(xd[i]);
    });
    return y;
  }

  // GELU with the tanh approximation, as torch's gelu(approximate="tanh").
  static float gelu_tanh_value(float v) {
    const float c = 0.7978845608028654f;  // sqrt(2/pi)
    return 0.5f * v * (1.f + std::tanh(c * (v + 0.044715f * v * v * v)));
  }

  static const float* optional(const Tensor& t, int64_t n, const char* op, const char* arg) {
    if (!t.defined()) return nullptr;
    require_f32(t, op, arg);
    FS_CHECK(t.numel() == n, "{}: {} has {} values, expected {}", op, arg, t.numel(), n);
    return t.data<float>();
  }
};

}  // namespace

Backend& cpu_backend() {
  static CpuBackend instance;
  return instance;
}

}  // namespace freeswim::ops::cpu
