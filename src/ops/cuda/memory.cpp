// Device memory of the CUDA backend: a caching allocator over cudaMalloc. Freed blocks go to a
// free list of their size bucket and are handed out again for the next request of that bucket,
// so that the forward of the next layer reuses the memory of the last one without a cudaMalloc
// (which synchronises the device). All kernels run on one stream, so a block released by the host
// may be reused at once: the kernels that read it are ordered before any new writer. The one
// other stream, the transfer stream of copy_async, keeps that true by starting each copy after
// an event of the compute stream, and its users keep the tensors of a copy alive until the
// compute stream has been made to wait for it (AsyncCopy in core/device_memory.h).
//
// One pool per GPU (per_device.h): a thread allocates from the pool of its current device, and a
// block goes back to the pool that holds it (whichever thread frees it). Each pool has its own
// free lists, accounting and lock; the cap (set_memory_limit) applies to each device on its own.
// The one stream above is per GPU (the legacy default stream of each device): a block is reused
// on its own device's stream, after the kernels of that stream that last read it, which holds as
// long as a device's tensors are only used by kernels of that device (each rank its own).
//
// Also here: pinned host memory and the asynchronous copies of the cross-attention cache.
#include <cuda_runtime_api.h>

#include <atomic>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "core/bytes.h"
#include "core/device_memory.h"
#include "core/error.h"
#include "ops/cuda/block_cache.h"
#include "ops/cuda/cuda_backend.h"
#include "ops/cuda/cuda_check.h"
#include "ops/cuda/per_device.h"

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

// The cap on the bytes each device's pool reserves from the driver (0 = none): every GPU gets
// the same cap.
std::atomic<size_t> g_limit{0};

// The allocator of one device. Its blocks are that device's memory; live holds those handed out,
// so the pool a block belongs to is the one whose live map has it.
struct Pool {
  explicit Pool(int d) : device(d) {}
  const int device;
  std::mutex mu;
  bool checked = false;
  std::unordered_map<void*, size_t> live;  // block -> bucket size
  BlockCache cached;                       // unused blocks
  MemoryStats stats;

  void free_one(void* block, size_t size) {
    cudaFree(block);
    stats.reserved -= size;
  }
  void release_cache_locked() {
    size_t size = 0;
    while (void* block = cached.pop_largest(&size)) free_one(block, size);
  }
  // Gives cached blocks back to the driver, largest first, until `size` more bytes stay within
  // the cap `limit` (all of them when there is no cap). The caller has synchronised the device.
  void make_room_locked(size_t size, size_t limit) {
    size_t got = 0;
    while (limit == 0 || stats.reserved + size > limit) {
      void* block = cached.pop_largest(&got);  // (got is set here: not in free_one's arguments)
      if (block == nullptr) break;
      free_one(block, got);
    }
  }
  // Takes back a block this pool handed out; false when the block is not one of them.
  bool take_back(void* block) {
    std::lock_guard<std::mutex> lock(mu);
    auto it = live.find(block);
    if (it == live.end()) return false;
    stats.in_use -= it->second;
    cached.put(block, it->second);
    live.erase(it);
    return true;
  }
};

// Never destroyed: tensors held in static objects may be released after main returns.
PerDevice<Pool>& pools() {
  static auto* all = new PerDevice<Pool>([](int device) { return std::make_unique<Pool>(device); });
  return *all;
}

// The current device's pool if it has one, else null. Asks for the device only once some pool
// exists, so that a run on the CPU with this backend registered (trim_device_memory between
// stages) never touches the CUDA runtime.
Pool* current_pool_if_made() {
  PerDevice<Pool>& all = pools();
  if (all.made() == 0) return nullptr;
  return all.find(all.device());
}

// The first use of a device's pool checks the device, so that `--device cuda` on a machine
// without a GPU ends in one clear message rather than a failure deep inside a kernel launch.
void ensure_device_locked(Pool& p) {
  if (p.checked) return;
  require_cuda_device();
  // A GPU this build has no kernels for would otherwise fail at the first kernel launch with
  // "no kernel image is available".
  cudaDeviceProp prop{};
  if (cudaGetDeviceProperties(&prop, p.device) == cudaSuccess) {
    std::string why = cuda_capability_problem(prop.name, prop.major, prop.minor);
    if (why.empty()) why = cuda_build_problem(prop.name, prop.major, prop.minor);
    if (!why.empty()) fail("--device cuda: {}; run with --device cpu", why);
  } else {
    cudaGetLastError();
  }
  p.checked = true;
}

