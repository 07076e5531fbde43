// The `freeswim check` suite for upsampling: passes on the reference directory, reads every
// shape from the json (a synthetic case of other sizes passes too), and reports a FAIL naming
// the file for each kind of broken case instead of passing over it.
#include <gtest/gtest.h>
#include <stdlib.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "check/suites.h"
#include "io/safetensors.h"

namespace fs = std::filesystem;

namespace freeswim::check {
namespace {

class UpsampleCheck : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/freeswim_upsample_check_XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override { fs::remove_all(dir_); }

  std::vector<CaseResult> run(const std::string& dir) const {
    std::vector<CaseResult> results;
    Context ctx;
    ctx.golden_dir = dir;
    ctx.report = [&](const CaseResult& r) { results.push_back(r); };
    check_upsample_cases(ctx);
    return results;
  }
  std::string golden(const std::string& name) const {
    return std::string(FREESWIM_GOLDEN_DIR) + "/" + name;
  }
  std::string path(const std::string& name) const { return dir_ + "/" + name; }

  std::string dir_;
};

TEST_F(UpsampleCheck, ReferenceDirectoryPasses) {
  const std::vector<CaseResult> r = run(FREESWIM_GOLDEN_DIR);
  ASSERT_EQ(r.size(), 1u);
  EXPECT_EQ(r[0].name, "pipeline_cases/upsampled_frames");
  EXPECT_TRUE(r[0].pass) << r[0].message;
  EXPECT_LT(r[0].error, 1e-5);
}

TEST_F(UpsampleCheck, OtherShapesFromTheJson) {
  // 2 frames of 5x7 -> 12x10, values linear in (x, y) so the expected result is exact:
  // bilinear interpolation reproduces a linear function at the clamped source position.
  const int64_t F = 2, H = 5, W = 7, OH = 12, OW = 10;
  const auto value = [](int64_t f, int64_t c, double y, double x) {
    return 0.1 * x - 0.05 * y + 0.3 * c + f;
  };
  std::vector<float> in(static_cast<size_t>(F * H * W * 3)),
      out(static_cast<size_t>(F * 3 * OH * OW));
  for (int64_t f = 0; f < F; ++f)
    for (int64_t y = 0; y < H; ++y)
      for (int64_t x = 0; x < W; ++x)
        for (int64_t c = 0; c < 3; ++c)
          in[static_cast<size_t>(((f * H + y) * W + x) * 3 + c)] =
              static_cast<float>(value(f, c, y, x));
  for (int64_t f = 0; f < F; ++f)
    for (int64_t c = 0; c < 3; ++c)
      for (int64_t y = 0; y < OH; ++y)
        for (int64_t x = 0; x < OW; ++x) {
          const double sy = std::clamp((y + 0.5) * H / OH - 0.5, 0.0, H - 1.0);
          const double sx = std::clamp((x + 0.5) * W / OW - 0.5, 0.0, W - 1.0);
          out[static_cast<size_t>(((f * 3 + c) * OH + y) * OW + x)] =
              static_cast<float>(value(f, c, sy, sx));
        }
  io::write_safetensors(path("small_pipeline_cases.safetensors"),
                        {{"t2v_frames", Tensor::from_vector({F, H, W, 3}, in)},
                         {"upsampled_frames", Tensor::from_vector({F, 3, OH, OW}, out)}});
  nlohmann::json meta;
  meta["tensors"]["t2v_frames"] = {F, H, W, 3};
  meta["tensors"]["upsampled_frames"] = {F, 3, OH, OW};
  meta["pipe"]["target_hw"] = {OH, OW};
  std::ofstream(path("small_pipeline_cases.json")) << meta.dump();
  const std::vector<CaseResult> r = run(dir_);
  ASSERT_EQ(r.size(), 1u);
  EXPECT_EQ(r[0].name, "small_pipeline_cases/upsampled_frames");
  EXPECT_TRUE(r[0].pass) << r[0].message << " error " << r[0].error;
}

TEST_F(UpsampleCheck, UnrelatedDirectoryReportsNothing) {
  std::ofstream(path("other.json")) << "{}";
  EXPECT_TRUE(run(dir_).empty());
}

void expect_one_failure(const std::vector<CaseResult>& r, const std::string& mentions) {
  ASSERT_EQ(r.size(), 1u);
  EXPECT_FALSE(r[0].pass);
  EXPECT_NE(r[0].message.find(mentions), std::string::npos) << r[0].message;
}

TEST_F(UpsampleCheck, BrokenCasesFailNamingTheFile) {
  // json without its tensors
  fs::copy_file(golden("pipeline_cases.json"), path("pipeline_cases.json"));
  expect_one_failure(run(dir_), "pipeline_cases.safetensors");
  // tensors without their json
  fs::remove(path("pipeline_cases.json"));
  fs::copy_file(golden("pipeline_cases.safetensors"), path("pipeline_cases.safetensors"));
  expect_one_failure(run(dir_), "pipeline_cases.json");
  // a json whose target size contradicts the tensors
  nlohmann::json meta = nlohmann::json::parse(std::ifstream(golden("pipeline_cases.json")));
  meta["pipe"]["target_hw"] = {100, 100};
  std::ofstream(path("pipeline_cases.json")) << meta.dump();
  expect_one_failure(run(dir_), "target_hw");
  // a json that does not list the tensor
  meta["tensors"].erase("upsampled_frames");
  std::ofstream(path("pipeline_cases.json")) << meta.dump();
  expect_one_failure(run(dir_), "upsampled_frames");
  // a json that is not JSON
  std::ofstream(path("pipeline_cases.json")) << "{ not json";
  expect_one_failure(run(dir_), "pipeline_cases.json");
}

}  // namespace
}  // namespace freeswim::check
