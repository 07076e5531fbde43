// The up-front memory check (pipeline/memory_plan.h) and the text encoder's placement
// (pipeline/models.h): pure functions, no GPU. The memory cases are the reference points:
// Wan2.1-1.3B at 1920x1080 x 81 frames measured on an H100 under a 22.35 GiB cap (the
// cross-attention cache, 14.7 GiB, went to host memory), 14B at 720p and 1080p on a 24 GB card
// with offload and the cache in host memory, and sizes no card holds.
#include "pipeline/memory_plan.h"

#include <gtest/gtest.h>

#include <string>

#include "core/bytes.h"
#include "core/error.h"
#include "pipeline/denoise.h"
#include "pipeline/models.h"
#include "text/umt5.h"

namespace freeswim::pipeline {
namespace {

size_t gib_bytes(double g) {
  return static_cast<size_t>(g * kBytesPerGiB);
}

// A job at `w`x`h` (the generation size: multiples of 16) and `frames`, with the base stage at
// the model's native size, the cache every 2 steps (the defaults), on `gpus` GPUs at `guidance`.
MemoryJob job(const std::string& model, int w, int h, int frames = 81, int gpus = 1,
              double guidance = 5.0) {
  JobOptions o;
  o.size = parse_size(fmt::format("{}x{}", w, h));
  o.frames = frames;
  o.guidance = guidance;
  const models::WanDitConfig c = models::WanDitConfig::preset(model);
  const NativeSize native =
      c.dim() >= 5120 ? NativeSize{1280, 720, 5.0, "14B"} : NativeSize{832, 480, 3.0, "1.3B"};
  return memory_job(c, native, o, true, gpus);
}

const DeviceSettings& gpu_defaults() {
  static const DeviceSettings s = device_settings(Device::CUDA, {});
  return s;
}

TEST(MemoryPlan, TokensAndWeights) {
  const MemoryJob j = job("1.3B", 1920, 1080);
  EXPECT_EQ(j.width, 1920);
  EXPECT_EQ(j.height, 1088);  // generated at the next multiple of 16
  EXPECT_EQ(j.base_width, 832);
  EXPECT_EQ(j.base_height, 480);
  EXPECT_EQ(dit_tokens(j.dit, 81, 1088, 1920), 171360);  // 21 x 68 x 120
  // 1.3B: ~1.4G parameters in bf16; streamed: two blocks of 30 and what lies outside them.
  const double all = dit_device_weight_bytes(j.dit, false) / kBytesPerGiB;
  const double streamed = dit_device_weight_bytes(j.dit, true) / kBytesPerGiB;
  EXPECT_GT(all, 2.4);
  EXPECT_LT(all, 3.0);
  EXPECT_LT(streamed, 0.5);
  // 14B: ~27 GiB of blocks (40 of ~0.65 GiB) stay in host memory when streamed.
  const models::WanDitConfig big = models::WanDitConfig::preset("14B");
  EXPECT_GT(dit_device_weight_bytes(big, false) / kBytesPerGiB, 25.0);
  EXPECT_LT(dit_device_weight_bytes(big, true) / kBytesPerGiB, 2.5);
}

TEST(MemoryPlan, CrossAttentionCacheSizeIsTheMeasuredOne) {
  // 30 blocks x 171,360 tokens x 1536 x bf16 = 14.7 GiB (attention_cache.h: 15.8 GB).
  const MemoryEstimate e = estimate_memory(job("1.3B", 1920, 1080), false, false, {});
  EXPECT_NEAR(e.cache / kBytesPerGiB, 14.7, 0.05);
  EXPECT_EQ(estimate_memory(job("1.3B", 1920, 1080), false, true, {}).cache, 0u);
}

TEST(MemoryPlan, Wan13B1080pFitsAt22GiBWithTheCacheInHostMemoryAsMeasured) {
  // H100 under a 22.35 GiB cap, every default: the measured run kept the DiT on the GPU and sent
  // the cache to host memory (peak 22.34 GiB reserved, 14.93 GiB in tensors, the largest share
  // being the VAE's tiles, which take what is free).
  const MemoryPlan p =
      plan_memory(job("1.3B", 1920, 1080), gpu_defaults(), gib_bytes(22.35), "an H100");
  ASSERT_TRUE(p.fits) << p.message;
  EXPECT_FALSE(p.offload) << p.message;
  EXPECT_TRUE(p.host_cache) << p.message;
  EXPECT_LT(p.estimate.total() / kBytesPerGiB, 14.93) << p.message;
  EXPECT_NE(p.message.find("cross-attention cache in host memory"), std::string::npos) << p.message;
  EXPECT_NE(p.message.find("an H100"), std::string::npos) << p.message;
  // The cache on the GPU as well would not have fitted.
  EXPECT_GT(estimate_memory(job("1.3B", 1920, 1080), false, false, {}).dit_phase(),
            gib_bytes(22.35));
}

TEST(MemoryPlan, Wan13B1080pFitsIn15GiBWithTheCacheInHostMemory) {
  const MemoryPlan p =
      plan_memory(job("1.3B", 1920, 1080), gpu_defaults(), gib_bytes(14.9), "a 16 GB card");
  ASSERT_TRUE(p.fits) << p.message;
  EXPECT_TRUE(p.host_cache) << p.message;
  EXPECT_FALSE(p.offload) << p.message;
}

TEST(MemoryPlan, Wan14BFitsAt22GiBWithOffloadAndTheCacheInHostMemory) {
  for (const auto& [w, h] : {std::pair{1280, 720}, std::pair{1920, 1080}}) {
    SCOPED_TRACE(fmt::format("{}x{}", w, h));
    const MemoryPlan p = plan_memory(job("14B", w, h), gpu_defaults(), gib_bytes(22.35), "a GPU");
    ASSERT_TRUE(p.fits) << p.message;
    EXPECT_TRUE(p.offload) << p.message;
    EXPECT_TRUE(p.host_cache) << p.message;
    EXPECT_NE(p.message.find("automatic offload"), std::string::npos) << p.message;
  }
  // With --no-offload the weights alone pass the card: refused, naming --offload.
  DeviceFlags no_offload;
  no_offload.offload = Offload::off;
  const MemoryPlan p = plan_memory(job("14B", 1280, 720), device_settings(Device::CUDA, no_offload),
                                   gib_bytes(22.35), "a GPU");
  EXPECT_FALSE(p.fits);
  EXPECT_NE(p.message.find("--offload"), std::string::npos) << p.message;
}

TEST(MemoryPlan, HostMemoryOfThePlanIsTheMeasuredOne) {
  // 14B at 1080p under 22.35 GiB, H100 host with 128 GiB: 26.19 GiB of blocks pinned, the
  // 65.37 GiB cache in host memory, 94.92 GiB peak resident (2026-12-06_memory_14b_h100.txt).
  const MemoryPlan p = plan_memory(job("14B", 1920, 1080), gpu_defaults(), gib_bytes(22.35),
                                   "an H100", gib_bytes(120));
  ASSERT_TRUE(p.fits) << p.message;
  EXPECT_NEAR(p.estimate.host_blocks / kBytesPerGiB, 26.19, 0.05);
  EXPECT_NEAR(p.estimate.host_cache / kBytesPerGiB, 65.37, 0.05);
  EXPECT_GT(p.estimate.host_total() / kBytesPerGiB, 94.92);
  EXPECT_LT(p.estimate.host_total() / kBytesPerGiB, 96.5);
  EXPECT_NE(p.message.find("host memory about"), std::string::npos) << p.message;
  // 1.3B at 1080p on a 16 GB card: the 14.71 GiB cache, 18.09 GiB peak resident.
  const MemoryPlan q = plan_memory(job("1.3B", 1920, 1080), gpu_defaults(), gib_bytes(14.9),
                                   "a 16 GB card", gib_bytes(30));
  ASSERT_TRUE(q.fits) << q.message;
  EXPECT_EQ(q.estimate.host_blocks, 0u);
  EXPECT_GT(q.estimate.host_total() / kBytesPerGiB, 18.09);
  EXPECT_LT(q.estimate.host_total() / kBytesPerGiB, 19.5);
}

TEST(MemoryPlan, AHostWithoutRoomIsRefusedUpFrontNamingTheFlagsThatHelp) {
  // A 24 GB card in a 64 GB machine: 14B at 1080p would pin ~92 GiB.
  const MemoryPlan p = plan_memory(job("14B", 1920, 1080), gpu_defaults(), gib_bytes(22.35),
                                   "NVIDIA GeForce RTX 4090", gib_bytes(58));
  ASSERT_FALSE(p.fits);
  for (const char* needle :
       {"NVIDIA GeForce RTX 4090", "58.0 GiB available", "host memory", "--cache-every 0",
        "every DiT weight (26.2 GiB)", "--size", "--frames"})
    EXPECT_NE(p.message.find(needle), std::string::npos) << needle << "\n" << p.message;
  // Without the cache the same machine holds it (the blocks alone, ~30 GiB).
  MemoryJob no_cache = job("14B", 1920, 1080);
  no_cache.cache = false;
  const MemoryPlan r =
      plan_memory(no_cache, gpu_defaults(), gib_bytes(22.35), "a 4090", gib_bytes(58));
  ASSERT_TRUE(r.fits) << r.message;
  EXPECT_TRUE(r.offload);
  // 1.3B's 1080p cache is ~15 GiB: a 16 GB card in a 16 GB machine cannot hold it in host
  // memory, and the card cannot hold it either.
  const MemoryPlan small = plan_memory(job("1.3B", 1920, 1080), gpu_defaults(), gib_bytes(14.9),
                                       "a 16 GB card", gib_bytes(12));
  ASSERT_FALSE(small.fits);
  EXPECT_NE(small.message.find("the cross-attention cache in host memory"), std::string::npos)
      << small.message;
  // Host memory not known (0): not checked.
  EXPECT_TRUE(
      plan_memory(job("14B", 1920, 1080), gpu_defaults(), gib_bytes(22.35), "a GPU", 0).fits);
}

TEST(MemoryPlan, HostAvailableMemoryIsRead) {
  // Linux has /proc/meminfo; a machine running these tests has some memory available.
  EXPECT_GT(host_available_bytes(), size_t{64} << 20);
}

TEST(MemoryPlan, AbsurdSizeIsRefusedNamingTheFlagsThatHelp) {
  const MemoryPlan p =
      plan_memory(job("14B", 7680, 4320), gpu_defaults(), gib_bytes(8), "NVIDIA RTX 4060");
  ASSERT_FALSE(p.fits);
  for (const char* needle : {"NVIDIA RTX 4060", "8.0 GiB free", "--size", "--frames",
                             "streamed from host memory", "cross-attention cache in host memory"})
    EXPECT_NE(p.message.find(needle), std::string::npos) << needle << "\n" << p.message;
  // Offload and the host cache are assumed already: not suggested again.
  EXPECT_EQ(p.message.find("--offload"), std::string::npos) << p.message;
  EXPECT_EQ(p.message.find("--cache-memory host"), std::string::npos) << p.message;
  // With the heaviest settings forced, each flag that would lighten them is named.
  DeviceFlags heavy;
  heavy.offload = Offload::off;
  heavy.cache_memory = CachePlacement::Device;
  heavy.vae_tile = 768;
  const MemoryPlan h = plan_memory(job("1.3B", 1920, 1080), device_settings(Device::CUDA, heavy),
                                   gib_bytes(4), "a 4 GB card");
  ASSERT_FALSE(h.fits);
  for (const char* needle :
       {"--size", "--frames", "--offload", "--cache-memory host", "--vae-tile 256"})
    EXPECT_NE(h.message.find(needle), std::string::npos) << needle << "\n" << h.message;
}

TEST(MemoryPlan, TheCpuIsNeverRefused) {
  const MemoryPlan p =
      plan_memory(job("14B", 7680, 4320), device_settings(Device::CPU, {}), 0, "the cpu");
  EXPECT_TRUE(p.fits);
  EXPECT_FALSE(p.offload);
  EXPECT_TRUE(p.message.empty()) << p.message;
}

TEST(MemoryPlan, FlagsGivenAreTheOnlyPlanTried) {
  // --cache-memory device on a card that holds the cache: fits with it on the GPU.
  DeviceFlags device_cache;
  device_cache.cache_memory = CachePlacement::Device;
  const MemoryPlan p = plan_memory(job("1.3B", 1920, 1080),
                                   device_settings(Device::CUDA, device_cache), gib_bytes(70), "");
  ASSERT_TRUE(p.fits) << p.message;
  EXPECT_FALSE(p.host_cache);
  EXPECT_FALSE(p.offload);
  // --offload: the streamed plan even where everything would fit.
  DeviceFlags offload;
  offload.offload = Offload::on;
  const MemoryPlan q =
      plan_memory(job("1.3B", 832, 480), device_settings(Device::CUDA, offload), gib_bytes(70), "");
  ASSERT_TRUE(q.fits) << q.message;
  EXPECT_TRUE(q.offload);
  // No cache (--cache-every 0): nothing to place.
  MemoryJob j = job("1.3B", 1920, 1080);
  j.cache = false;
  const MemoryPlan r = plan_memory(j, gpu_defaults(), gib_bytes(22.35), "");
  ASSERT_TRUE(r.fits) << r.message;
  EXPECT_FALSE(r.host_cache);
  EXPECT_EQ(r.estimate.cache, 0u);
}

TEST(MemoryPlan, UpscaleHasNoBaseStage) {
  JobOptions o;
  o.size = parse_size("1920x1080");
  const MemoryJob j = memory_job(models::WanDitConfig::preset("1.3B"), {}, o, false);
  EXPECT_EQ(j.base_width, 0);
  // A portrait generate runs its base stage in portrait.
  o.size = parse_size("1080x1920");
  const MemoryJob g = memory_job(models::WanDitConfig::preset("1.3B"), {}, o, true);
  EXPECT_EQ(g.base_width, 480);
  EXPECT_EQ(g.base_height, 832);
}

// --gpus N: the plan of one rank. A rank of a sequence group of P holds a 1/P slab of the tokens'
// activations (with the Ulysses buffers) and of the cache; the CFG pair's conditional ranks keep
// the cache; every rank pins its own streamed blocks in host memory.
MemoryJob job_on(const std::string& model, int w, int h, int gpus, double guidance = 5.0) {
  return job(model, w, h, 81, gpus, guidance);
}

TEST(MemoryPlan, SeveralGpusPlanOneRanksSlab) {
  // The layouts of world_layout: 2 = a CFG pair, 8 = CFG pairs of sequence groups of 4, and at
  // guidance 1 one sequence group of all.
  const MemoryJob one = job_on("14B", 3840, 2160, 1), two = job_on("14B", 3840, 2160, 2),
                  eight = job_on("14B", 3840, 2160, 8),
                  eight_g1 = job_on("14B", 3840, 2160, 8, 1.0);
  EXPECT_EQ(one.ranks(), 1);
  EXPECT_EQ(two.cfg_ranks, 2);
  EXPECT_EQ(two.seq_ranks, 1);
  EXPECT_EQ(eight.cfg_ranks, 2);
  EXPECT_EQ(eight.seq_ranks, 4);
  EXPECT_EQ(eight_g1.cfg_ranks, 1);
  EXPECT_EQ(eight_g1.seq_ranks, 8);

  const MemoryEstimate e1 = estimate_memory(one, false, false, {});
  const MemoryEstimate e8 = estimate_memory(eight, false, false, {});
  EXPECT_EQ(e1.tokens, 680400);  // 21 x 135 x 240
  EXPECT_EQ(e8.tokens, 680400);
  EXPECT_EQ(e8.slab, 170100);
  // The cache shard: 40 blocks x 170,100 tokens x 5120 x bf16 = 64.9 GiB, a quarter of one GPU's.
  EXPECT_EQ(e8.cache * 4, e1.cache);
  EXPECT_NEAR(e8.cache / kBytesPerGiB, 64.9, 0.1);
  // Activations: a quarter of one GPU's token rows plus five slab tensors for the exchange,
  // without a second copy of the 1 GiB allowance.
  const size_t slab_tensor = size_t{170100} * 5120 * 2;
  EXPECT_EQ(e8.activations, freeswim_activation_bytes(one.dit, 170100) + 5 * slab_tensor);
  EXPECT_LT(e8.activations, e1.activations / 2);
  // The weights are every rank's, as on one GPU; a CFG pair alone splits no tokens.
  EXPECT_EQ(e8.dit_weights, e1.dit_weights);
  EXPECT_EQ(estimate_memory(two, false, false, {}).activations, e1.activations);
  EXPECT_EQ(estimate_memory(two, false, false, {}).cache, e1.cache);

  // 14B at 4K on one 80 GB GPU needs the blocks streamed and the 260 GiB cache in host memory; on
  // eight, each rank keeps every weight, and its 65 GiB shard goes to host memory too (four
  // shards: one whole cache, with no blocks pinned).
  const MemoryPlan p1 = plan_memory(one, gpu_defaults(), gib_bytes(79), "an H100", gib_bytes(500));
  ASSERT_TRUE(p1.fits) << p1.message;
  EXPECT_TRUE(p1.offload) << p1.message;
  const MemoryPlan p8 =
      plan_memory(eight, gpu_defaults(), gib_bytes(79), "each of GPUs 0-7", gib_bytes(500));
  ASSERT_TRUE(p8.fits) << p8.message;
  EXPECT_FALSE(p8.offload) << p8.message;
  EXPECT_TRUE(p8.host_cache) << p8.message;
  EXPECT_EQ(p8.estimate.host_total(), e1.cache + kHostMemoryMargin);
  EXPECT_NE(p8.message.find("680400 tokens, 170100 per GPU of 8 (CFG 2 x sequence 4)"),
            std::string::npos)
      << p8.message;
  // On 141 GB GPUs (H200) the shard stays on the GPU.
  const MemoryPlan h8 =
      plan_memory(eight, gpu_defaults(), gib_bytes(139), "each of GPUs 0-7", gib_bytes(500));
  ASSERT_TRUE(h8.fits) << h8.message;
  EXPECT_FALSE(h8.host_cache) << h8.message;
}

TEST(MemoryPlan, EveryRankPinsItsOwnStreamedBlocks) {
  // 14B at 1080p on eight 24 GB cards: each rank streams its blocks (26.2 GiB pinned each, 210
  // GiB in all) beside the whole cache's 65.4 GiB in host memory.
  const MemoryJob eight = job_on("14B", 1920, 1080, 8);
  const MemoryPlan p = plan_memory(eight, gpu_defaults(), gib_bytes(22.35), "each of GPUs 0-7");
  ASSERT_TRUE(p.fits) << p.message;
  ASSERT_TRUE(p.offload) << p.message;
  const double blocks = static_cast<double>(p.estimate.host_blocks) / kBytesPerGiB;
  EXPECT_NEAR(blocks, 26.19, 0.05);
  EXPECT_NEAR(static_cast<double>(p.estimate.host_total()) / kBytesPerGiB,
              8 * blocks + 65.37 + kHostMemoryMargin / kBytesPerGiB, 0.1);
  // A host with 256 GiB available cannot: refused, with fewer --gpus among the flags that help.
  const MemoryPlan q =
      plan_memory(eight, gpu_defaults(), gib_bytes(22.35), "each of GPUs 0-7", gib_bytes(256));
  ASSERT_FALSE(q.fits);
  for (const char* needle : {"256.0 GiB available", "fewer --gpus", "--cache-every 0"})
    EXPECT_NE(q.message.find(needle), std::string::npos) << needle << "\n" << q.message;
}

TEST(TextDevice, ParsesTheThreeValuesAndRefusesOthers) {
  EXPECT_EQ(parse_text_device("auto"), TextDevice::Auto);
  EXPECT_EQ(parse_text_device("cpu"), TextDevice::CPU);
  EXPECT_EQ(parse_text_device("cuda"), TextDevice::CUDA);
  for (const char* bad : {"", "gpu", "CUDA", "cuda:0", "auto "}) {
    SCOPED_TRACE(bad);
    try {
      parse_text_device(bad);
      ADD_FAILURE() << "accepted";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("--text-device"), std::string::npos) << e.what();
    }
  }
  for (TextDevice d : {TextDevice::Auto, TextDevice::CPU, TextDevice::CUDA})
    EXPECT_EQ(parse_text_device(text_device_name(d)), d);
}

TEST(TextDevice, Umt5XxlWeighs10Point6GiBInBf16) {
  const double bytes = static_cast<double>(text::Umt5Config::xxl().parameter_count()) * 2;
  EXPECT_NEAR(bytes / kBytesPerGiB, 10.6, 0.05);
}

TEST(TextDevice, AutoPutsTheEncoderOnTheGpuOnlyWhenItFits) {
  const size_t weights = gib_bytes(10.6);
  const TextPlacement fits =
      place_text_encoder(TextDevice::Auto, Device::CUDA, weights, gib_bytes(21.9));
  EXPECT_EQ(fits.device, Device::CUDA);
  EXPECT_EQ(fits.reason, "text encoder on cuda (10.6 GiB fits in 21.9 GiB free)");
  // The margin counts: weights alone would fit, weights and their working memory do not.
  const TextPlacement tight =
      place_text_encoder(TextDevice::Auto, Device::CUDA, weights, weights + kTextEncoderMargin / 2);
  EXPECT_EQ(tight.device, Device::CPU);
  const TextPlacement small =
      place_text_encoder(TextDevice::Auto, Device::CUDA, weights, gib_bytes(7.8));
  EXPECT_EQ(small.device, Device::CPU);
  EXPECT_NE(small.reason.find("text encoder on cpu (needs 11.6 GiB"), std::string::npos)
      << small.reason;
  EXPECT_NE(small.reason.find("7.8 GiB free"), std::string::npos) << small.reason;
  EXPECT_EQ(
      place_text_encoder(TextDevice::Auto, Device::CUDA, weights, weights + kTextEncoderMargin)
          .device,
      Device::CUDA);
}

TEST(TextDevice, AFlagGivenWins) {
  const size_t weights = gib_bytes(10.6);
  const TextPlacement cpu =
      place_text_encoder(TextDevice::CPU, Device::CUDA, weights, gib_bytes(70));
  EXPECT_EQ(cpu.device, Device::CPU);
  EXPECT_NE(cpu.reason.find("--text-device cpu"), std::string::npos) << cpu.reason;
  const TextPlacement cuda =
      place_text_encoder(TextDevice::CUDA, Device::CUDA, weights, gib_bytes(4));
  EXPECT_EQ(cuda.device, Device::CUDA);
  EXPECT_NE(cuda.reason.find("--text-device cuda"), std::string::npos) << cuda.reason;
}

TEST(TextDevice, OnTheCpuItsF32WeightsMustFitInHostMemory) {
  // A 12 GB card: UMT5-XXL goes to the CPU, where its f32 weights take 21.2 GiB.
  const size_t f32 = static_cast<size_t>(text::Umt5Config::xxl().parameter_count()) * 4;
  const TextPlacement cpu =
      place_text_encoder(TextDevice::Auto, Device::CUDA, gib_bytes(10.6), gib_bytes(10.8));
  ASSERT_EQ(cpu.device, Device::CPU);
  EXPECT_NO_THROW(check_text_host_memory(cpu, f32, gib_bytes(60)));
  EXPECT_NO_THROW(check_text_host_memory(cpu, f32, 0));  // not known: not checked
  try {
    check_text_host_memory(cpu, f32, gib_bytes(15));
    ADD_FAILURE() << "accepted";
  } catch (const Error& e) {
    for (const char* needle : {"not enough host memory for the text encoder", "22.2 GiB",
                               "15.0 GiB available", "10.8 GiB free", "--text-device cuda"})
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << needle << "\n"
                                                                       << e.what();
  }
  // On the GPU nothing is asked of the host.
  const TextPlacement gpu =
      place_text_encoder(TextDevice::Auto, Device::CUDA, gib_bytes(10.6), gib_bytes(21.9));
  EXPECT_NO_THROW(check_text_host_memory(gpu, f32, gib_bytes(1)));
}

TEST(TextDevice, ACpuJobKeepsItOnTheCpu) {
  EXPECT_EQ(place_text_encoder(TextDevice::Auto, Device::CPU, gib_bytes(10.6), 0).device,
            Device::CPU);
  EXPECT_EQ(place_text_encoder(TextDevice::CPU, Device::CPU, gib_bytes(10.6), 0).device,
            Device::CPU);
  try {
    place_text_encoder(TextDevice::CUDA, Device::CPU, gib_bytes(10.6), 0);
    ADD_FAILURE() << "accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("--device cuda"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace freeswim::pipeline
