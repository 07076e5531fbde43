#include "sched/scheduler.h"

#include "core/error.h"
#include "core/threads.h"

namespace freeswim::sched {

void Scheduler::reset_run() {
  n_ = 0;
  step_index_ = 0;
  started_ = false;
}

void Scheduler::set_begin_index(int index) {
  FS_CHECK(num_steps() > 0, "scheduler: set_timesteps must come before set_begin_index");
  FS_CHECK(!started_, "scheduler: set_begin_index({}) after a step was taken", index);
  FS_CHECK(index >= 0 && index < num_steps(),
           "scheduler: begin index {} outside the schedule of {} steps", index, num_steps());
  step_index_ = index;
}

void Scheduler::step(const float* model_output, const float* x, float* x_next, size_t n) {
  FS_CHECK(num_steps() > 0, "scheduler {}: step before set_timesteps", kind());
  FS_CHECK(!done(), "scheduler {}: all {} steps already taken", kind(), num_steps());
  FS_CHECK(n > 0, "scheduler {}: step on an empty array", kind());
  if (started_) {
    FS_CHECK(n == n_, "scheduler {}: step {} got {} elements, earlier steps had {}", kind(),
             step_index_, n, n_);
  }
  n_ = n;
  step_impl(model_output, x, x_next, n);
  started_ = true;
  ++step_index_;
}

namespace {
void check_cpu_f32(const Tensor& t, const char* what) {
  FS_CHECK(t.defined(), "scheduler: {} is undefined", what);
  FS_CHECK(t.device() == Device::CPU && t.dtype() == DType::F32,
           "scheduler: {} must be a CPU float32 tensor, got {}", what, t.describe());
}
}  // namespace

Tensor Scheduler::step(const Tensor& model_output, const Tensor& x) {
  check_cpu_f32(model_output, "model output");
  check_cpu_f32(x, "sample");
  FS_CHECK(model_output.shape() == x.shape(),
           "scheduler: model output {} and sample {} differ in shape",
           shape_str(model_output.shape()), shape_str(x.shape()));
  Tensor out = Tensor::empty(x.shape());
  step(model_output.data<float>(), x.data<float>(), out.data<float>(),
       static_cast<size_t>(x.numel()));
  return out;
}

void add_flow_noise(const float* x, const float* noise, float sigma, float* out, size_t n) {
  // The reference computes alpha = 1 - sigma first, then alpha * x + sigma * noise.
  const float alpha = 1.0f - sigma;
  parallel_for(static_cast<int64_t>(n), 1 << 16, [&](int64_t begin, int64_t end) {
    for (size_t i = static_cast<size_t>(begin); i < static_cast<size_t>(end); ++i) {
      const float a = alpha * x[i];
      const float b = sigma * noise[i];
      out[i] = a + b;
    }
  });
}

void Scheduler::add_noise(const float* x, const float* noise, float* out, size_t n) const {
  FS_CHECK(num_steps() > 0, "scheduler {}: add_noise before set_timesteps", kind());
  FS_CHECK(!done(), "scheduler {}: add_noise after the last step", kind());
  add_flow_noise(x, noise, sigmas_[static_cast<size_t>(step_index_)], out, n);
}

Tensor Scheduler::add_noise(const Tensor& x, const Tensor& noise) const {
  check_cpu_f32(x, "clean latent");
  check_cpu_f32(noise, "noise");
  FS_CHECK(x.shape() == noise.shape(), "scheduler: latent {} and noise {} differ in shape",
           shape_str(x.shape()), shape_str(noise.shape()));
  Tensor out = Tensor::empty(x.shape());
  add_noise(x.data<float>(), noise.data<float>(), out.data<float>(),
            static_cast<size_t>(x.numel()));
  return out;
}

nlohmann::json Scheduler::base_meta() const {
  return {{"kind", kind()},
          {"num_steps", num_steps()},
          {"step_index", step_index_},
          {"started", started_},
          {"elements", n_}};
}

void Scheduler::load_base_meta(const nlohmann::json& meta) {
  try {
    const auto k = meta.at("kind").get<std::string>();
    FS_CHECK(k == kind(), "scheduler state: saved by a {} scheduler, this run uses {}", k, kind());
    const int steps = meta.at("num_steps").get<int>();
    FS_CHECK(steps == num_steps(), "scheduler state: saved for {} steps, this run has {}", steps,
             num_steps());
    const int index = meta.at("step_index").get<int>();
    FS_CHECK(index >= 0 && index <= steps, "scheduler state: step index {} outside 0..{}", index,
             steps);
    step_index_ = index;
    started_ = meta.at("started").get<bool>();
    n_ = meta.at("elements").get<size_t>();
  } catch (const nlohmann::json::exception& e) {
    fail("scheduler state: malformed ({})", e.what());
  }
}

const std::vector<float>& Scheduler::state_array(const SchedulerState& state,
                                                 const std::string& name, size_t n) {
  for (const auto& [key, values] : state.arrays) {
    if (key == name) {
      FS_CHECK(values.size() == n, "scheduler state: array {} holds {} values, expected {}", name,
               values.size(), n);
      return values;
    }
  }
  fail("scheduler state: array {} is missing", name);
}

}  // namespace freeswim::sched
