// The stream every op of the CUDA backend runs on: the legacy default stream, so that the
// synchronous copies of Tensor::to are ordered after the kernels without explicit syncs.
#pragma once

#include <cuda_runtime_api.h>

#include "core/error.h"

namespace freeswim::ops::cuda {

inline cudaStream_t stream() {
  return nullptr;
}

// The stream of the asynchronous host <-> device copies (copy_async in core/device_memory.h,
// used by the cross-attention cache in pinned host memory) on the calling thread's current
// device: one per device, made at its first use (memory.cpp). It is non-blocking: a stream made
// with the default flags would be ordered against every kernel of the legacy default stream, so
// a copy could never overlap compute. Order with the compute stream comes from events instead.
cudaStream_t transfer_stream();

}  // namespace freeswim::ops::cuda
