// <stem>_cases.{json,safetensors} for the Wan DiT: every case listed in the json's "cases",
// run from every weight file <stem>.*.safetensors beside it (diffusers and original names,
// f32 and bf16), with the config <stem>.config.json.
#include <filesystem>
#include <map>

#include "check/golden_files.h"
#include "check/suites.h"
#include "core/error.h"
#include "models/wan_dit.h"

namespace freeswim::check {

namespace fs = std::filesystem;

namespace {

// [1, C, F, H, W] or [2, ...] (row `r`) -> [C, F, H, W].
Tensor batch_row(const Tensor& t, int64_t r) {
  FS_CHECK(t.ndim() == 5 && t.dim(0) > r, "expected a [B, C, F, H, W] tensor with row {}, got {}",
           r, t.describe());
  return t.slice0(r, r + 1).reshape({t.dim(1), t.dim(2), t.dim(3), t.dim(4)});
}

// [1, L, D] -> [L, D]
Tensor drop_context_batch(const Tensor& t) {
  FS_CHECK(t.ndim() == 3 && t.dim(0) == 1, "expected [1, L, D], got {}", t.describe());
  return t.reshape({t.dim(1), t.dim(2)});
}

double tolerance_for(const io::SafetensorsFile& weights, Device device) {
  bool half = false;
  for (const auto& t : weights.tensors()) half |= t.dtype != DType::F32;
  // Stated in golden/README.md: f32 forwards 1e-4; bf16 weights against the f32 outputs 1e-2.
  // On the GPU the computation itself is bf16.
  return (half || device != Device::CPU) ? 1e-2 : 1e-4;
}

// Where the case file states the reference's own error when it runs in bf16
// (`reference_bf16_error`, per tensor: tests/golden_gen/make_dit_golden.py), a bf16 computation
// (the GPU) must land within 1.5 times it; elsewhere the stated tolerance above.
double tolerance_for_tensor(const nlohmann::json& meta, const std::string& tensor, double base,
                            Device device) {
  if (device == Device::CPU || !meta.contains("reference_bf16_error")) return base;
  const auto& errors = meta.at("reference_bf16_error");
  if (!errors.contains(tensor)) return base;
  return 1.5 * errors.at(tensor).get<double>();
}

void run_dit_cases(const Context& ctx, const CaseFile& cases, const std::string& weights_path,
                   const std::string& config_path, const std::string& label) {
  const auto weights_file = io::SafetensorsFile::open(weights_path);
  const double base_tol = tolerance_for(*weights_file, ctx.device);
  const auto model = models::WanDit::load(weights_path, ctx.device, config_path);
  const auto& meta = cases.meta;

  FreeSwimParams fsp;
  const auto half = meta.at("window_half");
  fsp.dh = half.at(0).get<int>();
  fsp.dw = half.at(1).get<int>();
  fsp.attn_scale = meta.at("attention_scale").get<double>();
  // The rule, not the number, is what the engine ships: check that they agree.
  if (meta.contains("base_grid")) {
    const auto bg = meta.at("base_grid");
    const double rule = freeswim_attention_scale(bg.at(0).get<int64_t>() * bg.at(1).get<int64_t>(),
                                                 model->config().head_dim);
    FS_CHECK(std::abs(rule - fsp.attn_scale) < 1e-6 * fsp.attn_scale,
             "{}: attention_scale {} does not follow the rule for base grid ({})", cases.json_path,
             fsp.attn_scale, rule);
  }

  auto input = [&](const char* latents, const char* timestep, const char* context) {
    models::DitInput in;
    in.latents = batch_row(cases.tensor(latents), 0);
    in.timestep = cases.tensor(timestep).data<float>()[0];
    in.context = drop_context_batch(cases.tensor(context));
    return in;
  };
  auto cached_from_file = [&](CrossAttentionCache& cache) {
    const size_t n = static_cast<size_t>(model->config().num_layers);
    cache.begin_store(n);
    for (size_t i = 0; i < n; ++i) {
      const Tensor c = cases.tensor(fmt::format("cached_cross_{}", i));
      cache.store(i, ops::to_compute(c.reshape({c.dim(1), c.dim(2), c.dim(3)}), ctx.device));
    }
  };

  for (const auto& [name, description] : meta.at("cases").items()) {
    const std::string case_name =
        fmt::format("{}/{} [{}]", fs::path(cases.json_path).stem().string(), name, label);
    if (!ctx.wanted(case_name)) continue;
    try {
      const Tensor want = batch_row(cases.tensor(name), 0);
      const double tol = tolerance_for_tensor(meta, name, base_tol, ctx.device);
      if (name == "out_plain") {
        ctx.compare(case_name,
                    model->forward(input("latents", "timestep", "context"), StepKind::Stock), want,
                    tol);
      } else if (name == "out_dual_cond" || name == "out_dual_uncond") {
        const char* context = name == "out_dual_cond" ? "context" : "negative_context";
        ctx.compare(case_name,
                    model->forward(input("latents", "timestep", context), StepKind::Dual, &fsp),
                    want, tol);
      } else if (name == "out_cache_guide") {
        CrossAttentionCache cache;
        ctx.compare(
            case_name,
            model->forward(input("latents", "timestep", "context"), StepKind::Guide, &fsp, &cache),
            want, tol);
        cache.sync();  // the blocks are read by the CPU below
        for (size_t i = 0; i < cache.blocks.size(); ++i) {
          const std::string tname = fmt::format("cached_cross_{}", i);
          ctx.compare(
              fmt::format("{}/{} [{}]", fs::path(cases.json_path).stem().string(), tname, label),
              cache.blocks[i], cases.tensor(tname),
              tolerance_for_tensor(meta, tname, base_tol, ctx.device));
        }
      } else if (name == "out_cache_reuse") {
        // Host placement: on a GPU the blocks go to pinned host memory and come back block by
        // block (the guide case above covers the cache on the device); on the CPU the same.
        CrossAttentionCache cache(CachePlacement::Host);
        cached_from_file(cache);
        ctx.compare(case_name,
                    model->forward(input("latents_step2", "timestep_step2", "context"),
                                   StepKind::Reuse, &fsp, &cache),
                    want, tol);
      } else if (name == "out_cache_uncond") {
        ctx.compare(case_name,
                    model->forward(input("latents_step2", "timestep_step2", "negative_context"),
                                   StepKind::Uncond, &fsp),
                    want, tol);
      } else {
        ctx.failed(case_name,
                   fmt::format("{}: case '{}' is not known to this engine", cases.json_path, name));
      }
    } catch (const std::exception& e) {
      ctx.failed(case_name, e.what());
    }
  }
}

}  // namespace

void check_dit_cases(const Context& ctx) {
  for (const std::string& json_path : files_ending_with(ctx.golden_dir, "_cases.json")) {
    const std::string stem_path =
        json_path.substr(0, json_path.size() - std::string("_cases.json").size());
    const std::string stem = fs::path(stem_path).filename().string();
    const std::string config_path = stem_path + ".config.json";
    // A DiT case file is one whose json describes window/attention settings of a DiT.
    nlohmann::json meta;
    try {
      meta = read_json(json_path);
    } catch (const std::exception& e) {
      if (stem.find("dit") != std::string::npos) ctx.failed(stem + "_cases", e.what());
      continue;
    }
    if (!meta.contains("cases") || !meta.contains("attention_scale") ||
        !meta.contains("window_half"))
      continue;
    std::vector<std::string> weights;
    for (const std::string& p : files_ending_with(ctx.golden_dir, ".safetensors")) {
      const std::string n = fs::path(p).filename().string();
      if (n.rfind(stem + ".", 0) == 0) weights.push_back(p);
    }
    if (weights.empty()) {
      ctx.failed(stem + "_cases",
                 fmt::format("no weight file {}.*.safetensors beside {}", stem, json_path));
      continue;
    }
    CaseFile cases;
    try {
      cases = open_case_file(json_path, stem_path + "_cases.safetensors");
    } catch (const std::exception& e) {
      ctx.failed(stem + "_cases", e.what());
      continue;
    }
    for (const std::string& w : weights) {
      const std::string label = fs::path(w).filename().string();
      try {
        run_dit_cases(ctx, cases, w, fs::exists(config_path) ? config_path : "", label);
      } catch (const std::exception& e) {
        ctx.failed(fmt::format("{}_cases [{}]", stem, label), e.what());
      }
    }
  }
}

}  // namespace freeswim::check
