#include "sched/flow_sigmas.h"

#include <cstdint>

#include "core/error.h"
#include "sched/numpy_linspace.h"

namespace freeswim::sched {

namespace {
void check_common(int num_steps, int num_train_timesteps, double shift) {
  FS_CHECK(num_steps >= 1, "scheduler: the number of steps must be at least 1, got {}", num_steps);
  FS_CHECK(num_train_timesteps >= 2, "scheduler: num_train_timesteps must be at least 2, got {}",
           num_train_timesteps);
  FS_CHECK(shift > 0.0, "scheduler: the flow shift must be positive, got {}", shift);
}
}  // namespace

SigmaTable unipc_flow_table(int num_steps, int num_train_timesteps, double shift, bool final_zero) {
  check_common(num_steps, num_train_timesteps, shift);
  const double train = static_cast<double>(num_train_timesteps);
  // alphas run from 1 down to 1/train; sigma = 1 - alpha rises from 0. Reversed, the level at
  // 0 (the last after reversal) is dropped.
  const std::vector<double> alphas = numpy_linspace(1.0, 1.0 / train, num_steps + 1);
  SigmaTable t;
  for (int j = 0; j < num_steps; ++j) {
    const double s = shift_sigma(1.0 - alphas[static_cast<size_t>(num_steps - j)], shift);
    // Timesteps come from the float64 level, truncated to an integer.
    t.timesteps.push_back(static_cast<float>(static_cast<int64_t>(s * train)));
    t.sigmas.push_back(static_cast<float>(s));
  }
  t.sigmas.push_back(final_zero ? 0.0f : t.sigmas.back());
  return t;
}

SigmaTable flow_euler_table(int num_steps, int num_train_timesteps, double shift) {
  check_common(num_steps, num_train_timesteps, shift);
  // The training schedule (built in float32 at construction) is already shifted; its extremes
  // bound the inference schedule, which is then shifted again in float64.
  const float train_f = static_cast<float>(num_train_timesteps);
  // torch applies a Python scalar to a float32 tensor as float32: shift and (shift - 1) are
  // rounded separately.
  const float shift_f = static_cast<float>(shift);
  const float shift_m1_f = static_cast<float>(shift - 1.0);
  const auto shifted_f32 = [&](float s) { return shift_f * s / (1.0f + shift_m1_f * s); };
  const double sigma_max = static_cast<double>(shifted_f32(train_f / train_f));
  const double sigma_min = static_cast<double>(shifted_f32(1.0f / train_f));
  const double train = static_cast<double>(num_train_timesteps);
  const std::vector<double> ts = numpy_linspace(sigma_max * train, sigma_min * train, num_steps);
  SigmaTable t;
  for (double v : ts) {
    const float s = static_cast<float>(shift_sigma(v / train, shift));
    t.sigmas.push_back(s);
    t.timesteps.push_back(s * train_f);
  }
  t.sigmas.push_back(0.0f);
  return t;
}

}  // namespace freeswim::sched
