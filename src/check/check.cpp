#include "check/check.h"

#include <filesystem>

#include "check/suites.h"
#include "core/error.h"

namespace freeswim::check {

void Context::compare(const std::string& name, const Tensor& got, const Tensor& want,
                      double tol) const {
  CaseResult r;
  r.name = name;
  r.tolerance = tol;
  if (got.numel() != want.numel()) {
    r.error = INFINITY;
    r.message =
        fmt::format("shape {} vs reference {}", shape_str(got.shape()), shape_str(want.shape()));
  } else {
    r.error = relative_l2(got, want);
    r.pass = r.error < tol;  // NaN fails
  }
  report(r);
}

void Context::failed(const std::string& name, const std::string& message) const {
  CaseResult r;
  r.name = name;
  r.error = INFINITY;
  r.message = message;
  report(r);
}

std::vector<std::pair<std::string, Suite>> all_suites() {
  return {
      {"window_mask", check_window_mask_cases},
      {"dit", check_dit_cases},
      {"vae", check_vae_cases},
      {"scheduler", check_scheduler_cases},
      {"tokenizer", check_tokenizer_cases},
      {"upsample", check_upsample_cases},
      {"pipeline", check_pipeline_cases},
      {"umt5", check_umt5_cases},
  };
}

int run_all(const Context& ctx) {
  FS_CHECK(std::filesystem::is_directory(ctx.golden_dir), "--golden: '{}' is not a directory",
           ctx.golden_dir);
  int failures = 0, total = 0;
  Context counting = ctx;
  counting.report = [&](const CaseResult& r) {
    ++total;
    if (!r.pass) ++failures;
    ctx.report(r);
  };
  for (const auto& [name, suite] : all_suites()) {
    try {
      suite(counting);
    } catch (const std::exception& e) {
      counting.failed(name, e.what());
    }
  }
  FS_CHECK(total > 0, "--golden: no reference cases found in '{}'", ctx.golden_dir);
  return failures;
}

}  // namespace freeswim::check
