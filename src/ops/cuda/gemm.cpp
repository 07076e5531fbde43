// cuBLASLt products for linear layers. Row-major y = x w^T is, in cuBLAS's column-major terms,
// Y'[N, M] = W'^T[N, K] X'[K, M] with W' = w viewed as K x N and X' = x viewed as K x M, so A = w
// (transposed), B = x, and the output features are the rows of cuBLAS's D: the bias epilogue
// adds bias[N] along them and a per-row alpha vector scales them. When the heuristic has no
// algorithm with a fused epilogue (a type combination it lacks), the product runs without it and
// kernels follow; when it has none at all, the plain kernel runs (slow, but right).
//
// Heuristic answers are cached per shape, epilogue and pointer alignment: a DiT forward makes
// hundreds of products of a handful of shapes, and a heuristic query costs tens of microseconds.
// The heuristic's first answer is what runs. Timing its first eight answers per shape and keeping
// the fastest was measured on an H200 and gained nothing (11.47 against 11.48 s per cache-every-2
// step, docs/cuda_backend.md), so it was removed (tag attention-experiments-2026-12 has it).
//
// Everything tied to a GPU (the handle, its workspace and bias scratch, the algorithm cache, the
// epilogue probes) is kept once per device (GemmDevice, per_device.h); each entry point looks up
// the calling thread's device once and passes its state down.
#include "ops/cuda/gemm.h"

#include <cublasLt.h>
#include <cuda_runtime_api.h>

#include <array>
#include <atomic>
#include <cmath>
#include <cstdio>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "core/dtype.h"
#include "core/error.h"
#include "ops/cuda/cuda_check.h"
#include "ops/cuda/kernels.h"
#include "ops/cuda/per_device.h"
#include "ops/cuda/stream.h"

