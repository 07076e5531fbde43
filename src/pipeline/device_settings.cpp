#include "pipeline/device_settings.h"

#include <algorithm>

#include "core/error.h"

namespace freeswim::pipeline {

DeviceRequest parse_device_request(const std::string& value) {
  if (value == "auto") return DeviceRequest::Auto;
  if (value == "cpu") return DeviceRequest::CPU;
  if (value == "cuda") return DeviceRequest::CUDA;
  fail("--device must be auto, cpu or cuda, got '{}'", value);
}

ResolvedDevice resolve_device(DeviceRequest request, bool built_with_cuda,
                              const std::function<CudaProbe()>& probe) {
  switch (request) {
    case DeviceRequest::CPU:
      return {Device::CPU, "cpu (--device cpu)"};
    case DeviceRequest::CUDA:
      FS_CHECK(built_with_cuda,
               "--device cuda: this freeswim was built without CUDA (configure with "
               "-DFREESWIM_CUDA=ON and the CUDA toolkit), or use --device cpu");
      return {Device::CUDA, "cuda (--device cuda)"};
    case DeviceRequest::Auto:
      break;
  }
  if (!built_with_cuda) return {Device::CPU, "cpu (this freeswim was built without CUDA)"};
  FS_CHECK(probe != nullptr, "resolve_device: a CUDA build needs a probe for --device auto");
  const CudaProbe gpu = probe();
  if (gpu.name.empty()) return {Device::CPU, "cpu (no CUDA GPU found)"};
  if (!gpu.unsupported.empty()) return {Device::CPU, "cpu (" + gpu.unsupported + ")"};
  return {Device::CUDA, "cuda (" + gpu.name + ")"};
}

ops::ConvPrecision parse_vae_precision(const std::string& value) {
  if (value == "tf32") return ops::ConvPrecision::TF32;
  if (value == "fp32") return ops::ConvPrecision::FP32;
  fail("--vae-precision must be tf32 or fp32, got '{}'", value);
}

DeviceSettings device_settings(Device device, const DeviceFlags& given) {
  const bool cuda = device == Device::CUDA;
  DeviceSettings s;
  s.device = device;

  // The values given are checked whatever the device, so a bad one fails the same way on both.
  if (given.vae_tile)
    FS_CHECK(*given.vae_tile >= 64 && *given.vae_tile % 8 == 0,
             "--vae-tile must be a multiple of 8 and >= 64, got {}", *given.vae_tile);
  if (given.threads)
    FS_CHECK(*given.threads >= 0, "--threads must be >= 0, got {}", *given.threads);

  const int tile = given.vae_tile.value_or(cuda ? kVaeTileCuda : kVaeTileCpu);
  s.tiling.enabled = given.vae_tiling;
  s.tiling.tile = tile;
  s.tiling.overlap = vae_overlap_for(tile);
  s.vae_tile_by_memory = cuda && given.vae_tiling && !given.vae_tile;

  s.vae_precision =
      given.vae_precision.value_or(cuda ? ops::ConvPrecision::TF32 : ops::ConvPrecision::FP32);

  if (cuda) {
    s.offload = given.offload.value_or(Offload::automatic);
  } else {
    FS_CHECK(given.offload != Offload::on,
             "--offload streams the DiT's blocks from host memory to the GPU: it needs --device "
             "cuda (on the cpu the weights are in host memory already)");
    s.offload = Offload::off;
  }

  s.cache_memory = given.cache_memory.value_or(CachePlacement::Auto);
  s.threads = given.threads.value_or(0);
  return s;
}

int vae_overlap_for(int tile) {
  return std::min(tile / 4 / 8 * 8, 64);
}

std::pair<int, int> vae_tile_pixels(const models::VaeTiling& tiling, int height, int width) {
  if (!tiling.enabled) return {height, width};
  // The VAE's own plan, in 8-pixel latent cells.
  const auto axis = [&](int pixels) {
    const int64_t cells = (pixels + 7) / 8;
    return static_cast<int>(
        models::plan_tiles(cells, std::max(tiling.tile / 8, 1), tiling.overlap / 8)[0].size * 8);
  };
  return {axis(height), axis(width)};
}

size_t vae_working_bytes(const models::VaeTiling& tiling, int height, int width) {
  const auto [h, w] = vae_tile_pixels(tiling, height, width);
  return static_cast<size_t>(kVaeBytesPerTilePixel * h * w);
}

models::VaeTiling vae_tiling_for(const DeviceSettings& s, int height, int width, size_t free_bytes,
                                 std::string* why) {
  if (!s.vae_tile_by_memory) return s.tiling;
  models::VaeTiling t = s.tiling;
  for (const int tile : kVaeTileChoices) {
    if (tile > s.tiling.tile) continue;
    t.tile = tile;
    t.overlap = vae_overlap_for(tile);
    if (vae_working_bytes(t, height, width) + kVaeMemoryMargin <= free_bytes) break;
  }
  if (why) {
    const auto [h, w] = vae_tile_pixels(t, height, width);
    *why = fmt::format(
        "VAE tile {} px for {}x{} (tiles of {}x{} px, ~{:.1f} GiB working memory; {:.1f} GiB "
        "free; --vae-tile N sets it)",
        t.tile, width, height, w, h, vae_working_bytes(t, height, width) / 1073741824.0,
        free_bytes / 1073741824.0);
  }
  return t;
}

std::string DeviceSettings::describe() const {
  const char* offload_name = offload == Offload::on          ? "on"
                             : offload == Offload::automatic ? "automatic"
                                                             : "off";
  return fmt::format(
      "{}, VAE {}, DiT offload {}, cross-attention cache {}, {}",
      !tiling.enabled ? std::string("VAE untiled")
      : vae_tile_by_memory
          ? fmt::format("VAE tile by free memory (up to {} px)", tiling.tile)
          : fmt::format("VAE tile {} px (overlap {})", tiling.tile, tiling.overlap),
      vae_precision == ops::ConvPrecision::TF32 ? "tf32" : "fp32", offload_name,
      cache_placement_name(cache_memory),
      threads > 0 ? fmt::format("{} CPU threads", threads) : std::string("every CPU core"));
}

}  // namespace freeswim::pipeline
