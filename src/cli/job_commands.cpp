// `freeswim generate` and `freeswim upscale`: flags as Wan's generate.py and stable-diffusion.cpp
// users know them.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <memory>
#include <optional>
#include <string>

#include "cli/commands.h"
#include "core/device_memory.h"
#include "core/error.h"
#include "core/threads.h"
#include "pipeline/device_settings.h"
#include "pipeline/generate.h"
#include "pipeline/gpus.h"
#include "pipeline/launch.h"
#include "pipeline/memory_plan.h"
#ifdef FREESWIM_WITH_CUDA
#include "ops/cuda/cuda_backend.h"
#endif

namespace freeswim::cli {

namespace {

struct JobFlags {
  pipeline::ModelPaths models;
  std::string prompt, negative, size, window, output = "freeswim.mp4", png, device = "auto", input,
                                              exit_after_step, text_device = "auto";
  bool negative_given = false;
  int width = 0, height = 0;  // -W / -H
  int frames = 81, base_steps = 50, steps = 50, cache_every = 2, gpus = 1;
  double fps = 16, strength = 0.7, guidance = 5, shift = 9, base_shift = 0, attn_scale = 0;
  uint64_t seed = 42;
  bool resume = false, no_vae_tiling = false, offload = false, no_offload = false;
  // The flags whose defaults depend on the device: empty when not given, so that
  // pipeline::device_settings can tell a default from a value the user chose.
  std::optional<int> vae_tile, threads;
  std::optional<std::string> vae_precision, cache_memory;
};

std::shared_ptr<JobFlags> g_flags;
CLI::App* g_generate = nullptr;
CLI::App* g_upscale = nullptr;

void add_common(CLI::App* c, JobFlags& f, bool generate) {
  // Aliases are the spellings of stable-diffusion.cpp (--diffusion-model, --t5xxl, --cfg-scale,
  // --video-frames, -W/-H, -s) and of Wan's generate.py (--ckpt_dir, --frame_num,
  // --sample_guide_scale, --base_seed, --size W*H) where they mean the same thing (README).
  c->add_option("--model,--ckpt_dir", f.models.model,
                "Wan2.1 checkpoint folder (diffusers or original layout), or 'tiny' for a built-in "
                "random model");
  c->add_option("--dit,--diffusion-model", f.models.dit,
                "Diffusion transformer: a .safetensors file, index or folder");
  c->add_option("--dit-config", f.models.dit_config,
                "config.json of the transformer (else beside it or inferred)");
  c->add_option("--vae", f.models.vae,
                "VAE: Wan2.1_VAE.pth, a .safetensors file or a diffusers vae/ folder");
  c->add_option("--t5,--t5xxl", f.models.t5,
                "UMT5 encoder: models_t5_umt5-xxl-enc-bf16.pth or a text_encoder/ folder");
  c->add_option("--tokenizer", f.models.tokenizer, "spiece.model, or a folder holding it");
  c->add_option("--lora", f.models.loras,
                "LoRA FILE or FILE:STRENGTH (default 1), repeatable; merged into the DiT at load "
                "(ComfyUI, kohya/musubi and diffusers/PEFT files)")
      ->expected(1)
      ->take_all();
  c->add_option("-p,--prompt", f.prompt, "What the video shows")->required(generate);
  c->add_option("-n,--negative-prompt", f.negative,
                "What to avoid (default: Wan's negative prompt)");
  c->add_option("--size", f.size,
                "Output size WxH or W*H (default 1920x1080); made at the next multiple of 16 and "
                "centre-cropped");
  c->add_option("-W,--width", f.width, "Output width (with -H, instead of --size)");
  c->add_option("-H,--height", f.height, "Output height (with -W, instead of --size)");
  c->add_option("--frames,--video-frames,--frame_num", f.frames,
                "Frame count, 4n+1 (81 = 5 s at 16 fps)")
      ->capture_default_str();
  c->add_option("--fps", f.fps, "Frames per second of the mp4")->capture_default_str();
  if (generate)
    c->add_option("--base-steps", f.base_steps, "Steps of the base stage")->capture_default_str();
  c->add_option("--steps", f.steps, "Schedule length of the high-resolution stage")
      ->capture_default_str();
  c->add_option("--strength", f.strength,
                "Fraction of the schedule the high-resolution stage runs (0, 1]")
      ->capture_default_str();
  c->add_option("--guidance,--cfg-scale,--sample_guide_scale", f.guidance,
                "Classifier-free guidance scale (1: no unconditional pass, for CFG-distilled "
                "models and LoRAs)")
      ->capture_default_str();
  c->add_option("--shift", f.shift, "UniPC flow shift of the high-resolution stage")
      ->capture_default_str();
  if (generate)
    c->add_option("--base-shift", f.base_shift,
                  "UniPC flow shift of the base stage (default: 3 at 480p, 5 at 720p)");
  c->add_option("-s,--seed,--base_seed", f.seed,
                "Random seed (same seed, same video on any thread count)")
      ->capture_default_str();
  c->add_option("--cache-every", f.cache_every,
                "Run the full-attention branch every k steps and reuse its cross-attention between "
                "(0: every step)")
      ->capture_default_str();
  c->add_option_function<std::string>(
      "--cache-memory", [&f](const std::string& v) { f.cache_memory = v; },
      "Where the cross-attention cache lives: device (GPU memory), host (pinned host memory, "
      "copied over PCIe) or auto (default: device when it fits in free GPU memory)");
  c->add_option("--window", f.window,
                "Half window HxW in tokens (default: half the base token grid)");
  c->add_option("--attn-scale", f.attn_scale,
                "Self-attention scale (default: sqrt(log 2N / log N / head_dim))");
  c->add_option("-o,--output", f.output, "Output .mp4 (written atomically)")->capture_default_str();
  c->add_option("--png", f.png, "Also write PNG frames into this folder");
  c->add_flag("--resume", f.resume, "Continue a killed run from the state saved beside the output");
  // For the resume tests (tests/cli): not in --help.
  c->add_option("--exit-after-step", f.exit_after_step,
                "stage:k: exit with status 137 right after step k of stage base|freeswim is saved")
      ->group("");
  c->add_option("--device", f.device,
                "auto (cuda when this freeswim has CUDA and the machine a GPU, else cpu), cpu or "
                "cuda")
      ->capture_default_str();
  c->add_option("--text-device", f.text_device,
                "Where the text encoder runs (before the DiT and VAE are loaded): auto (the GPU "
                "when its weights fit in free GPU memory, else the cpu), cpu or cuda")
      ->capture_default_str();
  c->add_option("--gpus", f.gpus,
                "GPUs of this host for one run: 1, 2 (CFG-parallel), 4 or 8 (CFG-parallel pairs "
                "of sequence-parallel groups); above 1 needs --device cuda (docs/multi_gpu.md)")
      ->capture_default_str();
  c->add_flag("--offload", f.offload,
              "Keep the DiT's block weights in pinned host memory and stream two blocks at a time "
              "to the GPU (for models larger than the card; cuda only). Without it the blocks go "
              "to the GPU, and to host memory only when loading them there runs out of memory");
  c->add_flag("--no-offload", f.no_offload,
              "Never stream the DiT's blocks from host memory (an out-of-memory is an error)");
  c->add_option_function<int>(
      "--threads", [&f](const int& v) { f.threads = v; }, "CPU threads (default: all cores)");
  c->add_option_function<int>(
      "--vae-tile", [&f](const int& v) { f.vae_tile = v; },
      fmt::format("VAE tile size in pixels (memory bounded by the tile; default on cuda: the "
                  "largest tile up to {} that fits in free memory at each pass; {} on cpu)",
                  pipeline::kVaeTileCuda, pipeline::kVaeTileCpu));
  c->add_option_function<std::string>(
      "--vae-precision", [&f](const std::string& v) { f.vae_precision = v; },
      "VAE convolutions on cuda: tf32 (default: tensor cores, as PyTorch's default) or fp32 "
      "(exact, slower); the cpu is always fp32");
  c->add_flag("--no-vae-tiling", f.no_vae_tiling, "Decode whole frames at once");
}

// --size, or -W/-H (both, and not with --size); 1920x1080 when none is given.
std::string job_size(const JobFlags& f) {
  if (f.width == 0 && f.height == 0) return f.size.empty() ? "1920x1080" : f.size;
  FS_CHECK(f.size.empty(), "give the size either as --size or as -W/-H, not both");
  FS_CHECK(f.width > 0 && f.height > 0,
           "-W and -H go together and must be positive (got -W {} -H {}); or use --size WxH",
           f.width, f.height);
  return fmt::format("{}x{}", f.width, f.height);
}

pipeline::JobOptions to_options(const JobFlags& f) {
  pipeline::JobOptions o;
  o.prompt = f.prompt;
  o.negative_prompt = f.negative;
  o.size = pipeline::parse_size(job_size(f));
  o.frames = f.frames;
  o.fps = f.fps;
  o.base_steps = f.base_steps;
  o.steps = f.steps;
  o.strength = f.strength;
  o.guidance = f.guidance;
  o.shift = f.shift;
  o.base_shift = f.base_shift;
  o.seed = f.seed;
  o.cache_every = f.cache_every;
  o.attn_scale = f.attn_scale;
  o.output = f.output;
  o.png_dir = f.png;
  o.resume = f.resume;
  o.exit_after_step = f.exit_after_step;
  if (!f.window.empty()) {
    const size_t x = f.window.find_first_of("xX");
    int h = 0, w = 0;
    try {
      FS_CHECK(x != std::string::npos, "");
      size_t used_h = 0, used_w = 0;
      h = std::stoi(f.window.substr(0, x), &used_h);
      w = std::stoi(f.window.substr(x + 1), &used_w);
      FS_CHECK(used_h == x && used_w == f.window.size() - x - 1, "");
    } catch (const std::exception&) {
      fail("--window must be HxW half sizes in tokens, e.g. 15x26; got '{}'", f.window);
    }
    FS_CHECK(h >= 1 && w >= 1, "--window half sizes must be >= 1, got '{}'", f.window);
    o.window_h = h;
    o.window_w = w;
  }
  return o;
}

// The device-dependent flags as given, their values parsed (errors name the flag); whether
// each was given at all is kept for pipeline::device_settings.
pipeline::DeviceFlags device_flags(const JobFlags& f) {
  FS_CHECK(!(f.offload && f.no_offload), "--offload and --no-offload contradict each other");
  pipeline::DeviceFlags d;
  d.vae_tile = f.vae_tile;
  d.vae_tiling = !f.no_vae_tiling;
  if (f.vae_precision) d.vae_precision = pipeline::parse_vae_precision(*f.vae_precision);
  if (f.offload) d.offload = pipeline::Offload::on;
  if (f.no_offload) d.offload = pipeline::Offload::off;
  if (f.cache_memory) d.cache_memory = parse_cache_placement(*f.cache_memory);
  d.threads = f.threads;
  return d;
}

// --device, with `auto` resolved on this machine.
pipeline::ResolvedDevice resolve_device(pipeline::DeviceRequest request) {
#ifdef FREESWIM_WITH_CUDA
  return pipeline::resolve_device(request, true, [] {
    const ops::cuda::CudaDeviceInfo gpu = ops::cuda::cuda_device_info();
    return pipeline::CudaProbe{gpu.name, gpu.unsupported};
  });
#else
  return pipeline::resolve_device(request, false, nullptr);
#endif
}

pipeline::JobReporter reporter() {
  pipeline::JobReporter r;
  auto stage_start = std::make_shared<std::pair<std::string, double>>();
  r.info = [](const std::string& line) { std::fprintf(stderr, "freeswim: %s\n", line.c_str()); };
  r.progress = [stage_start](const std::string& stage, int done, int total, double secs) {
    if (stage_start->first != stage) *stage_start = {stage, 0.0};
    stage_start->second += secs;
    const double avg = stage_start->second / done;
    const int width = 24, filled = total ? width * done / total : width;
    std::fprintf(stderr, "\r  %-8s [%s%s] %d/%d  %.2f s/step  ETA %.0f s   ", stage.c_str(),
                 std::string(static_cast<size_t>(filled), '#').c_str(),
                 std::string(static_cast<size_t>(width - filled), '.').c_str(), done, total, secs,
                 avg * (total - done));
    if (done == total) std::fprintf(stderr, "\n");
    std::fflush(stderr);
  };
  return r;
}

// The GPU as the memory messages name it: "NVIDIA H100 80GB HBM3" (", cap 22.35 GiB" under
// FREESWIM_GPU_MEMORY_LIMIT).
std::string gpu_label() {
#ifdef FREESWIM_WITH_CUDA
  std::string label = ops::cuda::cuda_device_info().name;
  if (label.empty()) label = "the GPU";
  if (const size_t cap = ops::cuda::memory_limit())
    label += fmt::format(" (FREESWIM_GPU_MEMORY_LIMIT {:.2f} GiB)",
                         static_cast<double>(cap) / (1 << 30));
  return label;
#else
  return "the GPU";
#endif
}

// Refuses a job the device or the host's memory cannot hold (pipeline::plan_memory), before any
// weight is read; for one that fits, logs the estimate and turns automatic DiT offload on when
// only the plan that streams the blocks fits (loading the weights would succeed, the first
// forward would not).
void check_memory(const pipeline::ModelPlan& models, pipeline::JobOptions& o, bool generate,
                  int gpus) {
  if (o.device.device == Device::CPU) return;
  const pipeline::MemoryJob job =
      pipeline::memory_job(models.dit, models.native, o, generate, gpus);
  // With several GPUs every rank takes the same plan: the one the GPU with the least free
  // memory holds.
  size_t free_bytes = device_memory(o.device.device).free_bytes();
  std::string label = gpu_label();
#ifdef FREESWIM_WITH_CUDA
  if (gpus > 1) {
    for (int d = 0; d < gpus; ++d) free_bytes = std::min(free_bytes, ops::cuda::free_bytes_on(d));
    label = fmt::format("each of GPUs 0-{} ({})", gpus - 1, label);
  }
#endif
  const pipeline::MemoryPlan plan =
      pipeline::plan_memory(job, o.device, free_bytes, label, pipeline::host_available_bytes());
  FS_CHECK(plan.fits, "{}", plan.message);
  std::fprintf(stderr, "freeswim: %s\n", plan.message.c_str());
  if (plan.offload && o.device.offload == pipeline::Offload::automatic) {
    o.device.offload = pipeline::Offload::on;
    std::fprintf(stderr,
                 "freeswim: DiT offload on: the DiT's weights and the job's working memory do not "
                 "fit on the GPU together (--no-offload refuses this)\n");
  }
}

int run_job(const JobFlags& f, bool generate) {
  // Everything that needs no model is checked before loading one (minutes for the 14B model).
  const pipeline::DeviceRequest request = pipeline::parse_device_request(f.device);
  const pipeline::TextDevice text_device = pipeline::parse_text_device(f.text_device);
  const pipeline::DeviceFlags given = device_flags(f);
  pipeline::JobOptions o = to_options(f);
  pipeline::check_job_options(o);
  if (f.models.model.empty() && f.models.dit.empty())
    fail(
        "no model given: use --model DIR (a Wan2.1 checkpoint) or --model tiny for a quick test "
        "run");
  // The device is resolved before any default that depends on it is decided.
  const pipeline::ResolvedDevice where = resolve_device(request);
  std::fprintf(stderr, "freeswim: device: %s\n", where.reason.c_str());
  if (where.device == Device::CPU)  // --text-device cuda on a cpu job is an error naming --device
    pipeline::place_text_encoder(text_device, where.device, 0, 0);
  pipeline::check_gpus(f.gpus, where.device,
                       f.gpus > 1 ? pipeline::gpu_inventory() : pipeline::GpuInventory{});
  o.device = pipeline::device_settings(where.device, given);
  std::fprintf(stderr, "freeswim: device settings: %s\n", o.device.describe().c_str());
  set_max_threads(o.device.threads);
  // Every model file is checked from its header (a wrong file fails now, not after the text
  // encoder's minute of loading), and the job's memory need is estimated from the DiT's
  // configuration: a job the GPU cannot hold is refused before any weight is read.
  const pipeline::ModelPlan models = pipeline::inspect_models(f.models);
  check_memory(models, o, generate, f.gpus);
  const auto t0 = std::chrono::steady_clock::now();
  // --gpus N > 1: the ranks' communicators over GPUs 0 .. N-1 (null for one GPU).
  const std::unique_ptr<parallel::World> world =
      pipeline::gpu_world(f.gpus, !pipeline::skips_unconditional(o.guidance));
  pipeline::LaunchJob job;
  job.paths = f.models;
  job.text_device = text_device;
  job.options = o;
  job.generate = generate;
  job.input = f.input;
  pipeline::launch_job(job, reporter(), world.get());
  std::fprintf(stderr, "freeswim: done in %.1f s\n",
               std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  return 0;
}

}  // namespace

void add_job_commands(CLI::App& app) {
  g_flags = std::make_shared<JobFlags>();
  g_generate = app.add_subcommand(
      "generate", "Text to high-resolution video: base stage, upsample, FreeSwim stage");
  add_common(g_generate, *g_flags, true);
  g_generate->footer(
      "\nExamples:\n"
      "  freeswim generate --model ~/models/Wan2.1-T2V-1.3B -p \"a red fox in fresh snow, "
      "cinematic\" \\\n"
      "      --size 1920x1080 --frames 81 -o fox.mp4\n"
      "  freeswim generate --model tiny -p test --size 192x128 --frames 9 -o test.mp4\n"
      "      (built-in random weights: a smoke test; its video is noise)\n"
      "\nWeights: Wan-AI/Wan2.1-T2V-1.3B or -14B (original or -Diffusers layout) from Hugging Face "
      "or\n"
      "ModelScope; ComfyUI's split files work with --dit/--vae/--t5/--tokenizer.");
  g_upscale = app.add_subcommand("upscale",
                                 "Upscale your own video with the FreeSwim high-resolution stage");
  g_upscale->add_option("-i,--input", g_flags->input, "Input video (any format FFmpeg reads)")
      ->required();
  add_common(g_upscale, *g_flags, false);
  g_upscale->footer(
      "\nExample:\n"
      "  freeswim upscale --model ~/models/Wan2.1-T2V-1.3B -i clip_480p.mp4 -p \"what the clip "
      "shows\" \\\n"
      "      --size 1920x1080 --frames 81 -o clip_1080p.mp4");
}

int run_jobs_if_parsed() {
  if (g_generate && g_generate->parsed()) return run_job(*g_flags, true);
  if (g_upscale && g_upscale->parsed()) return run_job(*g_flags, false);
  return -1;
}

}  // namespace freeswim::cli
