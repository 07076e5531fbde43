// The CUDA op backend (docs/cuda_backend.md). register_cuda_backend() installs its device
// memory services and its Backend for Device::CUDA; it touches no GPU, so a program can call it
// at start on a machine without one and still run on the CPU. The first CUDA allocation checks
// for a device and throws freeswim::Error when there is none. The backend reads no environment
// variables: programs pass what they read (core/environment.h) as CudaBackendOptions.
#pragma once

#include <cstddef>
#include <string>

namespace freeswim::ops {
class Backend;
}

namespace freeswim::ops::cuda {

// Which attention kernels run (ops/cuda/attention/attention.h, AttentionPath): automatic (the
// Hopper kernels on compute capability 9.0 when the build has them, the portable kernels
// elsewhere), or one forced (`--gpu-kernels` in freeswim; tests and benchmarks): portable with the
// block shape the GPU's SMs take, or portable_narrow, the portable kernels with the narrow blocks
// of sm_80/86/89/120 on any GPU (AttentionOptions::portable_block).
enum class GpuKernels { automatic, hopper, portable, portable_narrow };
// "auto", "hopper", "portable" or "portable-narrow"; anything else is an Error naming
// --gpu-kernels.
GpuKernels parse_gpu_kernels(const std::string& value);
const char* gpu_kernels_name(GpuKernels k);

struct CudaBackendOptions {
  size_t memory_limit = 0;  // bytes (set_memory_limit); 0: no cap
  bool profile = false;     // time every op (op_profile_report)
  GpuKernels kernels = GpuKernels::automatic;
};
void register_cuda_backend(const CudaBackendOptions& options = {});
// Changes CudaBackendOptions::kernels after registration (a benchmark timing both paths in one
// process); takes effect at the next attention call.
void set_gpu_kernels(GpuKernels kernels);

// Why a GPU of compute capability major.minor cannot run this build's kernels, or "" when it can:
// every kernel has a portable form (mma.sync, cp.async) for compute capability 8.0 and later
// (Ampere, Ada, Hopper, Blackwell); older GPUs lack bf16 tensor cores and cp.async. Whether the
// binary holds code for the GPU is checked where the device is opened (the targets it was built
// for: FREESWIM_CUDA_ARCHS, docs/gpus.md).
std::string cuda_capability_problem(const std::string& name, int major, int minor);
// Why this binary holds no kernels for the current GPU (named name, compute capability
// major.minor), or "" when it does: the targets it was built for (FREESWIM_CUDA_ARCHS) include
// neither the GPU's machine code nor PTX of an older capability. Initialises the CUDA runtime.
std::string cuda_build_problem(const std::string& name, int major, int minor);
// Which attention kernels `kernels` runs on a GPU of compute capability major.minor, in words
// ("Hopper kernels (wgmma, TMA)" or "portable kernels (mma.sync, wide blocks)" / "(mma.sync,
// narrow blocks)"), given whether the build has the Hopper kernels and whether the GPU's SMs take
// the portable kernels' narrow blocks (attention::portable_narrow_blocks).
std::string cuda_kernel_path(int major, int minor, bool hopper_built,
                             GpuKernels kernels = GpuKernels::automatic,
                             bool narrow_blocks = false);

// CUDA device 0 as the jobs' `--device auto` sees it: its name ("NVIDIA H200"; "" when the machine
// has no usable CUDA GPU: no device, no driver, or CUDA_VISIBLE_DEVICES hiding them all) and, when
// it cannot run this build's kernels, why (cuda_capability_problem). Initialises the CUDA runtime.
struct CudaDeviceInfo {
  std::string name, unsupported;
  std::string kernels;  // which attention kernels run on it (cuda_kernel_path)
};
CudaDeviceInfo cuda_device_info();

// Bytes of device memory held by tensors now and at most since the last reset, and bytes
// reserved from the driver (held by tensors plus the allocator's cache). The allocator keeps one
// pool per GPU; these three act on the pool of the calling thread's current device (zeros, or
// nothing to do, where that device has allocated nothing).
struct MemoryStats {
  size_t in_use = 0, peak_in_use = 0, reserved = 0, peak_reserved = 0;
};
MemoryStats memory_stats();
void reset_peak_memory();
// Returns every cached (unused) block of the current device's pool to the driver.
void release_cached_memory();
// Caps the bytes this process reserves from the driver on each GPU (0 = no cap, the default; the
// programs set FREESWIM_GPU_MEMORY_LIMIT's value through CudaBackendOptions): every device's pool
// gets the same cap, applied to that device alone. When a new block would pass the cap the
// allocator first returns its cached blocks to the driver; a request that still does not fit
// throws OutOfMemory. This is what a smaller card does to the allocator (where cudaMalloc fails
// the same release happens), so a benchmark on a large GPU can show the peak a 24 GB card sees;
// it also lets two processes share one GPU.
void set_memory_limit(size_t bytes);
size_t memory_limit();
// What device memory.free_bytes() reports for GPU `device` (the driver's free memory, the pool's
// cached blocks, the cap), read from the calling thread, whose current device is left as it was.
size_t free_bytes_on(int device);

// CudaBackendOptions::profile (FREESWIM_PROFILE=1 in the programs): every op runs between two
// CUDA events and
// its GPU time is summed per op (per weight shape for the matrix products). The report is a
// markdown table, largest first; empty when profiling is off. profile.cpp says what it costs.
// Each GPU has its own profile: the report and the reset are those of the calling thread's
// current device.
bool op_profile_enabled();
std::string op_profile_report();
void reset_op_profile();
// The profiling wrapper around `inner` (what the profile option installs; one per process).
Backend* make_profiling_backend(Backend* inner);

}  // namespace freeswim::ops::cuda
