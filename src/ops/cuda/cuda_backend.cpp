// The CUDA Backend: argument checks and dtype policy (docs/cuda_backend.md) on the host, work
// in the kernels of kernels.h, cuBLASLt (gemm.h) and fs_cuda_attention. Activations are bf16;
// vectors and modulation tables stay fp32; every kernel computes in fp32 and rounds on store.
#include "ops/cuda/cuda_backend.h"

#include <algorithm>
#include <cstdlib>

#include "core/error.h"
#include "ops/cuda/attention/attention.h"
#include "ops/cuda/conv3d.h"
#include "ops/cuda/cuda_check.h"
#include "ops/cuda/gemm.h"
#include "ops/cuda/kernels.h"
#include "ops/cuda/vae_kernels.h"
#include "ops/ops.h"

namespace freeswim::ops::cuda {

void register_cuda_memory();                      // memory.cpp
Backend* make_profiling_backend(Backend* inner);  // profile.cpp

namespace {

bool is_activation_type(DType t) {
  return t == DType::F32 || t == DType::BF16;
}

void require(const Tensor& t, const char* op, const char* arg) {
  FS_CHECK(t.defined(), "{}: {} is missing", op, arg);
  FS_CHECK(t.device() == Device::CUDA && is_activation_type(t.dtype()),
           "{}: {} must be an f32 or bf16 cuda tensor, got {}", op, arg, t.describe());
}

// An optional fp32 vector of n values (norm weights, modulation rows); null when absent.
const float* vector_arg(const Tensor& t, int64_t n, const char* op, const char* arg) {
  if (!t.defined()) return nullptr;
  FS_CHECK(t.device() == Device::CUDA && t.dtype() == DType::F32,
           "{}: {} must be an f32 cuda tensor (vectors stay fp32), got {}", op, arg, t.describe());
  FS_CHECK(t.numel() == n, "{}: {} has {} values, expected {}", op, arg, t.numel(), n);
  return t.data<float>();
}

int64_t rows_of(const Tensor& x) {
  return x.ndim() == 0 ? 1 : x.numel() / x.dim(-1);
}

Tensor empty_like(const Tensor& x) {
  return Tensor::empty(x.shape(), x.dtype(), Device::CUDA);
}

// The tensor in bf16 (a converted copy when it is not).
Tensor as_bf16(const Tensor& t) {
  if (t.dtype() == DType::BF16) return t;
  Tensor y = Tensor::empty(t.shape(), DType::BF16, Device::CUDA);
  check_cuda(kernels::convert(t.raw(), t.dtype(), y.raw(), DType::BF16, t.numel()), "convert");
  return y;
}

int dim_index(const Tensor& x, int dim, const char* op) {
  const int d = dim < 0 ? dim + x.ndim() : dim;
  FS_CHECK(d >= 0 && d < x.ndim(), "{}: dim {} out of range for {}", op, dim, x.describe());
  return d;
}

// Product of the dimensions before `d`.
int64_t outer_of(const Shape& s, int d) {
  int64_t n = 1;
  for (int i = 0; i < d; ++i) n *= s[static_cast<size_t>(i)];
  return n;
}

GpuKernels g_kernels = GpuKernels::automatic;  // CudaBackendOptions::kernels

attention::AttentionPath attention_path() {
  switch (g_kernels) {
    case GpuKernels::hopper:
      return attention::AttentionPath::hopper;
    case GpuKernels::portable:
    case GpuKernels::portable_narrow:
      return attention::AttentionPath::portable;
    default:
      return attention::AttentionPath::automatic;
  }
}

class CudaBackend final : public Backend {
 public:
  Device device() const override { return Device::CUDA; }

  Tensor linear(const Tensor& x, const Tensor& w, const Tensor& b) override {
    return linear_with(x, w, b, GemmEpilogue::none, "linear");
  }

  Tensor gelu_tanh(const Tensor& x) override {
    return unary(x, kernels::Unary::gelu_tanh, "gelu_tanh");
  }

  // bf16: the GELU in cuBLASLt's epilogue where it is the tanh form (gemm.cpp), else in place
  // after the product; fp32 activations: the plain product, then GELU in place.
  Tensor linear_gelu_tanh(const Tensor& x, const Tensor& w, const Tensor& b) override {
    return linear_with(x, w, b, GemmEpilogue::gelu_tanh, "linear_gelu_tanh");
  }

