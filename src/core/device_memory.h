// Memory services of a device: allocation, release and copies. The CPU's are built in; a GPU
// backend registers its own at start-up (ops/cuda), so the core never includes CUDA headers.
#pragma once

#include <cstddef>

#include "core/tensor.h"

namespace freeswim {

struct DeviceMemory {
  void* (*alloc)(size_t bytes) = nullptr;  // throws OutOfMemory when it cannot
  void (*release)(void* p) = nullptr;
  // Copy `bytes` between two devices (either may be this one).
  void (*copy)(void* dst, Device dst_dev, const void* src, Device src_dev, size_t bytes) = nullptr;
};

void register_device_memory(Device device, const DeviceMemory& mem);
// Throws Error naming the device when no backend for it was built or registered.
const DeviceMemory& device_memory(Device device);
bool device_available(Device device);

}  // namespace freeswim
