// UniPC multistep (predictor UniP + corrector UniC, B(h) variants) with flow-matching sigmas,
// as diffusers 0.35.2 UniPCMultistepScheduler runs it in Wan's configuration:
// use_flow_sigmas, prediction_type "flow_prediction", predict_x0, solver_order 2, bh2,
// lower_order_final, final_sigmas_type "zero". Only the flow-matching configurations are
// implemented; from_diffusers_json refuses every other setting by name.
#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "sched/scheduler.h"
#include "sched/unipc_coefficients.h"

namespace freeswim::sched {

struct UniPCConfig {
  int num_train_timesteps = 1000;
  int solver_order = 2;
  double flow_shift = 1.0;  // Wan: 3 at 480p, 5 at 720p; the FreeSwim high-resolution stage: 9
  UniPCSolverType solver_type = UniPCSolverType::BH2;
  bool lower_order_final = true;
  bool final_sigma_zero = true;        // final_sigmas_type "zero" (else "sigma_min")
  std::vector<int> disable_corrector;  // steps whose output is not corrected at the next step

  // Wan2.1's configuration with the given shift.
  static UniPCConfig wan(double flow_shift);
  // A diffusers scheduler_config.json object. Keys that do not matter for flow sigmas
  // (betas, steps_offset, timestep_spacing) are ignored; settings we do not implement throw
  // Error naming the key and value.
  static UniPCConfig from_diffusers_json(const nlohmann::json& j);
  nlohmann::json to_json() const;
};

class UniPCScheduler final : public Scheduler {
 public:
  explicit UniPCScheduler(UniPCConfig config);

  std::string kind() const override { return "unipc"; }
  const UniPCConfig& config() const { return config_; }

  void set_timesteps(int num_steps) override;
  SchedulerState save_state() const override;
  void load_state(const SchedulerState& state) override;

 private:
  void step_impl(const float* model_output, const float* x, float* x_next, size_t n) override;
  void load_state_impl(const SchedulerState& state);

  UniPCConfig config_;
  // Data predictions of the last solver_order steps, oldest first (empty = not yet filled).
  std::vector<std::vector<float>> model_outputs_;
  std::vector<float> last_sample_;  // the (corrected) sample the last predictor started from
  bool have_last_sample_ = false;
  int lower_order_nums_ = 0;  // steps taken so far, capped at solver_order (warm-up)
  int this_order_ = 0;        // order of the last predictor, reused by the next corrector
};

}  // namespace freeswim::sched