  // x += gate * (y w^T + b) as ONE product where cuBLASLt takes it: D = alpha * (y w^T) + 1 * C
  // + bias with C = D = x, alpha = gate per output feature, bias = gate * b (an fp32 vector made
  // here; the bias epilogue adds after the alpha scaling). Everything is fp32 up to one rounding
  // of x, where the reference (and the unfused path) rounds y w^T + b to bf16 first and then
  // (x + y * gate) again: the fused result is the more accurate of the two, by at most one bf16
  // rounding of gate * y per element. Falls back to linear then add_gated.
  void linear_add_gated(Tensor& x, const Tensor& y, const Tensor& w, const Tensor& b,
                        const Tensor& gate) override {
    require(x, "linear_add_gated", "x");
    require(y, "linear_add_gated", "y");
    require(w, "linear_add_gated", "weight");
    FS_CHECK(w.ndim() == 2 && x.ndim() >= 1 && y.ndim() >= 1 && y.dim(-1) == w.dim(1) &&
                 x.dim(-1) == w.dim(0) && rows_of(x) == rows_of(y),
             "linear_add_gated: x {} y {} do not match weight {}", x.describe(), y.describe(),
             w.describe());
    const int64_t M = rows_of(x), K = w.dim(1), N = w.dim(0);
    const float* g = vector_arg(gate, N, "linear_add_gated", "gate");
    if (b.defined()) {
      require(b, "linear_add_gated", "bias");
      FS_CHECK(b.numel() == N, "linear_add_gated: bias {} does not match weight {}", b.describe(),
               w.describe());
    }
    if (x.dtype() == DType::BF16 && y.dtype() == DType::BF16 && w.dtype() == DType::BF16) {
      Tensor bias;  // fp32 [N]: gate * b, or b
      if (b.defined()) {
        if (g) {
          bias = Tensor::empty({N}, DType::F32, Device::CUDA);
          check_cuda(kernels::mul(gate.raw(), DType::F32, b.raw(), b.dtype(), bias.raw(), N),
                     "gate * bias");
        } else if (b.dtype() == DType::F32) {
          bias = b;
        } else {
          bias = Tensor::empty({N}, DType::F32, Device::CUDA);
          check_cuda(kernels::convert(b.raw(), b.dtype(), bias.raw(), DType::F32, N), "convert");
        }
      }
      if (gemm_bf16_accumulate(y.raw(), w.raw(), g, bias.defined() ? bias.data<float>() : nullptr,
                               x.raw(), M, N, K))
        return;
    }
    add_gated(x, linear(y, w, b), gate);
  }
  Tensor silu(const Tensor& x) override { return unary(x, kernels::Unary::silu, "silu"); }

  Tensor layer_norm(const Tensor& x, const Tensor& weight, const Tensor& bias, float eps,
                    const Tensor& scale, const Tensor& shift) override {
    require(x, "layer_norm", "x");
    const int64_t D = x.dim(-1);
    Tensor y = empty_like(x);
    check_cuda(kernels::layer_norm(x.raw(), y.raw(), x.dtype(), rows_of(x), D, eps,
                                   vector_arg(weight, D, "layer_norm", "weight"),
                                   vector_arg(bias, D, "layer_norm", "bias"),
                                   vector_arg(scale, D, "layer_norm", "scale"),
                                   vector_arg(shift, D, "layer_norm", "shift")),
               "layer_norm kernel");
    return y;
  }

  Tensor rms_norm(const Tensor& x, const Tensor& weight, float eps) override {
    require(x, "rms_norm", "x");
    const int64_t D = x.dim(-1);
    Tensor y = empty_like(x);
    check_cuda(kernels::rms_norm(x.raw(), y.raw(), x.dtype(), rows_of(x), D, eps,
                                 vector_arg(weight, D, "rms_norm", "weight")),
               "rms_norm kernel");
    return y;
  }

  // One block per token: the sum of squares over its heads*head_dim values, then each pair
  // normalised, weighted, rotated and stored in place, fp32 throughout with one rounding (the
  // unfused ops round the normalised value once more before the rotation).
  void rms_norm_rope_3d(Tensor& x, const Tensor& weight, float eps, const Rope3D& rope) override {
    require(x, "rms_norm_rope_3d", "x");
    FS_CHECK(x.ndim() == 3, "rms_norm_rope_3d: x must be [tokens, heads, head_dim], got {}",
             x.describe());
    const float* wd = vector_arg(weight, x.dim(1) * x.dim(2), "rms_norm_rope_3d", "weight");
    const RopeArgs r = rope_args(x, rope, "rms_norm_rope_3d");
    check_cuda(kernels::rms_norm_rope_3d(x.raw(), x.dtype(), rope.T, rope.H, rope.W,
                                         static_cast<int>(x.dim(1)), eps, wd, r.frame, r.row, r.col,
                                         r.pairs),
               "rms_norm_rope kernel");
  }

