#include "io/umt5_names.h"

#include <algorithm>
#include <array>
#include <charconv>
#include <utility>

#include "core/error.h"

namespace freeswim::io {

namespace {

// Per-block tensors: transformers suffix after `encoder.block.<i>.` -> original suffix after
// `blocks.<i>.`. Wan's feed-forward computes fc1(x) * gelu(gate(x)), so its GELU branch
// `gate.0` is transformers' wi_0 and its linear branch `fc1` is wi_1.
constexpr std::array<std::pair<std::string_view, std::string_view>, 10> kBlockNames{{
    {"layer.0.layer_norm.weight", "norm1.weight"},
    {"layer.0.SelfAttention.q.weight", "attn.q.weight"},
    {"layer.0.SelfAttention.k.weight", "attn.k.weight"},
    {"layer.0.SelfAttention.v.weight", "attn.v.weight"},
    {"layer.0.SelfAttention.o.weight", "attn.o.weight"},
    {"layer.0.SelfAttention.relative_attention_bias.weight", "pos_embedding.embedding.weight"},
    {"layer.1.layer_norm.weight", "norm2.weight"},
    {"layer.1.DenseReluDense.wi_0.weight", "ffn.gate.0.weight"},
    {"layer.1.DenseReluDense.wi_1.weight", "ffn.fc1.weight"},
    {"layer.1.DenseReluDense.wo.weight", "ffn.fc2.weight"},
}};

// The same per-block tensors in llama.cpp's names, after `enc.blk.<i>.`.
constexpr std::array<std::pair<std::string_view, std::string_view>, 10> kGgufBlockNames{{
    {"layer.0.layer_norm.weight", "attn_norm.weight"},
    {"layer.0.SelfAttention.q.weight", "attn_q.weight"},
    {"layer.0.SelfAttention.k.weight", "attn_k.weight"},
    {"layer.0.SelfAttention.v.weight", "attn_v.weight"},
    {"layer.0.SelfAttention.o.weight", "attn_o.weight"},
    {"layer.0.SelfAttention.relative_attention_bias.weight", "attn_rel_b.weight"},
    {"layer.1.layer_norm.weight", "ffn_norm.weight"},
    {"layer.1.DenseReluDense.wi_0.weight", "ffn_gate.weight"},
    {"layer.1.DenseReluDense.wi_1.weight", "ffn_up.weight"},
    {"layer.1.DenseReluDense.wo.weight", "ffn_down.weight"},
}};

constexpr std::string_view kBlockPrefix = "encoder.block.";
constexpr std::string_view kGgufFirstQuery = "enc.blk.0.attn_q.weight";
constexpr std::string_view kGgufEmbedding = "token_embd.weight";
constexpr std::string_view kFirstQuery = "encoder.block.0.layer.0.SelfAttention.q.weight";
constexpr std::string_view kOriginalFirstQuery = "blocks.0.attn.q.weight";
constexpr std::string_view kOriginalEmbedding = "token_embedding.weight";
constexpr std::string_view kSharedEmbedding = "shared.weight";

bool contains(const std::vector<std::string>& sorted, const std::string& name) {
  return std::binary_search(sorted.begin(), sorted.end(), name);
}

}  // namespace

// `encoder.block.<i>.<suffix>` -> the name `table` gives the suffix, formatted with `pattern`
// ("blocks.{}.{}"); empty when the name is not a block tensor of the table.
template <size_t N>
std::string block_name(std::string_view name,
                       const std::array<std::pair<std::string_view, std::string_view>, N>& table,
                       std::string_view pattern) {
  if (name.substr(0, kBlockPrefix.size()) != kBlockPrefix) return "";
  const std::string_view rest = name.substr(kBlockPrefix.size());
  const size_t dot = rest.find('.');
  int index = -1;
  if (dot != std::string_view::npos && dot > 0) {
    const auto [ptr, ec] = std::from_chars(rest.data(), rest.data() + dot, index);
    if (ec != std::errc() || ptr != rest.data() + dot) index = -1;
  }
  if (index < 0) return "";
  const std::string_view suffix = rest.substr(dot + 1);
  for (const auto& [hf, other] : table)
    if (suffix == hf) return fmt::format(fmt::runtime(pattern), index, other);
  return "";
}

std::string umt5_original_name(std::string_view name) {
  if (name == kUmt5EmbeddingName || name == kSharedEmbedding)
    return std::string(kOriginalEmbedding);
  if (name == "encoder.final_layer_norm.weight") return "norm.weight";
  std::string n = block_name(name, kBlockNames, "blocks.{}.{}");
  FS_CHECK(!n.empty(), "'{}' is not a UMT5 encoder tensor name", name);
  return n;
}

std::string umt5_gguf_name(std::string_view name) {
  if (name == kUmt5EmbeddingName || name == kSharedEmbedding) return std::string(kGgufEmbedding);
  if (name == "encoder.final_layer_norm.weight") return "enc.output_norm.weight";
  std::string n = block_name(name, kGgufBlockNames, "enc.blk.{}.{}");
  FS_CHECK(!n.empty(), "'{}' is not a UMT5 encoder tensor name", name);
  return n;
}

std::string Umt5Naming::stored(std::string_view name) const {
  if (name == kUmt5EmbeddingName) return embedding;
  switch (scheme) {
    case Umt5Scheme::Original:
      return prefix + umt5_original_name(name);
    case Umt5Scheme::Gguf:
      return prefix + umt5_gguf_name(name);
    case Umt5Scheme::Transformers:
      break;
  }
  return prefix + std::string(name);
}

std::string Umt5Naming::describe() const {
  std::string s = scheme == Umt5Scheme::Original ? "original Wan naming"
                  : scheme == Umt5Scheme::Gguf   ? "llama.cpp (GGUF t5encoder) naming"
                                                 : "transformers naming";
  if (!prefix.empty()) s += fmt::format(", prefix '{}'", prefix);
  return s;
}

Umt5Naming detect_umt5_naming(const std::vector<std::string>& names, const std::string& label) {
  std::vector<std::string> sorted = names;
  std::sort(sorted.begin(), sorted.end());
  for (const std::string& n : sorted) {
    Umt5Naming naming;
    if (n.ends_with(kFirstQuery)) {
      naming.scheme = Umt5Scheme::Transformers;
      naming.prefix = n.substr(0, n.size() - kFirstQuery.size());
      const std::string own = naming.prefix + std::string(kUmt5EmbeddingName);
      const std::string shared = naming.prefix + std::string(kSharedEmbedding);
      naming.embedding = contains(sorted, own) ? own : shared;
      FS_CHECK(contains(sorted, naming.embedding),
               "{}: UMT5 encoder in transformers naming without its token embedding (neither '{}' "
               "nor '{}')",
               label, own, shared);
      return naming;
    }
    if (n.ends_with(kGgufFirstQuery)) {
      naming.scheme = Umt5Scheme::Gguf;
      naming.prefix = n.substr(0, n.size() - kGgufFirstQuery.size());
      naming.embedding = naming.prefix + std::string(kGgufEmbedding);
      FS_CHECK(contains(sorted, naming.embedding),
               "{}: UMT5 encoder in llama.cpp naming without its token embedding '{}'", label,
               naming.embedding);
      return naming;
    }
    if (n.ends_with(kOriginalFirstQuery)) {
      naming.scheme = Umt5Scheme::Original;
      naming.prefix = n.substr(0, n.size() - kOriginalFirstQuery.size());
      naming.embedding = naming.prefix + std::string(kOriginalEmbedding);
      // A DiT also has `blocks.0.attn...`-like names only under other module names, so the
      // embedding is what marks an original T5 encoder.
      if (!contains(sorted, naming.embedding)) continue;
      return naming;
    }
  }
  fail(
      "{}: not a UMT5 text encoder checkpoint (no '{}' in transformers naming, nor '{}' with "
      "'{}' in original Wan naming, nor '{}' in llama.cpp naming)",
      label, kFirstQuery, kOriginalFirstQuery, kOriginalEmbedding, kGgufFirstQuery);
}

}  // namespace freeswim::io
