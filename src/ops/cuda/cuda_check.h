// Turning CUDA status codes into freeswim::Error (internal to the CUDA backend).
#pragma once

#include <cuda_runtime_api.h>

#include "core/error.h"
#include "ops/cuda/stream.h"

namespace freeswim::ops::cuda {

inline void check_cuda(cudaError_t e, const char* what) {
  FS_CHECK(e == cudaSuccess, "cuda: {} failed: {}", what, cudaGetErrorString(e));
}

}  // namespace freeswim::ops::cuda
