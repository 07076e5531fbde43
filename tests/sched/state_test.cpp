// Save/restore (--resume): a run interrupted after any step and continued from the saved state
// (through its json text, as the pipeline stores it) gives the same bits as an uninterrupted
// run; states that do not belong to the run are refused.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "core/error.h"
#include "sched/flow_euler.h"
#include "sched/unipc.h"

namespace freeswim::sched {
namespace {

constexpr size_t kN = 257;

// A deterministic, step-dependent stand-in for the model: a smooth function of x and the step.
std::vector<float> fake_model(const std::vector<float>& x, int step) {
  std::vector<float> m(x.size());
  for (size_t i = 0; i < x.size(); ++i) {
    m[i] = 0.6f * x[i] - 0.3f * static_cast<float>(std::sin(0.37 * static_cast<double>(i) + step));
  }
  return m;
}

std::vector<float> initial(size_t n) {
  std::vector<float> x(n);
  uint32_t s = 12345;
  for (auto& v : x) {
    s = s * 1664525u + 1013904223u;
    v = static_cast<float>(static_cast<int32_t>(s >> 8) % 2001 - 1000) / 500.0f;
  }
  return x;
}

// Steps from the scheduler's current index to the end.
void run_to_end(Scheduler& s, std::vector<float>& x) {
  while (!s.done()) {
    const std::vector<float> m = fake_model(x, s.step_index());
    s.step(m.data(), x.data(), x.data(), x.size());
  }
}

// What the pipeline does: meta as json text, arrays as raw floats.
SchedulerState round_trip(const SchedulerState& st) {
  SchedulerState out;
  out.meta = nlohmann::json::parse(st.meta.dump());
  out.arrays = st.arrays;
  return out;
}

template <typename Make>
void check_resume(Make make, int steps, int begin) {
  std::vector<float> ref = initial(kN);
  {
    auto s = make();
    s->set_timesteps(steps);
    s->set_begin_index(begin);
    run_to_end(*s, ref);
  }
  for (int kill = begin; kill <= steps; ++kill) {
    std::vector<float> x = initial(kN);
    auto a = make();
    a->set_timesteps(steps);
    a->set_begin_index(begin);
    while (a->step_index() < kill) {
      const std::vector<float> m = fake_model(x, a->step_index());
      a->step(m.data(), x.data(), x.data(), x.size());
    }
    const SchedulerState saved = round_trip(a->save_state());
    a.reset();
    auto b = make();  // a fresh process: nothing but the config
    b->load_state(saved);
    EXPECT_EQ(b->step_index(), kill);
    run_to_end(*b, x);
    EXPECT_EQ(std::memcmp(x.data(), ref.data(), kN * sizeof(float)), 0)
        << b->kind() << ": resumed after step " << kill << " differs";
  }
}

TEST(SchedState, UniPCResumeIsBitExact) {
  check_resume([] { return std::make_unique<UniPCScheduler>(UniPCConfig::wan(3.0)); }, 12, 0);
  check_resume([] { return std::make_unique<UniPCScheduler>(UniPCConfig::wan(9.0)); }, 10, 3);
  UniPCConfig third = UniPCConfig::wan(5.0);
  third.solver_order = 3;
  check_resume([&] { return std::make_unique<UniPCScheduler>(third); }, 8, 0);
}

TEST(SchedState, FlowEulerResumeIsBitExact) {
  check_resume(
      [] {
        return std::make_unique<FlowEulerScheduler>(FlowEulerConfig{1000, 5.0});
      },
      9, 2);
}

TEST(SchedState, MismatchedStatesAreRefused) {
  UniPCScheduler a(UniPCConfig::wan(9.0));
  a.set_timesteps(10);
  std::vector<float> x = initial(kN);
  for (int i = 0; i < 3; ++i) {
    const std::vector<float> m = fake_model(x, i);
    a.step(m.data(), x.data(), x.data(), x.size());
  }
  const SchedulerState st = a.save_state();

  UniPCScheduler other_shift(UniPCConfig::wan(3.0));
  EXPECT_THROW(other_shift.load_state(st), Error);
  FlowEulerScheduler euler(FlowEulerConfig{1000, 9.0});
  EXPECT_THROW(euler.load_state(st), Error);

  UniPCScheduler ok(UniPCConfig::wan(9.0));
  SchedulerState steps = st;
  steps.meta["num_steps"] = 20;
  steps.meta["step_index"] = 30;
  EXPECT_THROW(ok.load_state(steps), Error);

  SchedulerState missing = st;
  missing.arrays.pop_back();
  EXPECT_THROW(ok.load_state(missing), Error);

  SchedulerState short_array = st;
  short_array.arrays[0].second.resize(kN - 1);
  EXPECT_THROW(ok.load_state(short_array), Error);

  SchedulerState bad_order = st;
  bad_order.meta["this_order"] = 7;
  EXPECT_THROW(ok.load_state(bad_order), Error);

  SchedulerState no_kind = st;
  no_kind.meta.erase("kind");
  EXPECT_THROW(ok.load_state(no_kind), Error);

  // A run already set up for another step count refuses the state.
  UniPCScheduler set_up(UniPCConfig::wan(9.0));
  set_up.set_timesteps(50);
  EXPECT_THROW(set_up.load_state(st), Error);

  ok.load_state(st);  // the intact state still loads
  EXPECT_EQ(ok.step_index(), 3);
}

}  // namespace
}  // namespace freeswim::sched
