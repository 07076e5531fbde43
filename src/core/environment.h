// The environment variables the programs read (freeswim, the benchmarks). The op backends read
// none: a program passes what it read on as options (ops::cuda::CudaBackendOptions).
//
//   FREESWIM_GPU_MEMORY_LIMIT=GiB  caps the GPU memory the run reserves (e.g. 22.35 = a 24 GB
//                                  card's); unset or empty: no cap
//   FREESWIM_PROFILE=1             times every op of the CUDA backend (benchmarks print the table)
#pragma once

#include <cstddef>

namespace freeswim {

struct Environment {
  size_t gpu_memory_limit = 0;  // bytes; 0: no cap
  bool profile = false;
};

// Throws freeswim::Error naming the variable when a value is malformed.
Environment read_environment();

}  // namespace freeswim
