// Checkpoint naming schemes of the UMT5 text encoder, in one place.
//
// The engine names every encoder tensor by its transformers name (`UMT5EncoderModel`, the
// diffusers `text_encoder/` folder). Wan's own release (`models_t5_umt5-xxl-enc-bf16.pth`) stores
// the state dict of its T5Encoder module, whose names differ: `umt5_original_name` turns a
// transformers name into the original one. The scheme (and any prefix in front of every name)
// is detected from the tensors a checkpoint holds.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace freeswim::io {

// Gguf: llama.cpp's names for a T5 encoder (general.architecture "t5encoder"): token_embd,
// enc.blk.<i>.attn_{norm,q,k,v,o,rel_b}, enc.blk.<i>.ffn_{norm,gate,up,down}, enc.output_norm.
enum class Umt5Scheme { Transformers, Original, Gguf };

struct Umt5Naming {
  Umt5Scheme scheme = Umt5Scheme::Transformers;
  std::string prefix;  // in front of every stored name, e.g. "text_encoder." or ""
  // transformers ties the token embedding to `shared.weight` and a file may hold only that
  // one; this is the stored name of the embedding table the file holds.
  std::string embedding;

  // Stored name of a tensor given its transformers name (the embedding table included).
  std::string stored(std::string_view transformers_name) const;
  std::string describe() const;  // "transformers naming" / "original Wan naming, prefix 'x.'"
};

// The transformers name of the token embedding, the engine's name for it.
inline constexpr std::string_view kUmt5EmbeddingName = "encoder.embed_tokens.weight";

// Original Wan name of a transformers UMT5 encoder tensor name; throws Error for a name that
// is not an encoder tensor.
std::string umt5_original_name(std::string_view transformers_name);

// llama.cpp's (GGUF) name of a transformers UMT5 encoder tensor name; throws Error for a name
// that is not an encoder tensor.
std::string umt5_gguf_name(std::string_view transformers_name);

// Detects the scheme and prefix from the names a checkpoint holds; throws Error naming
// `label` when neither scheme's first attention layer and embedding are present.
Umt5Naming detect_umt5_naming(const std::vector<std::string>& names, const std::string& label);

}  // namespace freeswim::io
