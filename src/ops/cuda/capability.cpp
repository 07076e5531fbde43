// Which GPUs this build's kernels run on (cuda_backend.h). Kept apart from the rest of the backend
// and free of CUDA calls, so that a host-only test links it without the CUDA libraries.
#include <fmt/format.h>

#include <string>

#include "ops/cuda/cuda_backend.h"

namespace freeswim::ops::cuda {

std::string cuda_capability_problem(const std::string& name, int major, int minor) {
  if (major == 9 && minor == 0) return {};
  return fmt::format(
      "{} has compute capability {}.{}; this freeswim's CUDA kernels are built for Hopper "
      "(sm_90a, compute capability 9.0: H100, H200, GH200) only",
      name.empty() ? std::string("the GPU") : name, major, minor);
}

}  // namespace freeswim::ops::cuda
