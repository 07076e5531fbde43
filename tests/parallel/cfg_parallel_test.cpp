// CFG-parallel denoising over LocalGroup with the golden tiny DiT: two ranks (conditional and
// unconditional forward each on its own rank and replica) against the single-rank loops, same
// seed, for the base stage and the FreeSwim stage with and without the cross-attention cache and
// at guidance 1.
#include <gtest/gtest.h>

#include <atomic>
#include <cstring>

#include "core/error.h"
#include "core/rng.h"
#include "models/wan_dit.h"
#include "parallel/local_group.h"
#include "pipeline/denoise.h"
#include "sched/unipc.h"

namespace freeswim::pipeline {
namespace {

const std::string kGolden = FREESWIM_GOLDEN_DIR;

std::unique_ptr<models::WanDit> tiny_dit() {
  return models::WanDit::load(kGolden + "/dit_tiny.diffusers.safetensors", Device::CPU,
                              kGolden + "/dit_tiny.config.json");
}

struct Inputs {
  GuidedText text{rng::normal_tensor({5, 32}, 1), rng::normal_tensor({5, 32}, 2), 5.0};
  Tensor clean = rng::normal_tensor({16, 2, 8, 12}, 3);
  Tensor noise = rng::normal_tensor({16, 2, 8, 12}, 4);
};

double max_abs_diff(const Tensor& a, const Tensor& b) {
  EXPECT_EQ(a.shape(), b.shape());
  double m = 0;
  for (int64_t i = 0; i < a.numel(); ++i) {
    m = std::max(m, std::abs(static_cast<double>(a.data<float>()[i]) - b.data<float>()[i]));
  }
  return m;
}

// Runs `stage(dit, communicator-or-null)` once on one rank and once on each of two ranks, and
// checks that both ranks return the single-rank result (on the CPU: the same bits; the issue
// asks for 1e-5).
void compare(const std::function<Tensor(const models::WanDit&, parallel::Communicator*)>& stage,
             const std::string& what) {
  const auto single_dit = tiny_dit();
  const Tensor single = stage(*single_dit, nullptr);
  // Weights replicated: one DiT per rank, as one per GPU.
  std::vector<std::unique_ptr<models::WanDit>> dits;
  dits.push_back(tiny_dit());
  dits.push_back(tiny_dit());
  parallel::LocalGroup group(2);
  std::vector<Tensor> out(2);
  group.run([&](parallel::Communicator& c) {
    out[static_cast<size_t>(c.rank())] = stage(*dits[static_cast<size_t>(c.rank())], &c);
  });
  for (int r = 0; r < 2; ++r) {
    const Tensor& o = out[static_cast<size_t>(r)];
    EXPECT_LE(max_abs_diff(o, single), 1e-5) << what << " rank " << r;
    EXPECT_EQ(std::memcmp(o.raw(), single.raw(), single.nbytes()), 0) << what << " rank " << r;
  }
  // A group of one rank is the single-rank loop.
  parallel::LocalGroup one(1);
  Tensor solo;
  one.run([&](parallel::Communicator& c) { solo = stage(*dits[0], &c); });
  EXPECT_EQ(std::memcmp(solo.raw(), single.raw(), single.nbytes()), 0) << what << " one rank";
}

TEST(CfgParallel, BaseStageEqualsSingleRank) {
  Inputs in;
  for (double guidance : {5.0, 1.0}) {
    GuidedText text = in.text;
    text.guidance = guidance;
    compare(
        [&](const models::WanDit& dit, parallel::Communicator* cfg) {
          sched::UniPCScheduler s(sched::UniPCConfig::wan(3));
          return run_base_stage(dit, s, 3, in.noise, text, {}, nullptr, cfg);
        },
        "base stage, guidance " + std::to_string(guidance));
  }
}

TEST(CfgParallel, FreeSwimStageEqualsSingleRank) {
  Inputs in;
  for (int every : {0, 2}) {
    for (double guidance : {5.0, 1.0}) {
      GuidedText text = in.text;
      text.guidance = guidance;
      FreeSwimStageOptions opt;
      opt.steps = 4;
      opt.strength = 1.0;
      opt.attention = {2, 3, 0.2};
      opt.cache_every = every;
      compare(
          [&](const models::WanDit& dit, parallel::Communicator* cfg) {
            sched::UniPCScheduler s(sched::UniPCConfig::wan(9));
            return run_freeswim_stage(dit, s, in.clean, in.noise, text, opt, {}, nullptr, cfg);
          },
          "FreeSwim stage, cache every " + std::to_string(every) + ", guidance " +
              std::to_string(guidance));
    }
  }
}

TEST(CfgParallel, HooksRunOnRankZeroOnly) {
  Inputs in;
  std::vector<std::unique_ptr<models::WanDit>> dits;
  dits.push_back(tiny_dit());
  dits.push_back(tiny_dit());
  std::atomic<int> progress{0}, checkpoints{0};
  StageHooks hooks;
  hooks.progress = [&](const std::string&, int, int, double) { ++progress; };
  hooks.checkpoint = [&](const StageState&) { ++checkpoints; };
  parallel::LocalGroup group(2);
  group.run([&](parallel::Communicator& c) {
    sched::UniPCScheduler s(sched::UniPCConfig::wan(2));
    run_base_stage(*dits[static_cast<size_t>(c.rank())], s, 2, in.noise, in.text, hooks, nullptr,
                   &c);
  });
  EXPECT_EQ(progress.load(), 2);
  EXPECT_EQ(checkpoints.load(), 2);
}

TEST(CfgParallel, OtherGroupSizesAreRefused) {
  Inputs in;
  const auto dit = tiny_dit();
  parallel::LocalGroup group(3);
  try {
    group.run([&](parallel::Communicator& c) {
      sched::UniPCScheduler s(sched::UniPCConfig::wan(2));
      run_base_stage(*dit, s, 2, in.noise, in.text, {}, nullptr, &c);
    });
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("needs a group of 1 or 2 ranks"), std::string::npos)
        << e.what();
  }
}

}  // namespace
}  // namespace freeswim::pipeline
