#include "format_util.h"

#include <unistd.h>

#include <cmath>

#include "check/golden_files.h"
#include "core/error.h"
#include "io/safetensors.h"
#include "models/wan_dit.h"

namespace freeswim::formats {

Scratch::Scratch() {
  const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
  path_ = fs::temp_directory_path() / fmt::format("fs_formats_{}_{}_{}", ::getpid(),
                                                  info ? info->test_suite_name() : "x",
                                                  info ? info->name() : "y");
  fs::remove_all(path_);
  fs::create_directories(path_);
}

Scratch::~Scratch() {
  std::error_code ec;
  fs::remove_all(path_, ec);
}

Named read_golden(const std::string& file) {
  const auto f = io::SafetensorsFile::open(kGolden + "/" + file);
  Named out;
  for (const auto& t : f->tensors())
    out.emplace_back(t.name, f->tensor(t.name).to(DType::F32).clone());
  return out;
}

Tensor find_named(const Named& all, const std::string& name) {
  for (const auto& [n, t] : all)
    if (n == name) return t;
  throw std::runtime_error("no tensor " + name);
}

float fp8_max(DType type) {
  return type == DType::F8_E4M3 ? 448.f : 57344.f;
}

uint8_t encode_fp8(float x, DType type) {
  auto decode = [&](int c) {
    return type == DType::F8_E4M3 ? f8e4m3_to_float(static_cast<uint8_t>(c))
                                  : f8e5m2_to_float(static_cast<uint8_t>(c));
  };
  const float m = fp8_max(type);
  x = std::fmax(-m, std::fmin(m, x));
  int best = -1;
  double best_err = 0;
  for (int c = 0; c < 256; ++c) {
    const float v = decode(c);
    if (!std::isfinite(v)) continue;
    if (std::signbit(v) != std::signbit(x) && v != 0.f) continue;
    const double err = std::fabs(static_cast<double>(v) - x);
    if (best < 0 || err < best_err || (err == best_err && (c & 1) == 0 && (best & 1) == 1)) {
      best = c;
      best_err = err;
    }
  }
  return static_cast<uint8_t>(best);
}

Tensor to_fp8(const Tensor& t, DType type, float scale) {
  const Tensor f = t.to(DType::F32);
  Tensor out = Tensor::empty(t.shape(), type);
  for (int64_t i = 0; i < t.numel(); ++i)
    out.data<uint8_t>()[i] = encode_fp8(f.data<float>()[i] / scale, type);
  return out;
}

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  ADD_FAILURE() << "expected a freeswim::Error, none was thrown";
  return "";
}

double dit_forward_error(const std::string& weights) {
  const check::CaseFile cases = check::open_case_file(kGolden + "/dit_tiny_cases.json",
                                                      kGolden + "/dit_tiny_cases.safetensors");
  const auto model = models::WanDit::load(weights, Device::CPU, kGolden + "/dit_tiny.config.json");
  models::DitInput in;
  const Tensor lat = cases.tensor("latents");
  in.latents = lat.reshape({lat.dim(1), lat.dim(2), lat.dim(3), lat.dim(4)});
  in.timestep = cases.tensor("timestep").data<float>()[0];
  const Tensor ctx = cases.tensor("context");
  in.context = ctx.reshape({ctx.dim(1), ctx.dim(2)});
  const Tensor out = model->forward(in, StepKind::Stock);
  const Tensor want = cases.tensor("out_plain");
  return relative_l2(out, want);
}

}  // namespace freeswim::formats
