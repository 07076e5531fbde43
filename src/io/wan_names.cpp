#include "io/wan_names.h"

#include <algorithm>
#include <array>
#include <utility>

#include "core/error.h"

namespace freeswim::io {

namespace {

// Diffusers fragment -> original fragment. Applied to the part of a name after
// "blocks.<i>." (block table) or to the whole name (top-level table). Longest match first is
// not needed: every fragment is matched as a whole path component sequence at the start.
constexpr std::array<std::pair<std::string_view, std::string_view>, 10> kBlockFragments{{
    {"attn1.to_out.0.", "self_attn.o."},
    {"attn2.to_out.0.", "cross_attn.o."},
    {"attn1.to_", "self_attn."},  // to_q / to_k / to_v -> q / k / v
    {"attn2.to_", "cross_attn."},
    {"attn1.", "self_attn."},  // norm_q / norm_k
    {"attn2.", "cross_attn."},
    {"ffn.net.0.proj.", "ffn.0."},
    {"ffn.net.2.", "ffn.2."},
    {"norm2.", "norm3."},  // the cross-attention LayerNorm is norm3 in the original code
    {"scale_shift_table", "modulation"},
}};

constexpr std::array<std::pair<std::string_view, std::string_view>, 7> kTopFragments{{
    {"condition_embedder.text_embedder.linear_1.", "text_embedding.0."},
    {"condition_embedder.text_embedder.linear_2.", "text_embedding.2."},
    {"condition_embedder.time_embedder.linear_1.", "time_embedding.0."},
    {"condition_embedder.time_embedder.linear_2.", "time_embedding.2."},
    {"condition_embedder.time_proj.", "time_projection.1."},
    {"proj_out.", "head.head."},
    {"scale_shift_table", "head.modulation"},
}};

template <size_t N>
std::string replace_prefix(
    std::string_view name,
    const std::array<std::pair<std::string_view, std::string_view>, N>& table) {
  for (const auto& [from, to] : table)
    if (name.substr(0, from.size()) == from)
      return std::string(to) + std::string(name.substr(from.size()));
  return std::string(name);
}

}  // namespace

std::string wan_dit_original_name(std::string_view name) {
  constexpr std::string_view blocks = "blocks.";
  if (name.substr(0, blocks.size()) == blocks) {
    const size_t dot = name.find('.', blocks.size());
    if (dot != std::string_view::npos)
      return std::string(name.substr(0, dot + 1)) +
             replace_prefix(name.substr(dot + 1), kBlockFragments);
  }
  return replace_prefix(name, kTopFragments);
}

std::string WanDitNaming::stored(std::string_view diffusers_name) const {
  return prefix + (scheme == WanDitScheme::Diffusers ? std::string(diffusers_name)
                                                     : wan_dit_original_name(diffusers_name));
}

std::string WanDitNaming::describe() const {
  std::string s = scheme == WanDitScheme::Diffusers ? "diffusers names" : "original Wan names";
  if (!prefix.empty()) s += " with prefix '" + prefix + "'";
  return s;
}

WanDitNaming detect_wan_dit_naming(const std::vector<std::string>& names,
                                   const std::string& label) {
  // Both schemes share "patch_embedding.weight"; the time projection tells them apart.
  constexpr std::string_view anchor = "patch_embedding.weight";
  for (const std::string& n : names) {
    if (n.size() < anchor.size() || n.compare(n.size() - anchor.size(), anchor.size(), anchor) != 0)
      continue;
    WanDitNaming naming;
    naming.prefix = n.substr(0, n.size() - anchor.size());
    if (!naming.prefix.empty() && naming.prefix.back() != '.') continue;
    const bool diffusers = std::binary_search(
        names.begin(), names.end(), naming.prefix + "condition_embedder.time_proj.weight");
    const bool original =
        std::binary_search(names.begin(), names.end(), naming.prefix + "time_projection.1.weight");
    FS_CHECK(diffusers || original,
             "{}: found '{}' but neither 'condition_embedder.time_proj.weight' (diffusers) nor "
             "'time_projection.1.weight' (original Wan) beside it; not a Wan2.1 DiT checkpoint",
             label, n);
    naming.scheme = diffusers ? WanDitScheme::Diffusers : WanDitScheme::Original;
    return naming;
  }
  fail("{}: no 'patch_embedding.weight' tensor; not a Wan2.1 DiT checkpoint", label);
}

}  // namespace freeswim::io
