// Per-op GPU time of the CUDA backend (FREESWIM_PROFILE=1): a Backend that forwards every op to
// the real one between two CUDA events on the compute stream, and sums the elapsed times per op
// (and, for the matrix products, per weight shape). The events are read back in batches of
// kBatch records, which waits for the stream then: the profile slows a run down a little and
// is for finding where a forward's time goes, not for timing it (bench_step times without it).
// Host work and copies made outside the ops (the cross-attention cache, Tensor::to) appear as
// the forward's time not covered by the sum.
//
// One profile per device (per_device.h): its events belong to that device, and each thread
// records into, and reports, the profile of its current device.
#include <cuda_runtime_api.h>

#include <algorithm>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "core/error.h"
#include "ops/cuda/cuda_backend.h"
#include "ops/cuda/per_device.h"
#include "ops/cuda/stream.h"
#include "ops/ops.h"

namespace freeswim::ops::cuda {
namespace {

struct Totals {
  int64_t calls = 0;
  double ms = 0;
};

class Profile {
 public:
  void record(std::string key, cudaEvent_t a, cudaEvent_t b) {
    std::lock_guard<std::mutex> lock(mu_);
    pending_.push_back({std::move(key), a, b});
    if (pending_.size() >= kBatch) flush_locked();
  }
  cudaEvent_t event() {
    std::lock_guard<std::mutex> lock(mu_);
    if (!spare_.empty()) {
      cudaEvent_t e = spare_.back();
      spare_.pop_back();
      return e;
    }
    cudaEvent_t e = nullptr;
    const cudaError_t err = cudaEventCreate(&e);
    FS_CHECK(err == cudaSuccess, "FREESWIM_PROFILE: cudaEventCreate failed: {}",
             cudaGetErrorString(err));
    return e;
  }
  std::string report() {
    std::lock_guard<std::mutex> lock(mu_);
    flush_locked();
    std::vector<std::pair<std::string, Totals>> rows(totals_.begin(), totals_.end());
    std::sort(rows.begin(), rows.end(),
              [](const auto& a, const auto& b) { return a.second.ms > b.second.ms; });
    double sum = 0;
    for (const auto& r : rows) sum += r.second.ms;
    std::string out = fmt::format(
        "| op (FREESWIM_PROFILE) | calls | GPU ms | share |\n| --- | --- | --- | --- |\n");
    for (const auto& [key, t] : rows)
      out += fmt::format("| {} | {} | {:.1f} | {:.1f}% |\n", key, t.calls, t.ms,
                         sum > 0 ? 100.0 * t.ms / sum : 0.0);
    out += fmt::format("| all ops | | {:.1f} | |\n", sum);
    return out;
  }
  void reset() {
    std::lock_guard<std::mutex> lock(mu_);
    flush_locked();
    totals_.clear();
  }

 private:
  static constexpr size_t kBatch = 4096;
  struct Pending {
    std::string key;
    cudaEvent_t a, b;
  };
  void flush_locked() {
    if (pending_.empty()) return;
    cudaEventSynchronize(pending_.back().b);
    for (Pending& p : pending_) {
      float ms = 0;
      if (cudaEventElapsedTime(&ms, p.a, p.b) == cudaSuccess) {
        Totals& t = totals_[p.key];
        ++t.calls;
        t.ms += ms;
      } else {
        cudaGetLastError();  // an op that threw between its events: not counted
      }
      spare_.push_back(p.a);
      spare_.push_back(p.b);
    }
    pending_.clear();
  }
  std::mutex mu_;
  std::vector<Pending> pending_;
  std::vector<cudaEvent_t> spare_;
  std::map<std::string, Totals> totals_;
};

// Never destroyed (events outlive static destruction order).
PerDevice<Profile>& profiles() {
  static auto* all = new PerDevice<Profile>([](int) { return std::make_unique<Profile>(); });
  return *all;
}

// The calling thread's device's profile.
Profile& profile() {
  return profiles().get();
}

// The calling thread's device's profile if it has one, else null (asking for the device only
// once some profile exists).
Profile* profile_if_made() {
  PerDevice<Profile>& all = profiles();
  return all.made() == 0 ? nullptr : all.find(all.device());
}

// Records the GPU time between its construction and destruction under `key`, in the profile of
// the device current at construction.
class Scope {
 public:
  explicit Scope(std::string key)
      : profile_(profile()), key_(std::move(key)), a_(profile_.event()) {
    cudaEventRecord(a_, stream());
  }
  ~Scope() {
    cudaEvent_t b = profile_.event();
    cudaEventRecord(b, stream());
    profile_.record(std::move(key_), a_, b);
  }
  Scope(const Scope&) = delete;
  Scope& operator=(const Scope&) = delete;

 private:
  Profile& profile_;
  std::string key_;
  cudaEvent_t a_;
};

std::string with_weight(const char* op, const Tensor& w) {
  if (!w.defined() || w.shape().size() != 2) return op;
  return fmt::format("{} w[{}x{}]", op, w.dim(0), w.dim(1));
}

class ProfilingBackend final : public Backend {
 public:
  explicit ProfilingBackend(Backend* inner) : in_(inner) {}
  Device device() const override { return in_->device(); }

