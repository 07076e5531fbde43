// Device memory of the CUDA backend: a caching allocator over cudaMalloc. Freed blocks go to a
// free list of their size bucket and are handed out again for the next request of that bucket,
// so that the forward of the next layer reuses the memory of the last one without a cudaMalloc
// (which synchronises the device). All work runs on one stream, so a block released by the host
// may be reused at once: the kernels that read it are ordered before any new writer.
#include <cuda_runtime_api.h>

#include <map>
#include <mutex>
#include <unordered_map>
#include <vector>

#include "core/device_memory.h"
#include "core/error.h"
#include "ops/cuda/cuda_backend.h"
#include "ops/cuda/cuda_check.h"

namespace freeswim::ops::cuda {

namespace {

constexpr size_t kSmallLimit = size_t{1} << 20;  // up to 1 MiB: 512-byte buckets
constexpr size_t kSmallStep = 512;
constexpr size_t kLargeStep = size_t{2} << 20;  // above: 2 MiB buckets

size_t bucket_of(size_t bytes) {
  if (bytes == 0) bytes = 1;
  const size_t step = bytes <= kSmallLimit ? kSmallStep : kLargeStep;
  return (bytes + step - 1) / step * step;
}

double gib(size_t b) {
  return static_cast<double>(b) / (1024.0 * 1024.0 * 1024.0);
}

struct Pool {
  std::mutex mu;
  bool checked = false;
  std::unordered_map<void*, size_t> live;       // block -> bucket size
  std::map<size_t, std::vector<void*>> cached;  // bucket size -> unused blocks
  MemoryStats stats;

  void release_cache_locked() {
    for (auto& [size, blocks] : cached) {
      for (void* p : blocks) {
        cudaFree(p);
        stats.reserved -= size;
      }
    }
    cached.clear();
  }
};

// Never destroyed: tensors held in static objects may be released after main returns.
Pool& pool() {
  static Pool* p = new Pool;
  return *p;
}

// The first use checks for a device, so that `--device cuda` on a machine without a GPU ends
// in one clear message rather than a failure deep inside a kernel launch.
void ensure_device_locked(Pool& p) {
  if (p.checked) return;
  int count = 0;
  const cudaError_t e = cudaGetDeviceCount(&count);
  if (e != cudaSuccess || count == 0) {
    cudaGetLastError();  // clear the sticky status of the failed query
    fail("--device cuda: no usable CUDA device ({}); run with --device cpu",
         e != cudaSuccess ? cudaGetErrorString(e) : "no device found");
  }
  p.checked = true;
}

void* cuda_alloc(size_t bytes) {
  Pool& p = pool();
  std::lock_guard<std::mutex> lock(p.mu);
  ensure_device_locked(p);
  const size_t size = bucket_of(bytes);
  void* ptr = nullptr;
  auto it = p.cached.find(size);
  if (it != p.cached.end() && !it->second.empty()) {
    ptr = it->second.back();
    it->second.pop_back();
  } else {
    cudaError_t e = cudaMalloc(&ptr, size);
    if (e == cudaErrorMemoryAllocation) {
      // Blocks of other sizes may be enough once returned to the driver.
      cudaGetLastError();
      p.release_cache_locked();
      e = cudaMalloc(&ptr, size);
    }
    if (e != cudaSuccess) {
      cudaGetLastError();
      size_t free_b = 0, total_b = 0;
      cudaMemGetInfo(&free_b, &total_b);
      throw OutOfMemory(fmt::format(
          "out of GPU memory allocating {:.2f} GiB ({}): {:.2f} GiB free of {:.2f} GiB, {:.2f} GiB "
          "held by this run's tensors; try --offload (DiT blocks streamed from host memory) or a "
          "smaller --size",
          gib(size), cudaGetErrorString(e), gib(free_b), gib(total_b), gib(p.stats.in_use)));
    }
    p.stats.reserved += size;
    if (p.stats.reserved > p.stats.peak_reserved) p.stats.peak_reserved = p.stats.reserved;
  }
  p.live.emplace(ptr, size);
  p.stats.in_use += size;
  if (p.stats.in_use > p.stats.peak_in_use) p.stats.peak_in_use = p.stats.in_use;
  return ptr;
}

void cuda_release(void* ptr) {
  if (ptr == nullptr) return;
  Pool& p = pool();
  std::lock_guard<std::mutex> lock(p.mu);
  auto it = p.live.find(ptr);
  if (it == p.live.end()) return;  // not ours: nothing to give back
  p.stats.in_use -= it->second;
  p.cached[it->second].push_back(ptr);
  p.live.erase(it);
}

void cuda_copy(void* dst, Device dst_dev, const void* src, Device src_dev, size_t bytes) {
  if (bytes == 0) return;
  cudaError_t e;
  if (dst_dev == Device::CUDA && src_dev == Device::CUDA) {
    e = cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, stream());
  } else {
    // Synchronous: the host buffer may be pageable and is used as soon as this returns.
    e = cudaMemcpy(dst, src, bytes,
                   dst_dev == Device::CPU ? cudaMemcpyDeviceToHost : cudaMemcpyHostToDevice);
  }
  FS_CHECK(e == cudaSuccess, "cuda: copy of {} bytes ({} -> {}) failed: {}", bytes,
           device_name(src_dev), device_name(dst_dev), cudaGetErrorString(e));
}

}  // namespace

MemoryStats memory_stats() {
  Pool& p = pool();
  std::lock_guard<std::mutex> lock(p.mu);
  return p.stats;
}

void reset_peak_memory() {
  Pool& p = pool();
  std::lock_guard<std::mutex> lock(p.mu);
  p.stats.peak_in_use = p.stats.in_use;
  p.stats.peak_reserved = p.stats.reserved;
}

void release_cached_memory() {
  Pool& p = pool();
  std::lock_guard<std::mutex> lock(p.mu);
  if (!p.cached.empty()) cudaDeviceSynchronize();  // kernels may still read a cached block
  p.release_cache_locked();
}

void register_cuda_memory() {
  register_device_memory(Device::CUDA, DeviceMemory{cuda_alloc, cuda_release, cuda_copy});
}

}  // namespace freeswim::ops::cuda
