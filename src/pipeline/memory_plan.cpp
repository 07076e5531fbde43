#include "pipeline/memory_plan.h"

#include <fmt/format.h>

#include <algorithm>
#include <fstream>
#include <optional>
#include <vector>

#include "core/bytes.h"
#include "core/dtype.h"
#include "core/error.h"
#include "parallel/communicator.h"
#include "pipeline/denoise.h"

namespace freeswim::pipeline {

namespace {

// Every weight's elements: the blocks' (each block alike) and the rest.
struct DitElements {
  int64_t per_block = 0, outside_blocks = 0;
};

DitElements dit_elements(const models::WanDitConfig& c) {
  DitElements e;
  for (const auto& [name, shape] : models::wan_dit_weight_shapes(c)) {
    int64_t n = 1;
    for (const int64_t d : shape) n *= d;
    if (name.rfind("blocks.0.", 0) == 0)
      e.per_block += n;
    else if (name.rfind("blocks.", 0) != 0)
      e.outside_blocks += n;
  }
  return e;
}

// The VAE's tiling at its lightest the settings allow: the smallest tile when the tile is chosen
// by free memory, else the one given (or whole frames with --no-vae-tiling).
models::VaeTiling lightest_vae_tiling(const DeviceSettings& s) {
  if (!s.vae_tile_by_memory) return s.tiling;
  models::VaeTiling t = s.tiling;
  t.tile = std::end(kVaeTileChoices)[-1];
  t.overlap = vae_overlap_for(t.tile);
  return t;
}

// The tokens of a job for the messages: "171360 tokens", or with several ranks "680400 tokens,
// 170100 per GPU of 8 (CFG 2 x sequence 4)".
std::string tokens_text(const MemoryJob& job, const MemoryEstimate& e) {
  if (job.ranks() == 1) return fmt::format("{} tokens", e.tokens);
  return fmt::format("{} tokens, {} per GPU of {} (CFG {} x sequence {})", e.tokens, e.slab,
                     job.ranks(), job.cfg_ranks, job.seq_ranks);
}

// The flags that would help, for a refusal: "a, b or c".
std::string either(const std::vector<std::string>& help) {
  std::string out;
  for (size_t i = 0; i < help.size(); ++i)
    out += (i == 0 ? "" : i + 1 == help.size() ? " or " : ", ") + help[i];
  return out;
}

}  // namespace

int64_t dit_tokens(const models::WanDitConfig& c, int frames, int height, int width) {
  const int64_t latent_frames = (frames - 1) / 4 + 1;
  return latent_frames / c.patch_t * (height / 8 / c.patch_h) * (width / 8 / c.patch_w);
}

size_t dit_device_weight_bytes(const models::WanDitConfig& c, bool offload) {
  // Every DiT weight is converted to the compute dtype at load: bf16 on a GPU.
  const size_t bytes = dtype_size(DType::BF16);
  const DitElements e = dit_elements(c);
  const int64_t blocks_on_device = offload ? 2 : c.num_layers;
  return static_cast<size_t>(e.outside_blocks + blocks_on_device * e.per_block) * bytes;
}

MemoryJob memory_job(const models::WanDitConfig& dit, const NativeSize& native,
                     const JobOptions& opt, bool generate, int gpus) {
  MemoryJob j;
  const parallel::WorldLayout layout =
      parallel::world_layout(gpus, !skips_unconditional(opt.guidance));
  j.cfg_ranks = layout.cfg;
  j.seq_ranks = layout.seq;
  j.dit = dit;
  if (generate) {
    // As run_generate's base_size: the native size, turned to portrait for portrait targets.
    const bool portrait = opt.size.gen_height > opt.size.gen_width;
    j.base_width = portrait ? native.height : native.width;
    j.base_height = portrait ? native.width : native.height;
  }
  j.width = opt.size.gen_width;
  j.height = opt.size.gen_height;
  j.frames = opt.frames;
  j.cache = opt.cache_every > 0;
  return j;
}

MemoryEstimate estimate_memory(const MemoryJob& job, bool offload, bool host_cache,
                               const models::VaeTiling& vae) {
  const models::WanDitConfig& c = job.dit;
  FS_CHECK(job.cfg_ranks >= 1 && job.seq_ranks >= 1, "memory plan: {} x {} ranks", job.cfg_ranks,
           job.seq_ranks);
  MemoryEstimate e;
  e.tokens = dit_tokens(c, job.frames, job.height, job.width);
  e.slab = (e.tokens + job.seq_ranks - 1) / job.seq_ranks;
  e.ranks = job.ranks();
  e.cache_ranks = job.seq_ranks;
  const int64_t base_tokens =
      job.base_width > 0 ? dit_tokens(c, job.frames, job.base_height, job.base_width) : 0;
  // Weights: the DiT's in bf16 (two block slots when streamed), the VAE's in f32.
  e.dit_weights = dit_device_weight_bytes(c, offload);
  e.vae_weights = kVaeWeightBytes;
  // The largest forward's activations: the FreeSwim stage's dual step at the generation size, or
  // the base stage's at the native size when that is larger (a target below the native size);
  // freeswim_activation_bytes counts both branches' residual streams, one self-attention's five
  // [tokens, dim] tensors, the cache block in transit, two FFN hidden chunks and 1 GiB for the
  // rest (denoise.cpp), an upper bound for the base stage's single-branch forward too; on a rank
  // of a sequence group, of its slab, with the Ulysses exchange's buffers.
  e.activations = freeswim_activation_bytes(c, std::max(e.tokens, base_tokens), job.seq_ranks);
  // The cross-attention cache: one [tokens, dim] bf16 tensor per block (attention_cache.h); a
  // rank of a sequence group keeps its slab's rows.
  const size_t cache_bytes = static_cast<size_t>(c.num_layers) * static_cast<size_t>(e.slab) *
                             static_cast<size_t>(c.dim()) * dtype_size(DType::BF16);
  if (job.cache) (host_cache ? e.host_cache : e.cache) = cache_bytes;
  // Streamed, every block's weights stay pinned in host memory (bf16).
  if (offload)
    e.host_blocks = static_cast<size_t>(c.num_layers) *
                    static_cast<size_t>(dit_elements(c).per_block) * dtype_size(DType::BF16);
  // The VAE's largest pass is at the generation size (the base decode's tiles are no larger):
  // one tile's working memory plus the margin vae_tiling_for keeps.
  e.vae_working = vae_working_bytes(vae, job.height, job.width) + kVaeMemoryMargin;
  return e;
}

size_t host_available_bytes() {
  std::ifstream in("/proc/meminfo");
  std::string key, unit;
  size_t kib = 0;
  while (in >> key >> kib) {
    std::getline(in, unit);
    if (key == "MemAvailable:") return kib * 1024;
  }
  return 0;
}

MemoryPlan plan_memory(const MemoryJob& job, const DeviceSettings& s, size_t free_bytes,
                       const std::string& device_label, size_t host_bytes) {
  MemoryPlan plan;
  const models::VaeTiling vae = lightest_vae_tiling(s);
  if (s.device == Device::CPU) {
    plan.estimate = estimate_memory(job, false, false, vae);
    return plan;
  }
  std::vector<bool> offloads, hosts;
  if (s.offload != Offload::on) offloads.push_back(false);
  if (s.offload != Offload::off) offloads.push_back(true);
  if (!job.cache) {
    hosts.push_back(false);  // no cache: where it would live does not matter
  } else {
    if (s.cache_memory != CachePlacement::Host) hosts.push_back(false);
    if (s.cache_memory != CachePlacement::Device) hosts.push_back(true);
  }
  // Of the plans the GPU holds, the one needing the least host memory (for the refusal when the
  // host is what runs out).
  std::optional<MemoryPlan> gpu_fits;
  for (const bool offload : offloads)
    for (const bool host : hosts) {
      plan.offload = offload;
      plan.host_cache = job.cache && host;
      plan.estimate = estimate_memory(job, offload, host, vae);
      if (plan.estimate.total() > free_bytes) continue;
      if (!gpu_fits || plan.estimate.host_total() < gpu_fits->estimate.host_total())
        gpu_fits = plan;
      if (host_bytes == 0 || plan.estimate.host_total() <= host_bytes) {
        const MemoryEstimate& e = plan.estimate;
        std::vector<std::string> relies;
        if (offload && s.offload == Offload::automatic)
          relies.push_back("the DiT's blocks streamed from host memory (automatic offload)");
        if (plan.host_cache && s.cache_memory == CachePlacement::Auto)
          relies.push_back("the cross-attention cache in host memory (--cache-memory auto)");
        std::string how;
        for (size_t i = 0; i < relies.size(); ++i) how += (i ? " and " : "") + relies[i];
        plan.message = fmt::format(
            "memory: about {:.1f} GiB needed of {:.1f} GiB free on {} ({}: DiT weights "
            "{:.1f}, activations {:.1f}, cache on the GPU {:.1f}, VAE {:.1f} GiB){}",
            gib(e.total()), gib(free_bytes), device_label, tokens_text(job, e),
            gib(e.dit_weights + e.vae_weights), gib(e.activations), gib(e.cache),
            gib(e.vae_working), how.empty() ? std::string() : "; it fits with " + how);
        if (e.host_blocks + e.host_cache > 0)
          plan.message += fmt::format(
              "; host memory about {:.1f} GiB (pinned: DiT blocks {:.1f}, cache {:.1f} GiB){}",
              gib(e.host_total()), gib(e.pinned_blocks()), gib(e.pinned_cache()),
              host_bytes ? fmt::format(" of {:.1f} GiB available", gib(host_bytes))
                         : std::string());
        return plan;
      }
    }
  if (gpu_fits) {  // the GPU holds a plan, the host does not
    plan = *gpu_fits;
    plan.fits = false;
    const MemoryEstimate& e = plan.estimate;
    std::vector<std::string> help;
    if (job.cache) help.push_back("--cache-every 0 (no cross-attention cache: slower steps)");
    if (e.host_blocks > 0 && s.offload != Offload::off)
      help.push_back(
          fmt::format("a GPU with room for every DiT weight ({:.1f} GiB)", gib(e.host_blocks)));
    if (e.host_blocks > 0 && e.ranks > 1)
      help.push_back("fewer --gpus (each GPU's rank pins its own copy of the streamed blocks)");
    help.push_back("a smaller --size");
    help.push_back("fewer --frames");
    plan.message = fmt::format(
        "a {}x{} video of {} frames fits on {} only with {} in host memory, and the host has "
        "{:.1f} GiB available (MemAvailable) for about {:.1f} GiB it needs (pinned DiT blocks "
        "{:.1f} GiB, cross-attention cache {:.1f} GiB, {:.1f} GiB for the rest); try {}",
        job.width, job.height, job.frames, device_label,
        e.host_blocks > 0 && e.host_cache > 0 ? "the DiT's blocks and the cross-attention cache"
        : e.host_blocks > 0                   ? "the DiT's blocks"
                                              : "the cross-attention cache",
        gib(host_bytes), gib(e.host_total()), gib(e.pinned_blocks()), gib(e.pinned_cache()),
        gib(kHostMemoryMargin), either(help));
    return plan;
  }
  // Nothing fits: the last plan tried is the lightest allowed.
  plan.fits = false;
  const MemoryEstimate& e = plan.estimate;
  std::vector<std::string> help{"a smaller --size", "fewer --frames"};
  if (job.ranks() > 1 && job.ranks() < 8)
    help.push_back("more --gpus (each GPU then holds a smaller slab of the tokens)");
  if (!plan.offload)
    help.push_back("--offload (drop --no-offload: the DiT's blocks streamed from host memory)");
  if (job.cache && !plan.host_cache)
    help.push_back("--cache-memory host (the cross-attention cache in host memory)");
  if (e.vae_phase() > free_bytes && (!s.vae_tile_by_memory || !s.tiling.enabled))
    help.push_back(fmt::format("--vae-tile {}", std::end(kVaeTileChoices)[-1]));
  plan.message = fmt::format(
      "a {}x{} video of {} frames does not fit on {}: {:.1f} GiB free, and the job needs about "
      "{:.1f} GiB even {} ({}: DiT weights {:.1f} GiB, activations {:.1f} GiB, "
      "cross-attention cache on the GPU {:.1f} GiB, VAE tile {:.1f} GiB); try {}",
      job.width, job.height, job.frames, device_label, gib(free_bytes), gib(e.total()),
      fmt::format("with {}, {}, VAE {}",
                  plan.offload ? "the DiT's blocks streamed from host memory"
                               : "every DiT weight on the GPU (--no-offload)",
                  !job.cache ? "no cross-attention cache"
                  : plan.host_cache
                      ? "the cross-attention cache in host memory"
                      : "the cross-attention cache on the GPU (--cache-memory device)",
                  vae.enabled ? fmt::format("tile {} px", vae.tile) : std::string("untiled")),
      tokens_text(job, e), gib(e.dit_weights + e.vae_weights), gib(e.activations), gib(e.cache),
      gib(e.vae_working), either(help));
  return plan;
}

}  // namespace freeswim::pipeline
