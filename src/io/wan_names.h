// Checkpoint naming schemes of the Wan2.1 DiT, in one place.
//
// The engine names every DiT tensor by its diffusers name (the `transformer/` folder of a
// diffusers checkpoint). The original Wan release (`diffusion_pytorch_model*.safetensors` in
// Wan2.1-T2V-*) uses other module names, and ComfyUI single files carry the original names
// behind a `model.diffusion_model.` prefix. `wan_dit_original_name` turns a diffusers name into
// the original one; the scheme of a file is detected from the tensors it holds.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace freeswim::io {

enum class WanDitScheme { Diffusers, Original };

struct WanDitNaming {
  WanDitScheme scheme = WanDitScheme::Diffusers;
  std::string prefix;  // e.g. "model.diffusion_model." or ""

  // Stored name of a tensor given its diffusers name.
  std::string stored(std::string_view diffusers_name) const;
  std::string describe() const;
};

// Original Wan name of a diffusers DiT tensor name (identity for names both share).
std::string wan_dit_original_name(std::string_view diffusers_name);

// Detects the scheme and prefix from the names a checkpoint holds; throws Error naming
// `label` when neither scheme's patch embedding is present.
WanDitNaming detect_wan_dit_naming(const std::vector<std::string>& names, const std::string& label);

}  // namespace freeswim::io
