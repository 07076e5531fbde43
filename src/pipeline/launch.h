// Starting a `generate` or `upscale` job as the CLI does: load the models, run the job, on this
// thread as one rank or on every rank of a parallel::World (`--gpus N`: NcclWorld, one GPU per
// rank; LocalWorld, the CPU stand-in, in the tests). docs/multi_gpu.md describes the ranks.
#pragma once

#include <string>

#include "parallel/world.h"
#include "pipeline/generate.h"
#include "pipeline/models.h"

namespace freeswim::pipeline {

struct LaunchJob {
  ModelPaths paths;
  TextDevice text_device = TextDevice::Auto;
  // The job; options.device says where the models go (device, DiT offload) and the settings that
  // depend on it.
  JobOptions options;
  bool generate = true;  // false: upscale `input` (a video file)
  std::string input;
};

// Loads the models and runs the job; returns the frames written to options.output.
//
// Without a world: load_models on this thread (the text encoder first, then the DiT and VAE),
// then run_generate / run_upscale of one rank.
//
// With a world: the prompts are encoded once on this thread (encode_job_prompts: the text
// encoder placed for options.device.device and released before any rank loads), then on every
// rank's thread (for NcclWorld its GPU is the thread's current device) the rank loads its own
// DiT and VAE (load_models without prompts), takes the encoded contexts, and calls run_generate /
// run_upscale with its JobRanks (world, CFG pair, sequence group). Rank 0 of the world (rank 0 of
// both its groups too) alone reports (the load's lines included), saves the resume state and
// writes the output, after every rank has its frames (run_generate's last barrier), so a rank
// that fails leaves no output file. The first failure is rethrown as an Error naming its rank
// (World::run); the other ranks are stopped, not waited for. Returns rank 0's frames.
Tensor launch_job(const LaunchJob& job, const JobReporter& r, parallel::World* world = nullptr);

}  // namespace freeswim::pipeline
