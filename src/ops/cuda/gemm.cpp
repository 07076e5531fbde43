// cuBLASLt products for linear layers. Row-major y = x w^T is, in cuBLAS's column-major terms,
// Y'[N, M] = W'^T[N, K] X'[K, M] with W' = w viewed as K x N and X' = x viewed as K x M, so A = w
// (transposed), B = x, and the bias epilogue adds bias[N] along Y's rows. When the heuristic has
// no algorithm with the fused bias (a type combination it lacks), the product runs without it
// and a bias kernel follows; when it has none at all, the plain kernel runs (slow, but right).
#include "ops/cuda/gemm.h"

#include <cublasLt.h>
#include <cuda_runtime_api.h>

#include <cstdio>
#include <mutex>

#include "core/error.h"
#include "ops/cuda/cuda_check.h"
#include "ops/cuda/kernels.h"

namespace freeswim::ops::cuda {

namespace {

constexpr size_t kWorkspaceBytes = size_t{32} << 20;

struct Lt {
  cublasLtHandle_t handle = nullptr;
  void* workspace = nullptr;
};

// Created on first use and kept for the life of the process (as cuBLAS's own handles are).
Lt& lt() {
  static Lt* instance = [] {
    auto* l = new Lt;
    const cublasStatus_t s = cublasLtCreate(&l->handle);
    FS_CHECK(s == CUBLAS_STATUS_SUCCESS, "cuBLASLt: cannot create a handle (status {})",
             static_cast<int>(s));
    check_cuda(cudaMalloc(&l->workspace, kWorkspaceBytes), "cudaMalloc of the cuBLASLt workspace");
    return l;
  }();
  return *instance;
}

cudaDataType_t cuda_type(DType t) {
  return t == DType::F32 ? CUDA_R_32F : CUDA_R_16BF;
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

// One attempt; false when cuBLASLt offers no algorithm or refuses to run.
bool try_gemm(const void* x, const void* w, const void* bias, DType bias_t, void* y, int64_t M,
              int64_t N, int64_t K) {
  Lt& l = lt();
  Desc d;
  if (cublasLtMatmulDescCreate(&d.op, CUBLAS_COMPUTE_32F, CUDA_R_32F) != CUBLAS_STATUS_SUCCESS)
    return false;
  const cublasOperation_t ta = CUBLAS_OP_T, tb = CUBLAS_OP_N;
  cublasLtMatmulDescSetAttribute(d.op, CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof(ta));
  cublasLtMatmulDescSetAttribute(d.op, CUBLASLT_MATMUL_DESC_TRANSB, &tb, sizeof(tb));
  if (bias) {
    const cublasLtEpilogue_t epi = CUBLASLT_EPILOGUE_BIAS;
    const cudaDataType_t bt = cuda_type(bias_t);
    cublasLtMatmulDescSetAttribute(d.op, CUBLASLT_MATMUL_DESC_EPILOGUE, &epi, sizeof(epi));
    cublasLtMatmulDescSetAttribute(d.op, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias, sizeof(bias));
    if (cublasLtMatmulDescSetAttribute(d.op, CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE, &bt,
                                       sizeof(bt)) != CUBLAS_STATUS_SUCCESS)
      return false;
  }
  const auto u = [](int64_t v) { return static_cast<uint64_t>(v); };
  if (cublasLtMatrixLayoutCreate(&d.a, CUDA_R_16BF, u(K), u(N), K) != CUBLAS_STATUS_SUCCESS ||
      cublasLtMatrixLayoutCreate(&d.b, CUDA_R_16BF, u(K), u(M), K) != CUBLAS_STATUS_SUCCESS ||
      cublasLtMatrixLayoutCreate(&d.c, CUDA_R_16BF, u(N), u(M), N) != CUBLAS_STATUS_SUCCESS)
    return false;
  if (cublasLtMatmulPreferenceCreate(&d.pref) != CUBLAS_STATUS_SUCCESS) return false;
  const size_t ws = kWorkspaceBytes;
  cublasLtMatmulPreferenceSetAttribute(d.pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws,
                                       sizeof(ws));
  cublasLtMatmulHeuristicResult_t result{};
  int found = 0;
  if (cublasLtMatmulAlgoGetHeuristic(l.handle, d.op, d.a, d.b, d.c, d.c, d.pref, 1, &result,
                                     &found) != CUBLAS_STATUS_SUCCESS ||
      found == 0)
    return false;
  const float alpha = 1.f, beta = 0.f;
  return cublasLtMatmul(l.handle, d.op, &alpha, w, d.a, x, d.b, &beta, y, d.c, y, d.c, &result.algo,
                        l.workspace, ws, stream()) == CUBLAS_STATUS_SUCCESS;
}

void warn_once(const char* what) {
  static std::once_flag flag;
  std::call_once(flag, [&] { std::fprintf(stderr, "freeswim: warning: %s\n", what); });
}

}  // namespace

void gemm_bf16(const void* x, const void* w, const void* bias, DType bias_t, void* y, int64_t M,
               int64_t N, int64_t K) {
  if (M == 0 || N == 0) return;
  if (K > 0) {
    if (try_gemm(x, w, bias, bias_t, y, M, N, K)) return;
    if (bias && try_gemm(x, w, nullptr, bias_t, y, M, N, K)) {
      check_cuda(kernels::add_bias_rows(y, DType::BF16, bias, bias_t, M, N), "bias kernel");
      return;
    }
    warn_once("cuBLASLt has no algorithm for a linear layer; using the plain kernel (slow)");
  }
  check_cuda(kernels::linear_simple(x, DType::BF16, w, DType::BF16, bias,
                                    bias ? bias_t : DType::F32, y, DType::BF16, M, N, K),
             "linear kernel");
}

}  // namespace freeswim::ops::cuda
