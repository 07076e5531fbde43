// Where a job runs, and the settings that follow from it. `--device auto` is resolved first
// (resolve_device), then every default that depends on the device is decided from the resolved
// device in one function (device_settings). The CLI's `generate` / `upscale` and
// bench/generate/bench_generate both call these two, so the benchmark times the path a user's
// default run takes. Both functions are pure (the GPU is seen only through the probe passed in),
// so tests run them without a GPU.
#pragma once

#include <functional>
#include <optional>
#include <string>

#include "core/tensor.h"
#include "freeswim/attention_cache.h"
#include "models/wan_vae.h"
#include "ops/ops.h"
#include "pipeline/models.h"

namespace freeswim::pipeline {

// --device as given.
enum class DeviceRequest : uint8_t { Auto, CPU, CUDA };
// "auto", "cpu" or "cuda"; anything else is an error naming --device.
DeviceRequest parse_device_request(const std::string& value);

// What `--device auto` needs to know of the machine's CUDA device 0 (the CLI and the benchmark
// fill it from ops::cuda::cuda_device_info()).
struct CudaProbe {
  std::string name;         // "NVIDIA H200"; empty when there is no usable CUDA GPU
  std::string unsupported;  // why this build's kernels cannot run on it; empty when they can
};

struct ResolvedDevice {
  Device device = Device::CPU;
  // For the log: "cuda (NVIDIA H200)", "cpu (no CUDA GPU found)", "cpu (--device cpu)".
  std::string reason;
};

// Auto: CUDA when this binary has the CUDA backend (`built_with_cuda`) and `probe` finds a GPU
// it has kernels for, else the CPU. `probe` is called for Auto only (it initialises the CUDA
// runtime) and may be empty when !built_with_cuda. CUDA asked for in a build without it is an
// error naming --device; on a machine without a usable GPU it fails at first use instead (the
// CUDA backend's message names --device cpu).
ResolvedDevice resolve_device(DeviceRequest request, bool built_with_cuda,
                              const std::function<CudaProbe()>& probe);

// The VAE tile sizes in pixels when --vae-tile is not given. A GPU has the memory for larger
// tiles, which recompute less of the overlaps; on cuda the tile is chosen at each VAE pass from
// the free memory (vae_tiling_for), up to kVaeTileCuda. The CPU's matches the reference
// (diffusers: 256-pixel tiles).
inline constexpr int kVaeTileCuda = 768;
inline constexpr int kVaeTileCpu = 256;
// The tiles vae_tiling_for tries, largest first.
inline constexpr int kVaeTileChoices[] = {768, 640, 512, 384, 256};
// VAE working memory per pixel of a tile on the GPU (activations of the widest decoder stages
// in f32, with cuDNN's workspace): 8.1 GB was measured for the decode of 480 x 512-pixel tiles.
inline constexpr double kVaeBytesPerTilePixel = 33000.0;
// Kept free beside the VAE's working memory (the allocator's rounding, the frames, cuDNN).
inline constexpr size_t kVaeMemoryMargin = size_t{1} << 30;

// The device-dependent flags as the user gave them; an empty optional is a flag not given.
struct DeviceFlags {
  std::optional<int> vae_tile;                      // --vae-tile
  bool vae_tiling = true;                           // false: --no-vae-tiling
  std::optional<ops::ConvPrecision> vae_precision;  // --vae-precision
  std::optional<Offload> offload;                   // --offload (on) / --no-offload (off)
  std::optional<CachePlacement> cache_memory;       // --cache-memory
  std::optional<int> threads;                       // --threads
};

// Every setting of a job that depends on the device it runs on.
struct DeviceSettings {
  Device device = Device::CPU;
  models::VaeTiling tiling;
  // cuda without --vae-tile: tiling.tile is the largest tile, the one used at each pass is
  // chosen from the free memory then (vae_tiling_for).
  bool vae_tile_by_memory = false;
  ops::ConvPrecision vae_precision = ops::ConvPrecision::FP32;
  Offload offload = Offload::off;
  CachePlacement cache_memory = CachePlacement::Auto;
  int threads = 0;  // CPU threads; 0: every core

  // One line for the log: "VAE tile 768 px (overlap 64), VAE tf32, DiT offload automatic,
  // cross-attention cache auto, every CPU core".
  std::string describe() const;
};

// The settings for a resolved device: each flag given wins (after its value is checked; an error
// names the flag), each one not given takes the device's default:
//   VAE tile       cuda: by free memory at each pass, up to kVaeTileCuda (vae_tiling_for); cpu
//                  kVaeTileCpu; overlap a quarter of the tile up to the reference's 64 pixels,
//                  in whole latent cells
//   VAE precision  cuda TF32 (PyTorch's default, so what the reference computes); cpu FP32, the
//                  only precision the CPU backend has (a value given is accepted and has no
//                  effect there)
//   DiT offload    cuda automatic (streamed from host memory only when the CLI's memory plan
//                  finds that only the streamed plan fits (memory_plan.h), or when loading onto
//                  the GPU runs out of memory); cpu off (the weights are in host memory already;
//                  --offload is an error naming --device cuda)
//   cache memory   auto on both (decided at the first guide step from the free device memory; on
//                  the CPU every placement is the same memory)
//   threads        every core on both (the GPU run uses them for upsampling and host work)
DeviceSettings device_settings(Device device, const DeviceFlags& given);

// The overlap for a tile: a quarter of it up to the reference's 64-pixel blend (diffusers: 256
// tiles, stride 192), in whole latent cells.
int vae_overlap_for(int tile);

// The pixels of a tile of the VAE's plan (models::plan_tiles, in 8-pixel latent cells: equal
// tiles per axis) for a height x width frame, and the working memory estimated for it.
std::pair<int, int> vae_tile_pixels(const models::VaeTiling& tiling, int height, int width);
size_t vae_working_bytes(const models::VaeTiling& tiling, int height, int width);

// The tiling of one VAE pass over height x width frames: the settings' own unless
// vae_tile_by_memory, else the largest of kVaeTileChoices whose working memory and
// kVaeMemoryMargin fit in `free_bytes` (the smallest when none does; the out-of-memory error then
// names --vae-tile). `why` (optional) gets one line for the log.
models::VaeTiling vae_tiling_for(const DeviceSettings& s, int height, int width, size_t free_bytes,
                                 std::string* why = nullptr);

// Parses --vae-precision ("tf32" or "fp32"); the error names the flag.
ops::ConvPrecision parse_vae_precision(const std::string& value);

}  // namespace freeswim::pipeline