  void rope_3d(Tensor& x, const Rope3D& rope) override {
    require(x, "rope_3d", "x");
    const RopeArgs r = rope_args(x, rope, "rope_3d");
    check_cuda(kernels::rope_3d(x.raw(), x.dtype(), rope.T, rope.H, rope.W,
                                static_cast<int>(x.dim(1)), r.frame, r.row, r.col, r.pairs),
               "rope kernel");
  }

  Tensor attention(const Tensor& q_in, const Tensor& k_in, const Tensor& v_in, float scale,
                   const WindowGeometry* window) override {
    require(q_in, "attention", "q");
    require(k_in, "attention", "k");
    require(v_in, "attention", "v");
    FS_CHECK(q_in.ndim() == 3 && k_in.ndim() == 3 && v_in.ndim() == 3 &&
                 q_in.dim(1) == k_in.dim(1) && q_in.dim(2) == k_in.dim(2) &&
                 k_in.shape() == v_in.shape(),
             "attention: q {} k {} v {} do not match", q_in.describe(), k_in.describe(),
             v_in.describe());
    const int64_t nq = q_in.dim(0), nk = k_in.dim(0);
    FS_CHECK(nk > 0, "attention: no keys");
    if (window)
      FS_CHECK(nq == window->tokens() && nk == window->tokens(),
               "attention: window grid {}x{}x{} does not match {} query tokens", window->T,
               window->H, window->W, nq);
    // All-fp32 inputs (the VAE's middle attention: the VAE runs in fp32) stay fp32, in the
    // biased-attention kernel without bias or mask (head_dim up to 512: the VAE's 384).
    if (!window && q_in.dtype() == DType::F32 && k_in.dtype() == DType::F32 &&
        v_in.dtype() == DType::F32) {
      const int d = static_cast<int>(q_in.dim(2));
      FS_CHECK(d > 0 && d <= kernels::kMaxBiasedHeadDim,
               "attention: fp32 head_dim {} is not supported on cuda (1..{})", d,
               kernels::kMaxBiasedHeadDim);
      Tensor out = Tensor::empty(q_in.shape(), DType::F32, Device::CUDA);
      if (nq == 0) return out;
      if (attention_f32_by_products(q_in, k_in, v_in, out, nq, nk, scale)) return out;
      check_cuda(kernels::attention_bias(q_in.raw(), k_in.raw(), v_in.raw(), out.raw(), DType::F32,
                                         nq, nk, static_cast<int>(q_in.dim(1)), d, scale, nullptr,
                                         DType::F32, nullptr),
                 "attention kernel");
      return out;
    }
    // Otherwise attention runs in bf16 (a mixed call, e.g. an fp32 one-token context, is
    // converted).
    const Tensor q = as_bf16(q_in), k = as_bf16(k_in), v = as_bf16(v_in);
    const int heads = static_cast<int>(q.dim(1)), d = static_cast<int>(q.dim(2));
    Tensor out = Tensor::empty(q.shape(), DType::BF16, Device::CUDA);
    if (nq == 0) return out;
    if (d == 64 || d == 128) {
      attention::AttentionOptions options;
      options.path = attention_path();
      if (g_kernels == GpuKernels::portable_narrow)
        options.portable_block = attention::PortableBlock::narrow;
      if (window)
        attention::window_attention_forward(q.raw(), k.raw(), v.raw(), out.raw(), heads, d, *window,
                                            scale, stream(), options);
      else
        attention::dense_attention_forward(q.raw(), k.raw(), v.raw(), out.raw(), nq, nk, heads, d,
                                           scale, stream(), options);
    } else {
      FS_CHECK(d > 0 && d <= 256, "attention: head_dim {} is not supported on cuda (1..256)", d);
      check_cuda(kernels::attention_plain(q.raw(), k.raw(), v.raw(), out.raw(), DType::BF16, nq, nk,
                                          heads, d, scale, window),
                 "attention kernel");
    }
    return out;
  }