// The flags that would lower the peak, for the out-of-memory message: only flags the CLI has.
std::string out_of_memory_advice() {
  const size_t cache = device_cache_bytes(Device::CUDA);
  const size_t weights = device_offloadable_bytes(Device::CUDA);
  const std::string offload =
      weights > 0 ? fmt::format(
                        "--offload (streams the DiT's {:.2f} GiB of block weights from "
                        "host memory), ",
                        gib(weights))
                  : std::string();
  if (cache == 0) return fmt::format("; try {}a smaller --size", offload);
  return fmt::format(
      ", {:.2f} GiB of them by the cross-attention cache; try --cache-memory host (the cache in "
      "pinned host memory), {}--cache-every 0 (no cache) or a smaller --size",
      gib(cache), offload);
}

void* cuda_alloc(size_t bytes) {
  Pool& p = pools().get();
  const size_t limit = g_limit.load(std::memory_order_relaxed);
  std::lock_guard<std::mutex> lock(p.mu);
  ensure_device_locked(p);
  size_t size = bucket_of(bytes);
  void* ptr = p.cached.take_exact(size);
  if (ptr == nullptr) {
    if (limit != 0 && p.stats.reserved + size > limit) {
      // Over the cap: a somewhat larger unused block first, else give unused blocks back
      // (largest first) until this one fits, as a full card would make us do (block_cache.h).
      ptr = p.cached.take_fit(size, &size);
      if (ptr == nullptr && !p.cached.empty()) {
        cudaDeviceSynchronize();  // kernels may still read a cached block
        p.make_room_locked(size, limit);
      }
    }
  }
  if (ptr == nullptr) {
    if (limit != 0 && p.stats.reserved + size > limit)
      throw OutOfMemory(fmt::format(
          "out of GPU memory allocating {:.2f} GiB: the cap FREESWIM_GPU_MEMORY_LIMIT={:.2f} GiB "
          "would be passed, {:.2f} GiB held by this run's tensors{}",
          gib(size), gib(limit), gib(p.stats.in_use), out_of_memory_advice()));
    cudaError_t e = cudaMalloc(&ptr, size);
    bool fresh = true;  // false: a cached block taken instead
    if (e == cudaErrorMemoryAllocation) {
      cudaGetLastError();
      // The card is full: a somewhat larger unused block, else blocks of other sizes given back
      // to the driver one at a time, largest first, until the new one fits.
      ptr = p.cached.take_fit(size, &size);
      if (ptr != nullptr) {
        e = cudaSuccess;
        fresh = false;
      } else if (!p.cached.empty()) {
        cudaDeviceSynchronize();  // kernels may still read a cached block
        size_t got = 0;
        while (e == cudaErrorMemoryAllocation && !p.cached.empty()) {
          void* block = p.cached.pop_largest(&got);
          p.free_one(block, got);
          e = cudaMalloc(&ptr, size);
          if (e == cudaErrorMemoryAllocation) cudaGetLastError();
        }
      }
    }
    if (e != cudaSuccess) {
      cudaGetLastError();
      size_t free_b = 0, total_b = 0;
      cudaMemGetInfo(&free_b, &total_b);
      throw OutOfMemory(fmt::format(
          "out of GPU memory allocating {:.2f} GiB ({}): {:.2f} GiB free of {:.2f} GiB, {:.2f} GiB "
          "held by this run's tensors{}",
          gib(size), cudaGetErrorString(e), gib(free_b), gib(total_b), gib(p.stats.in_use),
          out_of_memory_advice()));
    }
    if (fresh) {
      p.stats.reserved += size;
      if (p.stats.reserved > p.stats.peak_reserved) p.stats.peak_reserved = p.stats.reserved;
    }
  }
  p.live.emplace(ptr, size);
  p.stats.in_use += size;
  if (p.stats.in_use > p.stats.peak_in_use) p.stats.peak_in_use = p.stats.in_use;
  return ptr;
}

