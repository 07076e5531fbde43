// The user-level jobs: `generate` (prompt -> base video at the native size -> bilinear upsample
// -> FreeSwim high-resolution stage -> mp4) and `upscale` (a user's video -> the last two).
#pragma once

#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "freeswim/policy.h"
#include "models/wan_vae.h"
#include "parallel/communicator.h"
#include "pipeline/denoise.h"
#include "pipeline/device_settings.h"
#include "pipeline/models.h"
#include "pipeline/size_plan.h"

namespace freeswim::pipeline {

struct JobOptions {
  std::string prompt;
  std::string negative_prompt;  // empty: Wan's default negative prompt
  SizePlan size;                // target size (generated at multiples of 16, cropped back)
  int frames = 81;              // 4n + 1
  double fps = 16;
  int base_steps = 50;
  int steps =
      50;  // schedule length of the high-resolution stage (the last int(steps*strength) run)
  double strength = 0.7;
  double guidance = 5.0;
  double base_shift = 0;  // 0: the native size's shift (3 at 480p, 5 at 720p)
  double shift = 9.0;
  uint64_t seed = 42;
  int cache_every = 2;             // 0: no cache
  int window_h = 0, window_w = 0;  // half window in tokens; 0: from the base grid
  double attn_scale = 0;           // 0: sqrt(log(2N)/log(N)/head_dim), N = base grid tokens
  std::string output;              // .mp4
  std::string png_dir;             // also write PNG frames here when set
  bool resume = false;
  // For the resume tests: "stage:k" makes the process exit with status 137 (as after SIGKILL)
  // right after the resume state of step k (1-based, counted in this process) of `stage` ("base"
  // or "freeswim") is saved. Empty: never.
  std::string exit_after_step;
  // The settings that depend on the device (VAE tiles and precision, where the cross-attention
  // cache lives, ...), decided by device_settings for the device the models are on; run_generate
  // and run_upscale refuse a mismatch. The CPU's until a caller sets them. Not part of the resume
  // fingerprint beyond the device (the result is the same), so a run that ran out of memory can
  // be resumed with, for example, another cache placement.
  DeviceSettings device = device_settings(Device::CPU, {});
};

// What a job reports as it goes.
struct JobReporter {
  std::function<void(const std::string&)> info;  // one line
  // stage, step done (1-based), steps in stage, seconds of that step
  std::function<void(const std::string&, int, int, double)> progress;
};

// Checks a frame count: 4n + 1 and >= 1; the error names `flag` and the nearest valid counts.
void validate_frame_count(int frames, const std::string& flag = "--frames");

// Checks every option that needs no model (output path, size, frames, steps, strength, ...);
// throws Error naming the flag. The CLI calls it before loading a model, so a mistyped flag
// fails at once; run_generate and run_upscale call it too.
void check_job_options(const JobOptions& opt);

// The prompts a job's models must have encoded (TextJob::prompts for load_models): the prompt,
// and the negative prompt (Wan's default when none is given) unless guidance 1 skips it.
std::vector<std::string> job_prompts(const JobOptions& opt);

// One rank of a multi-GPU job (docs/multi_gpu.md). Every rank calls run_generate / run_upscale
// with the same options and its own LoadedModels (replicas on its own device, each with the
// prompts' contexts encoded at load). `world` holds all ranks, `groups` the rank's CFG pair and
// sequence-parallel group (parallel::world_layout). The VAE tile plan of rank 0 is used by all;
// the upsampled video is encoded by rank 0 and its latents broadcast; the denoising loops run
// over `groups`; the decodes are split by tiles over `world`. Rank 0 alone reports, saves the
// resume state and writes the output, after a barrier of `world` (every rank has its frames, so
// a rank that failed earlier leaves no output); every rank returns the frames.
struct JobRanks {
  parallel::Communicator* world = nullptr;
  ParallelGroups groups;
};

// Runs a whole generation and writes opt.output (atomically). Returns the frames written.
// The prompts' contexts come from `m` (encoded when it was loaded: job_prompts).
Tensor run_generate(LoadedModels& m, const JobOptions& opt, const JobReporter& r,
                    const JobRanks& ranks = {});
// Upscales `input` (a video file) with the FreeSwim stage and writes opt.output.
Tensor run_upscale(LoadedModels& m, const std::string& input, const JobOptions& opt,
                   const JobReporter& r, const JobRanks& ranks = {});

// The FreeSwim attention settings for a base (native) size and a model: half window from the
// base token grid unless given, attention scale by the rule unless given.
FreeSwimParams freeswim_params(const models::WanDitConfig& dit, int base_w, int base_h,
                               const JobOptions& opt);

// Path of the resume state written beside an output.
std::string resume_path(const std::string& output);

}  // namespace freeswim::pipeline
