// Which GPUs this build's kernels run on, and which attention kernels run there (cuda_backend.h).
// Kept apart from the rest of the backend and free of CUDA calls, so that a host-only test links
// it without the CUDA libraries.
#include <fmt/format.h>

#include <string>

#include "core/error.h"
#include "ops/cuda/cuda_backend.h"

namespace freeswim::ops::cuda {

std::string cuda_capability_problem(const std::string& name, int major, int minor) {
  if (major >= 8) return {};
  return fmt::format(
      "{} has compute capability {}.{}; freeswim's CUDA kernels need 8.0 or later (Ampere, Ada, "
      "Hopper, Blackwell: bf16 tensor cores and cp.async)",
      name.empty() ? std::string("the GPU") : name, major, minor);
}

std::string cuda_kernel_path(int major, int minor, bool hopper_built, GpuKernels kernels,
                             bool narrow_blocks) {
  // sm_90a machine code runs on compute capability 9.0 alone.
  const bool hopper = (kernels == GpuKernels::automatic || kernels == GpuKernels::hopper) &&
                      hopper_built && major == 9 && minor == 0;
  if (hopper) return "Hopper kernels (wgmma, TMA)";
  return narrow_blocks || kernels == GpuKernels::portable_narrow
             ? "portable kernels (mma.sync, narrow blocks)"
             : "portable kernels (mma.sync, wide blocks)";
}

GpuKernels parse_gpu_kernels(const std::string& value) {
  if (value == "auto") return GpuKernels::automatic;
  if (value == "hopper") return GpuKernels::hopper;
  if (value == "portable") return GpuKernels::portable;
  if (value == "portable-narrow") return GpuKernels::portable_narrow;
  fail("--gpu-kernels must be auto, hopper, portable or portable-narrow, got '{}'", value);
}

const char* gpu_kernels_name(GpuKernels k) {
  switch (k) {
    case GpuKernels::hopper:
      return "hopper";
    case GpuKernels::portable:
      return "portable";
    case GpuKernels::portable_narrow:
      return "portable-narrow";
    default:
      return "auto";
  }
}

}  // namespace freeswim::ops::cuda