// The block goes back to the pool that handed it out, whatever device is current on the calling
// thread. With one pool that is the only lookup. With several, the current device's pool is
// asked first (a rank frees its own tensors), then the others; the current device is only a
// hint here, and a thread whose device cannot be read (after the runtime has shut down at exit)
// still finds the block. A block of no pool is not ours: nothing to give back.
void cuda_release(void* ptr) {
  if (ptr == nullptr) return;
  PerDevice<Pool>& all = pools();
  const int made = all.made();
  int first = -1;
  if (made > 1) {
    if (cudaGetDevice(&first) != cudaSuccess) {
      cudaGetLastError();
      first = -1;
    } else if (Pool* p = all.find(first); p != nullptr && p->take_back(ptr)) {
      return;
    }
  }
  bool found = false;
  all.for_each([&](int device, Pool& p) {
    if (!found && device != first) found = p.take_back(ptr);
  });
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

void* cuda_alloc_pinned(size_t bytes) {
  {
    Pool& p = pools().get();
    std::lock_guard<std::mutex> lock(p.mu);
    ensure_device_locked(p);
  }
  void* ptr = nullptr;
  // Portable: pinned for every device of the process, not only the one current here, so that
  // any rank's thread may copy to and from it at full speed.
  const cudaError_t e = cudaHostAlloc(&ptr, bytes ? bytes : 1, cudaHostAllocPortable);
  if (e != cudaSuccess) {
    cudaGetLastError();
    throw OutOfMemory(fmt::format(
        "out of page-locked host memory allocating {:.2f} GiB for the cross-attention cache ({}); "
        "try --cache-memory device (the cache on the GPU, when it has room), --cache-every 0 (no "
        "cache) or a smaller --size",
        gib(bytes), cudaGetErrorString(e)));
  }
  return ptr;
}

void cuda_release_pinned(void* ptr) {
  if (ptr) cudaFreeHost(ptr);
}

cudaMemcpyKind copy_kind(Device dst_dev, Device src_dev) {
  if (dst_dev == Device::CUDA && src_dev == Device::CUDA) return cudaMemcpyDeviceToDevice;
  return dst_dev == Device::CPU ? cudaMemcpyDeviceToHost : cudaMemcpyHostToDevice;
}

void* cuda_copy_async(void* dst, Device dst_dev, const void* src, Device src_dev, size_t bytes) {
  const cudaStream_t transfer = transfer_stream();  // the current device's
  cudaEvent_t ready = nullptr, done = nullptr;
  check_cuda(cudaEventCreateWithFlags(&ready, cudaEventDisableTiming), "cudaEventCreate");
  cudaError_t e = cudaEventCreateWithFlags(&done, cudaEventDisableTiming);
  // The copy starts after everything queued on the compute stream: the kernels that wrote the
  // source, and those that still read the destination's memory under its previous owner.
  if (e == cudaSuccess) e = cudaEventRecord(ready, stream());
  if (e == cudaSuccess) e = cudaStreamWaitEvent(transfer, ready, 0);
  if (e == cudaSuccess) e = cudaMemcpyAsync(dst, src, bytes, copy_kind(dst_dev, src_dev), transfer);
  if (e == cudaSuccess) e = cudaEventRecord(done, transfer);
  cudaEventDestroy(ready);  // released by the driver once the stream has passed it
  if (e != cudaSuccess) {
    if (done) cudaEventDestroy(done);
    fail("cuda: asynchronous copy of {} bytes ({} -> {}) failed: {}", bytes, device_name(src_dev),
         device_name(dst_dev), cudaGetErrorString(e));
  }
  return done;
}

void cuda_compute_waits(void* done) {
  check_cuda(cudaStreamWaitEvent(stream(), static_cast<cudaEvent_t>(done), 0),
             "waiting for an asynchronous copy");
}

void cuda_host_waits(void* done) {
  check_cuda(cudaEventSynchronize(static_cast<cudaEvent_t>(done)),
             "waiting for an asynchronous copy");
}

void cuda_release_done(void* done) {
  cudaEventDestroy(static_cast<cudaEvent_t>(done));
}

void cuda_wait_transfers() {
  check_cuda(cudaStreamSynchronize(transfer_stream()), "waiting for the transfer stream");
}

// The current device's figures.
size_t cuda_free_bytes() {
  Pool& p = pools().get();
  const size_t limit = g_limit.load(std::memory_order_relaxed);
  std::lock_guard<std::mutex> lock(p.mu);
  ensure_device_locked(p);
  size_t free_b = 0, total_b = 0;
  check_cuda(cudaMemGetInfo(&free_b, &total_b), "cudaMemGetInfo");
  // Blocks the allocator holds unused serve new requests (or go back to the driver on a miss).
  size_t avail = free_b + (p.stats.reserved - p.stats.in_use);
  if (limit != 0) {
    const size_t under_cap = limit > p.stats.in_use ? limit - p.stats.in_use : 0;
    if (under_cap < avail) avail = under_cap;
  }
  return avail;
}

// The current device's marks (zero where it has allocated nothing).
DeviceMemoryPeak cuda_peak() {
  const size_t limit = g_limit.load(std::memory_order_relaxed);
  Pool* p = current_pool_if_made();
  if (p == nullptr) return {0, 0, limit};
  std::lock_guard<std::mutex> lock(p->mu);
  return {p->stats.peak_in_use, p->stats.peak_reserved, limit};
}

}  // namespace

