// --offload (WanDit::enable_offload) on the CPU: the block weights go through the two-slot
// streamer, whose bookkeeping (which slot holds which block, the prefetch of the next block and
// the wrap to block 0 for the next forward) is the same code the GPU runs; every step kind's
// prediction, over several forwards in a row, equals the plain model's bit for bit. (The GPU
// run, with pinned memory and the transfer stream, is CudaDitOffload in tests/cuda_backend.)
#include <gtest/gtest.h>

#include <string>

#include "dit_test_util.h"
#include "models/wan_dit.h"

namespace freeswim::models {
namespace {

void run_all_kinds(int layers) {
  WanDitConfig c;
  c.heads = 2;
  c.head_dim = 32;
  c.num_layers = layers;
  c.ffn_dim = 96;
  c.text_dim = 32;
  const auto plain = WanDit::random(c, Device::CPU, 7);
  const auto streamed = WanDit::random(c, Device::CPU, 7);
  const int64_t bytes = streamed->block_weight_bytes();
  EXPECT_GT(bytes, 0);
  streamed->enable_offload();
  EXPECT_TRUE(streamed->offloaded());
  EXPECT_FALSE(plain->offloaded());
  EXPECT_EQ(streamed->block_weight_bytes(), bytes);

  DitInput in;
  in.latents = random_tensor({16, 2, 12, 16}, 20);
  in.timestep = 700.f;
  in.context = random_tensor({5, c.text_dim}, 21);
  FreeSwimParams fsp;
  fsp.dh = 2;
  fsp.dw = 3;
  fsp.attn_scale = freeswim_attention_scale(int64_t{2 * fsp.dh} * (2 * fsp.dw), c.head_dim);
  CrossAttentionCache cache_a, cache_b;
  // Guide before reuse (it fills the caches); two rounds so that the second forward of each
  // kind starts from the block the previous forward prefetched.
  for (int round = 0; round < 2; ++round)
    for (StepKind kind :
         {StepKind::Stock, StepKind::Dual, StepKind::Guide, StepKind::Reuse, StepKind::Uncond}) {
      const FreeSwimParams* p = kind == StepKind::Stock ? nullptr : &fsp;
      const Tensor a = plain->forward(in, kind, p, &cache_a);
      const Tensor b = streamed->forward(in, kind, p, &cache_b);
      expect_identical(b, a,
                       step_kind_name(kind) + " round " + std::to_string(round) + ", " +
                           std::to_string(layers) + " layers");
    }
}

TEST(Offload, EveryStepKindIsBitIdenticalWithAnEvenNumberOfBlocks) {
  run_all_kinds(4);
}

TEST(Offload, OddBlockCountsAndASingleBlockWrapCorrectly) {
  run_all_kinds(3);  // the wrap to block 0 lands in the slot of the last block but one
  run_all_kinds(1);  // one block: nothing to prefetch
}

TEST(Offload, LoadingStraightIntoHostMemoryGivesTheSameModel) {
  const std::string dir = FREESWIM_GOLDEN_DIR;
  const std::string weights = dir + "/dit_tiny.diffusers.safetensors";
  const std::string config = dir + "/dit_tiny.config.json";
  const auto plain = WanDit::load(weights, Device::CPU, config);
  const auto streamed = WanDit::load(weights, Device::CPU, config, /*offload=*/true);
  EXPECT_TRUE(streamed->offloaded());
  EXPECT_EQ(streamed->block_weight_bytes(), plain->block_weight_bytes());
  DitInput in;
  in.latents = random_tensor({16, 3, 12, 16}, 40);
  in.timestep = 250.f;
  in.context = random_tensor({9, plain->config().text_dim}, 41);
  FreeSwimParams fsp;
  fsp.dh = 2;
  fsp.dw = 3;
  fsp.attn_scale = 0.2;
  for (int round = 0; round < 2; ++round)
    expect_identical(streamed->forward(in, StepKind::Dual, &fsp),
                     plain->forward(in, StepKind::Dual, &fsp), "round " + std::to_string(round));
}

}  // namespace
}  // namespace freeswim::models
