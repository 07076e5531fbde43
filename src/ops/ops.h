// The one op set every model is written in. Model code calls these free functions; each
// dispatches on the device of its first tensor argument to that device's Backend (CPU: exact
// fp32, the oracle; CUDA: the fast path). Model code never branches on the device.
//
// Layout conventions: activations are [rows, features] row-major; attention tensors are
// [tokens, heads, head_dim] (what a [tokens, dim] projection produces). An undefined Tensor
// (Tensor{}) stands for "absent" where an argument is optional.
#pragma once

#include <cstdint>
#include <vector>

#include "core/tensor.h"
#include "freeswim/window_geometry.h"

namespace freeswim::ops {

// Rotary embedding tables for a 3D token grid. Each axis has a [positions, pairs, 2] table over
// all head_dim / 2 pairs of a head; pair j of a token at (t, h, w) is rotated by
//   cos = frame[t][j][0] * row[h][j][0] * col[w][j][0],  sin = (the same with [1]).
// An axis that does not feed a pair's cos (or sin) holds exactly 1 there, so a pair fed by one
// axis gets that axis's value unchanged. The product form exists because the reference model's
// layout (models/wan_rope.h) gives one pair of some head sizes its cos from one axis and its sin
// from another.
struct Rope3D {
  int T = 0, H = 0, W = 0;
  Tensor frame, row, col;  // [T, pairs, 2], [H, pairs, 2], [W, pairs, 2] f32 on the device
};

// How a backend may compute a convolution of fp32 data. The CPU backend is always exact fp32;
// CUDA: FP32 = fp32 FMA (no tensor cores), TF32 = tensor cores reading 10-bit mantissas with
// fp32 accumulation (PyTorch's default for cuDNN convolutions, torch.backends.cudnn.allow_tf32).
enum class ConvPrecision { FP32, TF32 };

// Zero padding per side and strides of a 3D convolution over [C, F, H, W] activations.
struct Conv3dParams {
  int pad_front = 0, pad_back = 0, pad_top = 0, pad_bottom = 0, pad_left = 0, pad_right = 0;
  int stride_t = 1, stride_h = 1, stride_w = 1;
  ConvPrecision precision = ConvPrecision::FP32;
};

// Rows of a `linear` product that the CPU backend computes in one BLAS call. BLAS results for a
// row depend on how the rows around it are blocked, so the CPU backend always blocks rows at
// multiples of this count from the first row: a caller that splits a product into row chunks
// starting at multiples of it (the DiT's FFN chunks) gets bit-identical results on the CPU.
constexpr int64_t kLinearRowBlock = 512;

class Backend {
 public:
  virtual ~Backend() = default;
  virtual Device device() const = 0;

  // y[M, N] = x[M, K] * w[N, K]^T (+ b[N]).
  virtual Tensor linear(const Tensor& x, const Tensor& w, const Tensor& b) = 0;
  virtual Tensor gelu_tanh(const Tensor& x) = 0;
  virtual Tensor silu(const Tensor& x) = 0;
  // LayerNorm over the last dimension (optional affine weight/bias), then optional adaLN
  // modulation y * (1 + scale) + shift with scale, shift of [features].
  virtual Tensor layer_norm(const Tensor& x, const Tensor& weight, const Tensor& bias, float eps,
                            const Tensor& scale, const Tensor& shift) = 0;
  // RMSNorm over the last dimension with a weight.
  virtual Tensor rms_norm(const Tensor& x, const Tensor& weight, float eps) = 0;
  // In place: rotates pairs (x[2i], x[2i+1]) of every head of x [T*H*W, heads, head_dim].
  virtual void rope_3d(Tensor& x, const Rope3D& rope) = 0;
  // softmax(scale * q k^T) v per head. q [Nq, heads, d], k and v [Nk, heads, d]. With a
  // window, Nq == Nk == window->tokens() and each query sees only its inward window.
  virtual Tensor attention(const Tensor& q, const Tensor& k, const Tensor& v, float scale,
                           const WindowGeometry* window) = 0;
  // Elementwise a + b; b may be smaller, repeating over a's leading rows (numel(b) divides
  // numel(a)).
  virtual Tensor add(const Tensor& a, const Tensor& b) = 0;
  // In place x += y * gate, gate [features] broadcast over rows (gate absent: x += y).
  virtual void add_gated(Tensor& x, const Tensor& y, const Tensor& gate) = 0;
  // Fused forms of the DiT's hot sequences; each computes what the composition of the plain ops
  // computes (the CPU backend literally composes them), a backend may round less in between.
  // gelu_tanh(linear(x, w, b)).
  virtual Tensor linear_gelu_tanh(const Tensor& x, const Tensor& w, const Tensor& b) = 0;
  // In place x += (y w^T + b) * gate, i.e. add_gated(x, linear(y, w, b), gate): x [M, N],
  // y [M, K], w [N, K], b and gate [N] or absent. y must not overlap x.
  virtual void linear_add_gated(Tensor& x, const Tensor& y, const Tensor& w, const Tensor& b,
                                const Tensor& gate) = 0;
  // In place rms_norm then rope_3d: x [T*H*W, heads, head_dim], each token's heads*head_dim
  // values RMS-normalised together with weight [heads*head_dim] (Wan's rms_norm_across_heads),
  // then every head rotated.
  virtual void rms_norm_rope_3d(Tensor& x, const Tensor& weight, float eps, const Rope3D& rope) = 0;
  // x [C, F, H, W] -> [(F/pt)*(H/ph)*(W/pw), C*pt*ph*pw], patch vector ordered (c, kt, kh, kw)
  // as a Conv3d weight flattens.
  virtual Tensor patchify(const Tensor& x, int pt, int ph, int pw) = 0;
  // Inverse for the output head: x [T*Hg*Wg, pt*ph*pw*C] (vector ordered (kt, kh, kw, c)) ->
  // [C, T*pt, Hg*ph, Wg*pw].
  virtual Tensor unpatchify(const Tensor& x, int T, int Hg, int Wg, int pt, int ph, int pw) = 0;
  // Conversion to the backend's compute dtype (weights are converted once at load).
  virtual Tensor to_compute(const Tensor& x) = 0;

