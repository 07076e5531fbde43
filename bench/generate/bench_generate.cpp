// bench_generate [frames W H base_W base_H vae_tile]: every stage of `generate` for Wan2.1-1.3B at
// real sizes on the GPU with random weights (speed does not depend on weight values): base-stage
// CFG steps at the native size, VAE decode of the base video, bilinear upsampling, VAE encode at
// the target size, FreeSwim CFG steps (guide + uncond, reuse + uncond), VAE decode at the target
// size. Steps are timed two at a time and extrapolated to 50 base steps and 35 FreeSwim steps
// (strength 0.7, cache every 2), the reference's settings. Lines are printed as they finish.
#include <cuda_runtime_api.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>

#include "core/error.h"
#include "core/rng.h"
#include "models/wan_dit.h"
#include "models/wan_vae.h"
#include "ops/cuda/cuda_backend.h"
#include "pipeline/denoise.h"
#include "pipeline/frames.h"
#include "pipeline/upsample.h"

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

void row(const char* what, double seconds, const char* note = "") {
  std::printf("| %s | %.2f | %.2f | %s |\n", what, seconds,
              gib(ops::cuda::memory_stats().peak_in_use), note);
  std::fflush(stdout);
}

int run(int argc, char** argv) {
  ops::cuda::register_cuda_backend();
  const int frames = argc > 1 ? std::atoi(argv[1]) : 81;
  const int W = argc > 2 ? std::atoi(argv[2]) : 1920, H = argc > 3 ? std::atoi(argv[3]) : 1088;
  const int bw = argc > 4 ? std::atoi(argv[4]) : 832, bh = argc > 5 ? std::atoi(argv[5]) : 480;
  models::VaeTiling tiling;
  tiling.tile = argc > 6 ? std::atoi(argv[6]) : 512;
  tiling.overlap = tiling.tile / 4;
  FS_CHECK(frames % 4 == 1 && W % 16 == 0 && H % 16 == 0 && bw % 16 == 0 && bh % 16 == 0,
           "bad sizes");
  const int T = (frames - 1) / 4 + 1;

  auto t0 = Clock::now();
  const models::WanDitConfig cfg = models::WanDitConfig::preset("1.3B");
  const auto dit = models::WanDit::random(cfg, Device::CUDA, 1);
  const auto vae = models::WanVae::random(models::WanVaeConfig::wan21(), Device::CUDA, 2);
  sync();
  std::printf(
      "Wan2.1-1.3B (random weights) + Wan VAE on the GPU, built in %.1f s; %d frames, %dx%d from "
      "%dx%d, "
      "VAE tile %d\n\n",
      since(t0), frames, W, H, bw, bh, tiling.tile);
  std::printf("| stage | seconds | peak tensors (GiB) | note |\n| --- | --- | --- | --- |\n");
  std::fflush(stdout);

  pipeline::GuidedText text{rng::normal_tensor({512, cfg.text_dim}, 3),
                            rng::normal_tensor({512, cfg.text_dim}, 4), 5.0};
  auto predict = [&](const Tensor& x, const Tensor& ctx, StepKind k, const FreeSwimParams* p,
                     CrossAttentionCache* c) {
    models::DitInput in{x, 900.f, ctx};
    return dit->forward(in, k, p, c).to(Device::CPU);
  };

  // Base stage: two CFG steps (stock, cond + uncond), after a warm-up forward.
  const Tensor base = rng::normal_tensor({16, T, bh / 8, bw / 8}, 5);
  predict(base, text.context, StepKind::Stock, nullptr, nullptr);
  sync();
  ops::cuda::reset_peak_memory();
  t0 = Clock::now();
  for (int i = 0; i < 2; ++i) {
    predict(base, text.context, StepKind::Stock, nullptr, nullptr);
    predict(base, text.negative, StepKind::Stock, nullptr, nullptr);
  }
  sync();
  const double base_step = since(t0) / 2;
  row("base stage, one CFG step", base_step, "x50 below");

  ops::cuda::reset_peak_memory();
  t0 = Clock::now();
  const Tensor base_frames = pipeline::decode_latents(*vae, base, tiling);
  sync();
  const double dec_base = since(t0);
  row("VAE decode, base size", dec_base);

  t0 = Clock::now();
  const Tensor up = pipeline::resize_bilinear(base_frames, H, W, pipeline::FrameLayout::FHWC);
  const double ups = since(t0);
  row("bilinear upsample (CPU)", ups);

  ops::cuda::reset_peak_memory();
  t0 = Clock::now();
  const Tensor clean = pipeline::encode_frames(*vae, up, tiling);
  sync();
  const double enc = since(t0);
  row("VAE encode, target size", enc);

  const FreeSwimParams fsp = freeswim_params_for_base_grid(bh / 16, bw / 16, cfg.head_dim);
  CrossAttentionCache cache;
  ops::cuda::reset_peak_memory();
  t0 = Clock::now();
  predict(clean, text.context, StepKind::Guide, &fsp, &cache);
  predict(clean, text.negative, StepKind::Uncond, &fsp, nullptr);
  sync();
  const double guide_step = since(t0);
  row("FreeSwim CFG step, guide + uncond", guide_step);
  ops::cuda::reset_peak_memory();
  t0 = Clock::now();
  predict(clean, text.context, StepKind::Reuse, &fsp, &cache);
  predict(clean, text.negative, StepKind::Uncond, &fsp, nullptr);
  sync();
  const double reuse_step = since(t0);
  row("FreeSwim CFG step, reuse + uncond", reuse_step);
  cache.clear();

  ops::cuda::reset_peak_memory();
  t0 = Clock::now();
  pipeline::decode_latents(*vae, clean, tiling);
  sync();
  const double dec = since(t0);
  row("VAE decode, target size", dec);

  const double base_total = 50 * base_step, hr_total = 18 * guide_step + 17 * reuse_step;
  std::printf(
      "\nextrapolated whole generate: base 50 steps %.0f s + VAE %.0f s + upsample %.0f s + "
      "FreeSwim 35 steps "
      "(cache every 2) %.0f s = %.0f s (%.1f min); text encoding not included\n",
      base_total, dec_base + enc + dec, ups, hr_total,
      base_total + dec_base + enc + dec + ups + hr_total,
      (base_total + dec_base + enc + dec + ups + hr_total) / 60);
  std::printf("one CFG step with cache every 2 (mean of the two kinds): %.2f s\n",
              (guide_step + reuse_step) / 2);
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
