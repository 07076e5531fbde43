#include "pipeline/denoise.h"

#include <algorithm>
#include <chrono>

#include "core/error.h"
#include "models/wan_dit_chunks.h"
#include "sched/video2video.h"

namespace freeswim::pipeline {

namespace {

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

Tensor predict(const models::WanDit& dit, const Tensor& latents, float t, const Tensor& context,
               StepKind kind, const FreeSwimParams* fsp = nullptr,
               CrossAttentionCache* cache = nullptr, parallel::Communicator* sequence = nullptr) {
  models::DitInput in{latents, t, context};
  Tensor out = dit.forward(in, kind, fsp, cache, sequence).to(Device::CPU).to(DType::F32);
  // The last block's copy to host memory (Host placement) has finished by now or soon: wait,
  // so that its device tensor is not held through the next forward.
  if (cache) cache->sync();
  return out;
}

// One forward on its device, in f32 (what the ranks of a CFG-parallel run exchange).
Tensor forward_f32(const models::WanDit& dit, const Tensor& latents, float t, const Tensor& context,
                   StepKind kind, const FreeSwimParams* fsp, CrossAttentionCache* cache,
                   parallel::Communicator* sequence) {
  models::DitInput in{latents, t, context};
  Tensor out = dit.forward(in, kind, fsp, cache, sequence).to(DType::F32);
  if (cache) cache->sync();
  return out;
}

// What one step's forwards are: the conditional one and, unless skipped, the unconditional one.
struct StepForwards {
  StepKind cond_kind = StepKind::Stock, uncond_kind = StepKind::Stock;
  bool with_uncond = true;
  const FreeSwimParams* fsp = nullptr;
  CrossAttentionCache* cache = nullptr;  // read or filled by the conditional forward only
};

// The step's predictions as f32 CPU tensors: {cond, uncond} (uncond undefined when skipped).
// Without a group (or with one rank) both run here one after the other; with two ranks rank 0
// runs the conditional and rank 1 the unconditional forward and all_gather exchanges them.
std::pair<Tensor, Tensor> predict_step(const models::WanDit& dit, const Tensor& x, float t,
                                       const GuidedText& text, const StepForwards& f,
                                       const ParallelGroups& g) {
  parallel::Communicator* cfg = g.cfg;
  parallel::Communicator* seq = g.sequence;
  if (!cfg || cfg->size() == 1) {
    Tensor cond = predict(dit, x, t, text.context, f.cond_kind, f.fsp, f.cache, seq);
    Tensor uncond;
    if (f.with_uncond) {
      uncond = predict(dit, x, t, text.negative, f.uncond_kind, f.fsp, nullptr, seq);
    }
    return {cond, uncond};
  }
  const models::WanDitConfig& c = dit.config();
  const Shape out_shape{c.out_channels, x.dim(1), x.dim(2), x.dim(3)};
  if (!f.with_uncond) {
    Tensor cond = cfg->rank() == 0
                      ? forward_f32(dit, x, t, text.context, f.cond_kind, f.fsp, f.cache, seq)
                      : Tensor::empty(out_shape, DType::F32, dit.device());
    cfg->broadcast(cond, 0);
    return {cond.to(Device::CPU), Tensor()};
  }
  const Tensor mine =
      cfg->rank() == 0 ? forward_f32(dit, x, t, text.context, f.cond_kind, f.fsp, f.cache, seq)
                       : forward_f32(dit, x, t, text.negative, f.uncond_kind, f.fsp, nullptr, seq);
  Shape one = mine.shape();
  one.insert(one.begin(), 1);
  const Tensor both = cfg->all_gather(mine.reshape(one), 0).to(Device::CPU);
  return {both.slice0(0, 1).reshape(mine.shape()), both.slice0(1, 2).reshape(mine.shape())};
}

void check_groups(const ParallelGroups& g) {
  const parallel::Communicator* cfg = g.cfg;
  FS_CHECK(!cfg || cfg->size() == 1 || cfg->size() == 2,
           "CFG-parallel denoising needs a group of 1 or 2 ranks (conditional and unconditional "
           "forward), got {} ({})",
           cfg ? cfg->size() : 0, cfg ? cfg->describe() : "");
}

// Hooks are called by one rank only (every rank holds the same state).
StageHooks hooks_of_rank(const StageHooks& hooks, const ParallelGroups& g) {
  const bool first = (!g.cfg || g.cfg->rank() == 0) && (!g.sequence || g.sequence->rank() == 0);
  return first ? hooks : StageHooks{};
}

void check_latents(const Tensor& t, const char* what) {
  FS_CHECK(t.defined() && t.ndim() == 4 && t.device() == Device::CPU && t.dtype() == DType::F32,
           "{} must be f32 [C, F, H, W] on the CPU, got {}", what,
           t.defined() ? t.describe() : "nothing");
}

}  // namespace

size_t freeswim_activation_bytes(const models::WanDitConfig& c, int64_t whole_tokens,
                                 int seq_ranks) {
  FS_CHECK(seq_ranks >= 1, "sequence group of {} ranks", seq_ranks);
  const int64_t tokens = (whole_tokens + seq_ranks - 1) / seq_ranks;  // the rank's slab
  const int64_t ulysses = seq_ranks > 1 ? 5 * tokens * c.dim() : 0;
  // The live bf16 tensors at the peak of a block of WanDit::forward on a dual (guide) step, each
  // [tokens, dim] unless said:
  //   2  the two residual streams, x (window branch) and full (full branch)
  //   5  one branch's self-attention: the modulated norm n1, q, k, v and the attention output
  //      (the kernels read q, k, v in place: no copies)
  //   1  a cross-attention cache block in transit with host placement: the last stored block's
  //      device tensor until its copy is retired, or on reuse steps the next block prefetched
  // and, in the FFN that follows, one row chunk's hidden layer [rows, ffn_dim] at most
  // kFfnChunkElements, twice (an unfused GELU's copy); its modulated norm [rows, dim] and the
  // rest (the rope tables, the text context [512, dim], the modulation vectors, the attention's
  // softmax statistics, cuBLAS's workspace, the allocator's rounding) within 1 GiB. A stock
  // (base-stage) forward has one residual stream, so this bounds it too.
  const int64_t hidden = std::min<int64_t>(tokens * c.ffn_dim, models::kFfnChunkElements);
  const int64_t elements = 2 * hidden + 8 * tokens * c.dim() + ulysses;
  return static_cast<size_t>(elements * 2) + (size_t{1} << 30);
}

bool skips_unconditional(double guidance) {
  return guidance == 1.0;
}

Tensor classifier_free_guidance(const Tensor& cond, const Tensor& uncond, double guidance) {
  FS_CHECK(cond.numel() == uncond.numel(), "guidance: {} vs {}", cond.describe(),
           uncond.describe());
  Tensor out = Tensor::empty(cond.shape());
  const float g = static_cast<float>(guidance);
  const float *c = cond.data<float>(), *u = uncond.data<float>();
  float* o = out.data<float>();
  for (int64_t i = 0; i < out.numel(); ++i) o[i] = u[i] + g * (c[i] - u[i]);
  return out;
}

Tensor run_base_stage(const models::WanDit& dit, sched::Scheduler& scheduler, int steps,
                      const Tensor& noise, const GuidedText& text, const StageHooks& all_hooks,
                      const StageState* resume, const ParallelGroups& groups) {
  check_groups(groups);
  const StageHooks hooks = hooks_of_rank(all_hooks, groups);
  check_latents(noise, "base-stage noise");
  scheduler.set_timesteps(steps);
  Tensor x = noise.clone();
  if (resume) {
    check_latents(resume->latents, "resumed base-stage latents");
    scheduler.load_state(resume->scheduler);
    x = resume->latents.clone();
  }
  while (!scheduler.done()) {
    const auto t0 = std::chrono::steady_clock::now();
    const int i = scheduler.step_index();
    const float t = scheduler.timesteps()[static_cast<size_t>(i)];
    StepForwards f;
    f.with_uncond = !skips_unconditional(text.guidance);
    const auto [cond, uncond] = predict_step(dit, x, t, text, f, groups);
    x = scheduler.step(f.with_uncond ? classifier_free_guidance(cond, uncond, text.guidance) : cond,
                       x);
    if (hooks.checkpoint) {
      StageState s;
      s.next_step = scheduler.step_index();
      s.latents = x;
      s.scheduler = scheduler.save_state();
      hooks.checkpoint(s);
    }
    if (hooks.progress) hooks.progress("base", i + 1, steps, seconds_since(t0));
  }
  return x;
}

Tensor run_freeswim_stage(const models::WanDit& dit, sched::Scheduler& scheduler,
                          const Tensor& clean_latents, const Tensor& noise, const GuidedText& text,
                          const FreeSwimStageOptions& opt, const StageHooks& all_hooks,
                          const StageState* resume, const ParallelGroups& groups) {
  check_groups(groups);
  const StageHooks hooks = hooks_of_rank(all_hooks, groups);
  FS_CHECK(opt.cache_every >= 0, "--cache-every must be >= 0 (0 disables the cache), got {}",
           opt.cache_every);
  const sched::Video2VideoStart start = sched::video2video_start(opt.steps, opt.strength);
  scheduler.set_timesteps(opt.steps);
  scheduler.set_begin_index(start.t_start);
  Tensor x;
  CrossAttentionCache cache(opt.cache_memory);
  cache.set_log(hooks.info);
  if (const Tensor& shape_of = resume ? resume->latents : clean_latents;
      shape_of.defined() && shape_of.ndim() == 4) {
    const models::WanDitConfig& c = dit.config();
    const int64_t tokens =
        shape_of.dim(1) / c.patch_t * (shape_of.dim(2) / c.patch_h) * (shape_of.dim(3) / c.patch_w);
    cache.set_activation_margin(freeswim_activation_bytes(
        c, tokens, groups.sequence != nullptr ? groups.sequence->size() : 1));
  }
  int last_guide_step = -1;
  Tensor guide_latents;
  if (resume) {
    check_latents(resume->latents, "resumed FreeSwim-stage latents");
    scheduler.load_state(resume->scheduler);
    x = resume->latents.clone();
    if (resume->has_guide) {
      // Rebuild the cache exactly as the interrupted run had it.
      last_guide_step = resume->guide_step;
      guide_latents = resume->guide_latents;
      const float tg = scheduler.timesteps()[static_cast<size_t>(last_guide_step)];
      // Only the rank that runs conditional forwards keeps a cache.
      if (!groups.cfg || groups.cfg->rank() == 0) {
        predict(dit, guide_latents, tg, text.context, StepKind::Guide, &opt.attention, &cache,
                groups.sequence);
      }
    }
  } else {
    check_latents(clean_latents, "FreeSwim-stage latents");
    check_latents(noise, "FreeSwim-stage noise");
    FS_CHECK(noise.shape() == clean_latents.shape(), "noise {} does not match latents {}",
             noise.describe(), clean_latents.describe());
    x = scheduler.add_noise(clean_latents, noise);
  }
  const int total = start.steps_run;
  while (!scheduler.done()) {
    const auto t0 = std::chrono::steady_clock::now();
    const int i = scheduler.step_index();
    const int k = i - start.t_start;  // step within the stage: guide steps are 0, k, 2k, ...
    const float t = scheduler.timesteps()[static_cast<size_t>(i)];
    StepForwards f;
    f.with_uncond = !skips_unconditional(text.guidance);
    f.fsp = &opt.attention;
    if (opt.cache_every == 0) {
      f.cond_kind = f.uncond_kind = StepKind::Dual;
    } else {
      f.cache = &cache;
      f.uncond_kind = StepKind::Uncond;
      if (k % opt.cache_every == 0) {
        f.cond_kind = StepKind::Guide;
        last_guide_step = i;
        guide_latents = x;
      } else {
        f.cond_kind = StepKind::Reuse;
      }
    }
    const auto [cond, uncond] = predict_step(dit, x, t, text, f, groups);
    x = scheduler.step(f.with_uncond ? classifier_free_guidance(cond, uncond, text.guidance) : cond,
                       x);
    if (hooks.checkpoint) {
      StageState s;
      s.next_step = scheduler.step_index();
      s.latents = x;
      s.scheduler = scheduler.save_state();
      s.has_guide = opt.cache_every > 0 && last_guide_step >= 0;
      s.guide_step = last_guide_step;
      s.guide_latents = guide_latents;
      hooks.checkpoint(s);
    }
    if (hooks.progress) hooks.progress("freeswim", k + 1, total, seconds_since(t0));
  }
  return x;
}

}  // namespace freeswim::pipeline
