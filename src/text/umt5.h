// The UMT5 text encoder Wan conditions on (google/umt5-xxl, encoder only), as transformers'
// UMT5EncoderModel computes it:
//
//   x = embed_tokens[ids]
//   every block:  x += o(attention(q, k, v of rms(x)) + own relative position bias, padding keys
//                        left out, no 1/sqrt(d) scaling)
//                 x += wo(gelu_tanh(wi_0(rms(x))) * wi_1(rms(x)))
//   out = final rms(x)
//
// where rms is T5's LayerNorm (scale only: no mean subtraction, no bias). Unlike T5, every
// block has its own relative position table ([buckets, heads], bidirectional buckets).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "core/tensor.h"

namespace freeswim::text {

struct Tokens;

struct Umt5Config {
  int64_t vocab_size = 256384;
  int64_t d_model = 4096;
  int64_t num_layers = 24;
  int64_t num_heads = 64;
  int64_t d_kv = 64;  // per head
  int64_t d_ff = 10240;
  int64_t num_buckets = 32;
  int64_t max_distance = 128;
  float eps = 1e-6f;

  int64_t inner_dim() const { return num_heads * d_kv; }
  // Elements of every weight Umt5Encoder::load reads (the embedding, each block's norms,
  // projections and position table, the final norm): its device bytes are this times the
  // compute dtype's size.
  int64_t parameter_count() const;
  std::string describe() const;  // "24 layers of 4096 (64 heads of 64), ffn 10240, vocab 256384"
  // Parses a transformers `config.json` (model_type umt5, gated-gelu feed-forward).
  static Umt5Config from_json_file(const std::string& path);
  // google/umt5-xxl, the encoder every Wan2.1 model uses.
  static Umt5Config xxl() { return {}; }
};

// Relative position bucket of key j seen from query i (relative position j - i) for a
// bidirectional encoder, as T5 / UMT5 compute it (float32 logarithm, truncated).
int64_t umt5_relative_bucket(int64_t relative_position, int64_t num_buckets, int64_t max_distance);

struct Umt5LayerWeights {
  Tensor norm1, q, k, v, o, rel_bias;  // rel_bias [buckets, heads]
  Tensor norm2, wi0, wi1, wo;
};

struct Umt5Weights {
  Tensor embedding;  // [vocab, d_model]
  std::vector<Umt5LayerWeights> layers;
  Tensor final_norm;
};

class Umt5Encoder {
 public:
  Umt5Encoder(Umt5Config config, Umt5Weights weights, Device device);

  // Loads from a checkpoint: a safetensors file, a sharded index, a directory (diffusers
  // `text_encoder/`, a diffusers model root holding one, or a Wan model folder holding
  // `models_t5_umt5-xxl-enc-bf16.pth`), or a torch `.pth`. Either naming scheme. The config
  // comes from `config_path` if given, else a `config.json` beside the weights, else is
  // inferred from the tensor shapes. Weights are checked against the config (a missing tensor
  // or a wrong shape throws Error naming it) and converted once to the compute dtype.
  static std::unique_ptr<Umt5Encoder> load(const std::string& path, Device device,
                                           const std::string& config_path = "");
  // The configuration load() uses for `path`, from names, shapes and config files only (no
  // weight is read): `config_path`, else a UMT5 config.json beside the weights, else inferred.
  static Umt5Config resolve_config(const std::string& path, const std::string& config_path = "");

  const Umt5Config& config() const { return config_; }
  Device device() const { return device_; }

  // The encoder's last hidden state [L, d_model] for one sequence of L ids with its attention
  // mask (1: token, 0: padding; padded keys are left out of every attention). Padded positions
  // get an output too, as the reference computes them.
  Tensor forward(const std::vector<int32_t>& ids, const std::vector<int32_t>& mask) const;

  // Wan's text conditioning of one tokenized prompt: the encoder output of its first
  // `tokens.length` positions, then zeros up to `text_len` rows ([text_len, d_model]). Only
  // those positions are encoded: padded keys are left out of every attention and the position
  // bias depends only on offsets, so the padding changes nothing in them.
  Tensor wan_context(const Tokens& tokens, int64_t text_len = 512) const;

 private:
  Umt5Config config_;
  Umt5Weights w_;
  Device device_;
};

}  // namespace freeswim::text
