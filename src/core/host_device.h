// FS_HOST_DEVICE marks inline functions that CUDA kernels call as well as host code (the Philox
// generator, the attention kernels' window plan): __host__ __device__ under nvcc, nothing for the
// host compiler.
#pragma once

#if defined(__CUDACC__)
#define FS_HOST_DEVICE __host__ __device__
#else
#define FS_HOST_DEVICE
#endif
