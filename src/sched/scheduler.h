// Scheduler: turns the model's flow prediction at each step into the next latent. A run is
//   set_timesteps(n); [set_begin_index(k)]; for each remaining step i: x = step(model(x, t_i), x)
// The model is evaluated at timesteps()[step_index()]. Implementations keep whatever history a
// multistep method needs inside; save_state()/load_state() capture all of it so that a killed
// run can resume and produce the same bits as an uninterrupted one.
//
// All arrays are plain float32 of n elements (any layout: the update is elementwise).
#pragma once

#include <cstddef>
#include <nlohmann/json.hpp>
#include <string>
#include <utility>
#include <vector>

#include "core/tensor.h"

namespace freeswim::sched {

// Everything a scheduler needs to continue: counters and configuration in `meta` (json), the
// per-element history buffers in `arrays` (name -> n floats). The pipeline serialises both.
struct SchedulerState {
  nlohmann::json meta;
  std::vector<std::pair<std::string, std::vector<float>>> arrays;
};

class Scheduler {
 public:
  virtual ~Scheduler() = default;

  // "unipc" or "flow_euler"; recorded in saved states.
  virtual std::string kind() const = 0;

  // Builds the schedule for `num_steps` denoising steps (>= 1) and clears all history.
  virtual void set_timesteps(int num_steps) = 0;

  // The timesteps the model is evaluated at (num_steps values) and the noise levels
  // (num_steps + 1 values, the last being the final level, 0).
  const std::vector<float>& timesteps() const { return timesteps_; }
  const std::vector<float>& sigmas() const { return sigmas_; }
  int num_steps() const { return static_cast<int>(timesteps_.size()); }

  // The step the next call to step() performs (0-based). Before the first step it is the
  // begin index.
  int step_index() const { return step_index_; }
  // True when every step of the schedule has been taken.
  bool done() const { return step_index_ >= num_steps(); }

  // Video-to-video: the run starts at step `index` instead of 0 (the multistep history starts
  // empty there, as in the reference). Only before the first step.
  void set_begin_index(int index);

  // One denoising step: x_next from the model output at x. x_next may alias x.
  void step(const float* model_output, const float* x, float* x_next, size_t n);
  // The same on CPU float32 tensors of equal shape; returns a new tensor.
  Tensor step(const Tensor& model_output, const Tensor& x);

  // Flow-matching forward noising at the noise level of step_index() (for video-to-video:
  // call after set_begin_index, before the first step): out = (1 - sigma) * x + sigma * noise,
  // in float32 as the reference computes it. `out` may alias x or noise.
  void add_noise(const float* x, const float* noise, float* out, size_t n) const;
  Tensor add_noise(const Tensor& x, const Tensor& noise) const;

  // Complete state, and its restoration. load_state refuses (Error) a state saved by another
  // kind of scheduler or with another configuration or step count, naming the difference.
  virtual SchedulerState save_state() const = 0;
  virtual void load_state(const SchedulerState& state) = 0;

 protected:
  // The method's update for step_index(); the base class checks arguments and advances
  // step_index_ afterwards.
  virtual void step_impl(const float* model_output, const float* x, float* x_next, size_t n) = 0;
  // Elements per array, fixed by the first step of a run (0 before it).
  size_t n_ = 0;
  std::vector<float> timesteps_;
  std::vector<float> sigmas_;
  int step_index_ = 0;
  bool started_ = false;  // a step has been taken since set_timesteps

  void reset_run();
  // Common part of save/load: the counters above.
  nlohmann::json base_meta() const;
  void load_base_meta(const nlohmann::json& meta);
  // The array named `name` in `state`, checked to hold `n` floats.
  static const std::vector<float>& state_array(const SchedulerState& state, const std::string& name,
                                               size_t n);
};

// Flow-matching forward noising with an explicit noise level (see Scheduler::add_noise).
void add_flow_noise(const float* x, const float* noise, float sigma, float* out, size_t n);

}  // namespace freeswim::sched