  Tensor add(const Tensor& a, const Tensor& b) override {
    require(a, "add", "a");
    require(b, "add", "b");
    FS_CHECK(b.numel() > 0 && a.numel() % b.numel() == 0, "add: {} vs {}", a.describe(),
             b.describe());
    Tensor y = empty_like(a);
    check_cuda(kernels::add(a.raw(), a.dtype(), b.raw(), b.dtype(), y.raw(), a.numel(), b.numel()),
               "add kernel");
    return y;
  }

  void add_gated(Tensor& x, const Tensor& y, const Tensor& gate) override {
    require(x, "add_gated", "x");
    require(y, "add_gated", "y");
    FS_CHECK(x.numel() == y.numel(), "add_gated: {} vs {}", x.describe(), y.describe());
    const int64_t D = x.dim(-1);
    check_cuda(kernels::add_gated(x.raw(), x.dtype(), y.raw(), y.dtype(),
                                  vector_arg(gate, D, "add_gated", "gate"), x.numel(), D),
               "add_gated kernel");
  }

  Tensor patchify(const Tensor& x, int pt, int ph, int pw) override {
    require(x, "patchify", "x");
    FS_CHECK(x.ndim() == 4, "patchify: expected [C, F, H, W], got {}", x.describe());
    FS_CHECK(pt > 0 && ph > 0 && pw > 0, "patchify: patch {}x{}x{}", pt, ph, pw);
    const int64_t C = x.dim(0), F = x.dim(1), H = x.dim(2), W = x.dim(3);
    FS_CHECK(F % pt == 0 && H % ph == 0 && W % pw == 0,
             "patchify: {} is not divisible by patch {}x{}x{}", x.describe(), pt, ph, pw);
    Tensor y =
        Tensor::empty({(F / pt) * (H / ph) * (W / pw), C * pt * ph * pw}, x.dtype(), Device::CUDA);
    check_cuda(kernels::patchify(x.raw(), y.raw(), static_cast<int>(dtype_size(x.dtype())), C, F, H,
                                 W, pt, ph, pw),
               "patchify kernel");
    return y;
  }

  Tensor unpatchify(const Tensor& x, int T, int Hg, int Wg, int pt, int ph, int pw) override {
    require(x, "unpatchify", "x");
    const int64_t patch = int64_t{pt} * ph * pw;
    FS_CHECK(
        x.ndim() == 2 && patch > 0 && x.dim(0) == int64_t{T} * Hg * Wg && x.dim(1) % patch == 0,
        "unpatchify: {} does not match grid {}x{}x{}", x.describe(), T, Hg, Wg);
    const int64_t C = x.dim(1) / patch;
    Tensor y = Tensor::empty({C, int64_t{T} * pt, int64_t{Hg} * ph, int64_t{Wg} * pw}, x.dtype(),
                             Device::CUDA);
    check_cuda(kernels::unpatchify(x.raw(), y.raw(), static_cast<int>(dtype_size(x.dtype())), C, T,
                                   Hg, Wg, pt, ph, pw),
               "unpatchify kernel");
    return y;
  }

  // Vectors and tensors with a leading dimension of 1 (biases, norm weights, the [1, 6, dim]
  // modulation tables, the [1, freq_dim] timestep sinusoid) stay fp32; the rest is bf16.
  Tensor to_compute(const Tensor& x_in) override {
    FS_CHECK(x_in.defined(), "to_compute: missing tensor");
    FS_CHECK(
        x_in.dtype() == DType::F32 || x_in.dtype() == DType::BF16 || x_in.dtype() == DType::F16,
        "to_compute: {} cannot become a cuda compute tensor (F32, BF16 or F16 expected)",
        x_in.describe());
    const Tensor x = x_in.to(Device::CUDA);
    const bool keep_f32 = x.ndim() <= 1 || x.dim(0) == 1;
    const DType want = keep_f32 ? DType::F32 : DType::BF16;
    if (x.dtype() == want) return x;
    Tensor y = Tensor::empty(x.shape(), want, Device::CUDA);
    check_cuda(kernels::convert(x.raw(), x.dtype(), y.raw(), want, x.numel()), "convert kernel");
    return y;
  }

