// The `freeswim check` suite for the schedulers: passes on the reference directory, takes run
// names, shapes and settings from the json (renamed and reshaped runs pass too), and reports a
// FAIL for a run whose settings or tensors do not match instead of passing over it.
#include <gtest/gtest.h>
#include <stdlib.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <utility>
#include <vector>

#include "check/suites.h"
#include "io/safetensors.h"

namespace fs = std::filesystem;

namespace freeswim::check {
namespace {

class SchedulerCheck : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/freeswim_sched_check_XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override { fs::remove_all(dir_); }

  static std::vector<CaseResult> run(const std::string& dir) {
    std::vector<CaseResult> results;
    Context ctx;
    ctx.golden_dir = dir;
    ctx.report = [&](const CaseResult& r) { results.push_back(r); };
    check_scheduler_cases(ctx);
    return results;
  }
  static nlohmann::json reference_json() {
    std::ifstream in(std::string(FREESWIM_GOLDEN_DIR) + "/scheduler_cases.json");
    return nlohmann::json::parse(in);
  }
  void write_json(const std::string& name, const nlohmann::json& j) const {
    std::ofstream(dir_ + "/" + name) << j.dump(1);
  }
  std::string dir_;
};

TEST_F(SchedulerCheck, ReferenceDirectoryPasses) {
  const std::vector<CaseResult> r = run(FREESWIM_GOLDEN_DIR);
  const nlohmann::json j = reference_json();
  // Three cases per UniPC run and for the Euler run, three for the v2v start.
  EXPECT_EQ(r.size(), 3 * j.at("runs").size() + 3 + 3);
  for (const CaseResult& c : r) {
    EXPECT_TRUE(c.pass) << c.name << ": " << c.error << " " << c.message;
    EXPECT_LT(c.error, 2e-6) << c.name;
  }
}

TEST_F(SchedulerCheck, RenamedAndReshapedRunsPass) {
  // One UniPC run and the v2v case under other names and shapes; everything comes from the json.
  const auto ref =
      io::SafetensorsFile::open(std::string(FREESWIM_GOLDEN_DIR) + "/scheduler_cases.safetensors");
  const nlohmann::json rj = reference_json();
  const std::string from = "unipc_shift5_n7", to = "wan_five_seven";
  const int steps = rj.at("runs").at(from).at("num_inference_steps").get<int>();
  std::vector<std::pair<std::string, Tensor>> tensors;
  nlohmann::json j;
  j["unipc_config"] = rj.at("unipc_config");
  j["runs"][to] = rj.at("runs").at(from);
  auto add = [&](const std::string& src, const std::string& dst, bool reshape) {
    Tensor t = ref->tensor(src).to(DType::F32).clone();
    if (reshape) t = t.reshape({2, -1});
    j["tensors"][dst] = t.shape();
    tensors.emplace_back(dst, t);
  };
  for (const char* table : {".timesteps", ".sigmas"}) add(from + table, to + table, false);
  add(from + ".x_init", to + ".x_init", true);
  for (int i = 0; i < steps; ++i) {
    add(from + ".model_output." + std::to_string(i), to + ".model_output." + std::to_string(i),
        true);
    add(from + ".x." + std::to_string(i), to + ".x." + std::to_string(i), true);
  }
  j["v2v"] = rj.at("v2v");
  for (const char* t : {"v2v.x0", "v2v.noise", "v2v.noisy"}) add(t, t, true);
  add("v2v.timesteps", "v2v.timesteps", false);
  io::write_safetensors(dir_ + "/other_scheduler_cases.safetensors", tensors);
  write_json("other_scheduler_cases.json", j);

  const std::vector<CaseResult> r = run(dir_);
  ASSERT_EQ(r.size(), 6u);
  EXPECT_NE(r[0].name.find("other_scheduler_cases/wan_five_seven"), std::string::npos) << r[0].name;
  for (const CaseResult& c : r) EXPECT_TRUE(c.pass) << c.name << ": " << c.message;
}

TEST_F(SchedulerCheck, WrongSettingsAndMissingFilesFail) {
  nlohmann::json j = reference_json();
  j["runs"]["unipc_shift5_n7"]["flow_shift"] = 6.0;  // tables and steps no longer match
  j["runs"]["unipc_shift4_n20"] = {{"flow_shift", 4.0}, {"num_inference_steps", 20}};  // no data
  j["v2v"]["t_start"] = 4;
  fs::create_symlink(std::string(FREESWIM_GOLDEN_DIR) + "/scheduler_cases.safetensors",
                     dir_ + "/scheduler_cases.safetensors");
  write_json("scheduler_cases.json", j);
  int failed = 0;
  bool missing_named = false;
  for (const CaseResult& c : run(dir_)) {
    if (c.pass) continue;
    ++failed;
    if (c.message.find("unipc_shift4_n20.timesteps") != std::string::npos) missing_named = true;
  }
  EXPECT_EQ(failed, 3 + 1 + 1);
  EXPECT_TRUE(missing_named);

  // Tensors without their json: one FAIL naming the file; an unrelated directory: nothing.
  fs::remove(dir_ + "/scheduler_cases.json");
  const std::vector<CaseResult> lone = run(dir_);
  ASSERT_EQ(lone.size(), 1u);
  EXPECT_FALSE(lone[0].pass);
  EXPECT_NE(lone[0].message.find("scheduler_cases.json"), std::string::npos);
  fs::remove(dir_ + "/scheduler_cases.safetensors");
  EXPECT_TRUE(run(dir_).empty());
}

}  // namespace
}  // namespace freeswim::check
