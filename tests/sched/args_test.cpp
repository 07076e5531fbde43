// Bad arguments a user (or the pipeline) can pass: every one throws Error with a message
// naming what is wrong.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "core/error.h"
#include "sched/flow_euler.h"
#include "sched/unipc.h"
#include "sched/video2video.h"

namespace freeswim::sched {
namespace {

// Expects `fn` to throw freeswim::Error whose message contains `needle`.
template <typename Fn>
void expect_error(Fn fn, const std::string& needle) {
  try {
    fn();
    ADD_FAILURE() << "no Error thrown (expected one mentioning '" << needle << "')";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(needle), std::string::npos)
        << "message '" << e.what() << "' does not mention '" << needle << "'";
  }
}

TEST(SchedArgs, ZeroOrNegativeSteps) {
  UniPCScheduler u(UniPCConfig::wan(3.0));
  expect_error([&] { u.set_timesteps(0); }, "steps");
  expect_error([&] { u.set_timesteps(-5); }, "steps");
  FlowEulerScheduler e(FlowEulerConfig{1000, 5.0});
  expect_error([&] { e.set_timesteps(0); }, "steps");
  expect_error([] { video2video_start(0, 0.5); }, "--steps");
}

TEST(SchedArgs, StrengthOutsideUnitInterval) {
  for (double s :
       {0.0, -0.1, 1.0000001, 2.0, std::nan(""), std::numeric_limits<double>::infinity()}) {
    expect_error([&] { video2video_start(50, s); }, "--strength");
  }
  // Positive but too small to run a single step of 10.
  expect_error([] { video2video_start(10, 0.05); }, "no denoising step");
}

TEST(SchedArgs, StrengthBoundaries) {
  // strength 1: every step runs; 0.7 of 50: the last 35 (FreeSwim's high-resolution stage).
  EXPECT_EQ(video2video_start(50, 1.0).t_start, 0);
  EXPECT_EQ(video2video_start(50, 1.0).steps_run, 50);
  EXPECT_EQ(video2video_start(50, 0.7).t_start, 15);
  EXPECT_EQ(video2video_start(50, 0.7).steps_run, 35);
  // int() truncates: 10 * 0.29 = 2.9 -> 2 steps.
  EXPECT_EQ(video2video_start(10, 0.29).steps_run, 2);
}

TEST(SchedArgs, StepOutOfOrder) {
  UniPCScheduler u(UniPCConfig::wan(3.0));
  std::vector<float> m(6, 0.1f), x(6, 1.0f);
  expect_error([&] { u.step(m.data(), x.data(), x.data(), x.size()); }, "before set_timesteps");
  u.set_timesteps(2);
  u.step(m.data(), x.data(), x.data(), x.size());
  // A different element count from the first step.
  expect_error([&] { u.step(m.data(), x.data(), x.data(), 5); }, "elements");
  expect_error([&] { u.set_begin_index(1); }, "after a step");
  u.step(m.data(), x.data(), x.data(), x.size());
  EXPECT_TRUE(u.done());
  expect_error([&] { u.step(m.data(), x.data(), x.data(), x.size()); }, "already taken");
  expect_error([&] { u.add_noise(x.data(), m.data(), x.data(), x.size()); }, "after the last");
}

TEST(SchedArgs, BeginIndexOutOfRange) {
  FlowEulerScheduler e(FlowEulerConfig{1000, 3.0});
  expect_error([&] { e.set_begin_index(0); }, "set_timesteps");
  e.set_timesteps(4);
  expect_error([&] { e.set_begin_index(4); }, "outside");
  expect_error([&] { e.set_begin_index(-1); }, "outside");
  e.set_begin_index(3);
  EXPECT_EQ(e.step_index(), 3);
}

TEST(SchedArgs, TensorShapesAndTypes) {
  UniPCScheduler u(UniPCConfig::wan(5.0));
  u.set_timesteps(3);
  const Tensor a = Tensor::zeros({2, 3});
  const Tensor b = Tensor::zeros({3, 2});
  expect_error([&] { u.step(a, b); }, "shape");
  expect_error([&] { u.add_noise(a, b); }, "shape");
  expect_error([&] { u.step(Tensor::zeros({2, 3}, DType::F16), a); }, "float32");
  const Tensor x = u.step(a, Tensor::from_vector({2, 3}, {1, 2, 3, 4, 5, 6}));
  EXPECT_EQ(x.shape(), (Shape{2, 3}));
}

TEST(SchedArgs, UnsupportedConfigsAreNamed) {
  nlohmann::json j = {{"prediction_type", "flow_prediction"}, {"use_flow_sigmas", true}};
  EXPECT_EQ(UniPCConfig::from_diffusers_json(j).solver_order, 2);
  auto with = [&](const char* key, nlohmann::json v) {
    nlohmann::json k = j;
    k[key] = std::move(v);
    return k;
  };
  expect_error([&] { UniPCConfig::from_diffusers_json(with("prediction_type", "epsilon")); },
               "prediction_type");
  expect_error([&] { UniPCConfig::from_diffusers_json(with("use_flow_sigmas", false)); },
               "use_flow_sigmas");
  expect_error([&] { UniPCConfig::from_diffusers_json(with("use_karras_sigmas", true)); },
               "use_karras_sigmas");
  expect_error([&] { UniPCConfig::from_diffusers_json(with("thresholding", true)); },
               "thresholding");
  expect_error([&] { UniPCConfig::from_diffusers_json(with("solver_type", "bh3")); },
               "solver_type");
  expect_error([&] { UniPCConfig::from_diffusers_json(with("final_sigmas_type", "one")); },
               "final_sigmas_type");
  expect_error([&] { UniPCConfig::from_diffusers_json(with("solver_order", 0)); }, "solver_order");
  expect_error([&] { UniPCConfig::from_diffusers_json(with("flow_shift", "three")); },
               "flow_shift");
  expect_error([&] { UniPCScheduler s(UniPCConfig::wan(-1.0)); }, "shift");
  expect_error(
      [&] {
        FlowEulerConfig::from_diffusers_json({{"invert_sigmas", true}});
      },
      "invert_sigmas");
  expect_error(
      [&] {
        FlowEulerConfig::from_diffusers_json({{"shift_terminal", 0.1}});
      },
      "shift_terminal");
  expect_error([&] { FlowEulerScheduler s(FlowEulerConfig{1000, 0.0}); }, "shift");
}

}  // namespace
}  // namespace freeswim::sched
