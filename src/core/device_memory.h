// Memory services of a device: allocation, release and copies. The CPU's are built in; a GPU
// backend registers its own at start-up (ops/cuda), so the core never includes CUDA headers.
#pragma once

#include <cstddef>
#include <cstdint>

#include "core/tensor.h"

namespace freeswim {

// Bytes held by tensors at most, bytes reserved from the driver at most (tensors plus the
// allocator's cache), and the cap on the reserved bytes (0: none; FREESWIM_GPU_MEMORY_LIMIT).
struct DeviceMemoryPeak {
  size_t in_use = 0, reserved = 0, limit = 0;
};

struct DeviceMemory {
  void* (*alloc)(size_t bytes) = nullptr;  // throws OutOfMemory when it cannot
  void (*release)(void* p) = nullptr;
  // Copy `bytes` between two devices (either may be this one).
  void (*copy)(void* dst, Device dst_dev, const void* src, Device src_dev, size_t bytes) = nullptr;

  // Transfers that overlap compute. A GPU backend provides them; the CPU leaves them null (its
  // "host memory" is its own memory and its copies are a memcpy).
  //
  // Page-locked host memory this device can copy to and from without a staging buffer, so that
  // a copy runs asynchronously at full PCIe speed. Throws OutOfMemory when it cannot.
  void* (*alloc_pinned)(size_t bytes) = nullptr;
  void (*release_pinned)(void* p) = nullptr;
  // Queues a copy of `bytes` between this device and pinned host memory (or within the device)
  // on a transfer stream apart from the compute stream. It starts once the work queued on the
  // compute stream so far has finished (the source is complete, no earlier kernel still reads
  // the destination) and runs while later kernels do. Returns a handle of its completion.
  void* (*copy_async)(void* dst, Device dst_dev, const void* src, Device src_dev,
                      size_t bytes) = nullptr;
  // Work queued on the compute stream from now on waits for the copy; the host does not.
  void (*compute_waits)(void* done) = nullptr;
  // The host waits until the copy has finished.
  void (*host_waits)(void* done) = nullptr;
  void (*release_done)(void* done) = nullptr;
  // The host waits until every copy queued by copy_async has finished, also those already
  // consumed by compute_waits (before their pinned host memory may be freed).
  void (*wait_transfers)() = nullptr;
  // Bytes a new allocation could get: the driver's free memory plus what the backend's
  // allocator holds unused.
  size_t (*free_bytes)() = nullptr;
  // Returns blocks the backend's allocator keeps cached but unused to the driver (after a stage
  // whose many buffer sizes would otherwise stay reserved into the next one).
  void (*trim)() = nullptr;
  // The allocator's high-water marks since start-up and its cap, for a run's closing summary;
  // null where the device has no allocator of its own (the CPU).
  DeviceMemoryPeak (*peak)() = nullptr;
};

void register_device_memory(Device device, const DeviceMemory& mem);
// Throws Error naming the device when no backend for it was built or registered.
const DeviceMemory& device_memory(Device device);
bool device_available(Device device);
// Calls every registered device's trim (between pipeline stages).
void trim_device_memory();

// A copy in flight (copy_async below). It must be consumed by compute_waits() or host_waits()
// before the tensors it reads or writes are released; the destructor waits on the host when it
// was not, so that a block of the caching allocator is never handed out while a copy still
// touches it. The handle does not keep the tensors alive: the caller does.
class AsyncCopy {
 public:
  AsyncCopy() = default;
  AsyncCopy(const AsyncCopy&) = delete;
  AsyncCopy& operator=(const AsyncCopy&) = delete;
  AsyncCopy(AsyncCopy&& o) noexcept;
  AsyncCopy& operator=(AsyncCopy&& o) noexcept;
  ~AsyncCopy();

  // Whether a copy is still to be waited for.
  bool pending() const { return done_ != nullptr; }
  // Kernels queued after this call see the copied bytes. Because every kernel runs on the one
  // compute stream, the tensors may be released right after (their next user is ordered after
  // the copy).
  void compute_waits();
  // Returns when the copy has finished (the host may read a host-side destination).
  void host_waits();

 private:
  friend AsyncCopy copy_async(const Tensor& dst, const Tensor& src);
  const DeviceMemory* mem_ = nullptr;
  void* done_ = nullptr;
};

// Copies the bytes of `src` into `dst` (same dtype and element count). Between a GPU and host
// memory, or within a GPU, the copy is queued on the GPU's transfer stream (pinned host memory
// makes it truly asynchronous); between two CPU tensors it is done at once and the handle is
// already finished.
AsyncCopy copy_async(const Tensor& dst, const Tensor& src);

// Bytes of long-lived caches (the cross-attention cache) held on `device` now, kept up to date
// by their owners so that the out-of-memory message can name the flag that moves them off it.
void add_device_cache_bytes(Device device, int64_t delta);
size_t device_cache_bytes(Device device);
// Bytes of model weights on `device` that --offload would move to host memory (kept by the
// model that holds them), for the same message.
void add_device_offloadable_bytes(Device device, int64_t delta);
size_t device_offloadable_bytes(Device device);

}  // namespace freeswim
