// `--gpus N` of generate and upscale (docs/multi_gpu.md): how many GPUs of this host one run
// uses, one rank each (parallel::NcclGroup), laid out by parallel::world_layout (CFG pairs of
// sequence-parallel groups). Checked before any model is loaded.
#pragma once

#include <memory>

#include "core/tensor.h"
#include "parallel/world.h"

namespace freeswim::pipeline {

// What this process can see and was built with, for check_gpus.
struct GpuInventory {
  int visible = 0;    // CUDA devices visible to the process
  bool nccl = false;  // built with NCCL (FREESWIM_HAVE_NCCL)
};
GpuInventory gpu_inventory();

// Whether check_gpus refuses every N > 1 that passed its other checks, and the only thing
// between `--gpus N` and the launch of its ranks (pipeline/launch.h): true until the CUDA
// backend's per-device state (ops/cuda: allocator, cuBLASLt and cuDNN handles, transfer stream
// keyed by device) has run on several GPUs of one process (docs/multi_gpu.md, "Not done").
inline constexpr bool kRefuseSeveralGpusUntilVerified = true;

// Throws Error naming --gpus unless `gpus` can run on `device`: N must be 1, 2, 4 or 8; N > 1
// needs --device cuda (`device` is the resolved device), N visible GPUs and a build with NCCL.
// While kRefuseSeveralGpusUntilVerified is true, N > 1 is then still refused, saying why.
void check_gpus(int gpus, Device device, const GpuInventory& inventory);

// The ranks of `--gpus N` once check_gpus has passed it: for N > 1 a parallel::NcclWorld over
// GPUs 0 .. N-1 laid out by world_layout(N, with_uncond) (its communicators and sub-groups made
// now); null for N = 1 (the job runs on the calling thread, no ranks). Throws Error naming
// --gpus in a build without NCCL.
std::unique_ptr<parallel::World> gpu_world(int gpus, bool with_uncond);

}  // namespace freeswim::pipeline