namespace freeswim::ops::cuda {

namespace {

constexpr size_t kWorkspaceBytes = size_t{32} << 20;

// cuBLASLt's bias epilogues read the bias in D's type: cublasLt.h (CUDA 13.0,
// CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE) says the bias elements "are the same type as the elements
// of output matrix (Dtype)", the exceptions being integer (IMMA) and fp8 kernels. The backend keeps
// 1-D tensors, biases included, in fp32, and an fp32 bias with bf16 D was refused for every
// shape on the H200 (2026-12-02: every fused epilogue fell back). So each bias goes to cuBLASLt as
// a bf16 copy made in this scratch vector just before its product (one tiny kernel, on the one
// stream every op runs on, so a later product cannot overwrite it early). That is what the
// reference computes too: its nn.Linear biases are bf16 and torch's addmm adds them in cuBLASLt's
// epilogue. Each GPU has its own scratch; two host threads queueing products on one GPU at the
// same time would share it (and the GPU's one stream), which the backend's use, one thread per
// GPU, never does.
constexpr int64_t kBiasScratch = int64_t{1} << 16;

using AlgoKey = std::array<int64_t, 10>;

// What a probe found: the fused path computes what it should, computes something else, or
// cuBLASLt would not run it (no algorithm, or a refused attribute). The probes are below.
enum class Probe { matches, differs, refused };

// One GPU's cuBLASLt state.
struct GemmDevice {
  cublasLtHandle_t handle = nullptr;
  void* workspace = nullptr;  // kWorkspaceBytes, on this device
  void* bias16 = nullptr;     // kBiasScratch bf16 values, on this device
  // Heuristic answers per shape, epilogue and alignment; nullopt: none offered.
  std::mutex algo_mutex;
  std::map<AlgoKey, std::optional<cublasLtMatmulAlgo_t>> algos;
  // The epilogue probes, each run once on this device at its first use.
  std::once_flag gelu_once, plain_once, gated_once;
  Probe gelu = Probe::refused, plain = Probe::refused, gated = Probe::refused;
};

// Made on the first product of each device (with that device current) and kept for the life of
// the process, as cuBLAS's own handles are: never destroyed.
GemmDevice& gemm_device() {
  static auto* all = new PerDevice<GemmDevice>([](int) {
    auto g = std::make_unique<GemmDevice>();
    const cublasStatus_t s = cublasLtCreate(&g->handle);
    FS_CHECK(s == CUBLAS_STATUS_SUCCESS, "cuBLASLt: cannot create a handle (status {})",
             static_cast<int>(s));
    check_cuda(cudaMalloc(&g->workspace, kWorkspaceBytes), "cudaMalloc of the cuBLASLt workspace");
    check_cuda(cudaMalloc(&g->bias16, kBiasScratch * 2), "cudaMalloc of the bias scratch");
    return g;
  });
  return all->get();
}

// RAII holders so that every early return releases the descriptors.
struct Desc {
  cublasLtMatmulDesc_t op = nullptr;
  cublasLtMatrixLayout_t a = nullptr, b = nullptr, c = nullptr;
  cublasLtMatmulPreference_t pref = nullptr;
  ~Desc() {
    if (pref) cublasLtMatmulPreferenceDestroy(pref);
    if (c) cublasLtMatrixLayoutDestroy(c);
    if (b) cublasLtMatrixLayoutDestroy(b);
    if (a) cublasLtMatrixLayoutDestroy(a);
    if (op) cublasLtMatmulDescDestroy(op);
  }
};

// The bias as bf16 for an epilogue: itself when it is bf16, else a copy in the scratch vector;
// null when it is longer than the scratch (the caller then adds it after an unfused product).
const void* bias_bf16(GemmDevice& g, const void* bias, DType bias_t, int64_t N) {
  if (bias == nullptr || bias_t == DType::BF16) return bias;
  if (N > kBiasScratch) return nullptr;
  check_cuda(kernels::convert(bias, bias_t, g.bias16, DType::BF16, N), "bias to bf16");
  return g.bias16;
}

// One cuBLASLt call: D = alpha * (x w^T) + beta * D (+ bias) (then GELU), bf16 matrices and bias.
struct Product {
  const void* x = nullptr;  // B
  const void* w = nullptr;  // A
  void* y = nullptr;        // D, and C when accumulating
  int64_t M = 0, N = 0, K = 0;
  const void* bias = nullptr;  // bf16 [N]
  bool gelu = false;
  bool accumulate = false;       // beta = 1 with C = D (in place; cuBLASLt allows C == D)
  const float* alpha = nullptr;  // per output feature, device; null: alpha = 1
};

// The largest power of two up to 16 dividing the address: cuBLASLt's heuristic otherwise
// assumes 16-byte aligned matrices, which row views of odd-width tensors are not.
uint32_t alignment(const void* p) {
  const auto a = reinterpret_cast<uintptr_t>(p);
  for (uint32_t v = 16; v > 2; v /= 2)
    if (a % v == 0) return v;
  return 2;
}

std::atomic<int64_t> g_gelu_fused{0}, g_gelu_unfused{0}, g_acc_fused{0}, g_acc_refused{0},
    g_bias_fused{0}, g_bias_unfused{0};

// One attempt on device g; false when cuBLASLt offers no algorithm or refuses to run.
bool run(GemmDevice& g, const Product& p) {
  Desc d;
  if (cublasLtMatmulDescCreate(&d.op, CUBLAS_COMPUTE_32F, CUDA_R_32F) != CUBLAS_STATUS_SUCCESS)
    return false;
  const cublasOperation_t ta = CUBLAS_OP_T, tb = CUBLAS_OP_N;
  cublasLtMatmulDescSetAttribute(d.op, CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof(ta));
  cublasLtMatmulDescSetAttribute(d.op, CUBLASLT_MATMUL_DESC_TRANSB, &tb, sizeof(tb));
  if (p.alpha) {
    // alpha: a device vector over D's rows (the output features); beta: a host scalar.
    const int32_t mode = CUBLASLT_POINTER_MODE_ALPHA_DEVICE_VECTOR_BETA_HOST;
    if (cublasLtMatmulDescSetAttribute(d.op, CUBLASLT_MATMUL_DESC_POINTER_MODE, &mode,
                                       sizeof(mode)) != CUBLAS_STATUS_SUCCESS)
      return false;
  }
  cublasLtEpilogue_t epi = CUBLASLT_EPILOGUE_DEFAULT;
  if (p.gelu)
    epi = p.bias ? CUBLASLT_EPILOGUE_GELU_BIAS : CUBLASLT_EPILOGUE_GELU;
  else if (p.bias)
    epi = CUBLASLT_EPILOGUE_BIAS;
  if (epi != CUBLASLT_EPILOGUE_DEFAULT &&
      cublasLtMatmulDescSetAttribute(d.op, CUBLASLT_MATMUL_DESC_EPILOGUE, &epi, sizeof(epi)) !=
          CUBLAS_STATUS_SUCCESS)
    return false;
  if (p.bias) {
    const cudaDataType_t bt = CUDA_R_16BF;
    cublasLtMatmulDescSetAttribute(d.op, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &p.bias,
                                   sizeof(p.bias));
    if (cublasLtMatmulDescSetAttribute(d.op, CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE, &bt,
                                       sizeof(bt)) != CUBLAS_STATUS_SUCCESS)
      return false;
  }
  const auto u = [](int64_t v) { return static_cast<uint64_t>(v); };
  if (cublasLtMatrixLayoutCreate(&d.a, CUDA_R_16BF, u(p.K), u(p.N), p.K) != CUBLAS_STATUS_SUCCESS ||
      cublasLtMatrixLayoutCreate(&d.b, CUDA_R_16BF, u(p.K), u(p.M), p.K) != CUBLAS_STATUS_SUCCESS ||
      cublasLtMatrixLayoutCreate(&d.c, CUDA_R_16BF, u(p.N), u(p.M), p.N) != CUBLAS_STATUS_SUCCESS)
    return false;

  const uint32_t align_a = alignment(p.w), align_b = alignment(p.x), align_d = alignment(p.y);
  const AlgoKey key{p.M,
                    p.N,
                    p.K,
                    static_cast<int64_t>(epi),
                    p.bias != nullptr,
                    p.accumulate,
                    p.alpha != nullptr,
                    align_a,
                    align_b,
                    align_d};
  std::optional<cublasLtMatmulAlgo_t> algo;
  bool cached = false;
  {
    const std::lock_guard<std::mutex> lock(g.algo_mutex);
    const auto it = g.algos.find(key);
    if (it != g.algos.end()) {
      algo = it->second;
      cached = true;
    }
  }
  if (!cached) {
    if (cublasLtMatmulPreferenceCreate(&d.pref) != CUBLAS_STATUS_SUCCESS) return false;
    const size_t ws = kWorkspaceBytes;
    cublasLtMatmulPreferenceSetAttribute(d.pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws,
                                         sizeof(ws));
    cublasLtMatmulPreferenceSetAttribute(d.pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES,
                                         &align_a, sizeof(align_a));
    cublasLtMatmulPreferenceSetAttribute(d.pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES,
                                         &align_b, sizeof(align_b));
    cublasLtMatmulPreferenceSetAttribute(d.pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES,
                                         &align_d, sizeof(align_d));
    cublasLtMatmulPreferenceSetAttribute(d.pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES,
                                         &align_d, sizeof(align_d));
    cublasLtMatmulHeuristicResult_t result{};
    int found = 0;
    if (cublasLtMatmulAlgoGetHeuristic(g.handle, d.op, d.a, d.b, d.c, d.c, d.pref, 1, &result,
                                       &found) != CUBLAS_STATUS_SUCCESS)
      found = 0;
    if (found > 0) algo = result.algo;
    const std::lock_guard<std::mutex> lock(g.algo_mutex);
    g.algos[key] = algo;
  }
  if (!algo) return false;
  const float one = 1.f, beta = p.accumulate ? 1.f : 0.f;
  const void* alpha = p.alpha ? static_cast<const void*>(p.alpha) : &one;
  const bool ok =
      cublasLtMatmul(g.handle, d.op, alpha, p.w, d.a, p.x, d.b, &beta, p.y, d.c, p.y, d.c, &*algo,
                     g.workspace, kWorkspaceBytes, stream()) == CUBLAS_STATUS_SUCCESS;
  if (!ok) {
    // Do not try this configuration again (on this device).
    const std::lock_guard<std::mutex> lock(g.algo_mutex);
    g.algos[key] = std::nullopt;
  }
  return ok;
}

void warn_once(const char* what) {
  static std::once_flag flag;
  std::call_once(flag, [&] { std::fprintf(stderr, "freeswim: warning: %s\n", what); });
}

const char* probe_name(Probe p) {
  return p == Probe::matches   ? "matches"
         : p == Probe::differs ? "computes another form"
                               : "refused";
}

// NVIDIA's cuBLASLt documentation (cublasLtEpilogue_t) says only "apply GELU point-wise
// transform to the results (x:=GELU(x))" and gives no formula, i.e. it does not say whether it is
// the exact erf GELU or the tanh approximation Wan uses (torch gelu(approximate="tanh")).
// PyTorch treats it as the tanh form: its addmm GELU path computes gelu(..., "tanh") whenever it
// cannot use this epilogue. Since the documentation does not promise it, the form is measured
// (once per device) instead of assumed: x = 0 and w = 0, so the product is 0 and the epilogue sees
// exactly the bias, 64 points in [-3.5, -2.5], where the tanh form and the erf form differ by
// 7 to 50 bf16 ulps (2e-4 to 4e-4). The epilogue is used only if its outputs sit within a quarter
// of that gap of the tanh form on average (an accurate tanh form lands within about one ulp).
Probe probe_gelu_epilogue(GemmDevice& g) {
  constexpr int64_t M = 16, N = 64, K = 16;
  void *x = nullptr, *w = nullptr, *y = nullptr, *b = nullptr;
  auto release = [&] {
    cudaFree(x);
    cudaFree(w);
    cudaFree(y);
    cudaFree(b);
  };
  std::vector<float> v(N);
  std::vector<uint16_t> v16(N);
  for (int64_t n = 0; n < N; ++n) {
    v16[n] = float_to_bf16(-3.5f + static_cast<float>(n) / (N - 1));
    v[n] = bf16_to_float(v16[n]);
  }
  if (cudaMalloc(&x, M * K * 2) != cudaSuccess || cudaMalloc(&w, N * K * 2) != cudaSuccess ||
      cudaMalloc(&y, M * N * 2) != cudaSuccess || cudaMalloc(&b, N * 2) != cudaSuccess ||
      cudaMemset(x, 0, M * K * 2) != cudaSuccess || cudaMemset(w, 0, N * K * 2) != cudaSuccess ||
      cudaMemcpy(b, v16.data(), N * 2, cudaMemcpyHostToDevice) != cudaSuccess) {
    release();
    return Probe::refused;
  }
  Product p;
  p.x = x;
  p.w = w;
  p.y = y;
  p.M = M;
  p.N = N;
  p.K = K;
  p.bias = b;
  p.gelu = true;
  std::vector<uint16_t> out(M * N);
  const bool ran =
      run(g, p) && cudaMemcpy(out.data(), y, M * N * 2, cudaMemcpyDeviceToHost) == cudaSuccess;
  release();
  if (!ran) return Probe::refused;
  double err = 0, gap = 0;
  for (int64_t m = 0; m < M; ++m)
    for (int64_t n = 0; n < N; ++n) {
      const float o = bf16_to_float(out[m * N + n]);
      const double z = v[n];
      const double t = 0.5 * z * (1 + std::tanh(0.7978845608028654 * (z + 0.044715 * z * z * z)));
      const double e = 0.5 * z * (1 + std::erf(z / std::sqrt(2.0)));
      err += std::abs(o - t);
      gap += std::abs(t - e);
    }
  return err < 0.25 * gap ? Probe::matches : Probe::differs;
}

// The accumulating product's semantics, checked once per mode and device before it is trusted: the
// documentation describes neither the order of the per-row alpha and the bias epilogue nor the
// in-place C = D case with this pointer mode. x = 1 and w = 1/16 over K = 16 make the product
// exactly 1, so D must be alpha[n] + 3 + bias[n] (C = 3), every value exact in bf16; a bias scaled
// by alpha, an alpha applied along the wrong dimension or a C left out gives other values.
Probe probe_accumulate(GemmDevice& g, bool with_alpha) {
  constexpr int64_t M = 8, N = 32, K = 16;
  constexpr uint16_t kOne = 0x3F80, kSixteenth = 0x3D80, kThree = 0x4040;  // bf16 1, 1/16, 3
  void *x = nullptr, *w = nullptr, *y = nullptr, *a = nullptr, *b = nullptr;
  auto release = [&] {
    cudaFree(x);
    cudaFree(w);
    cudaFree(y);
    cudaFree(a);
    cudaFree(b);
  };
  std::vector<uint16_t> hx(M * K, kOne), hw(N * K, kSixteenth), hy(M * N, kThree);
  std::vector<float> alpha(N), bias(N);
  std::vector<uint16_t> bias16(N);
  for (int64_t n = 0; n < N; ++n) {
    alpha[n] = with_alpha ? 0.5f * static_cast<float>(1 + n % 4) : 1.f;
    bias[n] = -1.f + 0.5f * static_cast<float>(n % 5);
    bias16[n] = float_to_bf16(bias[n]);  // exact
  }
  auto up = [](void** p, const void* src, size_t bytes) {
    return cudaMalloc(p, bytes) == cudaSuccess &&
           cudaMemcpy(*p, src, bytes, cudaMemcpyHostToDevice) == cudaSuccess;
  };
  if (!up(&x, hx.data(), hx.size() * 2) || !up(&w, hw.data(), hw.size() * 2) ||
      !up(&y, hy.data(), hy.size() * 2) || !up(&a, alpha.data(), N * 4) ||
      !up(&b, bias16.data(), N * 2)) {
    release();
    return Probe::refused;
  }
  Product p;
  p.x = x;
  p.w = w;
  p.y = y;
  p.M = M;
  p.N = N;
  p.K = K;
  p.bias = b;
  p.accumulate = true;
  p.alpha = with_alpha ? static_cast<const float*>(a) : nullptr;
  const bool ran =
      run(g, p) && cudaMemcpy(hy.data(), y, M * N * 2, cudaMemcpyDeviceToHost) == cudaSuccess;
  release();
  if (!ran) return Probe::refused;
  for (int64_t m = 0; m < M; ++m)
    for (int64_t n = 0; n < N; ++n) {
      if (bf16_to_float(hy[m * N + n]) != alpha[n] + 3.f + bias[n]) return Probe::differs;
    }
  return Probe::matches;
}

// Each probe runs once per device, at its first use there (std::call_once: a probe that throws
// runs again at the next use).
Probe accumulate_probe(GemmDevice& g, bool with_alpha) {
  if (with_alpha) {
    std::call_once(g.gated_once, [&] { g.gated = probe_accumulate(g, true); });
    return g.gated;
  }
  std::call_once(g.plain_once, [&] { g.plain = probe_accumulate(g, false); });
  return g.plain;
}

bool accumulate_trusted(GemmDevice& g, bool with_alpha) {
  return accumulate_probe(g, with_alpha) == Probe::matches;
}

Probe gelu_probe(GemmDevice& g) {
  std::call_once(g.gelu_once, [&] { g.gelu = probe_gelu_epilogue(g); });
  return g.gelu;
}

bool gelu_is_tanh(GemmDevice& g) {
  return gelu_probe(g) == Probe::matches;
}

}  // namespace

bool gelu_epilogue_is_tanh() {
  return gelu_is_tanh(gemm_device());
}

std::string fusion_probe_report() {
  GemmDevice& g = gemm_device();
  return std::string("GELU epilogue (tanh form): ") + probe_name(gelu_probe(g)) +
         "; accumulate without gate: " + probe_name(accumulate_probe(g, false)) +
         "; accumulate with gate: " + probe_name(accumulate_probe(g, true));
}

void gemm_bf16(const void* x, const void* w, const void* bias, DType bias_t, void* y, int64_t M,
               int64_t N, int64_t K, GemmEpilogue epilogue) {
  if (M == 0 || N == 0) return;
  const bool gelu = epilogue == GemmEpilogue::gelu_tanh;
  auto finish = [&] {
    // GELU after an unfused product: in place on y (elementwise, so aliasing is safe).
    if (!gelu) return;
    ++g_gelu_unfused;
    check_cuda(kernels::unary(kernels::Unary::gelu_tanh, y, y, DType::BF16, M * N), "gelu kernel");
  };
  if (K > 0) {
    GemmDevice& g = gemm_device();
    Product p;
    p.x = x;
    p.w = w;
    p.y = y;
    p.M = M;
    p.N = N;
    p.K = K;
    p.bias = bias_bf16(g, bias, bias_t, N);
    const bool epilogue_bias = bias == nullptr || p.bias != nullptr;
    if (gelu && epilogue_bias && gelu_is_tanh(g)) {
      p.gelu = true;
      if (run(g, p)) {
        ++g_gelu_fused;
        if (bias) ++g_bias_fused;
        return;
      }
      p.gelu = false;
    }
    if (epilogue_bias && run(g, p)) {
      if (bias) ++g_bias_fused;
      return finish();
    }
    if (bias) {
      p.bias = nullptr;
      if (run(g, p)) {
        ++g_bias_unfused;
        check_cuda(kernels::add_bias_rows(y, DType::BF16, bias, bias_t, M, N), "bias kernel");
        return finish();
      }
    }
    warn_once("cuBLASLt has no algorithm for a linear layer; using the plain kernel (slow)");
  }
  check_cuda(kernels::linear_simple(x, DType::BF16, w, DType::BF16, bias,
                                    bias ? bias_t : DType::F32, y, DType::BF16, M, N, K),
             "linear kernel");
  finish();
}

bool gemm_bf16_accumulate(const void* x, const void* w, const float* alpha, const float* bias,
                          void* y, int64_t M, int64_t N, int64_t K) {
  if (M == 0 || N == 0) return true;
  if (K == 0) return false;  // no product to fuse with: the caller's plain path adds the bias
  GemmDevice& g = gemm_device();
  if (!accumulate_trusted(g, alpha != nullptr)) {
    ++g_acc_refused;
    return false;
  }
  Product p;
  p.x = x;
  p.w = w;
  p.y = y;
  p.M = M;
  p.N = N;
  p.K = K;
  p.bias = bias_bf16(g, bias, DType::F32, N);
  if (bias && !p.bias) {
    ++g_acc_refused;
    return false;
  }
  p.accumulate = true;
  p.alpha = alpha;
  const bool ok = run(g, p);
  ++(ok ? g_acc_fused : g_acc_refused);
  return ok;
}

bool gemm_f32(const float* A, int64_t lda, const float* B, int64_t ldb, bool b_transposed, float* C,
              int64_t ldc, int64_t M, int64_t N, int64_t K, float alpha) {
  if (M == 0 || N == 0) return true;
  if (K == 0) return false;
  // Column-major, as in run(): C^T [N, M] = op(B') * A' where A' = A^T [K, M] (ld lda) and B' is
  // B viewed column-major: [K, N] (ld ldb) taken transposed when B is [N, K], else [N, K].
  GemmDevice& g = gemm_device();
  Desc d;
  if (cublasLtMatmulDescCreate(&d.op, CUBLAS_COMPUTE_32F, CUDA_R_32F) != CUBLAS_STATUS_SUCCESS)
    return false;
  const cublasOperation_t ta = b_transposed ? CUBLAS_OP_T : CUBLAS_OP_N, tb = CUBLAS_OP_N;
  cublasLtMatmulDescSetAttribute(d.op, CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof(ta));
  cublasLtMatmulDescSetAttribute(d.op, CUBLASLT_MATMUL_DESC_TRANSB, &tb, sizeof(tb));
  const auto u = [](int64_t v) { return static_cast<uint64_t>(v); };
  const bool made =
      cublasLtMatrixLayoutCreate(&d.a, CUDA_R_32F, b_transposed ? u(K) : u(N),
                                 b_transposed ? u(N) : u(K), ldb) == CUBLAS_STATUS_SUCCESS &&
      cublasLtMatrixLayoutCreate(&d.b, CUDA_R_32F, u(K), u(M), lda) == CUBLAS_STATUS_SUCCESS &&
      cublasLtMatrixLayoutCreate(&d.c, CUDA_R_32F, u(N), u(M), ldc) == CUBLAS_STATUS_SUCCESS &&
      cublasLtMatmulPreferenceCreate(&d.pref) == CUBLAS_STATUS_SUCCESS;
  if (!made) return false;
  const size_t ws = kWorkspaceBytes;
  cublasLtMatmulPreferenceSetAttribute(d.pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws,
                                       sizeof(ws));
  cublasLtMatmulHeuristicResult_t result{};
  int found = 0;
  if (cublasLtMatmulAlgoGetHeuristic(g.handle, d.op, d.a, d.b, d.c, d.c, d.pref, 1, &result,
                                     &found) != CUBLAS_STATUS_SUCCESS ||
      found == 0)
    return false;
  const float beta = 0.f;
  return cublasLtMatmul(g.handle, d.op, &alpha, B, d.a, A, d.b, &beta, C, d.c, C, d.c, &result.algo,
                        g.workspace, kWorkspaceBytes, stream()) == CUBLAS_STATUS_SUCCESS;
}

GemmFusionCounts gemm_fusion_counts() {
  GemmFusionCounts c;
  c.gelu_fused = g_gelu_fused.load();
  c.gelu_unfused = g_gelu_unfused.load();
  c.accumulate_fused = g_acc_fused.load();
  c.accumulate_refused = g_acc_refused.load();
  c.bias_fused = g_bias_fused.load();
  c.bias_unfused = g_bias_unfused.load();
  return c;
}

}  // namespace freeswim::ops::cuda
