// The sequence-parallel DiT forward over LocalGroup (P = 1, 2, 4 ranks, each with its own
// replica) against the single-rank forward: every step kind, the cross-attention cache sharded
// by token, even and padded token counts.
#include <gtest/gtest.h>

#include "core/error.h"
#include "core/rng.h"
#include "golden_dir.h"
#include "models/wan_dit.h"
#include "parallel/local_group.h"
#include "parallel/ulysses.h"

namespace freeswim::models {
namespace {

WanDitConfig four_heads() {
  WanDitConfig c;
  c.heads = 4;
  c.head_dim = 32;
  c.text_dim = 32;
  c.ffn_dim = 96;
  c.num_layers = 2;
  return c;
}

std::unique_ptr<WanDit> make(const std::string& which) {
  if (which == "golden") {
    return WanDit::load(kGolden + "/dit_tiny.diffusers.safetensors", Device::CPU,
                        kGolden + "/dit_tiny.config.json");
  }
  return WanDit::random(four_heads(), Device::CPU, 7);
}

// The single-rank forward runs the fused norm + rotation and whole-sequence products; the
// sequence-parallel one runs them unfused and on slabs, so the results agree to rounding.
void expect_close(const Tensor& got, const Tensor& want, const std::string& what) {
  ASSERT_EQ(got.shape(), want.shape()) << what;
  EXPECT_LT(relative_l2(got, want), 1e-5) << what;
}

void check(const std::string& which, const Shape& latent_shape, int P) {
  const auto single = make(which);
  const DitInput in{rng::normal_tensor(latent_shape, 21), 700.f,
                    rng::normal_tensor({5, single->config().text_dim}, 22)};
  const FreeSwimParams fsp{1, 2, 0.3};
  CrossAttentionCache ref_cache(CachePlacement::Host);
  const Tensor stock = single->forward(in, StepKind::Stock);
  const Tensor dual = single->forward(in, StepKind::Dual, &fsp);
  const Tensor guide = single->forward(in, StepKind::Guide, &fsp, &ref_cache);
  DitInput in2 = in;
  in2.timestep = 500.f;
  const Tensor reuse = single->forward(in2, StepKind::Reuse, &fsp, &ref_cache);
  const Tensor uncond = single->forward(in2, StepKind::Uncond, &fsp);

  std::vector<std::unique_ptr<WanDit>> dits;
  for (int r = 0; r < P; ++r) dits.push_back(make(which));
  std::vector<std::vector<Tensor>> out(static_cast<size_t>(P));
  std::vector<Tensor> cache_block0(static_cast<size_t>(P));
  parallel::LocalGroup group(P);
  group.run([&](parallel::Communicator& comm) {
    const WanDit& dit = *dits[static_cast<size_t>(comm.rank())];
    CrossAttentionCache cache(CachePlacement::Host);
    auto& o = out[static_cast<size_t>(comm.rank())];
    o.push_back(dit.forward(in, StepKind::Stock, nullptr, nullptr, &comm));
    o.push_back(dit.forward(in, StepKind::Dual, &fsp, nullptr, &comm));
    o.push_back(dit.forward(in, StepKind::Guide, &fsp, &cache, &comm));
    cache_block0[static_cast<size_t>(comm.rank())] = cache.load(0, Device::CPU);
    o.push_back(dit.forward(in2, StepKind::Reuse, &fsp, &cache, &comm));
    o.push_back(dit.forward(in2, StepKind::Uncond, &fsp, nullptr, &comm));
  });
  const std::string what = which + " " + shape_str(latent_shape) + " P " + std::to_string(P);
  const std::vector<Tensor> want{stock, dual, guide, reuse, uncond};
  const char* kinds[] = {"stock", "dual", "guide", "reuse", "uncond"};
  for (int r = 0; r < P; ++r) {
    for (size_t k = 0; k < want.size(); ++k) {
      expect_close(out[static_cast<size_t>(r)][k], want[k],
                   what + " rank " + std::to_string(r) + " " + kinds[k]);
    }
  }
  // The cache is sharded by token: rank r holds block 0's rows of its slab.
  const Tensor whole = ref_cache.load(0, Device::CPU).to(DType::F32);
  const int64_t tokens = whole.dim(0);
  const parallel::TokenSplit split = parallel::TokenSplit::make(tokens, P);
  for (int r = 0; r < P; ++r) {
    const Tensor shard = cache_block0[static_cast<size_t>(r)].to(DType::F32);
    ASSERT_EQ(shard.dim(0), split.slab) << what;
    const int64_t n = split.end(r) - split.begin(r);
    if (n == 0) continue;
    expect_close(shard.slice0(0, n).clone(), whole.slice0(split.begin(r), split.end(r)).clone(),
                 what + " cache shard of rank " + std::to_string(r));
  }
}

TEST(SequenceParallelDit, GoldenTinyOnOneAndTwoRanks) {
  for (int P : {1, 2}) check("golden", {16, 2, 8, 12}, P);  // 48 tokens
}

TEST(SequenceParallelDit, FourHeadsOnOneTwoFourRanks) {
  for (int P : {1, 2, 4}) check("four heads", {16, 2, 8, 12}, P);
}

TEST(SequenceParallelDit, UnevenTokensArePadded) {
  for (int P : {2, 4}) check("four heads", {16, 1, 6, 10}, P);  // 15 tokens
}

TEST(SequenceParallelDit, HeadsNotAMultipleOfRanksIsRefused) {
  const auto dit = make("golden");  // 2 heads
  const DitInput in{rng::normal_tensor({16, 1, 4, 4}, 1), 1.f, rng::normal_tensor({3, 32}, 2)};
  parallel::LocalGroup group(4);
  try {
    group.run([&](parallel::Communicator& c) {
      dit->forward(in, StepKind::Stock, nullptr, nullptr, &c);
    });
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("2 heads are not a multiple of the 4 ranks"),
              std::string::npos)
        << e.what();
  }
}

}  // namespace
}  // namespace freeswim::models
