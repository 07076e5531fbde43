// The text ops of the CPU backend, the relative position buckets and the naming map, each
// against an independent statement of what they must give.
#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "core/error.h"
#include "io/umt5_names.h"
#include "ops/ops.h"
#include "text/umt5.h"

namespace freeswim {
namespace {

Tensor random_tensor(const Shape& shape, uint32_t seed) {
  std::mt19937 gen(seed);
  std::normal_distribution<float> dist;
  std::vector<float> v(static_cast<size_t>(shape_numel(shape)));
  for (float& x : v) x = dist(gen);
  return Tensor::from_vector(shape, v);
}

std::string message_of(const std::function<void()>& fn) {
  try {
    fn();
  } catch (const Error& e) {
    return e.what();
  }
  return "(no error)";
}

TEST(Umt5Ops, EmbeddingGathersRowsAndRefusesIdsOutsideTheTable) {
  const Tensor table = Tensor::from_vector({3, 2}, {0, 1, 10, 11, 20, 21});
  const Tensor y = ops::embedding(table, {2, 0, 2, 1});
  EXPECT_EQ(y.shape(), (Shape{4, 2}));
  EXPECT_EQ(y.to_float_vector(), (std::vector<float>{20, 21, 0, 1, 20, 21, 10, 11}));
  const std::string msg = message_of([&] { ops::embedding(table, {1, 3}); });
  EXPECT_NE(msg.find("id 3 at position 1"), std::string::npos) << msg;
  EXPECT_NE(message_of([&] { ops::embedding(table, {-1}); }).find("id -1"), std::string::npos);
}

TEST(Umt5Ops, MulIsElementwise) {
  const Tensor a = Tensor::from_vector({2, 2}, {1, -2, 3, 0.5f});
  const Tensor b = Tensor::from_vector({2, 2}, {4, 5, -1, 8});
  EXPECT_EQ(ops::mul(a, b).to_float_vector(), (std::vector<float>{4, -10, -3, 4}));
  EXPECT_THROW(ops::mul(a, Tensor::from_vector({3}, {1, 2, 3})), Error);
}

// softmax(scale q.k + bias) v in double, masked keys skipped.
std::vector<double> naive_attention(const Tensor& q, const Tensor& k, const Tensor& v, float scale,
                                    const Tensor& bias, const std::vector<int>& mask) {
  const int64_t nq = q.dim(0), nk = k.dim(0), H = q.dim(1), d = q.dim(2);
  const auto qv = q.to_float_vector(), kv = k.to_float_vector(), vv = v.to_float_vector();
  const auto bv = bias.to_float_vector();
  std::vector<double> out(static_cast<size_t>(nq * H * d));
  for (int64_t i = 0; i < nq; ++i)
    for (int64_t h = 0; h < H; ++h) {
      std::vector<double> w(static_cast<size_t>(nk), 0.0);
      double mx = -1e300, sum = 0;
      for (int64_t j = 0; j < nk; ++j) {
        if (!mask[j]) continue;
        double s = 0;
        for (int64_t c = 0; c < d; ++c)
          s += double(qv[(i * H + h) * d + c]) * kv[(j * H + h) * d + c];
        w[j] = s * scale + bv[(i * nk + j) * H + h];
        mx = std::max(mx, w[j]);
      }
      for (int64_t j = 0; j < nk; ++j) {
        w[j] = mask[j] ? std::exp(w[j] - mx) : 0.0;
        sum += w[j];
      }
      for (int64_t c = 0; c < d; ++c) {
        double acc = 0;
        for (int64_t j = 0; j < nk; ++j) acc += w[j] * vv[(j * H + h) * d + c];
        out[(i * H + h) * d + c] = acc / sum;
      }
    }
  return out;
}

double max_abs_diff(const Tensor& got, const std::vector<double>& want) {
  const auto g = got.to_float_vector();
  double m = 0;
  for (size_t i = 0; i < g.size(); ++i) m = std::max(m, std::abs(g[i] - want[i]));
  return m;
}

TEST(Umt5Ops, AttentionWithBiasAndKeyMaskMatchesTheDefinition) {
  const int64_t nq = 5, nk = 7, H = 3, d = 4;
  const Tensor q = random_tensor({nq, H, d}, 1), k = random_tensor({nk, H, d}, 2);
  const Tensor v = random_tensor({nk, H, d}, 3), bias = random_tensor({nq, nk, H}, 4);
  const std::vector<int> mask{1, 1, 0, 1, 1, 0, 0};
  const Tensor key_mask = Tensor::from_vector({nk}, {1, 1, 0, 1, 1, 0, 0});
  const Tensor got = ops::attention_bias(q, k, v, 0.7f, bias, key_mask);
  EXPECT_LT(max_abs_diff(got, naive_attention(q, k, v, 0.7f, bias, mask)), 1e-5);

  // No mask means every key; a padded key's values do not matter.
  const std::vector<int> all(nk, 1);
  EXPECT_LT(max_abs_diff(ops::attention_bias(q, k, v, 1.f, bias),
                         naive_attention(q, k, v, 1.f, bias, all)),
            1e-5);
  Tensor v2 = v.clone();
  for (int64_t c = 0; c < H * d; ++c) v2.data<float>()[2 * H * d + c] = 1e6f;
  EXPECT_EQ(ops::attention_bias(q, k, v2, 0.7f, bias, key_mask).to_float_vector(),
            got.to_float_vector());
}

TEST(Umt5Ops, AttentionWithEveryKeyPaddedAveragesTheValues) {
  const Tensor q = random_tensor({2, 1, 2}, 5), k = random_tensor({3, 1, 2}, 6);
  const Tensor v = Tensor::from_vector({3, 1, 2}, {0, 3, 3, 6, 6, 0});
  const Tensor out =
      ops::attention_bias(q, k, v, 1.f, random_tensor({2, 3, 1}, 7), Tensor::zeros({3}));
  for (float x : out.to_float_vector()) EXPECT_NEAR(x, 3.f, 1e-6);
}

TEST(Umt5Ops, AttentionRefusesMismatchedBiasAndMask) {
  const Tensor q = random_tensor({2, 1, 2}, 5), k = random_tensor({3, 1, 2}, 6);
  EXPECT_THROW(ops::attention_bias(q, k, k, 1.f, random_tensor({2, 2, 1}, 1)), Error);
  EXPECT_THROW(ops::attention_bias(q, k, k, 1.f, {}, Tensor::zeros({2})), Error);
}

TEST(Umt5Buckets, FollowT5BidirectionalBuckets) {
  // 32 buckets, max distance 128: keys before the query in 0..15, after it in 16..31; exact
  // buckets for distances below 8, then 8-11 -> 8, 12-15 -> 9, 16-22 -> 10, 23-31 -> 11,
  // 32-45 -> 12, 46-63 -> 13, 64-90 -> 14, 91 and beyond -> 15.
  const std::vector<std::pair<int64_t, int64_t>> expected{
      {0, 0},    {1, 17},   {-1, 1},    {7, 23},   {-7, 7},   {8, 24},   {-8, 8},  {11, 24},
      {12, 25},  {15, 25},  {16, 26},   {-16, 10}, {22, 26},  {23, 27},  {31, 27}, {32, 28},
      {-32, 12}, {45, 28},  {46, 29},   {63, 29},  {64, 30},  {-64, 14}, {90, 30}, {91, 31},
      {127, 31}, {128, 31}, {-128, 15}, {511, 31}, {-511, 15}};
  for (const auto& [rel, bucket] : expected)
    EXPECT_EQ(text::umt5_relative_bucket(rel, 32, 128), bucket) << "relative position " << rel;
}

TEST(Umt5Names, MapsEveryEncoderTensorToWansNames) {
  EXPECT_EQ(io::umt5_original_name("encoder.embed_tokens.weight"), "token_embedding.weight");
  EXPECT_EQ(io::umt5_original_name("shared.weight"), "token_embedding.weight");
  EXPECT_EQ(io::umt5_original_name("encoder.final_layer_norm.weight"), "norm.weight");
  const std::vector<std::pair<std::string, std::string>> block{
      {"layer.0.layer_norm.weight", "norm1.weight"},
      {"layer.0.SelfAttention.q.weight", "attn.q.weight"},
      {"layer.0.SelfAttention.k.weight", "attn.k.weight"},
      {"layer.0.SelfAttention.v.weight", "attn.v.weight"},
      {"layer.0.SelfAttention.o.weight", "attn.o.weight"},
      {"layer.0.SelfAttention.relative_attention_bias.weight", "pos_embedding.embedding.weight"},
      {"layer.1.layer_norm.weight", "norm2.weight"},
      {"layer.1.DenseReluDense.wi_0.weight", "ffn.gate.0.weight"},
      {"layer.1.DenseReluDense.wi_1.weight", "ffn.fc1.weight"},
      {"layer.1.DenseReluDense.wo.weight", "ffn.fc2.weight"}};
  for (const auto& [hf, original] : block)
    EXPECT_EQ(io::umt5_original_name("encoder.block.23." + hf), "blocks.23." + original);
  EXPECT_THROW(io::umt5_original_name("encoder.block.x.layer.0.layer_norm.weight"), Error);
  EXPECT_THROW(io::umt5_original_name("decoder.block.0.layer.0.layer_norm.weight"), Error);
  EXPECT_THROW(io::umt5_original_name("encoder.block.0.layer.2.layer_norm.weight"), Error);
}

TEST(Umt5Names, DetectsSchemePrefixAndTiedEmbedding) {
  const auto hf = io::detect_umt5_naming(
      {"shared.weight", "encoder.block.0.layer.0.SelfAttention.q.weight"}, "a");
  EXPECT_EQ(hf.scheme, io::Umt5Scheme::Transformers);
  EXPECT_EQ(hf.stored("encoder.embed_tokens.weight"), "shared.weight");
  EXPECT_EQ(hf.stored("encoder.final_layer_norm.weight"), "encoder.final_layer_norm.weight");

  const auto original = io::detect_umt5_naming(
      {"te.token_embedding.weight", "te.blocks.0.attn.q.weight", "te.norm.weight"}, "b");
  EXPECT_EQ(original.scheme, io::Umt5Scheme::Original);
  EXPECT_EQ(original.prefix, "te.");
  EXPECT_EQ(original.stored("encoder.embed_tokens.weight"), "te.token_embedding.weight");
  EXPECT_EQ(original.stored("encoder.block.1.layer.1.DenseReluDense.wo.weight"),
            "te.blocks.1.ffn.fc2.weight");

  // A DiT is not a text encoder: the message names the file.
  const std::string msg = message_of([] {
    io::detect_umt5_naming({"blocks.0.attn.q.weight", "patch_embedding.weight"}, "dit.safetensors");
  });
  EXPECT_NE(msg.find("dit.safetensors"), std::string::npos) << msg;
  EXPECT_NE(message_of([] {
              io::detect_umt5_naming({"encoder.block.0.layer.0.SelfAttention.q.weight"}, "x");
            }).find("shared.weight"),
            std::string::npos);
}

}  // namespace
}  // namespace freeswim
