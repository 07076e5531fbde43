// `--gpus N` of generate and upscale (docs/multi_gpu.md): how many GPUs of this host one run
// uses, one rank each (parallel::NcclGroup), laid out by parallel::world_layout (CFG pairs of
// sequence-parallel groups). Checked before any model is loaded.
#pragma once

#include "core/tensor.h"

namespace freeswim::pipeline {

// What this process can see and was built with, for check_gpus.
struct GpuInventory {
  int visible = 0;    // CUDA devices visible to the process
  bool nccl = false;  // built with NCCL (FREESWIM_HAVE_NCCL)
};
GpuInventory gpu_inventory();

// Throws Error naming --gpus unless `gpus` can run on `device`: N must be 1, 2, 4 or 8; N > 1
// needs --device cuda (`device` is the resolved device), N visible GPUs and a build with NCCL.
// N > 1 is then still refused: the CUDA backend keeps one device's state per process (its
// caching allocator, cuBLASLt and cuDNN handles, transfer stream), so ranks on several GPUs of
// one process cannot share it yet (docs/multi_gpu.md, "Not done").
void check_gpus(int gpus, Device device, const GpuInventory& inventory);

}  // namespace freeswim::pipeline
