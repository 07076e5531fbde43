// Every run of scheduler_cases.* against the reference (diffusers 0.35.2): tables, every step's
// sample for the given model outputs, the video-to-video start and its noising.
#include <gtest/gtest.h>

#include <cmath>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>
#include <set>
#include <string>
#include <vector>

#include "io/safetensors.h"
#include "sched/flow_euler.h"
#include "sched/unipc.h"
#include "sched/video2video.h"

namespace freeswim::sched {
namespace {

// Tighter than the 1e-4 the issue asks for: the arithmetic follows the reference op by op.
constexpr double kTol = 2e-6;

struct Golden {
  nlohmann::json meta;
  std::shared_ptr<const io::SafetensorsFile> file;

  static const Golden& get() {
    static const Golden g = [] {
      Golden r;
      const std::string dir = FREESWIM_GOLDEN_DIR;
      std::ifstream in(dir + "/scheduler_cases.json");
      EXPECT_TRUE(in.good()) << "missing " << dir << "/scheduler_cases.json";
      r.meta = nlohmann::json::parse(in);
      r.file = io::SafetensorsFile::open(dir + "/scheduler_cases.safetensors");
      return r;
    }();
    return g;
  }
  std::vector<float> values(const std::string& name) const {
    return file->tensor(name).to_float_vector();
  }
  bool has(const std::string& name) const { return file->find(name) != nullptr; }
};

double rel_l2(const std::vector<float>& got, const std::vector<float>& want) {
  EXPECT_EQ(got.size(), want.size());
  double num = 0, den = 0;
  for (size_t i = 0; i < got.size() && i < want.size(); ++i) {
    const double d = static_cast<double>(got[i]) - static_cast<double>(want[i]);
    num += d * d;
    den += static_cast<double>(want[i]) * static_cast<double>(want[i]);
  }
  return den > 0 ? std::sqrt(num / den) : std::sqrt(num);
}

// Runs `s` over the run `prefix` (x_init, model_output.i -> x.i) and checks tables and steps.
void check_run(Scheduler& s, const std::string& prefix, int steps) {
  const Golden& g = Golden::get();
  s.set_timesteps(steps);
  EXPECT_EQ(s.timesteps(), g.values(prefix + ".timesteps")) << prefix << " timesteps";
  EXPECT_LT(rel_l2(s.sigmas(), g.values(prefix + ".sigmas")), 1e-7) << prefix << " sigmas";
  std::vector<float> x = g.values(prefix + ".x_init");
  double worst = 0;
  for (int i = 0; i < steps; ++i) {
    const std::string k = std::to_string(i);
    const std::vector<float> m = g.values(prefix + ".model_output." + k);
    s.step(m.data(), x.data(), x.data(), x.size());
    const double e = rel_l2(x, g.values(prefix + ".x." + k));
    worst = std::max(worst, e);
    EXPECT_LT(e, kTol) << prefix << " step " << i;
  }
  EXPECT_TRUE(s.done());
  std::printf("%s: worst step rel. L2 %.3g\n", prefix.c_str(), worst);
}

TEST(SchedGolden, UniPCRuns) {
  const Golden& g = Golden::get();
  ASSERT_TRUE(g.meta.contains("runs"));
  ASSERT_GE(g.meta.at("runs").size(), 1u);
  for (const auto& [name, run] : g.meta.at("runs").items()) {
    nlohmann::json cfg = g.meta.at("unipc_config");
    cfg["flow_shift"] = run.at("flow_shift");
    UniPCScheduler s(UniPCConfig::from_diffusers_json(cfg));
    check_run(s, name, run.at("num_inference_steps").get<int>());
  }
}

TEST(SchedGolden, FlowEulerRun) {
  const Golden& g = Golden::get();
  const auto& e = g.meta.at("euler");
  FlowEulerConfig c;
  c.shift = e.at("shift").get<double>();
  FlowEulerScheduler s(c);
  const int steps = e.at("num_inference_steps").get<int>();
  // The run's tensors are the ones under the prefix starting with "euler".
  std::set<std::string> prefixes;
  for (const auto& [name, shape] : g.meta.at("tensors").items()) {
    if (name.rfind("euler", 0) == 0) prefixes.insert(name.substr(0, name.find('.')));
  }
  ASSERT_EQ(prefixes.size(), 1u);
  check_run(s, *prefixes.begin(), steps);
}

TEST(SchedGolden, Video2VideoStartAndNoise) {
  const Golden& g = Golden::get();
  const auto& v = g.meta.at("v2v");
  const int steps = v.at("num_inference_steps").get<int>();
  const Video2VideoStart start = video2video_start(steps, v.at("strength").get<double>());
  EXPECT_EQ(start.t_start, v.at("t_start").get<int>());

  UniPCConfig c = UniPCConfig::from_diffusers_json(g.meta.at("unipc_config"));
  c.flow_shift = v.at("flow_shift").get<double>();
  UniPCScheduler s(c);
  s.set_timesteps(steps);
  const std::vector<float> want_t = g.values("v2v.timesteps");
  ASSERT_EQ(static_cast<int>(want_t.size()), start.steps_run);
  EXPECT_EQ(std::vector<float>(s.timesteps().begin() + start.t_start, s.timesteps().end()), want_t);

  s.set_begin_index(start.t_start);
  const std::vector<float> x0 = g.values("v2v.x0");
  const std::vector<float> noise = g.values("v2v.noise");
  std::vector<float> noisy(x0.size());
  s.add_noise(x0.data(), noise.data(), noisy.data(), x0.size());
  EXPECT_LT(rel_l2(noisy, g.values("v2v.noisy")), kTol);
}

}  // namespace
}  // namespace freeswim::sched
