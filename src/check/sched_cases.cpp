// scheduler_cases*: the schedulers against diffusers 0.35.2. For every UniPC run named in the
// json's "runs" (Wan's "unipc_config" with the run's flow shift), the flow-match Euler run
// ("euler") and the video-to-video start ("v2v"): the timestep and sigma tables, every step's
// sample for the recorded model outputs, the first step for the strength and the noised latent.
// Run names, step counts, shifts and strengths all come from the json.
#include <algorithm>
#include <cmath>
#include <filesystem>
#include <set>

#include "check/golden_files.h"
#include "check/suites.h"
#include "core/error.h"
#include "sched/flow_euler.h"
#include "sched/unipc.h"
#include "sched/video2video.h"

namespace freeswim::check {

namespace {

constexpr double kTableTol = 1e-6;  // tables are computed as the reference does, in float64
constexpr double kStepTol = 1e-4;   // per step, relative L2

Tensor vec1(const std::vector<float>& v) {
  return Tensor::from_vector({static_cast<int64_t>(v.size())}, v);
}

template <typename T>
T json_get(const CaseFile& f, const nlohmann::json& j, const char* key, const std::string& where) {
  FS_CHECK(j.is_object() && j.contains(key), "{}: {} has no \"{}\"", f.json_path, where, key);
  try {
    return j.at(key).get<T>();
  } catch (const nlohmann::json::exception&) {
    fail("{}: {}.{} has the wrong type ({})", f.json_path, where, key, j.at(key).dump());
  }
}

// Runs `s` through the recorded run `prefix`: tables, then x_init -> x.0 -> ... with the
// recorded model outputs, reporting the worst step.
void check_run(const Context& ctx, const CaseFile& f, const std::string& label, sched::Scheduler& s,
               const std::string& prefix, int steps) {
  const std::string base = label + "/" + prefix;
  s.set_timesteps(steps);
  if (ctx.wanted(base + "/timesteps"))
    ctx.compare(base + "/timesteps", vec1(s.timesteps()), f.tensor(prefix + ".timesteps"),
                kTableTol);
  if (ctx.wanted(base + "/sigmas"))
    ctx.compare(base + "/sigmas", vec1(s.sigmas()), f.tensor(prefix + ".sigmas"), kTableTol);
  const std::string name = base + "/steps";
  if (!ctx.wanted(name)) return;
  const Tensor init = f.tensor(prefix + ".x_init");
  std::vector<float> x = init.to_float_vector();
  CaseResult r;
  r.name = fmt::format("{} ({} steps)", name, steps);
  r.tolerance = kStepTol;
  int worst_step = -1;
  for (int i = 0; i < steps; ++i) {
    const std::string k = std::to_string(i);
    const Tensor m = f.tensor(prefix + ".model_output." + k);
    const Tensor want = f.tensor(prefix + ".x." + k);
    FS_CHECK(m.numel() == init.numel() && want.numel() == init.numel(),
             "{}: {}.model_output.{} / {}.x.{} do not match x_init {}", f.tensors_path, prefix, k,
             prefix, k, shape_str(init.shape()));
    const std::vector<float> mv = m.to_float_vector();
    s.step(mv.data(), x.data(), x.data(), x.size());
    const double e = relative_l2(vec1(x), want);
    const bool worse = worst_step < 0 || (std::isnan(e) && !std::isnan(r.error)) || e > r.error;
    if (worse) {  // a NaN step counts as the worst
      r.error = e;
      worst_step = i;
    }
  }
  r.pass = r.error < kStepTol;
  r.message = fmt::format("worst at step {}", worst_step);
  ctx.report(r);
}

void check_unipc_runs(const Context& ctx, const CaseFile& f, const std::string& label) {
  FS_CHECK(f.meta.contains("runs") && f.meta.at("runs").is_object(), "{}: no \"runs\" object",
           f.json_path);
  FS_CHECK(f.meta.contains("unipc_config"), "{}: no \"unipc_config\"", f.json_path);
  for (const auto& [prefix, run] : f.meta.at("runs").items()) {
    const std::string name = label + "/" + prefix;
    try {
      nlohmann::json cfg = f.meta.at("unipc_config");
      cfg["flow_shift"] = json_get<double>(f, run, "flow_shift", "runs." + prefix);
      const int steps = json_get<int>(f, run, "num_inference_steps", "runs." + prefix);
      sched::UniPCScheduler s(sched::UniPCConfig::from_diffusers_json(cfg));
      check_run(ctx, f, label, s, prefix, steps);
    } catch (const std::exception& e) {
      ctx.failed(name, e.what());
    }
  }
}

// The Euler run's tensors carry the one prefix that starts with "euler".
void check_euler_run(const Context& ctx, const CaseFile& f, const std::string& label) {
  const std::string name = label + "/euler";
  try {
    const nlohmann::json& e = f.meta.at("euler");
    std::set<std::string> prefixes;
    for (const auto& [tensor, shape] : f.meta.at("tensors").items()) {
      if (tensor.rfind("euler", 0) == 0) prefixes.insert(tensor.substr(0, tensor.find('.')));
    }
    FS_CHECK(prefixes.size() == 1, "{}: expected the tensors of one euler run, found {}",
             f.json_path, prefixes.size());
    sched::FlowEulerConfig c = sched::FlowEulerConfig::from_diffusers_json(e);
    c.shift = json_get<double>(f, e, "shift", "euler");
    sched::FlowEulerScheduler s(c);
    check_run(ctx, f, label, s, *prefixes.begin(),
              json_get<int>(f, e, "num_inference_steps", "euler"));
  } catch (const std::exception& ex) {
    ctx.failed(name, ex.what());
  }
}

void check_v2v(const Context& ctx, const CaseFile& f, const std::string& label) {
  const std::string base = label + "/v2v";
  try {
    const nlohmann::json& v = f.meta.at("v2v");
    const int steps = json_get<int>(f, v, "num_inference_steps", "v2v");
    const sched::Video2VideoStart start =
        sched::video2video_start(steps, json_get<double>(f, v, "strength", "v2v"));
    if (ctx.wanted(base + "/t_start")) {
      CaseResult r;
      r.name = base + "/t_start";
      const int want = json_get<int>(f, v, "t_start", "v2v");
      r.pass = start.t_start == want;
      r.error = r.pass ? 0.0 : INFINITY;
      r.message = fmt::format("first step {} (reference {})", start.t_start, want);
      ctx.report(r);
    }
    sched::UniPCConfig c = sched::UniPCConfig::from_diffusers_json(f.meta.at("unipc_config"));
    c.flow_shift = json_get<double>(f, v, "flow_shift", "v2v");
    sched::UniPCScheduler s(c);
    s.set_timesteps(steps);
    if (ctx.wanted(base + "/timesteps")) {
      const std::vector<float> run(s.timesteps().begin() + start.t_start, s.timesteps().end());
      ctx.compare(base + "/timesteps", vec1(run), f.tensor("v2v.timesteps"), kTableTol);
    }
    if (ctx.wanted(base + "/noisy")) {
      s.set_begin_index(start.t_start);
      const Tensor x0 = f.tensor("v2v.x0"), noise = f.tensor("v2v.noise");
      FS_CHECK(x0.shape() == noise.shape(), "{}: v2v.x0 {} and v2v.noise {} differ", f.tensors_path,
               shape_str(x0.shape()), shape_str(noise.shape()));
      ctx.compare(base + "/noisy", s.add_noise(x0, noise), f.tensor("v2v.noisy"), kStepTol);
    }
  } catch (const std::exception& e) {
    ctx.failed(base, e.what());
  }
}

void run_scheduler_file(const Context& ctx, const std::string& json_path) {
  const std::string stem = json_path.substr(0, json_path.size() - 5);
  const std::string label = std::filesystem::path(stem).filename().string();
  CaseFile f;
  try {
    f = open_case_file(json_path, stem + ".safetensors");
  } catch (const std::exception& e) {
    ctx.failed(label, e.what());
    return;
  }
  if (f.meta.contains("runs") || f.meta.contains("unipc_config")) check_unipc_runs(ctx, f, label);
  if (f.meta.contains("euler")) check_euler_run(ctx, f, label);
  if (f.meta.contains("v2v")) check_v2v(ctx, f, label);
}

}  // namespace

void check_scheduler_cases(const Context& ctx) {
  for (const std::string& json : files_ending_with(ctx.golden_dir, "scheduler_cases.json"))
    run_scheduler_file(ctx, json);
  // Tensors without their json cannot be read; say so rather than pass over them.
  for (const std::string& st : files_ending_with(ctx.golden_dir, "scheduler_cases.safetensors")) {
    const std::string json = st.substr(0, st.size() - 12) + ".json";
    if (!std::filesystem::exists(json))
      ctx.failed(std::filesystem::path(json).stem().string(),
                 fmt::format("'{}' has no '{}' beside it", st, json));
  }
}

}  // namespace freeswim::check