MemoryStats memory_stats() {
  Pool* p = current_pool_if_made();
  if (p == nullptr) return {};
  std::lock_guard<std::mutex> lock(p->mu);
  return p->stats;
}

void reset_peak_memory() {
  Pool* p = current_pool_if_made();
  if (p == nullptr) return;
  std::lock_guard<std::mutex> lock(p->mu);
  p->stats.peak_in_use = p->stats.in_use;
  p->stats.peak_reserved = p->stats.reserved;
}

void release_cached_memory() {
  Pool* p = current_pool_if_made();
  if (p == nullptr) return;
  std::lock_guard<std::mutex> lock(p->mu);
  if (!p->cached.empty()) cudaDeviceSynchronize();  // kernels may still read a cached block
  p->release_cache_locked();
}

void set_memory_limit(size_t bytes) {
  g_limit.store(bytes, std::memory_order_relaxed);
}

size_t memory_limit() {
  return g_limit.load(std::memory_order_relaxed);
}

size_t free_bytes_on(int device) {
  int current = 0;
  check_cuda(cudaGetDevice(&current), "cudaGetDevice");
  check_cuda(cudaSetDevice(device), "cudaSetDevice");
  size_t free_b = 0;
  try {
    free_b = cuda_free_bytes();
  } catch (...) {
    cudaSetDevice(current);
    throw;
  }
  check_cuda(cudaSetDevice(current), "cudaSetDevice");
  return free_b;
}

// Made on a device's first copy_async (or wait_transfers) and kept for the life of the process.
cudaStream_t transfer_stream() {
  struct Stream {
    cudaStream_t s = nullptr;
  };
  static auto* all = new PerDevice<Stream>([](int) {
    auto t = std::make_unique<Stream>();
    const cudaError_t e = cudaStreamCreateWithFlags(&t->s, cudaStreamNonBlocking);
    FS_CHECK(e == cudaSuccess, "cuda: creating the transfer stream failed: {}",
             cudaGetErrorString(e));
    return t;
  });
  return all->get().s;
}

void register_cuda_memory() {
  DeviceMemory m;
  m.alloc = cuda_alloc;
  m.release = cuda_release;
  m.copy = cuda_copy;
  m.alloc_pinned = cuda_alloc_pinned;
  m.release_pinned = cuda_release_pinned;
  m.copy_async = cuda_copy_async;
  m.compute_waits = cuda_compute_waits;
  m.host_waits = cuda_host_waits;
  m.release_done = cuda_release_done;
  m.wait_transfers = cuda_wait_transfers;
  m.free_bytes = cuda_free_bytes;
  m.trim = release_cached_memory;
  m.peak = cuda_peak;
  register_device_memory(Device::CUDA, m);
}

}  // namespace freeswim::ops::cuda