  // Text encoder (UMT5) ops.
  Tensor embedding(const Tensor& table, const std::vector<int32_t>& ids) override {
    require(table, "embedding", "table");
    FS_CHECK(table.ndim() == 2, "embedding: table must be [V, D], got {}", table.describe());
    const int64_t V = table.dim(0), D = table.dim(1), n = static_cast<int64_t>(ids.size());
    for (int32_t id : ids)
      FS_CHECK(id >= 0 && id < V, "embedding: token id {} outside the table's {} rows", id, V);
    Tensor y = Tensor::empty({n, D}, table.dtype(), Device::CUDA);
    if (n == 0) return y;
    Tensor host_ids = Tensor::empty({n}, DType::I32);
    std::copy(ids.begin(), ids.end(), host_ids.data<int32_t>());
    const Tensor dev_ids = host_ids.to(Device::CUDA);
    check_cuda(kernels::gather_rows(table.raw(), dev_ids.data<int32_t>(), y.raw(),
                                    static_cast<int>(dtype_size(table.dtype())), n, D),
               "embedding kernel");
    return y;
  }
  Tensor mul(const Tensor& a, const Tensor& b) override {
    require(a, "mul", "a");
    require(b, "mul", "b");
    FS_CHECK(a.numel() == b.numel(), "mul: {} vs {}", a.describe(), b.describe());
    Tensor y = empty_like(a);
    check_cuda(kernels::mul(a.raw(), a.dtype(), b.raw(), b.dtype(), y.raw(), a.numel()),
               "mul kernel");
    return y;
  }
  Tensor attention_bias(const Tensor& q, const Tensor& k, const Tensor& v, float scale,
                        const Tensor& bias, const Tensor& key_mask) override {
    require(q, "attention_bias", "q");
    require(k, "attention_bias", "k");
    require(v, "attention_bias", "v");
    FS_CHECK(q.ndim() == 3 && k.ndim() == 3 && q.dim(1) == k.dim(1) && q.dim(2) == k.dim(2) &&
                 k.shape() == v.shape() && q.dtype() == k.dtype() && k.dtype() == v.dtype(),
             "attention_bias: q {} k {} v {} do not match", q.describe(), k.describe(),
             v.describe());
    const int64_t nq = q.dim(0), nk = k.dim(0), heads = q.dim(1);
    const int d = static_cast<int>(q.dim(2));
    FS_CHECK(nk > 0, "attention_bias: no keys");
    FS_CHECK(d > 0 && d <= kernels::kMaxBiasedHeadDim,
             "attention_bias: head_dim {} is not supported on cuda (1..{})", d,
             kernels::kMaxBiasedHeadDim);
    if (bias.defined()) {
      require(bias, "attention_bias", "bias");
      FS_CHECK(bias.numel() == nq * nk * heads, "attention_bias: bias {} is not [{}, {}, {}]",
               bias.describe(), nq, nk, heads);
    }
    const float* mask = vector_arg(key_mask, nk, "attention_bias", "key_mask");
    Tensor out = empty_like(q);
    check_cuda(kernels::attention_bias(q.raw(), k.raw(), v.raw(), out.raw(), q.dtype(), nq, nk,
                                       static_cast<int>(heads), d, scale,
                                       bias.defined() ? bias.raw() : nullptr,
                                       bias.defined() ? bias.dtype() : DType::F32, mask),
               "attention_bias kernel");
    return out;
  }

  // VAE ops: F32 (the VAE's dtype on the GPU) or BF16 activations, per-channel vectors F32.
  Tensor conv3d(const Tensor& x, const Tensor& w, const Tensor& b, const Conv3dParams& p) override {
    return cuda::conv3d(x, w, b, p);
  }

  Tensor rms_norm_channels(const Tensor& x, const Tensor& gamma, const Tensor& bias,
                           bool silu) override {
    require(x, "rms_norm_channels", "x");
    FS_CHECK(x.ndim() >= 1, "rms_norm_channels: x is a scalar");
    const int64_t C = x.dim(0), N = C > 0 ? x.numel() / C : 0;
    Tensor y = empty_like(x);
    check_cuda(kernels::rms_norm_channels(x.raw(), y.raw(), x.dtype(), C, N,
                                          vector_arg(gamma, C, "rms_norm_channels", "gamma"),
                                          vector_arg(bias, C, "rms_norm_channels", "bias"), silu),
               "rms_norm_channels kernel");
    return y;
  }

  Tensor upsample_nearest2x(const Tensor& x) override {
    require(x, "upsample_nearest2x", "x");
    FS_CHECK(x.ndim() == 4, "upsample_nearest2x: expected [C, F, H, W], got {}", x.describe());
    Tensor y =
        Tensor::empty({x.dim(0), x.dim(1), 2 * x.dim(2), 2 * x.dim(3)}, x.dtype(), Device::CUDA);
    check_cuda(kernels::upsample_nearest2x(x.raw(), y.raw(), x.dtype(), x.dim(0) * x.dim(1),
                                           x.dim(2), x.dim(3)),
               "upsample kernel");
    return y;
  }

