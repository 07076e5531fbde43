// pipeline_cases*: whole pipelines on tiny models with the reference's noise and text
// embeddings: base text-to-video stage, and the FreeSwim video-to-video stage without and with
// the cross-attention cache, compared as frames in [0, 1]. Everything (sizes, steps, shifts,
// window, guidance, model configs, weight files) is read from the json.

#include <filesystem>

#include "check/golden_files.h"
#include "check/suites.h"
#include "core/error.h"
#include "models/wan_dit.h"
#include "models/wan_vae.h"
#include "pipeline/denoise.h"
#include "pipeline/frames.h"
#include "pipeline/upsample.h"
#include "sched/unipc.h"

namespace freeswim::check {

namespace fs = std::filesystem;

namespace {

constexpr double kPipelineTolerance = 1e-3;  // golden/README.md: multi-step pipelines

// The "weights:" note names the DiT and VAE files; fall back to pipe_dit / pipe_vae.
std::string weight_file(const CaseFile& f, const std::string& dir, const std::string& kind) {
  const std::string note = f.meta.value("note", "");
  const std::string key = "pipe_" + kind + ".";
  const size_t at = note.find(key);
  if (at != std::string::npos) {
    const size_t end = note.find(".safetensors", at);
    if (end != std::string::npos) return dir + "/" + note.substr(at, end + 12 - at);
  }
  return dir + "/pipe_" + kind + ".diffusers.safetensors";
}

Tensor drop_batch(const Tensor& t) {
  Shape s(t.shape().begin() + 1, t.shape().end());
  FS_CHECK(t.dim(0) == 1, "expected a batch of one, got {}", t.describe());
  return t.reshape(s);
}

void run_pipeline_file(const Context& ctx, const std::string& json_path) {
  const std::string stem_path = json_path.substr(0, json_path.size() - 5);
  const std::string label = fs::path(stem_path).filename().string();
  const CaseFile f = open_case_file(json_path, stem_path + ".safetensors");
  const auto& m = f.meta;
  const auto& pipe = m.at("pipe");

  // Models from the config objects of the json.
  const models::WanDitConfig dit_cfg =
      models::WanDitConfig::from_json(m.at("dit_config"), json_path + " dit_config");
  const auto dit = models::WanDit::load(weight_file(f, ctx.golden_dir, "dit"), ctx.device, dit_cfg);
  const auto vae = models::WanVae::load(
      weight_file(f, ctx.golden_dir, "vae"), ctx.device,
      models::WanVaeConfig::from_json(m.at("vae_config"), json_path + " vae_config"),
      "config " + json_path);

  pipeline::GuidedText text;
  text.context = drop_batch(f.tensor("context"));
  text.negative = drop_batch(f.tensor("negative_context"));
  text.guidance = m.at("guidance_scale").get<double>();
  const int steps = pipe.at("steps").get<int>();
  const double tol = ctx.device == Device::CPU ? kPipelineTolerance : 2e-2;

  if (ctx.wanted(label + "/t2v_frames")) {
    sched::UniPCScheduler sched(sched::UniPCConfig::wan(m.at("base_flow_shift").get<double>()));
    const Tensor lat =
        pipeline::run_base_stage(*dit, sched, steps, drop_batch(f.tensor("noise_base")), text, {});
    ctx.compare(label + "/t2v_frames", pipeline::decode_latents(*vae, lat), f.tensor("t2v_frames"),
                tol);
  }

  // The FreeSwim stage starts from the reference's upsampled frames, so each stage is checked
  // on its own inputs.
  const Tensor up = f.tensor("upsampled_frames");
  FS_CHECK(up.ndim() == 4 && up.dim(1) == 3, "{}: upsampled_frames must be [F, 3, H, W], got {}",
           f.tensors_path, up.describe());
  const Tensor clean = pipeline::encode_frames(*vae, pipeline::fchw_to_fhwc(up));
  pipeline::FreeSwimStageOptions opt;
  opt.steps = steps;
  opt.strength = pipe.at("strength").get<double>();
  opt.attention.dh = m.at("window_half").at(0).get<int>();
  opt.attention.dw = m.at("window_half").at(1).get<int>();
  opt.attention.attn_scale =
      freeswim_attention_scale(m.at("base_tokens").get<int64_t>(), dit_cfg.head_dim);
  const Tensor noise = drop_batch(f.tensor("noise_target"));
  for (const auto& [name, every] :
       {std::pair<std::string, int>{"v2v_nocache_frames", 0},
        std::pair<std::string, int>{"v2v_cache_frames", pipe.at("cache_steps").get<int>()}}) {
    if (!ctx.wanted(label + "/" + name)) continue;
    opt.cache_every = every;
    sched::UniPCScheduler sched(sched::UniPCConfig::wan(m.at("v2v_flow_shift").get<double>()));
    const Tensor lat = pipeline::run_freeswim_stage(*dit, sched, clean, noise, text, opt, {});
    ctx.compare(label + "/" + name, pipeline::decode_latents(*vae, lat), f.tensor(name), tol);
  }
}

}  // namespace

void check_pipeline_cases(const Context& ctx) {
  for (const std::string& json_path : files_ending_with(ctx.golden_dir, ".json")) {
    const std::string name = fs::path(json_path).filename().string();
    if (name.rfind("pipeline", 0) != 0) continue;
    try {
      run_pipeline_file(ctx, json_path);
    } catch (const std::exception& e) {
      ctx.failed(fs::path(json_path).stem().string(), e.what());
    }
  }
}

}  // namespace freeswim::check
