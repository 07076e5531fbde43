// The denoising loops on the golden tiny DiT: guidance arithmetic, the cache schedule, and
// resuming from a saved state at every step giving the same bits.
#include "pipeline/denoise.h"

#include <gtest/gtest.h>

#include <cstring>

#include "core/error.h"
#include "core/rng.h"
#include "golden_dir.h"
#include "models/wan_dit.h"
#include "sched/unipc.h"

namespace freeswim::pipeline {
namespace {

struct Fixture {
  std::unique_ptr<models::WanDit> dit = models::WanDit::load(
      kGolden + "/dit_tiny.diffusers.safetensors", Device::CPU, kGolden + "/dit_tiny.config.json");
  GuidedText text{rng::normal_tensor({5, 32}, 1), rng::normal_tensor({5, 32}, 2), 5.0};
  Tensor clean = rng::normal_tensor({16, 2, 8, 12}, 3);
  Tensor noise = rng::normal_tensor({16, 2, 8, 12}, 4);
};

bool same_bits(const Tensor& a, const Tensor& b) {
  return a.numel() == b.numel() && std::memcmp(a.raw(), b.raw(), a.nbytes()) == 0;
}

TEST(Denoise, GuidanceIsUncondPlusScaledDifference) {
  Tensor c = Tensor::from_vector({3}, {1, 2, 3}), u = Tensor::from_vector({3}, {0, 1, 5});
  const Tensor g = classifier_free_guidance(c, u, 5.0);
  EXPECT_FLOAT_EQ(g.data<float>()[0], 5.f);
  EXPECT_FLOAT_EQ(g.data<float>()[1], 6.f);
  EXPECT_FLOAT_EQ(g.data<float>()[2], -5.f);
}

// Guidance 1 runs only the conditional forwards: the negative context is never read (an undefined
// one would throw at the first unconditional forward), and the base stage is exactly the
// conditional prediction's trajectory, computed here step by step.
TEST(Denoise, GuidanceOneSkipsTheUnconditionalPass) {
  Fixture f;
  GuidedText text = f.text;
  text.guidance = 1.0;
  text.negative = Tensor();
  EXPECT_TRUE(skips_unconditional(1.0));
  EXPECT_FALSE(skips_unconditional(1.5));
  EXPECT_FALSE(skips_unconditional(0.0));
  sched::UniPCScheduler a(sched::UniPCConfig::wan(3));
  const Tensor skipped = run_base_stage(*f.dit, a, 3, f.noise, text, {});
  sched::UniPCScheduler r(sched::UniPCConfig::wan(3));
  r.set_timesteps(3);
  Tensor x = f.noise.clone();
  while (!r.done()) {
    models::DitInput in{x, r.timesteps()[static_cast<size_t>(r.step_index())], text.context};
    x = r.step(f.dit->forward(in, StepKind::Stock).to(DType::F32), x);
  }
  EXPECT_TRUE(same_bits(skipped, x));
  // At any other guidance the negative is needed: the undefined one is refused.
  text.guidance = 2.0;
  sched::UniPCScheduler c(sched::UniPCConfig::wan(3));
  EXPECT_ANY_THROW(run_base_stage(*f.dit, c, 3, f.noise, text, {}));
  // The FreeSwim stage, with and without the cache, runs without the negative at guidance 1.
  text.guidance = 1.0;
  FreeSwimStageOptions opt;
  opt.steps = 4;
  opt.strength = 1.0;
  opt.attention = {2, 3, 0.2};
  for (int every : {0, 2}) {
    opt.cache_every = every;
    sched::UniPCScheduler s(sched::UniPCConfig::wan(9));
    EXPECT_NO_THROW(run_freeswim_stage(*f.dit, s, f.clean, f.noise, text, opt, {}))
        << "cache every " << every;
  }
}

TEST(Denoise, CacheModesDifferAndScheduleCountsSteps) {
  Fixture f;
  FreeSwimStageOptions opt;
  opt.steps = 6;
  opt.strength = 1.0;
  // Half window 1x2 on the 4x6 token grid: the 3x5 window is smaller than the frame, so the
  // window-only unconditional pass differs from the dual path (a window covering the whole grid
  // would make the two the same attention, and the modes equal).
  opt.attention = {1, 2, 0.2};
  std::vector<int> steps;
  StageHooks hooks;
  hooks.progress = [&](const std::string& stage, int done, int total, double) {
    EXPECT_EQ(stage, "freeswim");
    EXPECT_EQ(total, 6);
    steps.push_back(done);
  };
  opt.cache_every = 0;
  sched::UniPCScheduler s0(sched::UniPCConfig::wan(9));
  const Tensor nocache = run_freeswim_stage(*f.dit, s0, f.clean, f.noise, f.text, opt, hooks);
  EXPECT_EQ(steps, (std::vector<int>{1, 2, 3, 4, 5, 6}));
  opt.cache_every = 2;
  sched::UniPCScheduler s2(sched::UniPCConfig::wan(9));
  const Tensor cache2 = run_freeswim_stage(*f.dit, s2, f.clean, f.noise, f.text, opt, {});
  opt.cache_every = 1;  // a guide step every step: cond is the dual path, uncond window-only
  sched::UniPCScheduler s1(sched::UniPCConfig::wan(9));
  const Tensor cache1 = run_freeswim_stage(*f.dit, s1, f.clean, f.noise, f.text, opt, {});
  // With random weights the text path moves the prediction only a little, so the modes differ
  // by small but far-above-rounding amounts (the loops are deterministic: equal bits otherwise).
  EXPECT_GT(relative_l2(cache2, nocache), 1e-6);
  EXPECT_GT(relative_l2(cache1, cache2), 1e-6);
  EXPECT_GT(relative_l2(cache1, nocache), 1e-6);
}

TEST(Denoise, ResumeFromEveryStepIsBitExact) {
  Fixture f;
  FreeSwimStageOptions opt;
  opt.steps = 8;
  opt.strength = 0.75;
  opt.attention = {2, 3, 0.2};
  opt.cache_every = 2;
  std::vector<StageState> states;
  StageHooks hooks;
  hooks.checkpoint = [&](const StageState& s) { states.push_back(s); };
  sched::UniPCScheduler s(sched::UniPCConfig::wan(9));
  const Tensor full = run_freeswim_stage(*f.dit, s, f.clean, f.noise, f.text, opt, hooks);
  ASSERT_EQ(states.size(), 6u);
  for (size_t k = 0; k + 1 < states.size(); ++k) {
    sched::UniPCScheduler r(sched::UniPCConfig::wan(9));
    const Tensor resumed =
        run_freeswim_stage(*f.dit, r, f.clean, f.noise, f.text, opt, {}, &states[k]);
    EXPECT_TRUE(same_bits(resumed, full)) << "resumed after step " << k;
  }
  // The base stage too.
  std::vector<StageState> base_states;
  StageHooks bh;
  bh.checkpoint = [&](const StageState& st) { base_states.push_back(st); };
  sched::UniPCScheduler b(sched::UniPCConfig::wan(3));
  const Tensor base = run_base_stage(*f.dit, b, 4, f.noise, f.text, bh);
  ASSERT_EQ(base_states.size(), 4u);
  sched::UniPCScheduler br(sched::UniPCConfig::wan(3));
  EXPECT_TRUE(same_bits(run_base_stage(*f.dit, br, 4, f.noise, f.text, {}, &base_states[1]), base));
}

TEST(Denoise, RejectsBadInputs) {
  Fixture f;
  FreeSwimStageOptions opt;
  opt.attention = {2, 3, 0.2};
  sched::UniPCScheduler s(sched::UniPCConfig::wan(9));
  opt.cache_every = -1;
  EXPECT_THROW(run_freeswim_stage(*f.dit, s, f.clean, f.noise, f.text, opt, {}), Error);
  opt.cache_every = 2;
  opt.strength = 0;
  EXPECT_THROW(run_freeswim_stage(*f.dit, s, f.clean, f.noise, f.text, opt, {}), Error);
  opt.strength = 0.7;
  EXPECT_THROW(run_freeswim_stage(*f.dit, s, f.clean, rng::normal_tensor({16, 2, 8, 10}, 1), f.text,
                                  opt, {}),
               Error);
}

}  // namespace
}  // namespace freeswim::pipeline
