// The device lookups of per_device.h.
#include "ops/cuda/per_device.h"

#include <cuda_runtime_api.h>

namespace freeswim::ops::cuda {

void require_cuda_device() {
  int count = 0;
  const cudaError_t e = cudaGetDeviceCount(&count);
  if (e != cudaSuccess || count == 0) {
    cudaGetLastError();  // clear the sticky status of the failed query
    fail("--device cuda: no usable CUDA device ({}); run with --device cpu",
         e != cudaSuccess ? cudaGetErrorString(e) : "no device found");
  }
}

int current_device() {
  int device = 0;
  const cudaError_t e = cudaGetDevice(&device);
  if (e == cudaSuccess) return device;
  cudaGetLastError();
  // On a machine without a usable GPU this is the error to report (the same as the first
  // allocation's, memory.cpp).
  require_cuda_device();
  fail("cuda: cannot read the calling thread's current device (cudaGetDevice: {})",
       cudaGetErrorString(e));
}

}  // namespace freeswim::ops::cuda
