// The building blocks: numpy's linspace, the small solver, and first-order UniPC, which for
// flow matching reduces exactly (in exact arithmetic) to an Euler step on the same sigmas.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <vector>

#include "core/error.h"
#include "core/threads.h"
#include "sched/flow_sigmas.h"
#include "sched/numpy_linspace.h"
#include "sched/unipc.h"
#include "sched/unipc_coefficients.h"

namespace freeswim::sched {
namespace {

TEST(SchedMath, LinspaceMatchesNumpyConstruction) {
  const std::vector<double> y = numpy_linspace(1.0, 0.001, 8);
  ASSERT_EQ(y.size(), 8u);
  EXPECT_EQ(y.front(), 1.0);
  EXPECT_EQ(y.back(), 0.001);  // set exactly, not i * step + start
  const double step = (0.001 - 1.0) / 7.0;
  for (int i = 0; i < 7; ++i) EXPECT_EQ(y[static_cast<size_t>(i)], i * step + 1.0);
  EXPECT_EQ(numpy_linspace(3.0, 5.0, 1), std::vector<double>{3.0});
  EXPECT_TRUE(numpy_linspace(0.0, 1.0, 0).empty());
}

TEST(SchedMath, SolveSmallPivots) {
  // First pivot is 0: only a row swap makes this solvable. Solution (1, -2, 3).
  const std::vector<float> a = {0, 2, 1, 1, 1, 1, 2, 1, -1};
  const std::vector<float> b = {0 * 1 + 2 * -2 + 1 * 3, 1 - 2 + 3, 2 - 2 - 3};
  const std::vector<float> x = solve_small(a, b);
  ASSERT_EQ(x.size(), 3u);
  EXPECT_NEAR(x[0], 1.0f, 1e-6);
  EXPECT_NEAR(x[1], -2.0f, 1e-6);
  EXPECT_NEAR(x[2], 3.0f, 1e-6);
  EXPECT_THROW(solve_small({1, 2, 2, 4}, {1, 1}), Error);
}

TEST(SchedMath, FlowTablesAreShiftedAndEndAtZero) {
  const SigmaTable u = unipc_flow_table(20, 1000, 3.0, true);
  ASSERT_EQ(u.sigmas.size(), 21u);
  EXPECT_EQ(u.sigmas.back(), 0.0f);
  for (size_t i = 0; i + 1 < u.sigmas.size(); ++i) EXPECT_GT(u.sigmas[i], u.sigmas[i + 1]);
  // Highest level: shift(0.999) with shift 3; timesteps are the truncated levels * 1000.
  EXPECT_FLOAT_EQ(u.sigmas[0], static_cast<float>(3 * 0.999 / (1 + 2 * 0.999)));
  for (size_t i = 0; i < u.timesteps.size(); ++i) {
    EXPECT_EQ(u.timesteps[i], std::floor(u.timesteps[i]));
    EXPECT_NEAR(u.timesteps[i], u.sigmas[i] * 1000.0f, 1.0f);
  }
  const SigmaTable last = unipc_flow_table(20, 1000, 3.0, false);
  EXPECT_EQ(last.sigmas[20], last.sigmas[19]);
  EXPECT_THROW(unipc_flow_table(0, 1000, 3.0, true), Error);
  EXPECT_THROW(flow_euler_table(5, 1000, 0.0), Error);
}

TEST(SchedMath, FirstOrderUniPCIsEuler) {
  UniPCConfig c = UniPCConfig::wan(5.0);
  c.solver_order = 1;
  const int steps = 9;
  for (int i = 0; i < steps; ++i) c.disable_corrector.push_back(i);
  UniPCScheduler u(c);
  u.set_timesteps(steps);
  std::vector<float> x = {0.5f, -1.25f, 2.0f, 0.0f};
  std::vector<float> xe = x;
  for (int i = 0; i < steps; ++i) {
    std::vector<float> v(x.size());
    for (size_t j = 0; j < x.size(); ++j) v[j] = 0.3f * xe[j] + 0.1f * static_cast<float>(j);
    const double s0 = u.sigmas()[static_cast<size_t>(i)];
    const double s1 = u.sigmas()[static_cast<size_t>(i) + 1];
    u.step(v.data(), x.data(), x.data(), x.size());
    for (size_t j = 0; j < x.size(); ++j) {
      xe[j] = static_cast<float>(xe[j] + (s1 - s0) * v[j]);
      EXPECT_NEAR(x[j], xe[j], 1e-5) << "step " << i << " element " << j;
    }
  }
}

TEST(SchedMath, CorrectorChangesTheResult) {
  // With the corrector on (the default), the second step must differ from the predictor-only
  // result; a corrector that silently did nothing would pass every first-order check.
  std::vector<float> m1 = {0.2f, -0.4f}, m2 = {0.5f, 0.1f};
  auto run = [&](bool corrector) {
    UniPCConfig c = UniPCConfig::wan(3.0);
    if (!corrector) c.disable_corrector = {0, 1, 2, 3};
    UniPCScheduler u(c);
    u.set_timesteps(4);
    std::vector<float> x = {1.0f, -1.0f};
    u.step(m1.data(), x.data(), x.data(), x.size());
    u.step(m2.data(), x.data(), x.data(), x.size());
    return x;
  };
  const std::vector<float> a = run(true), b = run(false);
  EXPECT_GT(std::fabs(a[0] - b[0]) + std::fabs(a[1] - b[1]), 1e-4);
}

TEST(SchedMath, ThreadCountDoesNotChangeBits) {
  // Large enough to be split into several chunks.
  const size_t n = 300000;
  auto run = [&](int threads) {
    set_max_threads(threads);
    UniPCScheduler u(UniPCConfig::wan(3.0));
    u.set_timesteps(6);
    std::vector<float> x(n), m(n);
    for (size_t j = 0; j < n; ++j)
      x[j] = static_cast<float>(std::sin(0.001 * static_cast<double>(j)));
    while (!u.done()) {
      for (size_t j = 0; j < n; ++j)
        m[j] = 0.5f * x[j] + 0.01f * static_cast<float>(u.step_index());
      u.step(m.data(), x.data(), x.data(), n);
    }
    set_max_threads(0);
    return x;
  };
  const std::vector<float> one = run(1), four = run(4);
  EXPECT_EQ(std::memcmp(one.data(), four.data(), n * sizeof(float)), 0);
}

}  // namespace
}  // namespace freeswim::sched
