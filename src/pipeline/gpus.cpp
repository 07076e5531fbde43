#include "pipeline/gpus.h"

#include <numeric>
#include <vector>

#include "core/error.h"
#ifdef FREESWIM_HAVE_NCCL
#include "parallel/nccl_group.h"
#endif

namespace freeswim::pipeline {

GpuInventory gpu_inventory() {
  GpuInventory g;
#ifdef FREESWIM_HAVE_NCCL
  g.nccl = true;
  g.visible = parallel::cuda_device_count();
#endif
  return g;
}

void check_gpus(int gpus, Device device, const GpuInventory& inventory) {
  FS_CHECK(gpus == 1 || gpus == 2 || gpus == 4 || gpus == 8,
           "--gpus {}: the GPUs of one run are 1, 2, 4 or 8 (2: CFG-parallel; 4, 8: CFG-parallel "
           "pairs of sequence-parallel groups)",
           gpus);
  if (gpus == 1) return;
  FS_CHECK(device == Device::CUDA,
           "--gpus {} needs --device cuda (this run is on the {}); use --gpus 1 on the CPU", gpus,
           device_name(device));
  FS_CHECK(inventory.nccl,
           "--gpus {}: this freeswim was built without NCCL (CUDA toolkit without nccl.h / "
           "libnccl); use --gpus 1",
           gpus);
  FS_CHECK(inventory.visible >= gpus,
           "--gpus {}: this process sees {} GPU(s) (CUDA_VISIBLE_DEVICES?); use --gpus {} or fewer",
           gpus, inventory.visible, inventory.visible >= 2 ? (inventory.visible >= 4 ? 4 : 2) : 1);
  FS_CHECK(!kRefuseSeveralGpusUntilVerified,
           "--gpus {}: not available yet: the CUDA backend's per-device state (memory cache, "
           "cuBLASLt and cuDNN handles for each GPU of the process) is not yet verified on "
           "several GPUs; the launch of {} ranks and their loops are tested on the CPU stand-in "
           "only (docs/multi_gpu.md). Use --gpus 1",
           gpus, gpus);
}

std::unique_ptr<parallel::World> gpu_world(int gpus, bool with_uncond) {
  if (gpus == 1) return nullptr;
#ifdef FREESWIM_HAVE_NCCL
  std::vector<int> devices(static_cast<size_t>(gpus));
  std::iota(devices.begin(), devices.end(), 0);
  return std::make_unique<parallel::NcclWorld>(devices, with_uncond);
#else
  (void)with_uncond;
  fail("--gpus {}: this freeswim was built without NCCL; use --gpus 1", gpus);
#endif
}

}  // namespace freeswim::pipeline
