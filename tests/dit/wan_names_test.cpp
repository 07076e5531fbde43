// The DiT naming map against the golden keymap (original -> diffusers for every tensor).
#include "io/wan_names.h"

#include <gtest/gtest.h>

#include <fstream>
#include <nlohmann/json.hpp>

#include "core/error.h"

namespace freeswim::io {
namespace {

TEST(WanNames, EveryKeymapEntryMaps) {
  std::ifstream f(std::string(FREESWIM_GOLDEN_DIR) + "/dit_tiny.keymap.json");
  ASSERT_TRUE(f.good());
  const auto keymap = nlohmann::json::parse(f);
  ASSERT_GT(keymap.size(), 30u);
  for (const auto& [original, diffusers] : keymap.items())
    EXPECT_EQ(wan_dit_original_name(diffusers.get<std::string>()), original) << diffusers;
}

TEST(WanNames, DetectsSchemeAndPrefix) {
  const std::vector<std::string> diffusers{"condition_embedder.time_proj.weight",
                                           "patch_embedding.weight"};
  WanDitNaming n = detect_wan_dit_naming(diffusers, "x");
  EXPECT_EQ(n.scheme, WanDitScheme::Diffusers);
  EXPECT_EQ(n.prefix, "");
  const std::vector<std::string> comfy{"model.diffusion_model.patch_embedding.weight",
                                       "model.diffusion_model.time_projection.1.weight"};
  n = detect_wan_dit_naming(comfy, "x");
  EXPECT_EQ(n.scheme, WanDitScheme::Original);
  EXPECT_EQ(n.prefix, "model.diffusion_model.");
  EXPECT_EQ(n.stored("blocks.3.attn2.to_out.0.weight"),
            "model.diffusion_model.blocks.3.cross_attn.o.weight");
}

TEST(WanNames, RefusesOtherModels) {
  try {
    detect_wan_dit_naming({"encoder.conv1.weight"}, "vae.safetensors");
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("vae.safetensors"), std::string::npos);
    EXPECT_NE(std::string(e.what()).find("patch_embedding.weight"), std::string::npos);
  }
  EXPECT_THROW(detect_wan_dit_naming({"patch_embedding.weight", "foo"}, "x"), Error);
}

}  // namespace
}  // namespace freeswim::io
