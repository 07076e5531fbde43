// bf16 matrix products through cuBLASLt (internal to the CUDA backend).
#pragma once

#include <cstdint>

#include "core/dtype.h"

namespace freeswim::ops::cuda {

// y[M, N] (bf16) = x[M, K] (bf16) * w[N, K]^T (bf16) (+ bias[N] of bias_t, or null), fp32
// accumulation, bias added in the epilogue where cuBLASLt offers it for these types.
void gemm_bf16(const void* x, const void* w, const void* bias, DType bias_t, void* y, int64_t M,
               int64_t N, int64_t K);

}  // namespace freeswim::ops::cuda