  // Text encoder (UMT5) ops.
  // Rows of `table` [V, D] picked by `ids` -> [ids.size(), D]; an id outside [0, V) throws.
  virtual Tensor embedding(const Tensor& table, const std::vector<int32_t>& ids) = 0;
  // Elementwise a * b (equal numel; the result has a's shape).
  virtual Tensor mul(const Tensor& a, const Tensor& b) = 0;
  // softmax(scale * q k^T + bias) v per head with padded keys left out. q [Nq, heads, d], k and
  // v [Nk, heads, d]; bias [Nq, Nk, heads] (the layout a gather of a [buckets, heads] table
  // gives) or absent; key_mask [Nk] (nonzero: attend, 0: padding) or absent. A query whose keys
  // are all padding averages every value uniformly, as the references' finite mask value does.
  virtual Tensor attention_bias(const Tensor& q, const Tensor& k, const Tensor& v, float scale,
                                const Tensor& bias, const Tensor& key_mask) = 0;

  // Video VAE ops. Activations are [C, F, H, W] (batch 1).
  // Convolution of x [Ci, F, H, W] with w [Co, Ci, kt, kh, kw] (+ b [Co]); zero padding and
  // strides from `p`. -> [Co, Fo, Ho, Wo].
  virtual Tensor conv3d(const Tensor& x, const Tensor& w, const Tensor& b,
                        const Conv3dParams& p) = 0;
  // x [C, ...]: each position's channel vector divided by max(|v|_2, 1e-12) (F.normalize), times
  // sqrt(C) * gamma[c] (+ bias[c]); then SiLU when `silu`.
  virtual Tensor rms_norm_channels(const Tensor& x, const Tensor& gamma, const Tensor& bias,
                                   bool silu) = 0;
  // Nearest-neighbour 2x spatial upsampling: [C, F, H, W] -> [C, F, 2H, 2W].
  virtual Tensor upsample_nearest2x(const Tensor& x) = 0;
  // a and b joined along `dim` (every other dimension equal).
  virtual Tensor concat(const Tensor& a, const Tensor& b, int dim) = 0;
  // A contiguous copy of indices [begin, end) of `dim`.
  virtual Tensor slice(const Tensor& x, int dim, int64_t begin, int64_t end) = 0;
  // [A, B] -> [B, A].
  virtual Tensor transpose2d(const Tensor& x) = 0;
  virtual Tensor clamp(const Tensor& x, float lo, float hi) = 0;
  // y[c, ...] = x[c, ...] * scale[c] + shift[c] (either may be absent).
  virtual Tensor channel_affine(const Tensor& x, const Tensor& scale, const Tensor& shift) = 0;
  // In place: acc[c, f0 + f, y0 + y, x0 + x] += tile[c, f, y, x] * weight[y, x] (weight [h, w],
  // or absent for 1). Assembles chunks and blends overlapping tiles.
  virtual void accumulate_tile(Tensor& acc, const Tensor& tile, const Tensor& weight, int64_t f0,
                               int64_t y0, int64_t x0) = 0;
};

// The backend of a device (throws Error when that device is not built in).
Backend& backend(Device device);
void register_backend(Device device, Backend* b);

inline Tensor linear(const Tensor& x, const Tensor& w, const Tensor& b = {}) {
  return backend(x.device()).linear(x, w, b);
}
inline Tensor gelu_tanh(const Tensor& x) {
  return backend(x.device()).gelu_tanh(x);
}
inline Tensor silu(const Tensor& x) {
  return backend(x.device()).silu(x);
}
inline Tensor layer_norm(const Tensor& x, const Tensor& weight, const Tensor& bias, float eps,
                         const Tensor& scale = {}, const Tensor& shift = {}) {
  return backend(x.device()).layer_norm(x, weight, bias, eps, scale, shift);
}
inline Tensor rms_norm(const Tensor& x, const Tensor& weight, float eps) {
  return backend(x.device()).rms_norm(x, weight, eps);
}
inline void rope_3d(Tensor& x, const Rope3D& rope) {
  backend(x.device()).rope_3d(x, rope);
}
inline Tensor attention(const Tensor& q, const Tensor& k, const Tensor& v, float scale,
                        const WindowGeometry* window = nullptr) {
  return backend(q.device()).attention(q, k, v, scale, window);
}
inline Tensor add(const Tensor& a, const Tensor& b) {
  return backend(a.device()).add(a, b);
}
inline void add_gated(Tensor& x, const Tensor& y, const Tensor& gate = {}) {
  backend(x.device()).add_gated(x, y, gate);
}
inline Tensor linear_gelu_tanh(const Tensor& x, const Tensor& w, const Tensor& b = {}) {
  return backend(x.device()).linear_gelu_tanh(x, w, b);
}
inline void linear_add_gated(Tensor& x, const Tensor& y, const Tensor& w, const Tensor& b = {},
                             const Tensor& gate = {}) {
  backend(x.device()).linear_add_gated(x, y, w, b, gate);
}
inline void rms_norm_rope_3d(Tensor& x, const Tensor& weight, float eps, const Rope3D& rope) {
  backend(x.device()).rms_norm_rope_3d(x, weight, eps, rope);
}
inline Tensor patchify(const Tensor& x, int pt, int ph, int pw) {
  return backend(x.device()).patchify(x, pt, ph, pw);
}
inline Tensor unpatchify(const Tensor& x, int T, int Hg, int Wg, int pt, int ph, int pw) {
  return backend(x.device()).unpatchify(x, T, Hg, Wg, pt, ph, pw);
}
inline Tensor embedding(const Tensor& table, const std::vector<int32_t>& ids) {
  return backend(table.device()).embedding(table, ids);
}
inline Tensor mul(const Tensor& a, const Tensor& b) {
  return backend(a.device()).mul(a, b);
}
inline Tensor attention_bias(const Tensor& q, const Tensor& k, const Tensor& v, float scale,
                             const Tensor& bias, const Tensor& key_mask = {}) {
  return backend(q.device()).attention_bias(q, k, v, scale, bias, key_mask);
}
inline Tensor conv3d(const Tensor& x, const Tensor& w, const Tensor& b, const Conv3dParams& p) {
  return backend(x.device()).conv3d(x, w, b, p);
}
inline Tensor rms_norm_channels(const Tensor& x, const Tensor& gamma, const Tensor& bias = {},
                                bool silu = false) {
  return backend(x.device()).rms_norm_channels(x, gamma, bias, silu);
}
inline Tensor upsample_nearest2x(const Tensor& x) {
  return backend(x.device()).upsample_nearest2x(x);
}
inline Tensor concat(const Tensor& a, const Tensor& b, int dim) {
  return backend(a.device()).concat(a, b, dim);
}
inline Tensor slice(const Tensor& x, int dim, int64_t begin, int64_t end) {
  return backend(x.device()).slice(x, dim, begin, end);
}
inline Tensor transpose2d(const Tensor& x) {
  return backend(x.device()).transpose2d(x);
}
inline Tensor clamp(const Tensor& x, float lo, float hi) {
  return backend(x.device()).clamp(x, lo, hi);
}
inline Tensor channel_affine(const Tensor& x, const Tensor& scale, const Tensor& shift) {
  return backend(x.device()).channel_affine(x, scale, shift);
}
inline void accumulate_tile(Tensor& acc, const Tensor& tile, const Tensor& weight, int64_t f0,
                            int64_t y0, int64_t x0) {
  backend(acc.device()).accumulate_tile(acc, tile, weight, f0, y0, x0);
}
inline Tensor to_compute(const Tensor& x, Device device) {
  return backend(device).to_compute(x.to(device));
}

}  // namespace freeswim::ops
