// The cross-attention cache on the CPU: its API (store/load, bytes, clear), the Auto placement
// rule as a pure function of (cache bytes, free bytes, margin), --cache-memory parsing, and the
// DiT and the FreeSwim stage giving the same bits with every placement (on the CPU every
// placement is the same memory; the GPU's host path is tested in tests/cuda_backend).
#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <limits>

#include "core/device_memory.h"
#include "core/error.h"
#include "core/rng.h"
#include "freeswim/attention_cache.h"
#include "golden_dir.h"
#include "models/wan_dit.h"
#include "pipeline/denoise.h"
#include "sched/unipc.h"

namespace freeswim {
namespace {

constexpr size_t kGiB = size_t{1} << 30;

bool same_bits(const Tensor& a, const Tensor& b) {
  return a.defined() && b.defined() && a.dtype() == b.dtype() && a.shape() == b.shape() &&
         std::memcmp(a.raw(), b.raw(), a.nbytes()) == 0;
}

TEST(CachePlacementRule, DeviceOnlyWhenCacheAndMarginFit) {
  const size_t cache = 15 * kGiB, margin = 10 * kGiB;
  // An H200 (139 GiB) has room; a 24 GiB card does not.
  EXPECT_EQ(choose_cache_placement(cache, 130 * kGiB, margin), CachePlacement::Device);
  EXPECT_EQ(choose_cache_placement(cache, 20 * kGiB, margin), CachePlacement::Host);
  // Exactly enough is enough; one byte less is not.
  EXPECT_EQ(choose_cache_placement(cache, cache + margin, margin), CachePlacement::Device);
  EXPECT_EQ(choose_cache_placement(cache, cache + margin - 1, margin), CachePlacement::Host);
  // Less free memory than the margin alone: host (no unsigned wrap-around into "fits").
  EXPECT_EQ(choose_cache_placement(0, margin - 1, margin), CachePlacement::Host);
  EXPECT_EQ(choose_cache_placement(0, margin, margin), CachePlacement::Device);
  const size_t huge = std::numeric_limits<size_t>::max();
  EXPECT_EQ(choose_cache_placement(huge, huge, 1), CachePlacement::Host);
  EXPECT_EQ(choose_cache_placement(huge - 1, huge, 1), CachePlacement::Device);
}

TEST(CachePlacementRule, ActivationMarginGrowsWithTokensAndModel) {
  const models::WanDitConfig small = models::WanDitConfig::preset("1.3B");
  const models::WanDitConfig big = models::WanDitConfig::preset("14B");
  const int64_t tokens_1080p = 21 * 68 * 120;  // 1088x1920x81 after the VAE and the patch
  const size_t m = pipeline::freeswim_activation_bytes(small, tokens_1080p);
  // Eight [tokens, 1536] bf16 tensors (3.9 GiB), two 1 GiB FFN chunks, 1 GiB: 6.9 GiB.
  EXPECT_GT(m, 6 * kGiB);
  EXPECT_LT(m, 8 * kGiB);
  EXPECT_GT(pipeline::freeswim_activation_bytes(big, tokens_1080p), 2 * m);
  // The FFN chunk is capped; the [tokens, dim] part grows with the tokens.
  EXPECT_GT(pipeline::freeswim_activation_bytes(small, 4 * tokens_1080p), 2 * m);
  // A tiny run still keeps the 1 GiB.
  EXPECT_GT(pipeline::freeswim_activation_bytes(small, 16), kGiB);
}

TEST(CachePlacementFlag, ParsesTheThreeValuesAndRefusesOthers) {
  EXPECT_EQ(parse_cache_placement("device"), CachePlacement::Device);
  EXPECT_EQ(parse_cache_placement("host"), CachePlacement::Host);
  EXPECT_EQ(parse_cache_placement("auto"), CachePlacement::Auto);
  for (const char* bad : {"", "gpu", "Host", "cpu", "device ", "pinned"}) {
    try {
      parse_cache_placement(bad);
      ADD_FAILURE() << "accepted '" << bad << "'";
    } catch (const Error& e) {
      const std::string m = e.what();
      EXPECT_NE(m.find("--cache-memory"), std::string::npos) << m;
      EXPECT_NE(m.find(std::string("'") + bad + "'"), std::string::npos) << m;
    }
  }
  for (CachePlacement p : {CachePlacement::Auto, CachePlacement::Device, CachePlacement::Host})
    EXPECT_EQ(parse_cache_placement(cache_placement_name(p)), p);
}

class CacheApi : public ::testing::TestWithParam<CachePlacement> {};

TEST_P(CacheApi, StoreLoadRoundTripBytesAndClear) {
  CrossAttentionCache cache(GetParam());
  EXPECT_EQ(cache.requested(), GetParam());
  EXPECT_FALSE(cache.filled());
  std::vector<std::string> log;
  cache.set_log([&](const std::string& line) { log.push_back(line); });
  const std::vector<Tensor> t{rng::normal_tensor({6, 2, 4}, 1), rng::normal_tensor({6, 2, 4}, 2),
                              rng::normal_tensor({6, 2, 4}, 3).to(DType::BF16)};
  cache.begin_store(t.size());
  EXPECT_EQ(cache.size(), 3u);
  EXPECT_FALSE(cache.load(0, Device::CPU).defined());  // not stored yet
  for (size_t i = 0; i < t.size(); ++i) cache.store(i, t[i]);
  // Auto on the CPU is the device (one memory); what was asked for otherwise.
  EXPECT_EQ(cache.placement(),
            GetParam() == CachePlacement::Auto ? CachePlacement::Device : GetParam());
  EXPECT_TRUE(log.empty()) << log.front();  // nothing to decide on the CPU: no line
  EXPECT_EQ(cache.bytes(), 2 * 48 * 4u + 48 * 2u);
  cache.sync();
  for (size_t i = 0; i < t.size(); ++i) {
    const Tensor got = cache.load(i, Device::CPU);
    EXPECT_EQ(got.device(), Device::CPU);
    EXPECT_TRUE(same_bits(got, t[i])) << i;
  }
  EXPECT_FALSE(cache.load(3, Device::CPU).defined());
  EXPECT_THROW(cache.store(3, t[0]), Error);
  EXPECT_THROW(cache.store(0, Tensor{}), Error);
  // CPU blocks are not counted as device memory for the out-of-memory message.
  EXPECT_EQ(device_cache_bytes(Device::CPU), 0u);

  // A new guide step drops the old blocks, and blocks of a new size are accepted.
  cache.begin_store(2);
  EXPECT_EQ(cache.size(), 2u);
  EXPECT_EQ(cache.bytes(), 0u);
  const Tensor other = rng::normal_tensor({5, 3}, 9);
  cache.store(1, other);
  EXPECT_TRUE(same_bits(cache.load(1, Device::CPU), other));
  EXPECT_FALSE(cache.load(0, Device::CPU).defined());
  cache.clear();
  EXPECT_FALSE(cache.filled());
  EXPECT_EQ(cache.bytes(), 0u);
}

INSTANTIATE_TEST_SUITE_P(EveryPlacement, CacheApi,
                         ::testing::Values(CachePlacement::Auto, CachePlacement::Device,
                                           CachePlacement::Host),
                         [](const auto& p) { return cache_placement_name(p.param); });

TEST(CacheCopies, CpuCopyAsyncIsDoneAtOnceAndChecksShapes) {
  const Tensor src = rng::normal_tensor({4, 5}, 7);
  const Tensor dst = Tensor::empty_pinned({20}, DType::F32, Device::CPU);
  EXPECT_EQ(dst.device(), Device::CPU);
  EXPECT_EQ(dst.shape(), (Shape{20}));
  AsyncCopy c = copy_async(dst, src);
  EXPECT_FALSE(c.pending());
  EXPECT_EQ(std::memcmp(dst.raw(), src.raw(), src.nbytes()), 0);
  EXPECT_THROW(copy_async(Tensor::empty({19}), src), Error);
  EXPECT_THROW(copy_async(Tensor::empty({20}, DType::BF16), src), Error);
}

std::unique_ptr<models::WanDit> tiny_dit() {
  return models::WanDit::load(kGolden + "/dit_tiny.diffusers.safetensors", Device::CPU,
                              kGolden + "/dit_tiny.config.json");
}

TEST(CacheInDit, GuideThenReuseSameBitsForEveryPlacement) {
  const auto dit = tiny_dit();
  models::DitInput in{rng::normal_tensor({16, 2, 8, 12}, 1), 700.f, rng::normal_tensor({5, 32}, 2)};
  models::DitInput in2 = in;
  in2.latents = rng::normal_tensor({16, 2, 8, 12}, 3);
  in2.timestep = 500.f;
  const FreeSwimParams fsp{2, 3, 0.2};
  CrossAttentionCache ref(CachePlacement::Device);
  const Tensor guide_ref = dit->forward(in, StepKind::Guide, &fsp, &ref);
  const Tensor reuse_ref = dit->forward(in2, StepKind::Reuse, &fsp, &ref);
  ASSERT_EQ(ref.size(), static_cast<size_t>(dit->config().num_layers));
  // The cache changes the prediction (a reuse step is not an uncond step in disguise).
  EXPECT_FALSE(same_bits(reuse_ref, dit->forward(in2, StepKind::Uncond, &fsp)));
  for (CachePlacement p : {CachePlacement::Host, CachePlacement::Auto}) {
    SCOPED_TRACE(cache_placement_name(p));
    CrossAttentionCache cache(p);
    EXPECT_TRUE(same_bits(dit->forward(in, StepKind::Guide, &fsp, &cache), guide_ref));
    EXPECT_EQ(cache.bytes(), ref.bytes());
    EXPECT_TRUE(same_bits(dit->forward(in2, StepKind::Reuse, &fsp, &cache), reuse_ref));
    // A second guide step overwrites the first's blocks.
    EXPECT_TRUE(same_bits(dit->forward(in, StepKind::Guide, &fsp, &cache), guide_ref));
    EXPECT_TRUE(same_bits(dit->forward(in2, StepKind::Reuse, &fsp, &cache), reuse_ref));
  }
}

TEST(CacheInPipeline, FreeSwimStageSameBitsForEveryPlacement) {
  const auto dit = tiny_dit();
  const pipeline::GuidedText text{rng::normal_tensor({5, 32}, 1), rng::normal_tensor({5, 32}, 2),
                                  5.0};
  const Tensor clean = rng::normal_tensor({16, 2, 8, 12}, 3);
  const Tensor noise = rng::normal_tensor({16, 2, 8, 12}, 4);
  pipeline::FreeSwimStageOptions opt;
  opt.steps = 5;
  opt.strength = 1.0;
  opt.attention = {2, 3, 0.2};
  opt.cache_every = 2;
  Tensor first;
  for (CachePlacement p : {CachePlacement::Device, CachePlacement::Host, CachePlacement::Auto}) {
    SCOPED_TRACE(cache_placement_name(p));
    opt.cache_memory = p;
    sched::UniPCScheduler s(sched::UniPCConfig::wan(9));
    const Tensor out = pipeline::run_freeswim_stage(*dit, s, clean, noise, text, opt, {});
    if (!first.defined())
      first = out;
    else
      EXPECT_TRUE(same_bits(out, first));
  }
}

}  // namespace
}  // namespace freeswim
