// The tiny Wan VAE of the golden directory against the references: both naming schemes, the
// `.pth` route, and the check suite's report.
#include <gtest/gtest.h>

#include <filesystem>
#include <map>

#include "check/check.h"
#include "check/golden_files.h"
#include "check/suites.h"
#include "core/error.h"
#include "golden_dir.h"
#include "io/safetensors.h"
#include "models/wan_vae.h"

namespace freeswim {
namespace {

Tensor case_tensor(const std::string& name) {
  auto f = io::SafetensorsFile::open(kGolden + "/vae_tiny_cases.safetensors");
  Tensor t = f->tensor(name).to(DType::F32).clone();
  return t.reshape({t.dim(1), t.dim(2), t.dim(3), t.dim(4)});
}

models::VaeTiling untiled() {
  models::VaeTiling t;
  t.enabled = false;
  return t;
}

class VaeGolden : public ::testing::TestWithParam<std::string> {};

TEST_P(VaeGolden, EncodeAndDecodeMatchReference) {
  const auto vae = models::WanVae::load(kGolden + "/" + GetParam(), Device::CPU,
                                        kGolden + "/vae_tiny.config.json");
  const models::VaeEncoding enc = vae->encode(case_tensor("video"), untiled());
  EXPECT_LT(relative_l2(enc.mean, case_tensor("latent_mean")), 1e-4);
  EXPECT_LT(relative_l2(enc.logvar, case_tensor("latent_logvar")), 1e-4);
  const Tensor z = case_tensor("latent_mean");
  EXPECT_LT(relative_l2(vae->decode(z, untiled(), true), case_tensor("decoded")), 1e-4);
  EXPECT_LT(relative_l2(vae->decode(z, untiled(), false), case_tensor("decoded_original")), 1e-4);
}

INSTANTIATE_TEST_SUITE_P(BothNamings, VaeGolden,
                         ::testing::Values("vae_tiny.diffusers.safetensors",
                                           "vae_tiny.original.safetensors"));

TEST(VaeGolden, ConfigInferredFromShapesMatchesConfigJson) {
  for (const char* file : {"vae_tiny.diffusers.safetensors", "vae_tiny.original.safetensors"}) {
    const auto vae = models::WanVae::load(kGolden + "/" + file, Device::CPU);
    const auto want = models::WanVaeConfig::from_json_file(kGolden + "/vae_tiny.config.json");
    EXPECT_EQ(vae->config().describe(), want.describe()) << file;
    EXPECT_EQ(vae->config().latents_mean, want.latents_mean) << file;  // Wan's constants
  }
}

TEST(VaeGolden, NormalizeUsesConfigConstants) {
  const auto vae = models::WanVae::load(kGolden + "/vae_tiny.diffusers.safetensors", Device::CPU);
  const Tensor z = case_tensor("latent_mean");
  const Tensor n = vae->normalize(z);
  const auto zm = z.to_float_vector(), nm = n.to_float_vector();
  const int64_t per_channel = z.numel() / z.dim(0);
  for (int64_t i = 0; i < z.numel(); i += 7) {
    const size_t c = static_cast<size_t>(i / per_channel);
    const float want =
        (zm[static_cast<size_t>(i)] - vae->config().latents_mean[c]) / vae->config().latents_std[c];
    EXPECT_NEAR(nm[static_cast<size_t>(i)], want, 1e-5f * (1.f + std::abs(want)));
  }
  EXPECT_LT(relative_l2(vae->denormalize(n), z), 1e-6);
}

TEST(VaeGolden, CheckSuiteReportsEveryCaseAndPasses) {
  check::Context ctx;
  ctx.golden_dir = kGolden;
  std::map<std::string, check::CaseResult> results;
  ctx.report = [&](const check::CaseResult& r) { results[r.name] = r; };
  check::check_vae_cases(ctx);
  // 2 weight files x (mean, logvar, decoded, decoded_original, latents_mean, latents_std).
  EXPECT_EQ(results.size(), 12u);
  for (const auto& [name, r] : results)
    EXPECT_TRUE(r.pass) << name << ": " << r.error << " " << r.message;
}

}  // namespace
}  // namespace freeswim