  Tensor concat(const Tensor& a, const Tensor& b, int dim) override {
    require(a, "concat", "a");
    require(b, "concat", "b");
    FS_CHECK(a.dtype() == b.dtype(), "concat: {} vs {} (dtypes differ)", a.describe(),
             b.describe());
    const int d = dim_index(a, dim, "concat");
    const Shape &sa = a.shape(), &sb = b.shape();
    FS_CHECK(sa.size() == sb.size(), "concat: {} vs {}", a.describe(), b.describe());
    for (size_t i = 0; i < sa.size(); ++i)
      FS_CHECK(static_cast<int>(i) == d || sa[i] == sb[i], "concat: {} vs {} along dim {}",
               a.describe(), b.describe(), d);
    Shape so = sa;
    so[static_cast<size_t>(d)] += sb[static_cast<size_t>(d)];
    Tensor y = Tensor::empty(so, a.dtype(), Device::CUDA);
    const int64_t outer = outer_of(sa, d);
    const int64_t na = outer > 0 ? a.numel() / outer : 0, nb = outer > 0 ? b.numel() / outer : 0;
    const int eb = static_cast<int>(dtype_size(a.dtype()));
    check_cuda(kernels::copy_blocks(a.raw(), na, 0, y.raw(), na + nb, 0, outer, na, eb),
               "concat kernel");
    check_cuda(kernels::copy_blocks(b.raw(), nb, 0, y.raw(), na + nb, na, outer, nb, eb),
               "concat kernel");
    return y;
  }

  Tensor slice(const Tensor& x, int dim, int64_t begin, int64_t end) override {
    require(x, "slice", "x");
    const int d = dim_index(x, dim, "slice");
    const int64_t n = x.dim(d);
    FS_CHECK(0 <= begin && begin <= end && end <= n,
             "slice: [{}, {}) out of range for dim {} of {}", begin, end, d, x.describe());
    Shape so = x.shape();
    so[static_cast<size_t>(d)] = end - begin;
    Tensor y = Tensor::empty(so, x.dtype(), Device::CUDA);
    const int64_t outer = outer_of(x.shape(), d);
    const int64_t inner = n > 0 && outer > 0 ? x.numel() / (outer * n) : 0;
    check_cuda(
        kernels::copy_blocks(x.raw(), n * inner, begin * inner, y.raw(), (end - begin) * inner, 0,
                             outer, (end - begin) * inner, static_cast<int>(dtype_size(x.dtype()))),
        "slice kernel");
    return y;
  }

  Tensor transpose2d(const Tensor& x) override {
    require(x, "transpose2d", "x");
    FS_CHECK(x.ndim() == 2, "transpose2d: expected a 2-d tensor, got {}", x.describe());
    Tensor y = Tensor::empty({x.dim(1), x.dim(0)}, x.dtype(), Device::CUDA);
    check_cuda(kernels::transpose2d(x.raw(), y.raw(), static_cast<int>(dtype_size(x.dtype())),
                                    x.dim(0), x.dim(1)),
               "transpose kernel");
    return y;
  }

  Tensor clamp(const Tensor& x, float lo, float hi) override {
    require(x, "clamp", "x");
    Tensor y = empty_like(x);
    check_cuda(kernels::clamp(x.raw(), y.raw(), x.dtype(), x.numel(), lo, hi), "clamp kernel");
    return y;
  }

  Tensor channel_affine(const Tensor& x, const Tensor& scale, const Tensor& shift) override {
    require(x, "channel_affine", "x");
    FS_CHECK(x.ndim() >= 1, "channel_affine: x is a scalar");
    const int64_t C = x.dim(0), N = C > 0 ? x.numel() / C : 0;
    Tensor y = empty_like(x);
    check_cuda(kernels::channel_affine(x.raw(), y.raw(), x.dtype(), C, N,
                                       vector_arg(scale, C, "channel_affine", "scale"),
                                       vector_arg(shift, C, "channel_affine", "shift")),
               "channel_affine kernel");
    return y;
  }

