// Whole DiT forwards on the GPU: the golden cases (as `freeswim check --device cuda --filter dit`
// runs them), and every step kind against the CPU backend on the tiny golden model (head_dim 32,
// the plain attention kernel) and on a random model with head_dim 64 (the Hopper kernels).
#include <gtest/gtest.h>

#include <cmath>
#include <string>

#include "check/suites.h"
#include "core/error.h"
#include "models/wan_dit.h"
#include "ops/cuda/cuda_backend.h"
#include "test_util.h"

namespace freeswim::cuda_test {
namespace {

using models::DitInput;
using models::WanDit;
using models::WanDitConfig;

TEST(CudaDit, GoldenCasesPassAtBf16Tolerance) {
  std::vector<check::CaseResult> results;
  check::Context ctx;
  ctx.golden_dir = golden_dir();
  ctx.device = Device::CUDA;
  ctx.report = [&](const check::CaseResult& r) { results.push_back(r); };
  check::check_dit_cases(ctx);
  // 6 cases + 2 cached cross-attention tensors, from each of the 3 weight files.
  ASSERT_EQ(results.size(), 3u * 8u);
  for (const auto& r : results) {
    EXPECT_TRUE(r.pass) << r.name << " error " << r.error << " " << r.message;
    EXPECT_LE(r.tolerance, 1e-2) << r.name;
  }
}

// Runs every step kind of `cpu` and `gpu` (the same weights) and compares predictions and the
// guide step's cache.
void compare_every_kind(const WanDit& cpu, const WanDit& gpu, const Shape& latent_shape,
                        int64_t context_len, int dh, int dw, uint64_t seed) {
  const WanDitConfig& c = cpu.config();
  DitInput in;
  in.latents = random_cpu(latent_shape, seed);
  in.timestep = 637.f;
  in.context = random_cpu({context_len, c.text_dim}, seed + 1);
  DitInput neg = in;
  neg.context = random_cpu({context_len, c.text_dim}, seed + 2);
  FreeSwimParams fsp;
  fsp.dh = dh;
  fsp.dw = dw;
  fsp.attn_scale = freeswim_attention_scale(int64_t{2 * dh} * (2 * dw), c.head_dim);

  auto check = [&](const char* what, const Tensor& got, const Tensor& want) {
    ASSERT_EQ(got.device(), Device::CUDA) << what;
    const double err = relative_l2(got, want);
    EXPECT_LT(err, 1e-2) << what << ": relative L2 error " << err;
  };
  check("stock", gpu.forward(in, StepKind::Stock), cpu.forward(in, StepKind::Stock));
  check("dual", gpu.forward(in, StepKind::Dual, &fsp), cpu.forward(in, StepKind::Dual, &fsp));
  CrossAttentionCache cpu_cache, gpu_cache;
  check("guide", gpu.forward(in, StepKind::Guide, &fsp, &gpu_cache),
        cpu.forward(in, StepKind::Guide, &fsp, &cpu_cache));
  ASSERT_EQ(gpu_cache.blocks.size(), cpu_cache.blocks.size());
  for (size_t i = 0; i < gpu_cache.blocks.size(); ++i)
    check(("cache block " + std::to_string(i)).c_str(), gpu_cache.blocks[i], cpu_cache.blocks[i]);
  DitInput step2 = in;
  step2.latents = random_cpu(latent_shape, seed + 3);
  step2.timestep = 412.f;
  check("reuse", gpu.forward(step2, StepKind::Reuse, &fsp, &gpu_cache),
        cpu.forward(step2, StepKind::Reuse, &fsp, &cpu_cache));
  DitInput neg2 = neg;
  neg2.latents = step2.latents;
  neg2.timestep = step2.timestep;
  check("uncond", gpu.forward(neg2, StepKind::Uncond, &fsp),
        cpu.forward(neg2, StepKind::Uncond, &fsp));
}

TEST(CudaDit, TinyGoldenModelEveryStepKindMatchesCpu) {
  const std::string dir = golden_dir();
  const std::string weights = dir + "/dit_tiny.diffusers.safetensors";
  const std::string config = dir + "/dit_tiny.config.json";
  const auto cpu = WanDit::load(weights, Device::CPU, config);
  const auto gpu = WanDit::load(weights, Device::CUDA, config);
  compare_every_kind(*cpu, *gpu, {16, 3, 12, 16}, 12, 2, 3, 7);
}

TEST(CudaDit, HeadDim64ModelEveryStepKindMatchesCpu) {
  WanDitConfig c;
  c.heads = 2;
  c.head_dim = 64;
  c.num_layers = 2;
  c.ffn_dim = 256;
  c.text_dim = 64;
  const auto cpu = WanDit::random(c, Device::CPU, 5);
  const auto gpu = WanDit::random(c, Device::CUDA, 5);
  compare_every_kind(*cpu, *gpu, {16, 3, 18, 22}, 20, 3, 4, 11);
}

// --offload on the GPU: pinned host blocks, two device slots, copies on the transfer stream.
// Every step kind, two rounds (the second starts from the block the first prefetched), equals
// the plain GPU model bit for bit (same kernels, same weights); the device then holds two
// blocks, and the out-of-memory advice names --offload only while it would help.
TEST(CudaDitOffload, EveryStepKindIsBitIdenticalAndTheAdviceFollows) {
  WanDitConfig c;
  c.heads = 2;
  c.head_dim = 64;
  c.num_layers = 3;
  c.ffn_dim = 256;
  c.text_dim = 64;
  auto advice = [] {
    try {
      Tensor::empty({int64_t{1} << 48}, DType::F32, Device::CUDA);  // 1 PiB
    } catch (const OutOfMemory& e) {
      return std::string(e.what());
    }
    return std::string("no OutOfMemory");
  };
  const auto streamed = WanDit::random(c, Device::CUDA, 5);
  EXPECT_NE(advice().find("--offload"), std::string::npos) << advice();
  const size_t before = ops::cuda::memory_stats().in_use;
  const int64_t bytes = streamed->block_weight_bytes();
  streamed->enable_offload();
  // Three blocks left the device, two slots came: one block's worth less (bucket rounding aside).
  EXPECT_LT(ops::cuda::memory_stats().in_use, before - static_cast<size_t>(bytes / 3 / 2));
  EXPECT_EQ(advice().find("--offload"), std::string::npos) << advice();  // nothing left to move
  const auto plain = WanDit::random(c, Device::CUDA, 5);

  DitInput in;
  in.latents = random_cpu({16, 3, 18, 22}, 30);
  in.timestep = 555.f;
  in.context = random_cpu({11, c.text_dim}, 31);
  FreeSwimParams fsp;
  fsp.dh = 3;
  fsp.dw = 4;
  fsp.attn_scale = freeswim_attention_scale(int64_t{2 * fsp.dh} * (2 * fsp.dw), c.head_dim);
  CrossAttentionCache ca, cb;
  for (int round = 0; round < 2; ++round)
    for (StepKind kind :
         {StepKind::Stock, StepKind::Dual, StepKind::Guide, StepKind::Reuse, StepKind::Uncond}) {
      const FreeSwimParams* p = kind == StepKind::Stock ? nullptr : &fsp;
      EXPECT_EQ(
          count_differing(plain->forward(in, kind, p, &ca), streamed->forward(in, kind, p, &cb)), 0)
          << step_kind_name(kind) << " round " << round;
    }
}

// load(offload = true) on the GPU: each block weight goes to pinned host memory as it is
// converted (the device never holds all blocks), and the model computes what a plain one does.
TEST(CudaDitOffload, LoadingStraightIntoPinnedMemoryGivesTheSameModel) {
  const std::string dir = golden_dir();
  const std::string weights = dir + "/dit_tiny.diffusers.safetensors";
  const std::string config = dir + "/dit_tiny.config.json";
  const size_t start = ops::cuda::memory_stats().in_use;
  const auto plain = WanDit::load(weights, Device::CUDA, config);
  const size_t before = ops::cuda::memory_stats().in_use;
  const auto streamed = WanDit::load(weights, Device::CUDA, config, /*offload=*/true);
  EXPECT_TRUE(streamed->offloaded());
  // Its device share: the plain model's less its blocks, plus two block slots (allocation
  // rounding aside). The tiny model has two blocks, so here that is no less than the plain
  // model; with 30 blocks it is 2/30 of them.
  const int64_t blocks = plain->block_weight_bytes();
  const int64_t slots = 2 * blocks / plain->config().num_layers;
  const int64_t plain_share = static_cast<int64_t>(before - start);
  const int64_t streamed_share = static_cast<int64_t>(ops::cuda::memory_stats().in_use - before);
  EXPECT_LE(streamed_share, plain_share - blocks + slots + 64 * 1024)
      << "plain " << plain_share << ", blocks " << blocks << ", streamed " << streamed_share;
  DitInput in;
  in.latents = random_cpu({16, 3, 12, 16}, 50);
  in.timestep = 250.f;
  in.context = random_cpu({9, plain->config().text_dim}, 51);
  FreeSwimParams fsp;
  fsp.dh = 2;
  fsp.dw = 3;
  fsp.attn_scale = 0.2;
  for (int round = 0; round < 2; ++round)
    EXPECT_EQ(count_differing(plain->forward(in, StepKind::Dual, &fsp),
                              streamed->forward(in, StepKind::Dual, &fsp)),
              0)
        << "round " << round;
}

// A DiT that does not fit: the out-of-memory error of the load names --offload and the file.
TEST(CudaDitOffload, LoadOutOfMemoryNamesTheFlag) {
  const std::string dir = golden_dir();
  const std::string weights = dir + "/dit_tiny.diffusers.safetensors";
  const std::string config = dir + "/dit_tiny.config.json";
  ops::cuda::release_cached_memory();
  const size_t old_limit = ops::cuda::memory_limit();
  ops::cuda::set_memory_limit(ops::cuda::memory_stats().reserved + 4096);
  std::string message;
  try {
    WanDit::load(weights, Device::CUDA, config);
  } catch (const OutOfMemory& e) {
    message = e.what();
  }
  ops::cuda::set_memory_limit(old_limit);
  EXPECT_NE(message.find("--offload"), std::string::npos) << message;
  EXPECT_NE(message.find(weights), std::string::npos) << message;
}

}  // namespace
}  // namespace freeswim::cuda_test
