// The CUDA Backend: argument checks and dtype policy (docs/cuda_backend.md) on the host, work
// in the kernels of kernels.h, cuBLASLt (gemm.h) and fs_cuda_attention. Activations are bf16;
// vectors and modulation tables stay fp32; every kernel computes in fp32 and rounds on store.
#include "ops/cuda/cuda_backend.h"

#include "core/error.h"
#include "ops/cuda/attention/attention.h"
#include "ops/cuda/cuda_check.h"
#include "ops/cuda/gemm.h"
#include "ops/cuda/kernels.h"
#include "ops/ops.h"

namespace freeswim::ops::cuda {

void register_cuda_memory();  // memory.cpp

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

[[noreturn]] void not_on_cuda(const char* op, const char* who) {
  fail("{} ({}) is not yet on cuda: run the {} on the CPU", op, who, who);
}

class CudaBackend final : public Backend {
 public:
  Device device() const override { return Device::CUDA; }

  Tensor linear(const Tensor& x, const Tensor& w, const Tensor& b) override {
    require(x, "linear", "x");
    require(w, "linear", "weight");
    FS_CHECK(w.ndim() == 2 && x.ndim() >= 1 && x.dim(-1) == w.dim(1),
             "linear: x {} does not match weight {}", x.describe(), w.describe());
    const int64_t M = rows_of(x), K = w.dim(1), N = w.dim(0);
    if (b.defined()) {
      require(b, "linear", "bias");
      FS_CHECK(b.numel() == N, "linear: bias {} does not match weight {}", b.describe(),
               w.describe());
    }
    Shape out_shape = x.shape();
    out_shape.back() = N;
    // bf16 activations go through cuBLASLt; fp32 ones (the timestep path) keep fp32 through
    // the plain kernel, which reads the bf16 weight directly.
    Tensor y = Tensor::empty(out_shape, x.dtype(), Device::CUDA);
    const void* bias = b.defined() ? b.raw() : nullptr;
    const DType bias_t = b.defined() ? b.dtype() : DType::F32;
    if (x.dtype() == DType::BF16 && w.dtype() == DType::BF16) {
      gemm_bf16(x.raw(), w.raw(), bias, bias_t, y.raw(), M, N, K);
    } else {
      check_cuda(kernels::linear_simple(x.raw(), x.dtype(), w.raw(), w.dtype(), bias, bias_t,
                                        y.raw(), y.dtype(), M, N, K),
                 "linear kernel");
    }
    return y;
  }

  Tensor gelu_tanh(const Tensor& x) override {
    return unary(x, kernels::Unary::gelu_tanh, "gelu_tanh");
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

  void rope_3d(Tensor& x, const Rope3D& rope) override {
    require(x, "rope_3d", "x");
    FS_CHECK(x.ndim() == 3 && x.dim(0) == int64_t{rope.T} * rope.H * rope.W,
             "rope_3d: x {} does not match grid {}x{}x{}", x.describe(), rope.T, rope.H, rope.W);
    const Tensor* tables[3] = {&rope.frame, &rope.row, &rope.col};
    const int positions[3] = {rope.T, rope.H, rope.W};
    for (int i = 0; i < 3; ++i) {
      const Tensor& t = *tables[i];
      FS_CHECK(t.defined() && t.device() == Device::CUDA && t.dtype() == DType::F32 &&
                   t.ndim() == 3 && t.dim(0) >= positions[i] && t.dim(2) == 2,
               "rope_3d: table {} must be f32 cuda [>= {}, pairs, 2], got {}", i, positions[i],
               t.defined() ? t.describe() : std::string("none"));
    }
    const int64_t pt = rope.frame.dim(1), ph = rope.row.dim(1), pw = rope.col.dim(1);
    FS_CHECK(2 * (pt + ph + pw) == x.dim(2), "rope_3d: tables cover {} of head_dim {}",
             2 * (pt + ph + pw), x.dim(2));
    check_cuda(
        kernels::rope_3d(x.raw(), x.dtype(), rope.T, rope.H, rope.W, static_cast<int>(x.dim(1)),
                         rope.frame.data<float>(), static_cast<int>(pt), rope.row.data<float>(),
                         static_cast<int>(ph), rope.col.data<float>(), static_cast<int>(pw)),
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
    // Attention runs in bf16 (a mixed call, e.g. an fp32 one-token context, is converted).
    const Tensor q = as_bf16(q_in), k = as_bf16(k_in), v = as_bf16(v_in);
    const int heads = static_cast<int>(q.dim(1)), d = static_cast<int>(q.dim(2));
    Tensor out = Tensor::empty(q.shape(), DType::BF16, Device::CUDA);
    if (nq == 0) return out;
    if (d == 64 || d == 128) {
      if (window)
        attention::window_attention_forward(q.raw(), k.raw(), v.raw(), out.raw(), heads, d, *window,
                                            scale, stream());
      else
        attention::dense_attention_forward(q.raw(), k.raw(), v.raw(), out.raw(), nq, nk, heads, d,
                                           scale, stream());
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

  // Text encoder and VAE ops: not on the GPU yet (the pipeline runs those models on the CPU).
  Tensor embedding(const Tensor&, const std::vector<int32_t>&) override {
    not_on_cuda("embedding", "text encoder");
  }
  Tensor mul(const Tensor&, const Tensor&) override { not_on_cuda("mul", "text encoder"); }
  Tensor attention_bias(const Tensor&, const Tensor&, const Tensor&, float, const Tensor&,
                        const Tensor&) override {
    not_on_cuda("attention_bias", "text encoder");
  }
  Tensor conv3d(const Tensor&, const Tensor&, const Tensor&, const Conv3dParams&) override {
    not_on_cuda("conv3d", "VAE");
  }
  Tensor rms_norm_channels(const Tensor&, const Tensor&, const Tensor&, bool) override {
    not_on_cuda("rms_norm_channels", "VAE");
  }
  Tensor upsample_nearest2x(const Tensor&) override { not_on_cuda("upsample_nearest2x", "VAE"); }
  Tensor concat(const Tensor&, const Tensor&, int) override { not_on_cuda("concat", "VAE"); }
  Tensor slice(const Tensor&, int, int64_t, int64_t) override { not_on_cuda("slice", "VAE"); }
  Tensor transpose2d(const Tensor&) override { not_on_cuda("transpose2d", "VAE"); }
  Tensor clamp(const Tensor&, float, float) override { not_on_cuda("clamp", "VAE"); }
  Tensor channel_affine(const Tensor&, const Tensor&, const Tensor&) override {
    not_on_cuda("channel_affine", "VAE");
  }
  void accumulate_tile(Tensor&, const Tensor&, const Tensor&, int64_t, int64_t, int64_t) override {
    not_on_cuda("accumulate_tile", "VAE");
  }

 private:
  static Tensor unary(const Tensor& x, kernels::Unary op, const char* name) {
    require(x, name, "x");
    Tensor y = empty_like(x);
    check_cuda(kernels::unary(op, x.raw(), y.raw(), x.dtype(), x.numel()), name);
    return y;
  }
};

}  // namespace

void register_cuda_backend() {
  static CudaBackend instance;
  register_cuda_memory();
  register_backend(Device::CUDA, &instance);
}

}  // namespace freeswim::ops::cuda
