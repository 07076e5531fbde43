// umt5*_cases.{json,safetensors}: padded prompts (input_ids and attention_mask stored as float)
// and the encoder's last_hidden_state, run from every weight file <stem>.*.safetensors beside
// them (transformers and original naming, f32 or bf16) with <stem>.config.json when present.
// Two cases per weight file: the encoder output at every position, and Wan's conditioning
// (each prompt's positions encoded, zeros past its length).
#include <filesystem>

#include "check/golden_files.h"
#include "check/suites.h"
#include "core/error.h"
#include "text/tokenizer.h"
#include "text/umt5.h"

namespace freeswim::check {

namespace fs = std::filesystem;

namespace {

bool starts_with(const std::string& s, const std::string& prefix) {
  return s.compare(0, prefix.size(), prefix) == 0;
}

// Weight files of a stem: <stem>.<label>.safetensors, keyed by label ("hf", "original", ...).
std::vector<std::pair<std::string, std::string>> weight_files(const std::string& dir,
                                                              const std::string& stem) {
  std::vector<std::pair<std::string, std::string>> out;
  const std::string suffix = ".safetensors";
  for (const std::string& path : files_ending_with(dir, suffix)) {
    const std::string name = fs::path(path).filename().string();
    if (!starts_with(name, stem + ".")) continue;
    out.emplace_back(name.substr(stem.size() + 1, name.size() - stem.size() - 1 - suffix.size()),
                     path);
  }
  return out;
}

bool has_half(const io::SafetensorsFile& f) {
  for (const auto& t : f.tensors())
    if (t.dtype != DType::F32) return true;
  return false;
}

// Row `r` of a [B, L] float tensor as integers.
std::vector<int32_t> int_row(const Tensor& t, int64_t r, const std::string& what) {
  FS_CHECK(t.ndim() == 2 && r < t.dim(0), "{}: expected [batch, length], got {}", what,
           t.describe());
  std::vector<int32_t> out;
  const float* d = t.data<float>() + r * t.dim(1);
  for (int64_t i = 0; i < t.dim(1); ++i) out.push_back(static_cast<int32_t>(d[i]));
  return out;
}

void run_weights(const Context& ctx, const CaseFile& cases, const std::string& case_stem,
                 const std::string& weights, const std::string& config, const std::string& label) {
  const std::string out_case = fmt::format("{}/last_hidden_state [{}]", case_stem, label);
  const std::string wan_case = fmt::format("{}/wan_context [{}]", case_stem, label);
  const bool run_out = ctx.wanted(out_case), run_wan = ctx.wanted(wan_case);
  if (!run_out && !run_wan) return;
  try {
    // Stated in golden/README.md: f32 forwards 1e-4; bf16 weights against f32 outputs 1e-2.
    const double tol =
        (has_half(*io::SafetensorsFile::open(weights)) || ctx.device != Device::CPU) ? 1e-2 : 1e-4;
    const auto model = text::Umt5Encoder::load(weights, ctx.device, config);
    const Tensor ids = cases.tensor("input_ids");
    const Tensor mask = cases.tensor("attention_mask");
    const Tensor want = cases.tensor("last_hidden_state");
    const int64_t B = ids.dim(0), L = ids.dim(1), D = model->config().d_model;
    FS_CHECK(ids.ndim() == 2 && mask.shape() == ids.shape() && want.ndim() == 3 &&
                 want.dim(0) == B && want.dim(1) == L,
             "{}: input_ids {}, attention_mask {} and last_hidden_state {} do not agree",
             cases.tensors_path, ids.describe(), mask.describe(), want.describe());

    Tensor got = Tensor::empty({B, L, D});
    Tensor got_wan = Tensor::empty({B, L, D});
    Tensor want_wan = want.clone();
    for (int64_t b = 0; b < B; ++b) {
      text::Tokens tokens;
      tokens.ids = int_row(ids, b, cases.tensors_path + " input_ids");
      tokens.mask = int_row(mask, b, cases.tensors_path + " attention_mask");
      for (int32_t m : tokens.mask) tokens.length += m != 0;
      const Tensor row = model->forward(tokens.ids, tokens.mask).to(Device::CPU).to(DType::F32);
      std::copy_n(row.data<float>(), L * D, got.data<float>() + b * L * D);
      // Wan's step: the reference output with every position past the prompt zeroed.
      const Tensor ctx_row = model->wan_context(tokens, L).to(Device::CPU).to(DType::F32);
      std::copy_n(ctx_row.data<float>(), L * D, got_wan.data<float>() + b * L * D);
      std::fill_n(want_wan.data<float>() + (b * L + tokens.length) * D, (L - tokens.length) * D,
                  0.f);
    }
    if (run_out) ctx.compare(out_case, got, want, tol);
    if (run_wan) ctx.compare(wan_case, got_wan, want_wan, tol);
  } catch (const std::exception& e) {
    if (run_out) ctx.failed(out_case, e.what());
    if (run_wan) ctx.failed(wan_case, e.what());
  }
}

}  // namespace

void check_umt5_cases(const Context& ctx) {
  const std::string suffix = "_cases.json";
  for (const std::string& json_path : files_ending_with(ctx.golden_dir, suffix)) {
    const std::string name = fs::path(json_path).filename().string();
    if (!starts_with(name, "umt5")) continue;
    const std::string case_stem = name.substr(0, name.size() - std::string(".json").size());
    const std::string stem = name.substr(0, name.size() - suffix.size());
    const fs::path dir = fs::path(json_path).parent_path();
    CaseFile cases;
    try {
      cases = open_case_file(json_path, (dir / (case_stem + ".safetensors")).string());
    } catch (const std::exception& e) {
      ctx.failed(case_stem, e.what());
      continue;
    }
    const fs::path config = dir / (stem + ".config.json");
    const auto weights = weight_files(dir.string(), stem);
    if (weights.empty()) {
      ctx.failed(case_stem,
                 fmt::format("no weight files {}.*.safetensors in {}", stem, dir.string()));
      continue;
    }
    for (const auto& [label, path] : weights)
      run_weights(ctx, cases, case_stem, path, fs::exists(config) ? config.string() : "", label);
  }
}

}  // namespace freeswim::check
