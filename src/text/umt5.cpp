// The UMT5 encoder forward and Wan's text conditioning step built on it.
#include "text/umt5.h"

#include <cmath>
#include <cstring>

#include "core/error.h"
#include "ops/ops.h"
#include "text/tokenizer.h"

namespace freeswim::text {

std::string Umt5Config::describe() const {
  return fmt::format("{} layers of {} ({} heads of {}), ffn {}, vocab {}", num_layers, d_model,
                     num_heads, d_kv, d_ff, vocab_size);
}

int64_t Umt5Config::parameter_count() const {
  const int64_t D = d_model, I = inner_dim(), F = d_ff;
  // Per block: two norms, q/k/v/o, the position table, wi_0/wi_1/wo.
  const int64_t block = 2 * D + 4 * I * D + num_buckets * num_heads + 3 * F * D;
  return vocab_size * D + num_layers * block + D;
}

int64_t umt5_relative_bucket(int64_t relative_position, int64_t num_buckets, int64_t max_distance) {
  // Bidirectional: half the buckets for keys after the query, half for the rest; in each half,
  // exact buckets for small distances and logarithmic ones up to max_distance. The logarithm is
  // taken in float32 and truncated exactly as the references do, so boundary distances (16, 32,
  // 64 for 32 buckets) land in the same bucket.
  const int64_t half = num_buckets / 2;
  int64_t bucket = relative_position > 0 ? half : 0;
  const int64_t distance = relative_position < 0 ? -relative_position : relative_position;
  const int64_t max_exact = half / 2;
  if (distance < max_exact) return bucket + distance;
  const float log_ratio = std::log(static_cast<float>(distance) / static_cast<float>(max_exact)) /
                          static_cast<float>(std::log(static_cast<double>(max_distance) /
                                                      static_cast<double>(max_exact)));
  const int64_t large =
      max_exact + static_cast<int64_t>(log_ratio * static_cast<float>(half - max_exact));
  return bucket + std::min(large, half - 1);
}

Umt5Encoder::Umt5Encoder(Umt5Config config, Umt5Weights weights, Device device)
    : config_(config), w_(std::move(weights)), device_(device) {}

Tensor Umt5Encoder::forward(const std::vector<int32_t>& ids,
                            const std::vector<int32_t>& mask) const {
  const Umt5Config& c = config_;
  const int64_t L = static_cast<int64_t>(ids.size());
  FS_CHECK(L > 0, "UMT5 encoder: empty input");
  FS_CHECK(mask.size() == ids.size(), "UMT5 encoder: {} ids but a mask of {}", ids.size(),
           mask.size());
  for (int64_t i = 0; i < L; ++i)
    FS_CHECK(ids[i] >= 0 && ids[i] < c.vocab_size,
             "UMT5 encoder: token id {} at position {} is outside the vocabulary of {}", ids[i], i,
             c.vocab_size);

  // One bucket table for all layers; each layer gathers its own biases from it.
  std::vector<int32_t> buckets(static_cast<size_t>(L * L));
  for (int64_t i = 0; i < L; ++i)
    for (int64_t j = 0; j < L; ++j)
      buckets[i * L + j] =
          static_cast<int32_t>(umt5_relative_bucket(j - i, c.num_buckets, c.max_distance));
  std::vector<float> mask_values(mask.begin(), mask.end());
  const Tensor key_mask = Tensor::from_vector({L}, mask_values).to(device_);

  Tensor x = ops::embedding(w_.embedding, ids);
  for (const Umt5LayerWeights& l : w_.layers) {
    const Tensor h = ops::rms_norm(x, l.norm1, c.eps);
    const Tensor q = ops::linear(h, l.q).reshape({L, c.num_heads, c.d_kv});
    const Tensor k = ops::linear(h, l.k).reshape({L, c.num_heads, c.d_kv});
    const Tensor v = ops::linear(h, l.v).reshape({L, c.num_heads, c.d_kv});
    const Tensor bias = ops::embedding(l.rel_bias, buckets);  // [L*L, heads] = [L, L, heads]
    // T5 folds the 1/sqrt(d) into its initialisation, so scores are not scaled.
    const Tensor a = ops::attention_bias(q, k, v, 1.f, bias, key_mask);
    ops::add_gated(x, ops::linear(a.reshape({L, c.inner_dim()}), l.o));

    const Tensor f = ops::rms_norm(x, l.norm2, c.eps);
    const Tensor gated = ops::mul(ops::gelu_tanh(ops::linear(f, l.wi0)), ops::linear(f, l.wi1));
    ops::add_gated(x, ops::linear(gated, l.wo));
  }
  return ops::rms_norm(x, w_.final_norm, c.eps);
}

Tensor Umt5Encoder::wan_context(const Tokens& tokens, int64_t text_len) const {
  const int64_t n = tokens.length;
  FS_CHECK(n > 0, "UMT5 encoder: the prompt has no tokens (not even </s>)");
  FS_CHECK(n <= text_len, "UMT5 encoder: prompt of {} tokens is longer than the text length {}", n,
           text_len);
  FS_CHECK(
      static_cast<int64_t>(tokens.ids.size()) >= n && static_cast<int64_t>(tokens.mask.size()) >= n,
      "UMT5 encoder: tokens hold {} ids and {} mask entries for a length of {}", tokens.ids.size(),
      tokens.mask.size(), n);
  const std::vector<int32_t> ids(tokens.ids.begin(), tokens.ids.begin() + n);
  const std::vector<int32_t> mask(static_cast<size_t>(n), 1);
  const Tensor encoded = forward(ids, mask).to(Device::CPU).to(DType::F32);
  // Rows past the prompt are zero, as Wan's pipelines pad each prompt's embedding.
  Tensor padded = Tensor::zeros({text_len, config_.d_model});
  std::memcpy(padded.data<float>(), encoded.data<float>(), encoded.nbytes());
  return ops::to_compute(padded, device_);
}

}  // namespace freeswim::text
