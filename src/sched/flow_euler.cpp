#include "sched/flow_euler.h"

#include <utility>

#include "core/error.h"
#include "core/threads.h"
#include "sched/flow_sigmas.h"

namespace freeswim::sched {

FlowEulerConfig FlowEulerConfig::from_diffusers_json(const nlohmann::json& j) {
  FS_CHECK(j.is_object(), "flow_euler config: expected a json object, got {}", j.dump());
  FlowEulerConfig c;
  try {
    for (const char* key : {"use_dynamic_shifting", "invert_sigmas", "use_karras_sigmas",
                            "use_exponential_sigmas", "use_beta_sigmas", "stochastic_sampling"}) {
      if (j.contains(key) && !j.at(key).is_null()) {
        FS_CHECK(!j.at(key).get<bool>(), "flow_euler config: \"{}\": true is not supported", key);
      }
    }
    FS_CHECK(!j.contains("shift_terminal") || j.at("shift_terminal").is_null(),
             "flow_euler config: \"shift_terminal\" is not supported");
    if (j.contains("num_train_timesteps")) {
      c.num_train_timesteps = j.at("num_train_timesteps").get<int>();
    }
    if (j.contains("shift")) c.shift = j.at("shift").get<double>();
  } catch (const nlohmann::json::exception& e) {
    fail("flow_euler config: a key has the wrong type ({})", e.what());
  }
  return c;
}

nlohmann::json FlowEulerConfig::to_json() const {
  return {{"num_train_timesteps", num_train_timesteps}, {"shift", shift}};
}

FlowEulerScheduler::FlowEulerScheduler(FlowEulerConfig config) : config_(config) {
  FS_CHECK(config_.shift > 0, "flow_euler: shift must be positive, got {}", config_.shift);
}

void FlowEulerScheduler::set_timesteps(int num_steps) {
  SigmaTable t = flow_euler_table(num_steps, config_.num_train_timesteps, config_.shift);
  timesteps_ = std::move(t.timesteps);
  sigmas_ = std::move(t.sigmas);
  reset_run();
}

void FlowEulerScheduler::step_impl(const float* model_output, const float* x, float* x_next,
                                   size_t n) {
  const size_t i = static_cast<size_t>(step_index_);
  const float dt = sigmas_[i + 1] - sigmas_[i];
  parallel_for(static_cast<int64_t>(n), 1 << 16, [&](int64_t b, int64_t e) {
    for (size_t j = static_cast<size_t>(b); j < static_cast<size_t>(e); ++j) {
      const float d = dt * model_output[j];
      x_next[j] = x[j] + d;
    }
  });
}

SchedulerState FlowEulerScheduler::save_state() const {
  SchedulerState s;
  s.meta = base_meta();
  s.meta["config"] = config_.to_json();
  return s;
}

void FlowEulerScheduler::load_state(const SchedulerState& state) {
  // All or nothing: a refused state leaves the scheduler as it was.
  FlowEulerScheduler before = *this;
  try {
    load_state_impl(state);
  } catch (...) {
    *this = std::move(before);
    throw;
  }
}

void FlowEulerScheduler::load_state_impl(const SchedulerState& state) {
  const nlohmann::json& m = state.meta;
  FS_CHECK(m.is_object() && m.contains("kind") && m.contains("config") && m.contains("num_steps"),
           "scheduler state: malformed (no kind/config/num_steps)");
  FS_CHECK(m.at("kind") == kind(), "scheduler state: saved by a {} scheduler, this run uses {}",
           m.at("kind").dump(), kind());
  FS_CHECK(m.at("config") == config_.to_json(),
           "scheduler state: saved with config {}, this run uses {}", m.at("config").dump(),
           config_.to_json().dump());
  int steps = 0;
  try {
    steps = m.at("num_steps").get<int>();
  } catch (const nlohmann::json::exception& e) {
    fail("scheduler state: malformed num_steps ({})", e.what());
  }
  FS_CHECK(num_steps() == 0 || num_steps() == steps,
           "scheduler state: saved for {} steps, this run has {}", steps, num_steps());
  set_timesteps(steps);
  load_base_meta(m);
}

}  // namespace freeswim::sched
