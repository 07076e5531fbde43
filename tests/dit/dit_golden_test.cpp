// The golden DiT and window cases, as `freeswim check` runs them, inside ctest.
#include <gtest/gtest.h>

#include "check/suites.h"

namespace freeswim::check {
namespace {

std::vector<CaseResult> run_suite(const Suite& suite) {
  std::vector<CaseResult> results;
  Context ctx;
  ctx.golden_dir = FREESWIM_GOLDEN_DIR;
  ctx.report = [&](const CaseResult& r) { results.push_back(r); };
  suite(ctx);
  return results;
}

TEST(Golden, WindowMask) {
  const auto results = run_suite(check_window_mask_cases);
  ASSERT_EQ(results.size(), 2u);
  for (const auto& r : results) EXPECT_TRUE(r.pass) << r.name << " " << r.error << " " << r.message;
}

TEST(Golden, DitEveryCaseFromEveryWeightFile) {
  const auto results = run_suite(check_dit_cases);
  // 6 cases + 2 cached tensors, from 3 weight files.
  ASSERT_EQ(results.size(), 3u * 8u);
  for (const auto& r : results) EXPECT_TRUE(r.pass) << r.name << " " << r.error << " " << r.message;
}

}  // namespace
}  // namespace freeswim::check
