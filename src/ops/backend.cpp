#include "core/error.h"
#include "ops/cpu/cpu_backend.h"
#include "ops/ops.h"

namespace freeswim::ops {

namespace {
Backend* g_backends[2] = {nullptr, nullptr};
}

void register_backend(Device device, Backend* b) {
  g_backends[static_cast<int>(device)] = b;
}

Backend& backend(Device device) {
  if (device == Device::CPU) return cpu::cpu_backend();
  Backend* b = g_backends[static_cast<int>(device)];
  FS_CHECK(b != nullptr, "no backend for device '{}' in this build (built without CUDA?)",
           device_name(device));
  return *b;
}

}  // namespace freeswim::ops
