// bench_generate [frames W H base_W base_H vae_tile stages vae_precision kernels]: the stages of
// `generate` for Wan2.1-1.3B at real sizes on the GPU with random weights (speed does not depend on
// weight values): base-stage CFG steps at the native size, VAE decode of the base video, bilinear
// upsampling, VAE encode at the target size, FreeSwim CFG steps (guide + uncond, reuse + uncond),
// VAE decode at the target size. Steps are timed two at a time and extrapolated to 50 base steps
// and 35 FreeSwim steps (strength 0.7, cache every 2), the reference's settings. Lines are printed
// as they finish.
//
// `stages` (default all) is `whole` (below) or a comma list of base, decode_base, upsample, encode,
// freeswim, decode,
// or `vae` for the four VAE / upsample stages alone: without base and freeswim the DiT is not
// built, and a stage whose input was not produced gets a synthetic one of the right size (random
// latents, a smooth frame pattern). The device and every setting that depends on it are the
// CLI's defaults: `--device auto` resolved by the same function (it must find the GPU), then
// pipeline::device_settings as `generate` calls it (VAE tile and precision, DiT offload,
// cross-attention cache placement, CPU threads); vae_tile (0: not given) and vae_precision (tf32
// or fp32; `default`: not given) override them as the CLI's flags do. The settings and the tile
// plan of each VAE stage are printed.
//
// `whole` runs the whole of `generate` instead, with nothing extrapolated: the pipeline's own
// loops (run_base_stage: 50 UniPC steps with CFG; run_freeswim_stage: the last 35 of 50 steps,
// cache every 2, the cache placed by --cache-memory auto's rule) and the calls run_generate
// makes between them (decode, trim, bilinear upsample, encode, trim, decode), timing each stage
// and printing every step as it finishes. Left out, and said so: the text encoder (random
// contexts stand in for UMT5's output; on the GPU it is a few seconds) and writing the mp4 (CPU).
// It ends with how many of the decoded values are not finite (0 expected).
//
// `kernels`: the attention kernels, as freeswim's --gpu-kernels (auto, the default, hopper or
// portable).
#include <cuda_runtime_api.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>

#include "core/device_memory.h"
#include "core/environment.h"
#include "core/error.h"
#include "core/rng.h"
#include "core/threads.h"
#include "models/wan_dit.h"
#include "models/wan_vae.h"
#include "ops/cuda/cuda_backend.h"
#include "pipeline/denoise.h"
#include "pipeline/device_settings.h"
#include "pipeline/frames.h"
#include "pipeline/generate.h"
#include "pipeline/upsample.h"
#include "sched/unipc.h"

using namespace freeswim;