  void accumulate_tile(Tensor& acc, const Tensor& tile, const Tensor& weight, int64_t f0,
                       int64_t y0, int64_t x0) override {
    require(acc, "accumulate_tile", "acc");
    require(tile, "accumulate_tile", "tile");
    FS_CHECK(acc.dtype() == tile.dtype() && acc.ndim() == 4 && tile.ndim() == 4 &&
                 acc.dim(0) == tile.dim(0) && f0 >= 0 && y0 >= 0 && x0 >= 0 &&
                 f0 + tile.dim(1) <= acc.dim(1) && y0 + tile.dim(2) <= acc.dim(2) &&
                 x0 + tile.dim(3) <= acc.dim(3),
             "accumulate_tile: tile {} at ({}, {}, {}) does not fit in {}", tile.describe(), f0, y0,
             x0, acc.describe());
    const int64_t h = tile.dim(2), w = tile.dim(3);
    check_cuda(
        kernels::accumulate_tile(acc.raw(), tile.raw(), acc.dtype(),
                                 vector_arg(weight, h * w, "accumulate_tile", "weight"), acc.dim(0),
                                 acc.dim(1), acc.dim(2), acc.dim(3), tile.dim(1), h, w, f0, y0, x0),
        "accumulate_tile kernel");
  }

 private:
  // fp32 attention as products (the VAE's middle block: one head of 384 channels over a latent
  // frame's tokens): S = scale q k^T by cuBLASLt in exact fp32, the softmax of each row, then
  // S v, over query chunks that keep S within 256 MiB. The one-warp-per-query kernel it replaces
  // ran at ~3 TFLOP/s there (20 ms per call at 1080p, 2.6 s per VAE pass). False when cuBLASLt
  // has no algorithm (the caller runs that kernel).
  static bool attention_f32_by_products(const Tensor& q, const Tensor& k, const Tensor& v,
                                        Tensor& out, int64_t nq, int64_t nk, float scale) {
    const int64_t heads = q.dim(1), d = q.dim(2), row = heads * d;
    if (nk == 0) return false;
    const int64_t chunk = std::max<int64_t>(1, std::min<int64_t>(nq, (int64_t{1} << 26) / nk));
    Tensor s = Tensor::empty({chunk, nk}, DType::F32, Device::CUDA);
    const float *qp = q.data<float>(), *kp = k.data<float>(), *vp = v.data<float>();
    float* op = out.data<float>();
    for (int64_t h = 0; h < heads; ++h)
      for (int64_t r0 = 0; r0 < nq; r0 += chunk) {
        const int64_t m = std::min(chunk, nq - r0);
        if (!gemm_f32(qp + r0 * row + h * d, row, kp + h * d, row, true, s.data<float>(), nk, m, nk,
                      d, scale))
          return false;
        check_cuda(kernels::softmax_rows_f32(s.data<float>(), m, nk), "softmax kernel");
        if (!gemm_f32(s.data<float>(), nk, vp + h * d, row, false, op + r0 * row + h * d, row, m, d,
                      nk, 1.f))
          return false;
      }
    return true;
  }

  // linear and linear_gelu_tanh. bf16 activations go through cuBLASLt; fp32 ones (the timestep
  // path) keep fp32 through the plain kernel, which reads the bf16 weight directly.
  static Tensor linear_with(const Tensor& x, const Tensor& w, const Tensor& b, GemmEpilogue epi,
                            const char* op) {
    require(x, op, "x");
    require(w, op, "weight");
    FS_CHECK(w.ndim() == 2 && x.ndim() >= 1 && x.dim(-1) == w.dim(1),
             "{}: x {} does not match weight {}", op, x.describe(), w.describe());
    const int64_t M = rows_of(x), K = w.dim(1), N = w.dim(0);
    if (b.defined()) {
      require(b, op, "bias");
      FS_CHECK(b.numel() == N, "{}: bias {} does not match weight {}", op, b.describe(),
               w.describe());
    }
    Shape out_shape = x.shape();
    out_shape.back() = N;
    Tensor y = Tensor::empty(out_shape, x.dtype(), Device::CUDA);
    const void* bias = b.defined() ? b.raw() : nullptr;
    const DType bias_t = b.defined() ? b.dtype() : DType::F32;
    if (x.dtype() == DType::BF16 && w.dtype() == DType::BF16) {
      gemm_bf16(x.raw(), w.raw(), bias, bias_t, y.raw(), M, N, K, epi);
      return y;
    }
    check_cuda(kernels::linear_simple(x.raw(), x.dtype(), w.raw(), w.dtype(), bias, bias_t, y.raw(),
                                      y.dtype(), M, N, K),
               "linear kernel");
    if (epi == GemmEpilogue::gelu_tanh)
      check_cuda(kernels::unary(kernels::Unary::gelu_tanh, y.raw(), y.raw(), y.dtype(), y.numel()),
                 "gelu kernel");
    return y;
  }

