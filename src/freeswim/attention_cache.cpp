#include "freeswim/attention_cache.h"

#include <algorithm>

#include "core/bytes.h"
#include "core/error.h"

namespace freeswim {

std::string cache_placement_name(CachePlacement p) {
  switch (p) {
    case CachePlacement::Auto:
      return "auto";
    case CachePlacement::Device:
      return "device";
    case CachePlacement::Host:
      return "host";
  }
  return "?";
}

CachePlacement parse_cache_placement(const std::string& value) {
  for (CachePlacement p : {CachePlacement::Device, CachePlacement::Host, CachePlacement::Auto})
    if (value == cache_placement_name(p)) return p;
  fail(
      "--cache-memory must be device (the cross-attention cache on the GPU), host (in pinned host "
      "memory) or auto (from the GPU's free memory); got '{}'",
      value);
}

CachePlacement choose_cache_placement(size_t cache_bytes, size_t free_bytes, size_t margin) {
  // Written without a sum that could wrap for absurd sizes.
  const bool fits = free_bytes >= margin && free_bytes - margin >= cache_bytes;
  return fits ? CachePlacement::Device : CachePlacement::Host;
}

CrossAttentionCache::CrossAttentionCache(CachePlacement requested)
    : requested_(requested), placement_(requested) {}

CrossAttentionCache::~CrossAttentionCache() {
  // No tensor of a copy in flight (pinned buffers included) is released before it has finished.
  try {
    sync();
  } catch (...) {
    // A failed wait means the device is lost; nothing is left to protect.
  }
  if (counted_bytes_) add_device_cache_bytes(counted_device_, -counted_bytes_);
}

void CrossAttentionCache::count_device_bytes() {
  int64_t now = 0;
  Device dev = counted_device_;
  for (const Tensor& t : blocks)
    if (t.defined() && t.device() != Device::CPU) {
      now += static_cast<int64_t>(t.nbytes());
      dev = t.device();
    }
  if (dev != counted_device_) {
    add_device_cache_bytes(counted_device_, -counted_bytes_);
    counted_device_ = dev;
    counted_bytes_ = 0;
  }
  add_device_cache_bytes(counted_device_, now - counted_bytes_);
  counted_bytes_ = now;
}

void CrossAttentionCache::retire_store() {
  if (!storing_) return;
  // After this the source's memory may go back to the allocator: its next user is a kernel of
  // the compute stream, which now runs after the copy.
  storing_->copy.compute_waits();
  storing_.reset();
}

void CrossAttentionCache::drop_prefetch() {
  if (!prefetch_) return;
  prefetch_->copy.host_waits();
  prefetch_.reset();
}

void CrossAttentionCache::sync() {
  if (storing_) {
    storing_->copy.host_waits();
    storing_.reset();
  }
  if (prefetch_) prefetch_->copy.host_waits();  // kept: the next load still takes it
  // Loads already handed to the compute stream may still be reading pinned buffers.
  if (transfer_device_ != Device::CPU) {
    const DeviceMemory& mem = device_memory(transfer_device_);
    if (mem.wait_transfers) mem.wait_transfers();
  }
}

void CrossAttentionCache::clear() {
  sync();
  prefetch_.reset();
  blocks.clear();
  spare_.clear();
  count_device_bytes();
}

size_t CrossAttentionCache::bytes() const {
  size_t n = 0;
  for (const Tensor& t : blocks) n += t.defined() ? t.nbytes() : 0;
  return n;
}

void CrossAttentionCache::begin_store(size_t n_blocks) {
  drop_prefetch();
  retire_store();
  if (placement_ == CachePlacement::Host) {
    // The buffers of the guide step before last are freed here, those of the last one are
    // overwritten: no copy may still read either (the transfer stream is idle by now anyway).
    sync();
    spare_ = std::move(blocks);
    spare_.resize(n_blocks);
  } else {
    spare_.clear();
  }
  blocks.assign(n_blocks, Tensor{});
  count_device_bytes();
}

void CrossAttentionCache::decide(const Tensor& first) {
  const size_t total = first.nbytes() * blocks.size();
  const Device dev = first.device();
  if (dev == Device::CPU) {
    // One memory: every placement is the same; Host stays Host so that it reads as asked.
    placement_ = requested_ == CachePlacement::Auto ? CachePlacement::Device : requested_;
    return;
  }
  const std::string what = fmt::format("cross-attention cache: {:.2f} GiB ({} blocks x {:.2f} GiB)",
                                       gib(total), blocks.size(), gib(first.nbytes()));
  auto log = [&](const std::string& line) {
    if (log_) log_(line);
  };
  if (requested_ != CachePlacement::Auto) {
    placement_ = requested_;
    log(fmt::format("{} {} (--cache-memory {})", what,
                    placement_ == CachePlacement::Device ? "on the GPU" : "in pinned host memory",
                    cache_placement_name(requested_)));
    return;
  }
  const DeviceMemory& mem = device_memory(dev);
  // The first block is already allocated: it counts as room the cache may use.
  const size_t free_b = mem.free_bytes ? mem.free_bytes() + first.nbytes() : 0;
  const size_t margin = std::max(margin_, kMinCacheMargin);
  placement_ = choose_cache_placement(total, free_b, margin);
  if (placement_ == CachePlacement::Device)
    log(fmt::format(
        "{} on the GPU: {:.2f} GiB free, {:.2f} GiB kept for activations (--cache-memory auto; "
        "host would keep it in pinned host memory)",
        what, gib(free_b), gib(margin)));
  else
    log(fmt::format(
        "{} in pinned host memory: the GPU has {:.2f} GiB free, less than the cache and {:.2f} "
        "GiB for activations; each guide and reuse step copies it over PCIe (--cache-memory "
        "auto; device would force it onto the GPU)",
        what, gib(free_b), gib(margin)));
}

void CrossAttentionCache::store(size_t block, const Tensor& t) {
  FS_CHECK(block < blocks.size(), "cross-attention cache: block {} stored, the cache has {}", block,
           blocks.size());
  FS_CHECK(t.defined(), "cross-attention cache: block {} stored without a tensor", block);
  if (placement_ == CachePlacement::Auto) decide(t);
  if (placement_ == CachePlacement::Device || t.device() == Device::CPU) {
    blocks[block] = t;
    count_device_bytes();
    return;
  }
  retire_store();
  Tensor host;
  if (block < spare_.size() && spare_[block].defined() && spare_[block].shape() == t.shape() &&
      spare_[block].dtype() == t.dtype()) {
    host = std::move(spare_[block]);
    spare_[block] = Tensor{};
  } else {
    host = Tensor::empty_pinned(t.shape(), t.dtype(), t.device());
  }
  transfer_device_ = t.device();
  storing_.emplace();
  storing_->source = t;
  storing_->copy = copy_async(host, t);
  blocks[block] = std::move(host);
}

Tensor CrossAttentionCache::load(size_t block, Device device) {
  if (block >= blocks.size() || !blocks[block].defined()) return Tensor{};
  const Tensor& b = blocks[block];
  if (b.device() == device) return b;
  if (!(b.device() == Device::CPU && device != Device::CPU)) return b.to(device);
  transfer_device_ = device;
  Tensor t;
  if (prefetch_ && prefetch_->block == block) {
    prefetch_->copy.compute_waits();
    t = std::move(prefetch_->tensor);
    prefetch_.reset();
  } else {
    drop_prefetch();
    t = Tensor::empty(b.shape(), b.dtype(), device);
    copy_async(t, b).compute_waits();
  }
  // Fetch the next block while this one computes.
  const size_t next = block + 1;
  if (next < blocks.size() && blocks[next].defined() && blocks[next].device() == Device::CPU) {
    const Tensor& nb = blocks[next];
    Prefetch p;
    p.block = next;
    p.tensor = Tensor::empty(nb.shape(), nb.dtype(), device);
    p.copy = copy_async(p.tensor, nb);
    prefetch_.emplace(std::move(p));
  }
  return t;
}

}  // namespace freeswim
