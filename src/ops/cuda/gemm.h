// bf16 matrix products through cuBLASLt (internal to the CUDA backend).
#pragma once

#include <cstdint>
#include <string>

#include "core/dtype.h"

namespace freeswim::ops::cuda {

// What follows the product in gemm_bf16.
enum class GemmEpilogue { none, gelu_tanh };

// y[M, N] (bf16) = x[M, K] (bf16) * w[N, K]^T (bf16) (+ bias[N] of bias_t, or null), then GELU
// (tanh form) with `gelu_tanh`; fp32 accumulation, bias and GELU applied in fp32 in the epilogue
// where cuBLASLt offers it for these types, else by kernels after the product. cuBLASLt's epilogue
// takes the bias in bf16 (an fp32 bias is rounded to bf16 first, as the reference's bf16 layers
// hold it); the fallback after an unfused product adds it at its own precision.
void gemm_bf16(const void* x, const void* w, const void* bias, DType bias_t, void* y, int64_t M,
               int64_t N, int64_t K, GemmEpilogue epilogue = GemmEpilogue::none);

// In place y[M, N] (bf16) = alpha[n] * (x w^T)[m, n] + y[m, n] + bias[n] in one product, every
// term in fp32 and y rounded once: alpha [N] f32 on the device or null for 1, bias [N] f32 or
// null (rounded to bf16 for cuBLASLt's epilogue). False when cuBLASLt offers no algorithm for it,
// or when a probe with exact values, run once per device (gemm.cpp), found it computing something
// else (y is then untouched): the caller falls back to a separate product and add.
bool gemm_bf16_accumulate(const void* x, const void* w, const float* alpha, const float* bias,
                          void* y, int64_t M, int64_t N, int64_t K);

// Row-major fp32 products in exact fp32 arithmetic (CUBLAS_COMPUTE_32F, no TF32): C[M, N] (row
// stride ldc) = alpha * A[M, K] (lda) * B^T with B [N, K] (ldb) when b_transposed, else A * B with
// B [K, N] (ldb). For the VAE's fp32 attention. False when cuBLASLt offers no algorithm.
bool gemm_f32(const float* A, int64_t lda, const float* B, int64_t ldb, bool b_transposed, float* C,
              int64_t ldc, int64_t M, int64_t N, int64_t K, float alpha);

// Whether cuBLASLt's GELU epilogue computes the tanh form on the calling thread's current device
// (probed once per device, see gemm.cpp); gemm_bf16 uses the epilogue only then.
bool gelu_epilogue_is_tanh();

// One line saying what each fusion probe found on the calling thread's current device (matches /
// computes another form / refused by cuBLASLt), for benchmarks and tests to print.
std::string fusion_probe_report();

// How many products of this process (all devices together) ran each fused epilogue and how many
// fell back (for tests and benchmarks to report which path the device took).
struct GemmFusionCounts {
  int64_t gelu_fused = 0, gelu_unfused = 0, accumulate_fused = 0, accumulate_refused = 0;
  int64_t bias_fused = 0, bias_unfused = 0;  // products with a bias: in the epilogue or after
};
GemmFusionCounts gemm_fusion_counts();

}  // namespace freeswim::ops::cuda
