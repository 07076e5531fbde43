// vae*_cases.{json,safetensors} for the Wan VAE: encode the json's `video` (posterior mean and
// log-variance) and decode the reference `latent_mean` (clamped `decoded`, unclamped
// `decoded_original`), from every weight file <stem>.*.safetensors / <stem>.*.pth beside it
// (diffusers and original names), with the config <stem>.config.json when present. Decoding
// runs untiled, as the references did; the normalisation constants are checked against
// `latents_mean` / `latents_std` when the case file has them.
#include <filesystem>
#include <optional>

#include "check/golden_files.h"
#include "check/suites.h"
#include "core/error.h"
#include "models/wan_vae.h"

namespace freeswim::check {

namespace fs = std::filesystem;

namespace {

// [1, C, F, H, W] -> [C, F, H, W].
Tensor drop_batch(const Tensor& t, const std::string& name) {
  FS_CHECK(t.ndim() == 5 && t.dim(0) == 1, "'{}': expected [1, C, F, H, W], got {}", name,
           t.describe());
  return t.reshape({t.dim(1), t.dim(2), t.dim(3), t.dim(4)});
}

bool has_half_weights(const std::string& path) {
  return path.find("bf16") != std::string::npos || path.find("fp16") != std::string::npos;
}

void run_vae_cases(const Context& ctx, const CaseFile& cases, const std::string& weights_path,
                   const std::string& config_path, const std::string& prefix) {
  const auto vae = models::WanVae::load(weights_path, ctx.device, config_path);
  // Stated in golden/README.md: f32 forwards 1e-4; half weights against f32 outputs 1e-2.
  const double tol = (has_half_weights(weights_path) || ctx.device != Device::CPU) ? 1e-2 : 1e-4;
  models::VaeTiling untiled;
  untiled.enabled = false;
  FS_CHECK(cases.meta.contains("tensors") && cases.meta["tensors"].is_object(),
           "{}: no 'tensors' object", cases.json_path);
  std::optional<models::VaeEncoding> enc;
  auto encoded = [&]() -> const models::VaeEncoding& {
    if (!enc) enc = vae->encode(drop_batch(cases.tensor("video"), "video"), untiled);
    return *enc;
  };
  for (const auto& [name, shape] : cases.meta["tensors"].items()) {
    if (name == "video") continue;  // the input
    const std::string case_name = prefix + "/" + name;
    if (!ctx.wanted(case_name)) continue;
    try {
      const Tensor want = cases.tensor(name);
      if (name == "latent_mean") {
        ctx.compare(case_name, encoded().mean, drop_batch(want, name), tol);
      } else if (name == "latent_logvar") {
        ctx.compare(case_name, encoded().logvar, drop_batch(want, name), tol);
      } else if (name == "decoded" || name == "decoded_original") {
        const Tensor z = drop_batch(cases.tensor("latent_mean"), "latent_mean");
        ctx.compare(case_name, vae->decode(z, untiled, /*clamp=*/name == "decoded"),
                    drop_batch(want, name), tol);
      } else if (name == "latents_mean" || name == "latents_std") {
        const auto& v =
            name == "latents_mean" ? vae->config().latents_mean : vae->config().latents_std;
        ctx.compare(case_name, Tensor::from_vector({static_cast<int64_t>(v.size())}, v), want,
                    1e-6);
      } else {
        ctx.failed(case_name, fmt::format("{}: tensor '{}' is not known to this engine",
                                          cases.json_path, name));
      }
    } catch (const std::exception& e) {
      ctx.failed(case_name, e.what());
    }
  }
}

}  // namespace

void check_vae_cases(const Context& ctx) {
  for (const std::string& json_path : files_ending_with(ctx.golden_dir, "_cases.json")) {
    const std::string file = fs::path(json_path).filename().string();
    if (file.rfind("vae", 0) != 0) continue;
    const std::string stem_path =
        json_path.substr(0, json_path.size() - std::string("_cases.json").size());
    const std::string stem = fs::path(stem_path).filename().string();
    CaseFile cases;
    try {
      cases = open_case_file(json_path, stem_path + "_cases.safetensors");
    } catch (const std::exception& e) {
      ctx.failed(stem + "_cases", e.what());
      continue;
    }
    std::vector<std::string> weights;
    for (const char* ext : {".safetensors", ".pth"})
      for (const std::string& p : files_ending_with(ctx.golden_dir, ext)) {
        const std::string n = fs::path(p).filename().string();
        if (n.rfind(stem + ".", 0) == 0) weights.push_back(p);
      }
    if (weights.empty()) {
      ctx.failed(stem + "_cases",
                 fmt::format("no weight file {}.*.safetensors beside {}", stem, json_path));
      continue;
    }
    const std::string config_path = stem_path + ".config.json";
    for (const std::string& w : weights) {
      const std::string prefix =
          fmt::format("{}_cases [{}]", stem, fs::path(w).filename().string());
      try {
        run_vae_cases(ctx, cases, w, fs::exists(config_path) ? config_path : "", prefix);
      } catch (const std::exception& e) {
        ctx.failed(prefix, e.what());
      }
    }
  }
}

}  // namespace freeswim::check
