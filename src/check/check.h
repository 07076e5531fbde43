// `freeswim check --golden DIR`: runs every reference case found in a golden directory and
// reports one line per case. Each component contributes one suite function (in
// src/check/<component>_cases.cpp) that discovers its files in the directory, runs what it
// finds, and reports every case: a case whose files are missing or corrupt is reported as a
// FAIL naming the file, never silently skipped. Nothing may assume the shapes of one particular
// golden directory: read shapes, configs and scales from the json beside the tensors.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "core/tensor.h"

namespace freeswim::check {

struct CaseResult {
  std::string name;  // e.g. "dit_tiny_cases/out_plain [diffusers f32]"
  double error = 0;  // relative L2 error (or another stated measure)
  double tolerance = 0;
  bool pass = false;
  std::string message;  // why it failed, naming the file/tensor
};

struct Context {
  std::string golden_dir;
  Device device = Device::CPU;
  std::function<void(const CaseResult&)> report;
  // Optional substring filter on case names.
  std::string filter;

  // Helpers: report a comparison / a failure.
  void compare(const std::string& name, const Tensor& got, const Tensor& want, double tol) const;
  void failed(const std::string& name, const std::string& message) const;
  bool wanted(const std::string& name) const {
    return filter.empty() || name.find(filter) != std::string::npos;
  }
};

// A suite: runs whatever of its cases the directory holds. If none of its files are present it
// reports nothing (the directory is not about it); if some are, every case is reported.
using Suite = std::function<void(const Context&)>;

// All suites, in report order (defined in check.cpp).
std::vector<std::pair<std::string, Suite>> all_suites();

// Runs all suites; returns the number of failed cases. Prints through ctx.report.
int run_all(const Context& ctx);

}  // namespace freeswim::check
