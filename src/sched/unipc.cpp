#include "sched/unipc.h"

#include <algorithm>
#include <utility>

#include "core/error.h"
#include "core/threads.h"
#include "sched/flow_sigmas.h"

namespace freeswim::sched {

namespace {
constexpr int64_t kGrain = 1 << 16;  // elements worth a thread
}  // namespace

UniPCConfig UniPCConfig::wan(double flow_shift) {
  UniPCConfig c;
  c.flow_shift = flow_shift;
  return c;
}

namespace {

template <typename T>
T value_or(const nlohmann::json& j, const char* key, T fallback) {
  if (!j.contains(key) || j.at(key).is_null()) return fallback;
  try {
    return j.at(key).get<T>();
  } catch (const nlohmann::json::exception&) {
    fail("unipc config: key \"{}\" has the wrong type ({})", key, j.at(key).dump());
  }
}

void require(const nlohmann::json& j, const char* key, bool wanted, bool fallback) {
  const bool v = value_or<bool>(j, key, fallback);
  FS_CHECK(v == wanted, "unipc config: \"{}\": {} is not supported (only {})", key, v, wanted);
}

}  // namespace

UniPCConfig UniPCConfig::from_diffusers_json(const nlohmann::json& j) {
  FS_CHECK(j.is_object(), "unipc config: expected a json object, got {}", j.dump());
  UniPCConfig c;
  const auto prediction = value_or<std::string>(j, "prediction_type", "epsilon");
  FS_CHECK(prediction == "flow_prediction",
           "unipc config: prediction_type \"{}\" is not supported (only \"flow_prediction\")",
           prediction);
  require(j, "use_flow_sigmas", true, false);
  require(j, "predict_x0", true, true);
  require(j, "thresholding", false, false);
  require(j, "use_karras_sigmas", false, false);
  require(j, "use_exponential_sigmas", false, false);
  require(j, "use_beta_sigmas", false, false);
  require(j, "use_dynamic_shifting", false, false);
  FS_CHECK(!j.contains("solver_p") || j.at("solver_p").is_null(),
           "unipc config: solver_p is not supported");

  c.num_train_timesteps = value_or<int>(j, "num_train_timesteps", 1000);
  c.solver_order = value_or<int>(j, "solver_order", 2);
  FS_CHECK(c.solver_order >= 1 && c.solver_order <= 4, "unipc config: solver_order {} outside 1..4",
           c.solver_order);
  c.flow_shift = value_or<double>(j, "flow_shift", 1.0);
  const auto solver = value_or<std::string>(j, "solver_type", "bh2");
  if (solver == "bh1") {
    c.solver_type = UniPCSolverType::BH1;
  } else if (solver == "bh2" || solver == "midpoint" || solver == "heun" || solver == "logrho") {
    c.solver_type = UniPCSolverType::BH2;  // the reference maps the DPM-Solver names to bh2
  } else {
    fail("unipc config: solver_type \"{}\" is not one of bh1, bh2", solver);
  }
  c.lower_order_final = value_or<bool>(j, "lower_order_final", true);
  const auto final_type = value_or<std::string>(j, "final_sigmas_type", "zero");
  FS_CHECK(final_type == "zero" || final_type == "sigma_min",
           "unipc config: final_sigmas_type \"{}\" is not one of zero, sigma_min", final_type);
  c.final_sigma_zero = final_type == "zero";
  const auto spacing = value_or<std::string>(j, "timestep_spacing", "linspace");
  FS_CHECK(spacing == "linspace" || spacing == "leading" || spacing == "trailing",
           "unipc config: timestep_spacing \"{}\" is not one of linspace, leading, trailing",
           spacing);
  c.disable_corrector = value_or<std::vector<int>>(j, "disable_corrector", {});
  return c;
}

nlohmann::json UniPCConfig::to_json() const {
  return {{"num_train_timesteps", num_train_timesteps},
          {"solver_order", solver_order},
          {"flow_shift", flow_shift},
          {"solver_type", solver_type == UniPCSolverType::BH1 ? "bh1" : "bh2"},
          {"lower_order_final", lower_order_final},
          {"final_sigmas_type", final_sigma_zero ? "zero" : "sigma_min"},
          {"disable_corrector", disable_corrector},
          {"prediction_type", "flow_prediction"},
          {"use_flow_sigmas", true},
          {"predict_x0", true}};
}

UniPCScheduler::UniPCScheduler(UniPCConfig config) : config_(std::move(config)) {
  FS_CHECK(config_.solver_order >= 1 && config_.solver_order <= 4,
           "unipc: solver_order {} outside 1..4", config_.solver_order);
  FS_CHECK(config_.flow_shift > 0, "unipc: flow shift must be positive, got {}",
           config_.flow_shift);
}

void UniPCScheduler::set_timesteps(int num_steps) {
  SigmaTable t = unipc_flow_table(num_steps, config_.num_train_timesteps, config_.flow_shift,
                                  config_.final_sigma_zero);
  timesteps_ = std::move(t.timesteps);
  sigmas_ = std::move(t.sigmas);
  reset_run();
  model_outputs_.assign(static_cast<size_t>(config_.solver_order), {});
  last_sample_.clear();
  have_last_sample_ = false;
  lower_order_nums_ = 0;
  this_order_ = 0;
}

void UniPCScheduler::step_impl(const float* model_output, const float* x, float* x_next, size_t n) {
  const int order = config_.solver_order;
  const size_t ord = static_cast<size_t>(order);
  const int idx = step_index_;
  if (!started_) {
    for (auto& m : model_outputs_) m.assign(n, 0.0f);
    last_sample_.assign(n, 0.0f);
  }

  const bool use_corrector =
      idx > 0 && have_last_sample_ &&
      std::find(config_.disable_corrector.begin(), config_.disable_corrector.end(), idx - 1) ==
          config_.disable_corrector.end();
  const int corr_order = this_order_;
  UniPCCoefficients cc;
  if (use_corrector) {
    cc = unipc_coefficients(sigmas_, idx, idx - 1, corr_order, true, config_.solver_type);
  }

  // Predictor order: lower at the last steps (lower_order_final) and during warm-up.
  int pred_order = order;
  if (config_.lower_order_final) pred_order = std::min(order, num_steps() - idx);
  pred_order = std::min(pred_order, lower_order_nums_ + 1);
  FS_CHECK(pred_order >= 1, "unipc: no predictor order at step {}", idx);
  const UniPCCoefficients cp =
      unipc_coefficients(sigmas_, idx + 1, idx, pred_order, false, config_.solver_type);

  // History before this step, newest last. After the step the buffer of prev[0] holds the new
  // prediction and prev[k + 1] becomes slot k; every element is read before it is written, so
  // the update runs in one pass and x_next may alias x.
  std::vector<float*> prev(ord);
  for (size_t k = 0; k < ord; ++k) prev[k] = model_outputs_[k].data();
  const float sigma = sigmas_[static_cast<size_t>(idx)];
  float* last = last_sample_.data();
  const size_t cn = static_cast<size_t>(corr_order);
  const size_t pn = static_cast<size_t>(pred_order);

  // Elementwise, so chunks on several threads give the same bits as one thread.
  parallel_for(static_cast<int64_t>(n), kGrain, [&](int64_t b, int64_t e) {
    for (size_t j = static_cast<size_t>(b); j < static_cast<size_t>(e); ++j) {
      float xj = x[j];
      // Data prediction from the flow prediction.
      const float x0 = xj - sigma * model_output[j];

      if (use_corrector) {
        const float m0 = prev[ord - 1][j];
        const float base = cc.ratio * last[j] - cc.alpha_h_phi_1 * m0;
        const float d1_t = x0 - m0;
        float inner = cc.rhos[cn - 1] * d1_t;
        if (cn > 1) {
          float corr = 0.0f;
          for (size_t i = 1; i < cn; ++i) {
            const float d1 = (prev[ord - 1 - i][j] - m0) / cc.rks[i - 1];
            const float term = cc.rhos[i - 1] * d1;
            corr = (i == 1) ? term : corr + term;
          }
          inner = corr + inner;
        }
        xj = base - cc.alpha_b_h * inner;
      }
      last[j] = xj;

      // Predictor; the older predictions are prev[ord - i] (they shift down by one this step).
      float xt = cp.ratio * xj - cp.alpha_h_phi_1 * x0;
      if (pn > 1) {
        float res = 0.0f;
        for (size_t i = 1; i < pn; ++i) {
          const float d1 = (prev[ord - i][j] - x0) / cp.rks[i - 1];
          const float term = cp.rhos[i - 1] * d1;
          res = (i == 1) ? term : res + term;
        }
        xt = xt - cp.alpha_b_h * res;
      }
      prev[0][j] = x0;
      x_next[j] = xt;
    }
  });

  std::rotate(model_outputs_.begin(), model_outputs_.begin() + 1, model_outputs_.end());
  have_last_sample_ = true;
  this_order_ = pred_order;
  lower_order_nums_ = std::min(lower_order_nums_ + 1, order);
}

SchedulerState UniPCScheduler::save_state() const {
  SchedulerState s;
  s.meta = base_meta();
  s.meta["config"] = config_.to_json();
  s.meta["lower_order_nums"] = lower_order_nums_;
  s.meta["this_order"] = this_order_;
  s.meta["have_last_sample"] = have_last_sample_;
  if (started_) {
    // Only the filled history slots (the newest lower_order_nums) carry information.
    const int order = config_.solver_order;
    for (int k = order - lower_order_nums_; k < order; ++k) {
      s.arrays.emplace_back("model_output." + std::to_string(k),
                            model_outputs_[static_cast<size_t>(k)]);
    }
    if (have_last_sample_) s.arrays.emplace_back("last_sample", last_sample_);
  }
  return s;
}

void UniPCScheduler::load_state(const SchedulerState& state) {
  // All or nothing: a refused state leaves the scheduler as it was.
  UniPCScheduler before = *this;
  try {
    load_state_impl(state);
  } catch (...) {
    *this = std::move(before);
    throw;
  }
}

void UniPCScheduler::load_state_impl(const SchedulerState& state) {
  const nlohmann::json& m = state.meta;
  FS_CHECK(m.is_object() && m.contains("kind") && m.contains("config") && m.contains("num_steps"),
           "scheduler state: malformed (no kind/config/num_steps)");
  FS_CHECK(m.at("kind") == kind(), "scheduler state: saved by a {} scheduler, this run uses {}",
           m.at("kind").dump(), kind());
  const nlohmann::json mine = config_.to_json();
  for (const auto& [key, value] : mine.items()) {
    FS_CHECK(m.at("config").contains(key) && m.at("config").at(key) == value,
             "scheduler state: saved with {} = {}, this run uses {}", key,
             m.at("config").contains(key) ? m.at("config").at(key).dump() : "(absent)",
             value.dump());
  }
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
  const int order = config_.solver_order;
  try {
    lower_order_nums_ = m.at("lower_order_nums").get<int>();
    this_order_ = m.at("this_order").get<int>();
    have_last_sample_ = m.at("have_last_sample").get<bool>();
  } catch (const nlohmann::json::exception& e) {
    fail("scheduler state: malformed ({})", e.what());
  }
  FS_CHECK(lower_order_nums_ >= 0 && lower_order_nums_ <= order && this_order_ >= 0 &&
               this_order_ <= order && this_order_ <= lower_order_nums_,
           "scheduler state: inconsistent orders (lower_order_nums {}, this_order {})",
           lower_order_nums_, this_order_);
  FS_CHECK(started_ == (n_ > 0) && (!have_last_sample_ || started_),
           "scheduler state: inconsistent counters");
  if (started_) {
    for (auto& buf : model_outputs_) buf.assign(n_, 0.0f);
    for (int k = order - lower_order_nums_; k < order; ++k) {
      model_outputs_[static_cast<size_t>(k)] =
          state_array(state, "model_output." + std::to_string(k), n_);
    }
    last_sample_ =
        have_last_sample_ ? state_array(state, "last_sample", n_) : std::vector<float>(n_, 0.0f);
  }
}

}  // namespace freeswim::sched
