// Whether a job can fit in the GPU's memory, decided before minutes of loading: an estimate of
// the device bytes of each phase of a job from the DiT's configuration, the sizes and the free
// memory, for the plans the flags allow, from the heaviest (every DiT weight on the GPU, the
// cross-attention cache beside them) to the lightest (DiT blocks streamed from host memory, the
// cache in host memory, the smallest VAE tile). The CLI refuses a job no plan fits, naming the
// flags that would help, and logs which of the automatic choices the plan that fits relies on.
// The host memory a plan pins (the streamed DiT's blocks, the cache in host memory) is checked
// against what the host has available too: 14B at 1080p with both in host memory pins ~92 GiB,
// more than most machines with a 24 GB card have. Pure functions: tests run them without a GPU.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include "models/wan_dit.h"
#include "models/wan_vae.h"
#include "pipeline/device_settings.h"
#include "pipeline/generate.h"

namespace freeswim::pipeline {

// The geometry of a job, as the memory estimate needs it.
struct MemoryJob {
  models::WanDitConfig dit;
  // The base stage's size (the model's native size, portrait for portrait targets); 0x0 for
  // `upscale`, which has none.
  int base_width = 0, base_height = 0;
  // The FreeSwim stage's size (the generation size: multiples of 16) and frame count (4n + 1).
  int width = 0, height = 0;
  int frames = 81;
  bool cache = true;  // --cache-every > 0: a cross-attention cache
  // The ranks of a `--gpus N` run as parallel::world_layout arranges them: CFG pairs (cfg_ranks
  // 2) of sequence-parallel groups of seq_ranks. One GPU: 1 x 1.
  int cfg_ranks = 1, seq_ranks = 1;
  int ranks() const { return cfg_ranks * seq_ranks; }
};

// The MemoryJob of a generate (with a base stage at `native`) or upscale job on `gpus` GPUs.
MemoryJob memory_job(const models::WanDitConfig& dit, const NativeSize& native,
                     const JobOptions& opt, bool generate, int gpus = 1);

// DiT tokens of a frames x height x width video (VAE: 4x temporal, 8x spatial; then the patch).
int64_t dit_tokens(const models::WanDitConfig& c, int frames, int height, int width);

// Device bytes of the DiT's weights on a GPU (bf16): all of them, or with `offload` the ones
// outside the blocks plus the two block slots the streamer keeps.
size_t dit_device_weight_bytes(const models::WanDitConfig& c, bool offload);

// Wan2.1's VAE on the GPU: 127M parameters kept in f32 (its convolutions run in fp32 or tf32).
inline constexpr size_t kVaeWeightBytes = size_t{512} << 20;

// Host memory a GPU job holds beside what a plan pins (the process, the decoded frames, the mp4
// writer, reading buffers): the peak resident size minus the pinned bytes was 3.4 GiB in both
// real-size runs measured (1.3B 1080p with the cache in host memory, 14B 1080p with the blocks
// streamed and the cache in host memory; docs/measurements/2026-12-06_memory_*).
inline constexpr size_t kHostMemoryMargin = size_t{4} << 30;

// One plan's estimate: device bytes of one GPU (with several, of the busiest rank: one of the
// sequence group that keeps the cross-attention cache), host bytes of one rank and of the job.
struct MemoryEstimate {
  size_t dit_weights = 0;  // dit_device_weight_bytes
  size_t vae_weights = 0;  // kVaeWeightBytes
  size_t activations = 0;  // of the largest DiT forward (freeswim_activation_bytes)
  size_t cache = 0;        // the cross-attention cache when it is on the device
  size_t vae_working = 0;  // one VAE tile's working memory and kVaeMemoryMargin
  size_t host_blocks = 0;  // host memory: the streamed DiT's blocks, pinned (offload)
  size_t host_cache = 0;   // host memory: the cross-attention cache there, pinned
  int64_t tokens = 0;      // of the FreeSwim stage
  int64_t slab = 0;        // the tokens of one rank's slab (= tokens on one GPU)
  // Ranks on this host, and those of them that keep a cache shard (the sequence group of CFG
  // rank 0; host_cache is one shard).
  int ranks = 1, cache_ranks = 1;
  // The two phases never overlap: the cache and the DiT's activations are gone when the VAE
  // runs; the weights stay throughout.
  size_t dit_phase() const { return dit_weights + vae_weights + activations + cache; }
  size_t vae_phase() const { return dit_weights + vae_weights + vae_working; }
  size_t total() const { return dit_phase() > vae_phase() ? dit_phase() : vae_phase(); }
  // Host memory pinned by all ranks: every rank pins its own streamed blocks; the cache shards
  // add up to one whole cache.
  size_t pinned_blocks() const { return static_cast<size_t>(ranks) * host_blocks; }
  size_t pinned_cache() const { return static_cast<size_t>(cache_ranks) * host_cache; }
  size_t host_total() const { return pinned_blocks() + pinned_cache() + kHostMemoryMargin; }
};

// The estimate for one plan: the DiT's blocks streamed (`offload`) or not, the cache in host
// memory (`host_cache`) or on the device, the VAE tiled by `vae` (the tile of its largest pass).
// With several ranks (job.seq_ranks > 1) a rank's activations and cache shard are those of its
// token slab (freeswim_activation_bytes with the Ulysses buffers); the weights, the VAE's tile
// and its frame buffer are every rank's as on one GPU (replicated).
MemoryEstimate estimate_memory(const MemoryJob& job, bool offload, bool host_cache,
                               const models::VaeTiling& vae);

struct MemoryPlan {
  bool fits = true;
  bool offload = false;     // the plan that fits streams the DiT's blocks from host memory
  bool host_cache = false;  // ... keeps the cross-attention cache in host memory
  MemoryEstimate estimate;  // of that plan; of the lightest one when none fits
  // One line: for the log when the job fits (empty on the cpu), else the refusal naming the
  // device, the free memory, the estimated need and the flags that would help.
  std::string message;
};

// The plans the settings allow, heaviest first: offload off before on (when `s.offload` is
// automatic; only the one given otherwise), the cache on the device before host memory (when
// `s.cache_memory` is auto; only the one given otherwise), the VAE at its smallest tile
// (kVaeTileChoices' last when the tile is chosen by free memory; the tile given otherwise). The
// first whose estimate fits in `free_bytes` and whose host_total() fits in `host_bytes` (the
// host's available memory; 0: not checked) is the plan; none: fits is false, and the message
// says which memory ran out. The cpu is never refused (its "device memory" is the host's, which
// the estimate does not describe). `device_label` names the GPU in the messages ("NVIDIA H100
// 80GB HBM3, cap 22.35 GiB"). With several ranks `free_bytes` is the least any of their GPUs
// has, every rank takes the same plan, and the messages say the figures are per GPU.
MemoryPlan plan_memory(const MemoryJob& job, const DeviceSettings& s, size_t free_bytes,
                       const std::string& device_label, size_t host_bytes = 0);

// The host's available memory in bytes (MemAvailable of /proc/meminfo: free memory and what the
// kernel can reclaim, such as the page cache); 0 when it cannot be read.
size_t host_available_bytes();

}  // namespace freeswim::pipeline
