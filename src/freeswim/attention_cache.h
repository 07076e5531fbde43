// The cross-attention cache of FreeSwim's cache mode: on a guide step each DiT block's
// full-branch cross-attention output ([tokens, heads, head_dim], before to_out) is stored, and
// the reuse steps that follow read it back. At Wan2.1-1.3B 1088x1920x81 it is 30 x 171,360 x
// 1,536 bf16 = 15.8 GB, so where it lives matters: on the compute device (fast, but that much
// less room for activations) or in pinned host memory (copied off block by block while the next
// block computes, and fetched back one block ahead on reuse; docs/cuda_backend.md).
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "core/device_memory.h"
#include "core/tensor.h"

namespace freeswim {

// --cache-memory.
enum class CachePlacement : uint8_t {
  Auto,    // decided at the first guide step from the device's free memory
  Device,  // on the compute device
  Host,    // in pinned host memory (on the CPU backend: the same memory as Device)
};

std::string cache_placement_name(CachePlacement p);  // "auto", "device", "host"
// Parses a --cache-memory value; the error names the flag and the accepted values.
CachePlacement parse_cache_placement(const std::string& value);

// The least device memory Auto leaves beside the cache for the forward's activations.
inline constexpr size_t kMinCacheMargin = size_t{2} << 30;

// Auto's rule: Device when the whole cache and `margin` bytes for everything else the forward
// allocates fit in `free_bytes`, else Host.
CachePlacement choose_cache_placement(size_t cache_bytes, size_t free_bytes, size_t margin);

class CrossAttentionCache {
 public:
  explicit CrossAttentionCache(CachePlacement requested = CachePlacement::Auto);
  ~CrossAttentionCache();  // waits for the copies in flight
  // Copies in flight refer to this object's tensors, and its device bytes are counted for the
  // out-of-memory message: it stays where it was made.
  CrossAttentionCache(const CrossAttentionCache&) = delete;
  CrossAttentionCache& operator=(const CrossAttentionCache&) = delete;

  // Device memory Auto keeps free for activations (the pipeline estimates it from the model and
  // the token count); at least kMinCacheMargin.
  void set_activation_margin(size_t bytes) { margin_ = bytes; }
  // Receives the one line that says where the cache went and why (GPU runs only).
  void set_log(std::function<void(const std::string&)> log) { log_ = std::move(log); }

  // Start of a guide step that will store `n_blocks` blocks. The device tensors of the last
  // guide step are dropped first (their memory serves the new ones); pinned host buffers are
  // kept and overwritten, as allocating gigabytes of pinned memory takes seconds.
  void begin_store(size_t n_blocks);
  // Keeps `t` (computed on its device) as block `block`. With Host placement on a GPU the copy
  // to host memory is queued and runs while the next block computes.
  void store(size_t block, const Tensor& t);
  // Block `block` on `device`, ready for the kernels queued after this call; undefined when the
  // block was not stored. With Host placement on a GPU it is copied from host memory (started
  // when the block before it was loaded, so the copy overlaps that block's compute).
  Tensor load(size_t block, Device device);
  // Waits until every copy in flight has finished: host-side blocks may be read by the CPU, and
  // pinned buffers freed.
  void sync();

  size_t size() const { return blocks.size(); }
  bool filled() const { return !blocks.empty(); }
  void clear();
  size_t bytes() const;  // of the stored blocks
  CachePlacement requested() const { return requested_; }
  // Device or Host once the first block is stored (Auto before that, when so requested).
  CachePlacement placement() const { return placement_; }

  // The stored tensor of each block: on the compute device, or in pinned host memory with Host
  // placement. Public for the checks and tests that compare them (call sync() first); the DiT
  // goes through begin_store/store/load.
  std::vector<Tensor> blocks;

 private:
  void decide(const Tensor& first);
  void retire_store();   // makes the compute stream wait for the last store's copy
  void drop_prefetch();  // a prefetch that will not be used: wait, then free its tensor
  void count_device_bytes();

  CachePlacement requested_;
  CachePlacement placement_;
  size_t margin_ = kMinCacheMargin;
  std::function<void(const std::string&)> log_;
  // The device tensor of the last store to host memory, alive until its copy is ordered before
  // any new use of its memory.
  struct Storing {
    Tensor source;
    AsyncCopy copy;
  };
  std::optional<Storing> storing_;
  // The next block's copy to the device, started by the load of the block before it.
  struct Prefetch {
    size_t block = 0;
    Tensor tensor;
    AsyncCopy copy;
  };
  std::optional<Prefetch> prefetch_;
  std::vector<Tensor> spare_;             // host buffers of the last guide step, reused by store
  Device transfer_device_ = Device::CPU;  // the GPU whose transfer stream our copies use
  Device counted_device_ = Device::CPU;
  int64_t counted_bytes_ = 0;  // registered with add_device_cache_bytes
};

}  // namespace freeswim
