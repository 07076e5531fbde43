// The two denoising loops of FreeSwim's coarse-to-fine generation, with classifier-free
// guidance, the cross-attention cache schedule, progress reports and resumable state.
//
//   base stage:  stock Wan text-to-video from pure noise at the native size
//   FreeSwim stage: from the encoded, upsampled base video noised to the level of its first
//                   step; window branch + full branch (dual path), or with the cache, guide
//                   steps every k and reuse steps between (FREESWIM.md)
//
// Latents live on the CPU between steps (the scheduler update is elementwise and cheap next to a
// DiT forward); the DiT runs on its own device.
#pragma once

#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "core/tensor.h"
#include "freeswim/policy.h"
#include "models/wan_dit.h"
#include "parallel/communicator.h"
#include "sched/scheduler.h"

namespace freeswim::pipeline {

// What must be kept to continue a stage after step `next_step - 1` finished, bit for bit.
struct StageState {
  int next_step = 0;  // index into the scheduler's timesteps of the next step to run
  Tensor latents;     // [C, F, H, W] f32 CPU
  sched::SchedulerState scheduler;
  // Cache mode: the inputs of the last guide step, so a resumed run can rebuild the
  // cross-attention cache exactly by re-running that forward instead of storing gigabytes.
  bool has_guide = false;
  int guide_step = -1;
  Tensor guide_latents;
};

struct StageHooks {
  // After every finished step: (stage name, steps done in the stage, steps in the stage,
  // seconds of that step).
  std::function<void(const std::string&, int, int, double)> progress;
  // After every finished step: the state to save for --resume.
  std::function<void(const StageState&)> checkpoint;
  // One line of information (where the cross-attention cache was put, and why).
  std::function<void(const std::string&)> info;
};

struct GuidedText {
  Tensor context;   // [L, text_dim] conditional prompt
  Tensor negative;  // [L, text_dim] negative prompt; not needed (may be undefined) at guidance 1
  double guidance = 5.0;
};

// At guidance 1, u + 1 * (c - u) is the conditional prediction: the unconditional forward is not
// run at all (what CFG-distilled models and LoRAs such as lightx2v / CausVid expect), halving
// every step's work.
bool skips_unconditional(double guidance);

// Multi-rank denoising (docs/multi_gpu.md). Every rank calls the loop with the same arguments
// and its own replica of the DiT (on its own device); every rank returns the same result.
//
// `cfg` (CFG-parallel, a group of 1 or 2 ranks; another size is refused): with 2 ranks, rank 0
// runs the conditional forward and rank 1 the unconditional one of every step, at the same
// time; their predictions (converted to f32 on the device) are exchanged with one all_gather
// per step and both ranks apply the guidance and the scheduler step to identical inputs, so
// they hold identical latents throughout; on the CPU the result is the single-rank result bit
// for bit. There is no communication inside a forward. At guidance 1 rank 0 of the pair runs
// the conditional forward alone and broadcasts it. Only cfg rank 0 keeps the cross-attention
// cache (only conditional forwards read it).
//
// `sequence` (sequence-parallel, any size dividing the heads): every forward runs over the
// group (models::WanDit::forward), each rank computing its token slab; the cache is sharded by
// token. Combined with `cfg` (4 or 8 GPUs: 2 x 2, 2 x 4), world rank w is cfg rank w / S and
// sequence rank w % S of S = world / 2 (parallel::world_layout).
//
// Hooks (progress, checkpoint, info) are called by the rank that is rank 0 of both groups.
struct ParallelGroups {
  parallel::Communicator* cfg = nullptr;
  parallel::Communicator* sequence = nullptr;
};

// Runs the stock base stage: `steps` steps of `scheduler` from `noise` (or from `resume`).
Tensor run_base_stage(const models::WanDit& dit, sched::Scheduler& scheduler, int steps,
                      const Tensor& noise, const GuidedText& text, const StageHooks& hooks,
                      const StageState* resume = nullptr, const ParallelGroups& groups = {});

struct FreeSwimStageOptions {
  int steps = 50;
  double strength = 0.7;
  FreeSwimParams attention;
  int cache_every = 2;  // 0: no cache (dual path for both predictions at every step)
  CachePlacement cache_memory = CachePlacement::Auto;  // where the cache lives (--cache-memory)
};

// Device bytes a FreeSwim-stage forward allocates beside the cross-attention cache and the
// weights, at `tokens` tokens with bf16 activations: one FFN row chunk's hidden layer twice (an
// unfused GELU's copy; models/wan_dit_chunks.h), about eight [tokens, dim] tensors (both
// branches' residual streams, a norm's output, q/k/v and an attention output), and 1 GiB for
// the rest. The cache's Auto placement keeps this much free.
//
// On a rank of a sequence-parallel group of `seq_ranks` (docs/multi_gpu.md) the forward holds a
// slab of ceil(tokens / seq_ranks) tokens, and Ulysses attention adds five slab-sized tensors
// beside the slab's own: q, k and v as whole sequences of the rank's heads, the attention's
// output before its exchange back, and the exchange's packing buffer.
size_t freeswim_activation_bytes(const models::WanDitConfig& config, int64_t tokens,
                                 int seq_ranks = 1);

// Runs the FreeSwim stage from clean (normalised) latents: the last int(steps * strength)
// steps, `noise` added at the first of them. When resuming, the state holds the latents and
// `clean_latents` / `noise` are not read (they may be undefined).
Tensor run_freeswim_stage(const models::WanDit& dit, sched::Scheduler& scheduler,
                          const Tensor& clean_latents, const Tensor& noise, const GuidedText& text,
                          const FreeSwimStageOptions& opt, const StageHooks& hooks,
                          const StageState* resume = nullptr, const ParallelGroups& groups = {});

// noise_uncond + g * (noise_cond - noise_uncond), elementwise in fp32 on the CPU.
Tensor classifier_free_guidance(const Tensor& cond, const Tensor& uncond, double guidance);

}  // namespace freeswim::pipeline
