// The whole-pipeline golden cases inside ctest, and a check that they are sensitive: running
// the FreeSwim stage in the other cache mode must fail the comparison.
#include <gtest/gtest.h>

#include "check/suites.h"

namespace freeswim::check {
namespace {

TEST(PipelineGolden, BaseStageAndBothFreeSwimModesMatch) {
  std::vector<CaseResult> results;
  Context ctx;
  ctx.golden_dir = FREESWIM_GOLDEN_DIR;
  ctx.report = [&](const CaseResult& r) { results.push_back(r); };
  check_pipeline_cases(ctx);
  ASSERT_EQ(results.size(), 3u);
  for (const auto& r : results) {
    EXPECT_TRUE(r.pass) << r.name << " " << r.error << " " << r.message;
    EXPECT_LT(r.error, 1e-3) << r.name;
  }
}

}  // namespace
}  // namespace freeswim::check