  Tensor linear(const Tensor& x, const Tensor& w, const Tensor& b) override {
    Scope s(with_weight("linear", w));
    return in_->linear(x, w, b);
  }
  Tensor gelu_tanh(const Tensor& x) override {
    Scope s("gelu_tanh");
    return in_->gelu_tanh(x);
  }
  Tensor silu(const Tensor& x) override {
    Scope s("silu");
    return in_->silu(x);
  }
  Tensor layer_norm(const Tensor& x, const Tensor& weight, const Tensor& bias, float eps,
                    const Tensor& scale, const Tensor& shift) override {
    Scope s(scale.defined() ? "layer_norm + modulation" : "layer_norm");
    return in_->layer_norm(x, weight, bias, eps, scale, shift);
  }
  Tensor rms_norm(const Tensor& x, const Tensor& weight, float eps) override {
    Scope s("rms_norm");
    return in_->rms_norm(x, weight, eps);
  }
  void rope_3d(Tensor& x, const Rope3D& rope) override {
    Scope s("rope_3d");
    in_->rope_3d(x, rope);
  }
  Tensor attention(const Tensor& q, const Tensor& k, const Tensor& v, float scale,
                   const WindowGeometry* window) override {
    Scope s(window ? "attention (window)"
                   : (q.dim(0) == k.dim(0) ? "attention (dense self)" : "attention (cross)"));
    return in_->attention(q, k, v, scale, window);
  }
  Tensor add(const Tensor& a, const Tensor& b) override {
    Scope s("add");
    return in_->add(a, b);
  }
  void add_gated(Tensor& x, const Tensor& y, const Tensor& gate) override {
    Scope s("add_gated");
    in_->add_gated(x, y, gate);
  }
  Tensor linear_gelu_tanh(const Tensor& x, const Tensor& w, const Tensor& b) override {
    Scope s(with_weight("linear_gelu_tanh", w));
    return in_->linear_gelu_tanh(x, w, b);
  }
  void linear_add_gated(Tensor& x, const Tensor& y, const Tensor& w, const Tensor& b,
                        const Tensor& gate) override {
    Scope s(with_weight("linear_add_gated", w));
    in_->linear_add_gated(x, y, w, b, gate);
  }
  void rms_norm_rope_3d(Tensor& x, const Tensor& weight, float eps, const Rope3D& rope) override {
    Scope s("rms_norm_rope_3d");
    in_->rms_norm_rope_3d(x, weight, eps, rope);
  }
  Tensor patchify(const Tensor& x, int pt, int ph, int pw) override {
    Scope s("patchify");
    return in_->patchify(x, pt, ph, pw);
  }
  Tensor unpatchify(const Tensor& x, int T, int Hg, int Wg, int pt, int ph, int pw) override {
    Scope s("unpatchify");
    return in_->unpatchify(x, T, Hg, Wg, pt, ph, pw);
  }
  Tensor to_compute(const Tensor& x) override {
    Scope s("to_compute");
    return in_->to_compute(x);
  }
  Tensor embedding(const Tensor& table, const std::vector<int32_t>& ids) override {
    Scope s("embedding");
    return in_->embedding(table, ids);
  }
  Tensor mul(const Tensor& a, const Tensor& b) override {
    Scope s("mul");
    return in_->mul(a, b);
  }
  Tensor attention_bias(const Tensor& q, const Tensor& k, const Tensor& v, float scale,
                        const Tensor& bias, const Tensor& key_mask) override {
    Scope s("attention_bias");
    return in_->attention_bias(q, k, v, scale, bias, key_mask);
  }
  Tensor conv3d(const Tensor& x, const Tensor& w, const Tensor& b, const Conv3dParams& p) override {
    // Per kernel shape and channel counts (the VAE has a handful: 3x3x3, 3x1x1 time, 1x3x3
    // spatial, 1x1x1 shortcuts), with the input's spatial size in latent-grid terms omitted.
    Scope s(w.defined() && w.ndim() == 5 ? fmt::format("conv3d {}x{}x{} {}->{}", w.dim(2), w.dim(3),
                                                       w.dim(4), w.dim(1), w.dim(0))
                                         : std::string("conv3d"));
    return in_->conv3d(x, w, b, p);
  }
  Tensor rms_norm_channels(const Tensor& x, const Tensor& gamma, const Tensor& bias,
                           bool silu) override {
    Scope s("rms_norm_channels");
    return in_->rms_norm_channels(x, gamma, bias, silu);
  }
  Tensor upsample_nearest2x(const Tensor& x) override {
    Scope s("upsample_nearest2x");
    return in_->upsample_nearest2x(x);
  }
  Tensor concat(const Tensor& a, const Tensor& b, int dim) override {
    Scope s("concat");
    return in_->concat(a, b, dim);
  }
  Tensor slice(const Tensor& x, int dim, int64_t begin, int64_t end) override {
    Scope s("slice");
    return in_->slice(x, dim, begin, end);
  }
  Tensor transpose2d(const Tensor& x) override {
    Scope s("transpose2d");
    return in_->transpose2d(x);
  }
  Tensor clamp(const Tensor& x, float lo, float hi) override {
    Scope s("clamp");
    return in_->clamp(x, lo, hi);
  }
  Tensor channel_affine(const Tensor& x, const Tensor& scale, const Tensor& shift) override {
    Scope s("channel_affine");
    return in_->channel_affine(x, scale, shift);
  }
  void accumulate_tile(Tensor& acc, const Tensor& tile, const Tensor& weight, int64_t f0,
                       int64_t y0, int64_t x0) override {
    Scope s("accumulate_tile");
    in_->accumulate_tile(acc, tile, weight, f0, y0, x0);
  }

 private:
  Backend* in_;
};

}  // namespace

Backend* make_profiling_backend(Backend* inner) {
  static ProfilingBackend* wrapper = new ProfilingBackend(inner);
  return wrapper;
}

std::string op_profile_report() {
  if (Profile* p = profile_if_made()) return p->report();
  return Profile().report();  // nothing recorded on this device
}

void reset_op_profile() {
  if (Profile* p = profile_if_made()) p->reset();
}

}  // namespace freeswim::ops::cuda
