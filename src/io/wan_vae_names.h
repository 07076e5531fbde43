// Checkpoint naming schemes of the Wan2.1 video VAE, in one place.
//
// The engine names every VAE tensor by its diffusers name (`vae/` of a diffusers checkpoint,
// AutoencoderKLWan). The original release (`Wan2.1_VAE.pth`, wan/modules/vae.py) uses flat
// nn.Sequential indices instead:
//
//   quant_conv / post_quant_conv            conv1 / conv2
//   {en,de}coder.conv_in                    {en,de}coder.conv1
//   {en,de}coder.norm_out / conv_out        {en,de}coder.head.0 / head.2
//   *.mid_block.resnets.0 / attentions.0 / resnets.1    *.middle.0 / middle.1 / middle.2
//   encoder.down_blocks.i                   encoder.downsamples.i (same flat index)
//   decoder.up_blocks.i.resnets.j           decoder.upsamples.(i * (R + 2) + j)
//   decoder.up_blocks.i.upsamplers.0        decoder.upsamples.(i * (R + 2) + R + 1)
//   residual block norm1 / conv1 / norm2 / conv2 / conv_shortcut
//                                           residual.0 / residual.2 / residual.3 / residual.6 /
//                                           shortcut
//
// with R = num_res_blocks (the decoder has R + 1 residual blocks per level, then a resampler).
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace freeswim::io {

enum class WanVaeScheme { Diffusers, Original };

struct WanVaeNaming {
  WanVaeScheme scheme = WanVaeScheme::Diffusers;
  std::string prefix;      // e.g. "vae." or ""
  int num_res_blocks = 2;  // needed to flatten the decoder's level/block indices

  // Stored name of a tensor given its diffusers name.
  std::string stored(std::string_view diffusers_name) const;
  std::string describe() const;
};

// Original Wan name of a diffusers VAE tensor name; throws Error for a name of neither scheme.
std::string wan_vae_original_name(std::string_view diffusers_name, int num_res_blocks);

// Detects the scheme and prefix from the names a checkpoint holds (sorted); throws Error naming
// `label` when the tensors are not a Wan VAE of either scheme.
WanVaeNaming detect_wan_vae_naming(const std::vector<std::string>& names, const std::string& label);

}  // namespace freeswim::io
