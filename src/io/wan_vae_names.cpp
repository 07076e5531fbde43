#include "io/wan_vae_names.h"

#include <algorithm>
#include <array>
#include <charconv>
#include <utility>

#include "core/error.h"

namespace freeswim::io {

namespace {

// Leading decimal index of `s` and the rest after its '.'; false when `s` does not start so.
bool split_index(std::string_view s, int& index, std::string_view& rest) {
  const char* end = s.data() + s.size();
  auto [ptr, ec] = std::from_chars(s.data(), end, index);
  if (ec != std::errc() || ptr == s.data() || ptr == end || *ptr != '.') return false;
  rest = s.substr(static_cast<size_t>(ptr - s.data()) + 1);
  return true;
}

// Inside one residual block or resampler.
constexpr std::array<std::pair<std::string_view, std::string_view>, 5> kResidualParts{{
    {"norm1.", "residual.0."},
    {"conv1.", "residual.2."},
    {"norm2.", "residual.3."},
    {"conv2.", "residual.6."},
    {"conv_shortcut.", "shortcut."},
}};

std::string residual_part(std::string_view rest) {
  for (const auto& [from, to] : kResidualParts)
    if (rest.starts_with(from)) return std::string(to) + std::string(rest.substr(from.size()));
  return std::string(rest);  // resample.1.*, time_conv.* are shared
}

[[noreturn]] void unknown(std::string_view name) {
  fail("'{}' is not a Wan2.1 VAE tensor name this engine knows", name);
}

// The part of a coder name after "encoder." / "decoder.".
std::string coder_part(std::string_view rest, bool decoder, int R, std::string_view full) {
  if (rest.starts_with("conv_in.")) return "conv1." + std::string(rest.substr(8));
  if (rest.starts_with("norm_out.")) return "head.0." + std::string(rest.substr(9));
  if (rest.starts_with("conv_out.")) return "head.2." + std::string(rest.substr(9));
  int i = 0;
  std::string_view tail;
  if (rest.starts_with("mid_block.resnets.") && split_index(rest.substr(18), i, tail) &&
      (i == 0 || i == 1))
    return "middle." + std::to_string(2 * i) + "." + residual_part(tail);
  if (rest.starts_with("mid_block.attentions.0."))
    return "middle.1." + std::string(rest.substr(23));
  if (!decoder && rest.starts_with("down_blocks.") && split_index(rest.substr(12), i, tail))
    return "downsamples." + std::to_string(i) + "." + residual_part(tail);
  if (decoder && rest.starts_with("up_blocks.") && split_index(rest.substr(10), i, tail)) {
    int j = 0;
    std::string_view part;
    if (tail.starts_with("resnets.") && split_index(tail.substr(8), j, part))
      return "upsamples." + std::to_string(i * (R + 2) + j) + "." + residual_part(part);
    if (tail.starts_with("upsamplers.0."))
      return "upsamples." + std::to_string(i * (R + 2) + R + 1) + "." +
             std::string(tail.substr(13));
  }
  unknown(full);
}

}  // namespace

std::string wan_vae_original_name(std::string_view name, int R) {
  if (name.starts_with("quant_conv.")) return "conv1." + std::string(name.substr(11));
  if (name.starts_with("post_quant_conv.")) return "conv2." + std::string(name.substr(16));
  if (name.starts_with("encoder.")) return "encoder." + coder_part(name.substr(8), false, R, name);
  if (name.starts_with("decoder.")) return "decoder." + coder_part(name.substr(8), true, R, name);
  unknown(name);
}

std::string WanVaeNaming::stored(std::string_view diffusers_name) const {
  return prefix + (scheme == WanVaeScheme::Diffusers
                       ? std::string(diffusers_name)
                       : wan_vae_original_name(diffusers_name, num_res_blocks));
}

std::string WanVaeNaming::describe() const {
  std::string s =
      scheme == WanVaeScheme::Diffusers ? "diffusers VAE names" : "original Wan VAE names";
  if (!prefix.empty()) s += " with prefix '" + prefix + "'";
  return s;
}

WanVaeNaming detect_wan_vae_naming(const std::vector<std::string>& names,
                                   const std::string& label) {
  // The decoder's first convolution is "decoder.conv_in.weight" (diffusers) or
  // "decoder.conv1.weight" (original); whatever precedes it is the prefix.
  auto has = [&](const std::string& n) {
    return std::binary_search(names.begin(), names.end(), n);
  };
  for (const auto& [anchor, scheme] : {std::pair<std::string_view, WanVaeScheme>{
                                           "decoder.conv_in.weight", WanVaeScheme::Diffusers},
                                       {"decoder.conv1.weight", WanVaeScheme::Original}}) {
    for (const std::string& n : names) {
      if (n.size() < anchor.size() ||
          n.compare(n.size() - anchor.size(), anchor.size(), anchor) != 0)
        continue;
      WanVaeNaming naming;
      naming.scheme = scheme;
      naming.prefix = n.substr(0, n.size() - anchor.size());
      if (!naming.prefix.empty() && naming.prefix.back() != '.') continue;
      const std::string enc =
          naming.prefix +
          (scheme == WanVaeScheme::Diffusers ? "encoder.conv_in.weight" : "encoder.conv1.weight");
      FS_CHECK(has(enc), "{}: found '{}' but not '{}'; not a complete Wan2.1 VAE checkpoint", label,
               n, enc);
      return naming;
    }
  }
  fail(
      "{}: neither 'decoder.conv_in.weight' (diffusers) nor 'decoder.conv1.weight' (original Wan) "
      "is "
      "present; not a Wan2.1 VAE checkpoint",
      label);
}

}  // namespace freeswim::io