namespace {

using Clock = std::chrono::steady_clock;

void sync() {
  const cudaError_t e = cudaDeviceSynchronize();
  FS_CHECK(e == cudaSuccess, "cuda: {}", cudaGetErrorString(e));
}

double since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

double gib(size_t b) {
  return static_cast<double>(b) / (1024.0 * 1024.0 * 1024.0);
}

// With FREESWIM_PROFILE=1 each stage's row is followed by its per-op GPU times (since the
// previous row), which slows the stage a little.
void row(const char* what, double seconds, const char* note = "") {
  std::printf("| %s | %.2f | %.2f | %s |\n", what, seconds,
              gib(ops::cuda::memory_stats().peak_in_use), note);
  if (ops::cuda::op_profile_enabled()) {
    std::printf("\n%s, per op:\n%s\n", what, ops::cuda::op_profile_report().c_str());
    ops::cuda::reset_op_profile();
  }
  std::fflush(stdout);
}

bool has_stage(const std::string& list, const std::string& name) {
  std::string padded = "," + list + ",";
  return list == "all" || padded.find("," + name + ",") != std::string::npos ||
         (padded.find(",vae,") != std::string::npos &&
          (name == "decode_base" || name == "upsample" || name == "encode" || name == "decode"));
}

// "3x5 tiles of 51x55 latent cells" for a latent grid h x w.
std::string tile_note(int64_t h, int64_t w, const models::VaeTiling& t) {
  const auto ys = models::plan_tiles(h, t.tile / 8, t.overlap / 8);
  const auto xs = models::plan_tiles(w, t.tile / 8, t.overlap / 8);
  const double work = static_cast<double>(ys.size() * ys[0].size * xs.size() * xs[0].size) /
                      static_cast<double>(h * w);
  char buf[160];
  std::snprintf(buf, sizeof buf, "%zux%zu tiles of %lldx%lld latent cells, %.2fx the frame's work",
                ys.size(), xs.size(), static_cast<long long>(ys[0].size),
                static_cast<long long>(xs[0].size), work);
  return buf;
}

// Smooth frames [F, H, W, 3] in [0, 1] (a stand-in for upsampled video; VAE speed does not
// depend on the values).
Tensor pattern_frames(int64_t F, int64_t H, int64_t W) {
  Tensor t = Tensor::empty({F, H, W, 3});
  float* d = t.data<float>();
  parallel_for(F, 1, [&](int64_t f0, int64_t f1) {
    for (int64_t f = f0; f < f1; ++f)
      for (int64_t i = 0; i < H * W * 3; ++i)
        d[f * H * W * 3 + i] =
            0.5f + 0.4f * std::sin(0.001f * static_cast<float>(i) + 0.1f * static_cast<float>(f));
  });
  return t;
}

// The 1.3B DiT with random weights, its blocks placed as `generate` places a loaded DiT's:
// settings.offload through the pipeline's own policy (load_dit_with_offload).
std::unique_ptr<models::WanDit> build_dit(const models::WanDitConfig& cfg,
                                          const pipeline::DeviceSettings& settings) {
  return pipeline::load_dit_with_offload(
      settings.offload,
      [&](bool offload) {
        auto dit = models::WanDit::random(cfg, Device::CUDA, 1);
        if (offload) dit->enable_offload();
        return dit;
      },
      [](const std::string& why) {
        std::printf("DiT blocks moved to pinned host memory (automatic offload): %s\n",
                    why.c_str());
      });
}

// The whole generate (see the top of this file); sizes as in run().
int run_whole(int frames, int W, int H, int bw, int bh, const pipeline::DeviceSettings& settings) {
  // Each VAE pass tiled as the CLI tiles it (by free memory unless a tile was given).
  const auto tiling = [&](int height, int width) {
    std::string why;
    const models::VaeTiling t = pipeline::vae_tiling_for(
        settings, height, width, device_memory(Device::CUDA).free_bytes(), &why);
    if (!why.empty()) std::printf("%s\n", why.c_str());
    return t;
  };
  const auto start = Clock::now();
  auto t0 = start;
  const models::WanDitConfig cfg = models::WanDitConfig::preset("1.3B");
  const auto dit = build_dit(cfg, settings);
  const auto vae = models::WanVae::random(models::WanVaeConfig::wan21(), Device::CUDA, 2);
  vae->set_precision(settings.vae_precision);
  sync();
  const double build = since(t0);
  std::printf(
      "whole generate, Wan2.1-1.3B shapes (random weights) on the GPU: %d frames, %dx%d "
      "from %dx%d; models built in %.1f s (not counted)\n",
      frames, W, H, bw, bh, build);
  std::fflush(stdout);
  const int T = (frames - 1) / 4 + 1;
  pipeline::GuidedText text{rng::normal_tensor({512, cfg.text_dim}, 3),
                            rng::normal_tensor({512, cfg.text_dim}, 4), 5.0};
  pipeline::StageHooks hooks;
  hooks.progress = [](const std::string& stage, int done, int total, double seconds) {
    std::printf("  %s step %d/%d: %.2f s\n", stage.c_str(), done, total, seconds);
    std::fflush(stdout);
  };
  hooks.info = [](const std::string& line) {
    std::printf("  %s\n", line.c_str());
    std::fflush(stdout);
  };
  std::printf("| stage | seconds | peak tensors (GiB) | note |\n| --- | --- | --- | --- |\n");
  double total = 0;
  auto stage_done = [&](const char* what, const char* note = "") {
    sync();
    const double s = since(t0);
    total += s;
    row(what, s, note);
    ops::cuda::reset_peak_memory();
    t0 = Clock::now();
  };
  t0 = Clock::now();
  pipeline::JobOptions defaults;  // the CLI's defaults: 50 + 50 steps, strength 0.7, ...
  defaults.device = settings;
  Tensor base_frames;
  {
    sched::UniPCScheduler sched(sched::UniPCConfig::wan(3.0));
    const Tensor noise = rng::normal_tensor({16, T, bh / 8, bw / 8}, defaults.seed, 0);
    const Tensor lat =
        pipeline::run_base_stage(*dit, sched, defaults.base_steps, noise, text, hooks);
    stage_done("base stage, 50 CFG steps");
    base_frames = pipeline::decode_latents(*vae, lat, tiling(bh, bw));
    trim_device_memory();
    stage_done("VAE decode, base size");
  }
  Tensor up = pipeline::resize_bilinear(base_frames, H, W, pipeline::FrameLayout::FHWC);
  base_frames = {};
  stage_done("bilinear upsample (CPU threads)");
  const Tensor clean = pipeline::encode_frames(*vae, up, tiling(H, W));
  up = {};
  trim_device_memory();
  stage_done("VAE encode, target size");
  pipeline::FreeSwimStageOptions fo;
  fo.steps = defaults.steps;
  fo.strength = defaults.strength;
  fo.cache_every = defaults.cache_every;
  fo.cache_memory = defaults.device.cache_memory;
  fo.attention = pipeline::freeswim_params(cfg, bw, bh, defaults);
  sched::UniPCScheduler sched(sched::UniPCConfig::wan(defaults.shift));
  const Tensor noise = rng::normal_tensor(clean.shape(), defaults.seed, 1ull << 40);
  const Tensor lat = pipeline::run_freeswim_stage(*dit, sched, clean, noise, text, fo, hooks);
  stage_done("FreeSwim stage, 35 CFG steps (cache every 2)");
  const Tensor video = pipeline::decode_latents(*vae, lat, tiling(H, W));
  stage_done("VAE decode, target size");
  const Tensor host = video.to(Device::CPU).to(DType::F32);
  int64_t not_finite = 0;
  for (int64_t i = 0; i < host.numel(); ++i) not_finite += !std::isfinite(host.data<float>()[i]);
  std::printf("decoded video %s: %lld values not finite\n", host.describe().c_str(),
              static_cast<long long>(not_finite));
  std::printf(
      "\nwhole generate: %.1f s (%.2f min) from the first base step to the decoded "
      "frames; not included: text encoding, writing the mp4, building the models\n",
      total, total / 60);
  std::printf("allocator high-water mark: %.2f GiB\n",
              gib(ops::cuda::memory_stats().peak_reserved));
  return 0;
}

int run(int argc, char** argv) {
  const Environment env = read_environment();  // FREESWIM_GPU_MEMORY_LIMIT, FREESWIM_PROFILE
  ops::cuda::register_cuda_backend({env.gpu_memory_limit, env.profile,
                                    ops::cuda::parse_gpu_kernels(argc > 9 ? argv[9] : "auto")});
  const int frames = argc > 1 ? std::atoi(argv[1]) : 81;
  const int W = argc > 2 ? std::atoi(argv[2]) : 1920, H = argc > 3 ? std::atoi(argv[3]) : 1088;
  const int bw = argc > 4 ? std::atoi(argv[4]) : 832, bh = argc > 5 ? std::atoi(argv[5]) : 480;
  const std::string stages = argc > 7 ? argv[7] : "all";
  FS_CHECK(frames % 4 == 1 && W % 16 == 0 && H % 16 == 0 && bw % 16 == 0 && bh % 16 == 0,
           "bad sizes");
  // The device and its settings exactly as `freeswim generate` with no flags decides them, with
  // the two arguments above as its --vae-tile and --vae-precision.
  const pipeline::ResolvedDevice where =
      pipeline::resolve_device(pipeline::DeviceRequest::Auto, true, [] {
        const ops::cuda::CudaDeviceInfo gpu = ops::cuda::cuda_device_info();
        return pipeline::CudaProbe{gpu.name, gpu.unsupported};
      });
  FS_CHECK(where.device == Device::CUDA,
           "bench_generate times the GPU path, but --device auto resolves to {}", where.reason);
  pipeline::DeviceFlags given;
  if (argc > 6 && std::atoi(argv[6]) != 0) given.vae_tile = std::atoi(argv[6]);
  if (argc > 8 && std::string(argv[8]) != "default")
    given.vae_precision = pipeline::parse_vae_precision(argv[8]);
  const pipeline::DeviceSettings settings = pipeline::device_settings(where.device, given);
  set_max_threads(settings.threads);
  std::printf("device: %s, attention on the %s\ndevice settings: %s\n", where.reason.c_str(),
              ops::cuda::cuda_device_info().kernels.c_str(), settings.describe().c_str());
  const models::VaeTiling& tiling = settings.tiling;
  const char* precision = settings.vae_precision == ops::ConvPrecision::FP32 ? "fp32" : "tf32";
  if (stages == "whole") return run_whole(frames, W, H, bw, bh, settings);
  // A mistyped stage would silently time nothing: every name must be known.
  for (size_t b = 0; b <= stages.size();) {
    const size_t e = std::min(stages.find(',', b), stages.size());
    const std::string name = stages.substr(b, e - b);
    FS_CHECK(name == "all" || name == "vae" || name == "base" || name == "decode_base" ||
                 name == "upsample" || name == "encode" || name == "freeswim" || name == "decode",
             "unknown stage '{}' (all, vae, base, decode_base, upsample, encode, freeswim, decode)",
             name);
    b = e + 1;
  }
  const bool dit_needed = has_stage(stages, "base") || has_stage(stages, "freeswim");
  const int T = (frames - 1) / 4 + 1;

  auto t0 = Clock::now();
  const models::WanDitConfig cfg = models::WanDitConfig::preset("1.3B");
  std::unique_ptr<models::WanDit> dit;
  if (dit_needed) dit = build_dit(cfg, settings);
  const auto vae = models::WanVae::random(models::WanVaeConfig::wan21(), Device::CUDA, 2);
  vae->set_precision(settings.vae_precision);
  sync();
  std::printf(
      "Wan2.1-1.3B (random weights%s) + Wan VAE on the GPU, built in %.1f s; %d frames, %dx%d "
      "from %dx%d, VAE tile %d overlap %d, VAE %s; stages %s\n",
      dit_needed ? "" : ", DiT not built", since(t0), frames, W, H, bw, bh, tiling.tile,
      tiling.overlap, precision, stages.c_str());
  std::printf("  base decode: %s\n  encode / decode at the target size: %s\n\n",
              tile_note(bh / 8, bw / 8, tiling).c_str(), tile_note(H / 8, W / 8, tiling).c_str());
  std::printf("| stage | seconds | peak tensors (GiB) | note |\n| --- | --- | --- | --- |\n");
  std::fflush(stdout);

  pipeline::GuidedText text{rng::normal_tensor({512, cfg.text_dim}, 3),
                            rng::normal_tensor({512, cfg.text_dim}, 4), 5.0};
  auto predict = [&](const Tensor& x, const Tensor& ctx, StepKind k, const FreeSwimParams* p,
                     CrossAttentionCache* c) {
    models::DitInput in{x, 900.f, ctx};
    return dit->forward(in, k, p, c).to(Device::CPU);
  };

  double base_step = 0, dec_base = 0, ups = 0, enc = 0, guide_step = 0, reuse_step = 0, dec = 0;
  const Tensor base = rng::normal_tensor({16, T, bh / 8, bw / 8}, 5);
  if (has_stage(stages, "base")) {
    // Two CFG steps (stock, cond + uncond), after a warm-up forward.
    predict(base, text.context, StepKind::Stock, nullptr, nullptr);
    sync();
    ops::cuda::reset_peak_memory();
    t0 = Clock::now();
    for (int i = 0; i < 2; ++i) {
      predict(base, text.context, StepKind::Stock, nullptr, nullptr);
      predict(base, text.negative, StepKind::Stock, nullptr, nullptr);
    }
    sync();
    base_step = since(t0) / 2;
    row("base stage, one CFG step", base_step, "x50 below");
  }

  Tensor base_frames;
  if (has_stage(stages, "decode_base")) {
    ops::cuda::reset_peak_memory();
    t0 = Clock::now();
    base_frames = pipeline::decode_latents(*vae, base, tiling);
    sync();
    dec_base = since(t0);
    row("VAE decode, base size", dec_base, "includes the first-call algorithm search");
  }

  Tensor up;
  if (has_stage(stages, "upsample")) {
    if (!base_frames.defined()) base_frames = pattern_frames(frames, bh, bw);
    t0 = Clock::now();
    up = pipeline::resize_bilinear(base_frames, H, W, pipeline::FrameLayout::FHWC);
    ups = since(t0);
    row("bilinear upsample (CPU threads)", ups);
  }
  base_frames = {};

  Tensor clean;
  if (has_stage(stages, "encode")) {
    if (!up.defined()) up = pattern_frames(frames, H, W);
    ops::cuda::reset_peak_memory();
    t0 = Clock::now();
    clean = pipeline::encode_frames(*vae, up, tiling);
    sync();
    enc = since(t0);
    row("VAE encode, target size", enc, "includes the first-call algorithm search");
  }
  up = {};
  if (!clean.defined()) clean = rng::normal_tensor({16, T, H / 8, W / 8}, 6);

  if (has_stage(stages, "freeswim")) {
    const FreeSwimParams fsp = freeswim_params_for_base_grid(bh / 16, bw / 16, cfg.head_dim);
    CrossAttentionCache cache(settings.cache_memory);
    ops::cuda::reset_peak_memory();
    t0 = Clock::now();
    predict(clean, text.context, StepKind::Guide, &fsp, &cache);
    predict(clean, text.negative, StepKind::Uncond, &fsp, nullptr);
    sync();
    guide_step = since(t0);
    row("FreeSwim CFG step, guide + uncond", guide_step);
    ops::cuda::reset_peak_memory();
    t0 = Clock::now();
    predict(clean, text.context, StepKind::Reuse, &fsp, &cache);
    predict(clean, text.negative, StepKind::Uncond, &fsp, nullptr);
    sync();
    reuse_step = since(t0);
    row("FreeSwim CFG step, reuse + uncond", reuse_step);
    cache.clear();
  }

  if (has_stage(stages, "decode")) {
    ops::cuda::reset_peak_memory();
    t0 = Clock::now();
    pipeline::decode_latents(*vae, clean, tiling);
    sync();
    dec = since(t0);
    row("VAE decode, target size", dec, "includes the first-call algorithm search");
  }

  if (stages == "all") {
    const double base_total = 50 * base_step, hr_total = 18 * guide_step + 17 * reuse_step;
    const double total = base_total + dec_base + enc + dec + ups + hr_total;
    std::printf(
        "\nextrapolated whole generate: base 50 steps %.0f s + VAE %.0f s + upsample %.0f s + "
        "FreeSwim 35 steps (cache every 2) %.0f s = %.0f s (%.1f min); text encoding not "
        "included\n",
        base_total, dec_base + enc + dec, ups, hr_total, total, total / 60);
    std::printf("one CFG step with cache every 2 (mean of the two kinds): %.2f s\n",
                (guide_step + reuse_step) / 2);
  } else {
    std::printf("\nVAE stages run: %.1f s\n", dec_base + ups + enc + dec);
  }
  std::printf("allocator high-water mark: %.2f GiB\n",
              gib(ops::cuda::memory_stats().peak_reserved));
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    return run(argc, argv);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_generate: error: %s\n", e.what());
    return 1;
  }
}
