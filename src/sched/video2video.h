// Video-to-video (and upscaling) runs only the last part of a schedule: with strength s and n
// steps, the last int(n * s) steps, as diffusers' get_timesteps computes it:
//   init = min(int(n * s), n), t_start = max(n - init, 0)
// and the clean latent is noised to the level of step t_start (Scheduler::add_noise after
// set_begin_index(t_start)).
#pragma once

namespace freeswim::sched {

struct Video2VideoStart {
  int t_start = 0;    // index of the first step that runs
  int steps_run = 0;  // steps from t_start to the end
};

// Throws Error (naming --strength / --steps) for n < 1, strength outside (0, 1], or a strength
// so small that no step would run.
Video2VideoStart video2video_start(int num_steps, double strength);

}  // namespace freeswim::sched