  struct RopeArgs {
    const float *frame, *row, *col;
    int pairs;  // per head
  };
  // The checked tables of `rope` for x [T*H*W, heads, head_dim].
  static RopeArgs rope_args(const Tensor& x, const Rope3D& rope, const char* op) {
    FS_CHECK(x.ndim() == 3 && x.dim(0) == int64_t{rope.T} * rope.H * rope.W,
             "{}: x {} does not match grid {}x{}x{}", op, x.describe(), rope.T, rope.H, rope.W);
    const Tensor* tables[3] = {&rope.frame, &rope.row, &rope.col};
    const int positions[3] = {rope.T, rope.H, rope.W};
    for (int i = 0; i < 3; ++i) {
      const Tensor& t = *tables[i];
      FS_CHECK(t.defined() && t.device() == Device::CUDA && t.dtype() == DType::F32 &&
                   t.ndim() == 3 && t.dim(0) >= positions[i] && t.dim(2) == 2,
               "{}: table {} must be f32 cuda [>= {}, pairs, 2], got {}", op, i, positions[i],
               t.defined() ? t.describe() : std::string("none"));
      FS_CHECK(2 * t.dim(1) == x.dim(2), "{}: table {} has {} pairs for head_dim {}", op, i,
               t.dim(1), x.dim(2));
    }
    return {rope.frame.data<float>(), rope.row.data<float>(), rope.col.data<float>(),
            static_cast<int>(x.dim(2) / 2)};
  }

  static Tensor unary(const Tensor& x, kernels::Unary op, const char* name) {
    require(x, name, "x");
    Tensor y = empty_like(x);
    check_cuda(kernels::unary(op, x.raw(), y.raw(), x.dtype(), x.numel()), name);
    return y;
  }
};

}  // namespace

namespace {
bool g_profile = false;  // the profiling backend is installed
}  // namespace

bool op_profile_enabled() {
  return g_profile;
}

CudaDeviceInfo cuda_device_info() {
  int count = 0;
  if (cudaGetDeviceCount(&count) != cudaSuccess || count < 1) {
    cudaGetLastError();  // leave no sticky status behind
    return {};
  }
  cudaDeviceProp prop{};
  if (cudaGetDeviceProperties(&prop, 0) != cudaSuccess) {
    cudaGetLastError();
    return {};
  }
  std::string why = cuda_capability_problem(prop.name, prop.major, prop.minor);
  if (why.empty()) why = cuda_build_problem(prop.name, prop.major, prop.minor);
  bool narrow = false;  // the portable blocks' shape on this GPU (both DiTs have heads of 128)
  if (why.empty()) {
    try {
      narrow = attention::portable_narrow_blocks(128);
    } catch (const Error&) {
      narrow = false;  // the path is only reported; the launch reports a failing GPU
    }
  }
  return {prop.name, why,
          cuda_kernel_path(prop.major, prop.minor, attention::hopper_kernels_built(), g_kernels,
                           narrow)};
}

void set_gpu_kernels(GpuKernels kernels) {
  g_kernels = kernels;
}

std::string cuda_build_problem(const std::string& name, int major, int minor) {
  // The portable attention kernels are built for every target of the binary, as every other
  // kernel of the backend is: whether the GPU can load them is whether it can load any.
  for (const attention::PortableKernel& k : attention::portable_kernels()) {
    if (k.status == cudaErrorNoKernelImageForDevice || k.status == cudaErrorInvalidDeviceFunction)
      return fmt::format(
          "{} has compute capability {}.{}, and this freeswim holds no code for it (built for "
          "{}; rebuild with -DFREESWIM_CUDA_ARCHS={}{} or a compute_NN target no newer than the "
          "GPU, docs/gpus.md)",
          name, major, minor, FREESWIM_CUDA_ARCHS_TEXT, major, minor);
  }
  return {};
}

void register_cuda_backend(const CudaBackendOptions& options) {
  static CudaBackend instance;
  register_cuda_memory();
  set_memory_limit(options.memory_limit);
  g_profile = options.profile;
  g_kernels = options.kernels;
  register_backend(Device::CUDA, options.profile ? make_profiling_backend(&instance) : &instance);
}

}  // namespace freeswim::ops::cuda
