// The device-dependent defaults of `generate` / `upscale` (pipeline/device_settings.h), decided
// from a resolved device: the documented values (README, --help), `--device auto` resolved to a
// GPU getting the GPU's, and every flag given winning. Pure functions: no GPU needed (a probe
// stands in for the machine).
#include "pipeline/device_settings.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "core/error.h"
#include "pipeline/generate.h"

namespace freeswim::pipeline {
namespace {

CudaProbe hopper() {
  return {"NVIDIA H100 80GB HBM3", ""};
}

TEST(DeviceSettings, DocumentedVaeTileForEachDevice) {
  // The values the README and --help give: 768 pixels on a GPU, 256 on the CPU.
  EXPECT_EQ(kVaeTileCuda, 768);
  EXPECT_EQ(kVaeTileCpu, 256);
  const DeviceSettings gpu = device_settings(Device::CUDA, {});
  EXPECT_TRUE(gpu.tiling.enabled);
  EXPECT_EQ(gpu.tiling.tile, 768);
  EXPECT_EQ(gpu.tiling.overlap, 64);
  const DeviceSettings cpu = device_settings(Device::CPU, {});
  EXPECT_TRUE(cpu.tiling.enabled);
  EXPECT_EQ(cpu.tiling.tile, 256);
  EXPECT_EQ(cpu.tiling.overlap, 64);  // the reference's blend (diffusers: tile 256, stride 192)
}

TEST(DeviceSettings, OtherDefaultsForEachDevice) {
  const DeviceSettings gpu = device_settings(Device::CUDA, {});
  EXPECT_EQ(gpu.device, Device::CUDA);
  EXPECT_EQ(gpu.vae_precision, ops::ConvPrecision::TF32);
  EXPECT_EQ(gpu.offload, Offload::automatic);
  EXPECT_EQ(gpu.cache_memory, CachePlacement::Auto);
  EXPECT_EQ(gpu.threads, 0);
  const DeviceSettings cpu = device_settings(Device::CPU, {});
  EXPECT_EQ(cpu.device, Device::CPU);
  EXPECT_EQ(cpu.vae_precision, ops::ConvPrecision::FP32);
  EXPECT_EQ(cpu.offload, Offload::off);
  EXPECT_EQ(cpu.cache_memory, CachePlacement::Auto);
  EXPECT_EQ(cpu.threads, 0);
}

TEST(DeviceSettings, AutoResolvedToCudaGetsTheCudaDefaults) {
  int probes = 0;
  const ResolvedDevice d = resolve_device(DeviceRequest::Auto, true, [&] {
    ++probes;
    return hopper();
  });
  EXPECT_EQ(probes, 1);
  ASSERT_EQ(d.device, Device::CUDA);
  EXPECT_NE(d.reason.find("NVIDIA H100"), std::string::npos) << d.reason;
  const DeviceSettings s = device_settings(d.device, {});
  EXPECT_EQ(s.tiling.tile, 768);
  EXPECT_EQ(s.vae_precision, ops::ConvPrecision::TF32);
  EXPECT_EQ(s.offload, Offload::automatic);
}

TEST(DeviceSettings, AutoWithoutAUsableGpuGetsTheCpuDefaults) {
  // No GPU, a GPU without kernels for it, a build without CUDA (no probe at all).
  const ResolvedDevice none = resolve_device(DeviceRequest::Auto, true, [] { return CudaProbe{}; });
  EXPECT_EQ(none.device, Device::CPU);
  EXPECT_NE(none.reason.find("no CUDA GPU"), std::string::npos) << none.reason;
  const ResolvedDevice old = resolve_device(DeviceRequest::Auto, true, [] {
    return CudaProbe{"NVIDIA A100", "NVIDIA A100 has compute capability 8.0"};
  });
  EXPECT_EQ(old.device, Device::CPU);
  EXPECT_NE(old.reason.find("compute capability 8.0"), std::string::npos) << old.reason;
  const ResolvedDevice built = resolve_device(DeviceRequest::Auto, false, nullptr);
  EXPECT_EQ(built.device, Device::CPU);
  EXPECT_NE(built.reason.find("without CUDA"), std::string::npos) << built.reason;
  EXPECT_EQ(device_settings(old.device, {}).tiling.tile, 256);
}

TEST(DeviceSettings, ExplicitDevicesAreNotProbed) {
  auto never = []() -> CudaProbe {
    ADD_FAILURE() << "probed for an explicit --device";
    return {};
  };
  EXPECT_EQ(resolve_device(DeviceRequest::CPU, true, never).device, Device::CPU);
  EXPECT_EQ(resolve_device(DeviceRequest::CUDA, true, never).device, Device::CUDA);
  // CUDA in a build without it: an error naming the flag and the way out.
  try {
    resolve_device(DeviceRequest::CUDA, false, nullptr);
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("--device cuda"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("--device cpu"), std::string::npos) << e.what();
  }
}

TEST(DeviceSettings, ParseDeviceRequest) {
  EXPECT_EQ(parse_device_request("auto"), DeviceRequest::Auto);
  EXPECT_EQ(parse_device_request("cpu"), DeviceRequest::CPU);
  EXPECT_EQ(parse_device_request("cuda"), DeviceRequest::CUDA);
  for (const char* bad : {"", "gpu", "CUDA", "cuda:0", "tpu"}) {
    SCOPED_TRACE(bad);
    try {
      parse_device_request(bad);
      FAIL() << "accepted";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("--device"), std::string::npos) << e.what();
    }
  }
}

TEST(DeviceSettings, ExplicitValuesWin) {
  for (Device d : {Device::CUDA, Device::CPU}) {
    SCOPED_TRACE(device_name(d));
    DeviceFlags given;
    given.vae_tile = 512;
    given.vae_precision = d == Device::CUDA ? ops::ConvPrecision::FP32 : ops::ConvPrecision::TF32;
    given.offload = Offload::off;
    given.cache_memory = CachePlacement::Host;
    given.threads = 3;
    const DeviceSettings s = device_settings(d, given);
    EXPECT_EQ(s.tiling.tile, 512);
    EXPECT_EQ(s.tiling.overlap, 64);
    EXPECT_EQ(s.vae_precision, *given.vae_precision);
    EXPECT_EQ(s.offload, Offload::off);
    EXPECT_EQ(s.cache_memory, CachePlacement::Host);
    EXPECT_EQ(s.threads, 3);
  }
  // A small tile keeps a quarter of itself as overlap, in whole latent cells.
  DeviceFlags small;
  small.vae_tile = 128;
  EXPECT_EQ(device_settings(Device::CUDA, small).tiling.overlap, 32);
  // --no-vae-tiling on both.
  DeviceFlags untiled;
  untiled.vae_tiling = false;
  EXPECT_FALSE(device_settings(Device::CUDA, untiled).tiling.enabled);
  EXPECT_FALSE(device_settings(Device::CPU, untiled).tiling.enabled);
  // --offload on a GPU; --threads 0 given is every core.
  DeviceFlags on;
  on.offload = Offload::on;
  on.threads = 0;
  EXPECT_EQ(device_settings(Device::CUDA, on).offload, Offload::on);
  EXPECT_EQ(device_settings(Device::CUDA, on).threads, 0);
}

void expect_error_naming(Device d, const DeviceFlags& given,
                         const std::vector<std::string>& words) {
  try {
    device_settings(d, given);
    ADD_FAILURE() << "accepted";
  } catch (const Error& e) {
    for (const std::string& w : words)
      EXPECT_NE(std::string(e.what()).find(w), std::string::npos) << w << " in: " << e.what();
  }
}

TEST(DeviceSettings, BadValuesNameTheFlagOnEveryDevice) {
  for (Device d : {Device::CUDA, Device::CPU}) {
    SCOPED_TRACE(device_name(d));
    for (int tile : {0, 10, 60, 100, -768}) {
      DeviceFlags g;
      g.vae_tile = tile;
      expect_error_naming(d, g, {"--vae-tile", std::to_string(tile)});
    }
    DeviceFlags t;
    t.threads = -1;
    expect_error_naming(d, t, {"--threads"});
  }
  // The weights cannot be streamed to a CPU: --offload there names the device it needs.
  DeviceFlags on;
  on.offload = Offload::on;
  expect_error_naming(Device::CPU, on, {"--offload", "--device cuda"});
}

TEST(DeviceSettings, ParseVaePrecision) {
  EXPECT_EQ(parse_vae_precision("tf32"), ops::ConvPrecision::TF32);
  EXPECT_EQ(parse_vae_precision("fp32"), ops::ConvPrecision::FP32);
  for (const char* bad : {"", "TF32", "fp16", "bf16"}) {
    SCOPED_TRACE(bad);
    EXPECT_THROW(parse_vae_precision(bad), Error);
  }
}

TEST(DeviceSettings, DescribeSaysWhatWasDecided) {
  const std::string gpu = device_settings(Device::CUDA, {}).describe();
  EXPECT_NE(gpu.find("VAE tile by free memory (up to 768 px)"), std::string::npos) << gpu;
  EXPECT_NE(gpu.find("VAE tf32"), std::string::npos) << gpu;
  EXPECT_NE(gpu.find("offload automatic"), std::string::npos) << gpu;
  EXPECT_NE(gpu.find("cache auto"), std::string::npos) << gpu;
  const std::string cpu = device_settings(Device::CPU, {}).describe();
  EXPECT_NE(cpu.find("VAE tile 256 px"), std::string::npos) << cpu;
  EXPECT_NE(cpu.find("VAE fp32"), std::string::npos) << cpu;
}

constexpr size_t kGiB = size_t{1} << 30;

// The VAE's tile plan at 1920x1088: 768-pixel tiles are 2 x 3 tiles of 576 x 688 pixels (72 x 86
// latent cells, docs/cuda_backend.md), ~13 GB of working memory; 512-pixel ones 3 x 5 of 408 x 440.
TEST(VaeTileByMemory, TilePlanAndWorkingMemoryAt1080p) {
  models::VaeTiling t{true, 768, 64};
  EXPECT_EQ(vae_tile_pixels(t, 1088, 1920), std::make_pair(576, 688));
  EXPECT_NEAR(vae_working_bytes(t, 1088, 1920) / 1e9, 13.08, 0.01);
  t = {true, 512, 64};
  EXPECT_EQ(vae_tile_pixels(t, 1088, 1920), std::make_pair(408, 440));
  // 832x480: 1 x 2 tiles of 60 x 56 cells (the height fits one tile); untiled: the whole frame.
  EXPECT_EQ(vae_tile_pixels({true, 768, 64}, 480, 832), std::make_pair(480, 448));
  EXPECT_EQ(vae_tile_pixels({false, 768, 64}, 1088, 1920), std::make_pair(1088, 1920));
}

// On cuda without --vae-tile the tile follows the free memory: 768 where it fits (a 24 GB card
// after the DiT: ~19 GiB free), smaller on a 16 GB card, the smallest when nothing fits.
TEST(VaeTileByMemory, LargestTileThatFits) {
  const DeviceSettings gpu = device_settings(Device::CUDA, {});
  ASSERT_TRUE(gpu.vae_tile_by_memory);
  std::string why;
  models::VaeTiling t = vae_tiling_for(gpu, 1088, 1920, 19 * kGiB, &why);
  EXPECT_EQ(t.tile, 768);
  EXPECT_EQ(t.overlap, 64);
  EXPECT_NE(why.find("VAE tile 768 px for 1920x1088"), std::string::npos) << why;
  EXPECT_NE(why.find("--vae-tile"), std::string::npos) << why;
  t = vae_tiling_for(gpu, 1088, 1920, 11 * kGiB);
  EXPECT_EQ(t.tile, 640);
  EXPECT_LE(vae_working_bytes(t, 1088, 1920) + kVaeMemoryMargin, 11 * kGiB);
  t = vae_tiling_for(gpu, 1088, 1920, 5 * kGiB);
  EXPECT_EQ(t.tile, 384);
  t = vae_tiling_for(gpu, 1088, 1920, kGiB / 2);
  EXPECT_EQ(t.tile, 256);  // nothing fits: the smallest, and the OOM message names --vae-tile
  // The 832x480 base video: 768 on 19 GiB.
  EXPECT_EQ(vae_tiling_for(gpu, 480, 832, 19 * kGiB).tile, 768);
}

// A tile given, the CPU, or --no-vae-tiling: the settings' own tiling whatever the memory.
TEST(VaeTileByMemory, GivenTileCpuAndUntiledAreKept) {
  DeviceFlags given;
  given.vae_tile = 512;
  const DeviceSettings fixed = device_settings(Device::CUDA, given);
  EXPECT_FALSE(fixed.vae_tile_by_memory);
  EXPECT_EQ(vae_tiling_for(fixed, 1088, 1920, 1 * kGiB).tile, 512);
  const DeviceSettings cpu = device_settings(Device::CPU, {});
  EXPECT_FALSE(cpu.vae_tile_by_memory);
  EXPECT_EQ(vae_tiling_for(cpu, 1088, 1920, 100 * kGiB).tile, 256);
  DeviceFlags untiled;
  untiled.vae_tiling = false;
  const DeviceSettings whole = device_settings(Device::CUDA, untiled);
  EXPECT_FALSE(whole.vae_tile_by_memory);
  EXPECT_FALSE(vae_tiling_for(whole, 1088, 1920, kGiB).enabled);
}

// A job's options start with the CPU's settings (what a caller that sets none runs with).
TEST(DeviceSettings, JobOptionsStartWithTheCpuSettings) {
  const JobOptions o;
  EXPECT_EQ(o.device.device, Device::CPU);
  EXPECT_EQ(o.device.tiling.tile, kVaeTileCpu);
}

}  // namespace
}  // namespace freeswim::pipeline
