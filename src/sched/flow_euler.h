// Flow-match Euler (diffusers 0.35.2 FlowMatchEulerDiscreteScheduler with its defaults and a
// static shift): x_next = x + (sigma_next - sigma) * v. No history beyond the step index.
#pragma once

#include <nlohmann/json.hpp>
#include <string>

#include "sched/scheduler.h"

namespace freeswim::sched {

struct FlowEulerConfig {
  int num_train_timesteps = 1000;
  double shift = 1.0;

  // A diffusers scheduler_config.json object; dynamic shifting, inverted sigmas, a shift
  // terminal, Karras/exponential/beta sigmas and stochastic sampling are refused by name.
  static FlowEulerConfig from_diffusers_json(const nlohmann::json& j);
  nlohmann::json to_json() const;
};

class FlowEulerScheduler final : public Scheduler {
 public:
  explicit FlowEulerScheduler(FlowEulerConfig config);

  std::string kind() const override { return "flow_euler"; }
  const FlowEulerConfig& config() const { return config_; }

  void set_timesteps(int num_steps) override;
  SchedulerState save_state() const override;
  void load_state(const SchedulerState& state) override;

 private:
  void step_impl(const float* model_output, const float* x, float* x_next, size_t n) override;
  void load_state_impl(const SchedulerState& state);
  FlowEulerConfig config_;
};

}  // namespace freeswim::sched
