// The sigma/timestep tables of the two flow-matching schedulers, computed in the reference's
// dtypes (float64 tables cast to float32 at the same points as diffusers 0.35.2).
#pragma once

#include <vector>

namespace freeswim::sched {

struct SigmaTable {
  std::vector<float> timesteps;  // num_steps values
  std::vector<float> sigmas;     // num_steps + 1 values
};

// Shifted flow sigma: shift * s / (1 + (shift - 1) * s).
inline double shift_sigma(double s, double shift) {
  return shift * s / (1.0 + (shift - 1.0) * s);
}

// UniPC with use_flow_sigmas: num_steps shifted levels from 1 - 1/train down, integer timesteps
// (truncated sigma * train), then the final level (0, or the last level when !final_zero).
SigmaTable unipc_flow_table(int num_steps, int num_train_timesteps, double shift, bool final_zero);

// FlowMatchEulerDiscreteScheduler (static shift): linspace between the shifted extremes of the
// training schedule, shifted once more, float32 timesteps = sigma * train, final level 0.
SigmaTable flow_euler_table(int num_steps, int num_train_timesteps, double shift);

}  // namespace freeswim::sched
