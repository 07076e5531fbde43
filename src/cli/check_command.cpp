// `freeswim check --golden DIR [--device cpu|cuda] [--filter TEXT]`
#include <chrono>
#include <cstdio>
#include <memory>
#include <string>

#include "check/check.h"
#include "cli/commands.h"
#include "core/error.h"

namespace freeswim::cli {

namespace {

struct CheckOptions {
  std::string golden;
  std::string device = "cpu";
  std::string filter;
};

std::shared_ptr<CheckOptions> g_check;
CLI::App* g_check_app = nullptr;

int run_check(const CheckOptions& o) {
  check::Context ctx;
  ctx.golden_dir = o.golden;
  FS_CHECK(o.device == "cpu" || o.device == "cuda", "--device must be cpu or cuda, got '{}'",
           o.device);
  ctx.device = o.device == "cpu" ? Device::CPU : Device::CUDA;
  ctx.filter = o.filter;
  int passed = 0, failed = 0;
  ctx.report = [&](const check::CaseResult& r) {
    (r.pass ? passed : failed)++;
    std::printf("%-64s rel_err %.3e  tol %.0e  %s%s%s\n", r.name.c_str(), r.error, r.tolerance,
                r.pass ? "PASS" : "FAIL", r.message.empty() ? "" : "  ", r.message.c_str());
    std::fflush(stdout);
  };
  check::run_all(ctx);
  std::printf("%d passed, %d failed\n", passed, failed);
  return failed == 0 ? 0 : 1;
}

}  // namespace

void add_check_command(CLI::App& app) {
  g_check = std::make_shared<CheckOptions>();
  g_check_app = app.add_subcommand(
      "check", "Run every reference case of a golden directory against this engine");
  g_check_app
      ->add_option("--golden", g_check->golden,
                   "Directory of reference cases (e.g. ../shared/golden)")
      ->required();
  g_check_app->add_option("--device", g_check->device, "cpu or cuda")->capture_default_str();
  g_check_app->add_option("--filter", g_check->filter,
                          "Run only cases whose name contains this text");
}

int run_check_if_parsed() {
  return g_check_app && g_check_app->parsed() ? run_check(*g_check) : -1;
}

int run_selected(CLI::App& app) {
  (void)app;
  for (auto run : {run_check_if_parsed, run_jobs_if_parsed, run_info_if_parsed}) {
    const int rc = run();
    if (rc >= 0) return rc;
  }
  fail("no command given (try --help)");
}

}  // namespace freeswim::cli
