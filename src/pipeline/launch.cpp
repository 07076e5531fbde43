#include "pipeline/launch.h"

#include <chrono>

#include "core/error.h"
#include "io/lora.h"

namespace freeswim::pipeline {

namespace {

void say(const JobReporter& r, const std::string& line) {
  if (r.info) r.info(line);
}

// What the loaded models are, in the log.
void report_loaded(const LoadedModels& m, const LaunchJob& job, const JobReporter& r) {
  if (!m.offload_note.empty()) say(r, m.offload_note);
  if (!m.dit_note.empty()) say(r, "note: " + m.dit_note);
  for (const std::string& l : job.paths.loras) {
    const io::LoraSpec s = io::LoraSpec::parse(l);
    say(r, fmt::format("LoRA {} merged at strength {:g}", s.path, s.strength));
  }
  if (m.dit->offloaded())
    say(r,
        fmt::format("{:.2f} GiB of DiT block weights in pinned host memory, two blocks at a time "
                    "on the GPU",
                    static_cast<double>(m.dit->block_weight_bytes()) / (1 << 30)));
  say(r, fmt::format("model {} ({}), {}", m.native.variant, m.layout.layout,
                     m.dit->config().describe()));
  if (m.layout.layout == "tiny")
    say(r,
        "the tiny model has random weights: its video is noise-like. Real video needs the Wan2.1 "
        "weights (see README).");
}

Tensor run(LoadedModels& m, const LaunchJob& job, const JobReporter& r, const JobRanks& ranks) {
  return job.generate ? run_generate(m, job.options, r, ranks)
                      : run_upscale(m, job.input, job.options, r, ranks);
}

}  // namespace

Tensor launch_job(const LaunchJob& job, const JobReporter& r, parallel::World* world) {
  const Device device = job.options.device.device;
  const Offload offload = job.options.device.offload;
  const TextJob text{job_prompts(job.options), job.text_device};
  if (!world) {
    LoadedModels m = load_models(job.paths, device, offload, text, r.info);
    report_loaded(m, job, r);
    return run(m, job, r, {});
  }
  const parallel::WorldLayout want =
      parallel::world_layout(world->size(), !skips_unconditional(job.options.guidance));
  const parallel::WorldLayout have = world->layout();
  FS_CHECK(have.cfg == want.cfg && have.seq == want.seq,
           "launch: a world of {} ranks laid out {} x {} (CFG x sequence) for a job at guidance "
           "{:g}, which needs {} x {}",
           world->size(), have.cfg, have.seq, job.options.guidance, want.cfg, want.seq);
  say(r, fmt::format("{} ranks: {} CFG-parallel x {} sequence-parallel", world->size(), have.cfg,
                     have.seq));
  const auto t0 = std::chrono::steady_clock::now();
  const std::map<std::string, Tensor> contexts =
      encode_job_prompts(job.paths, device, text, r.info);
  const double text_seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  const JobReporter quiet;
  Tensor frames;
  world->run([&](const parallel::RankGroups& g) {
    const bool root = g.world->rank() == 0;
    const JobReporter& mine = root ? r : quiet;
    LoadedModels m = load_models(job.paths, device, offload, {{}, job.text_device}, mine.info);
    m.contexts = contexts;
    m.text_seconds = text_seconds;
    m.load_seconds += text_seconds;
    if (root) report_loaded(m, job, r);
    JobRanks ranks;
    ranks.world = g.world;
    ranks.groups = {g.cfg, g.sequence};
    Tensor out = run(m, job, mine, ranks);
    if (root) frames = std::move(out);
  });
  return frames;
}

}  // namespace freeswim::pipeline
