// The UMT5 encoder against the golden outputs of transformers' UMT5EncoderModel, in both
// namings, Wan's conditioning step (zeros past each prompt), and the check suite.
#include "text/umt5.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>

#include "check/suites.h"
#include "core/error.h"
#include "io/safetensors.h"
#include "text/tokenizer.h"
#include "umt5_files.h"

namespace freeswim {
namespace {

namespace fs = std::filesystem;

struct Golden {
  std::vector<text::Tokens> prompts;
  Tensor hidden;  // [B, L, D]
};

Golden golden() {
  const auto f = io::SafetensorsFile::open(kGolden + "/umt5_tiny_cases.safetensors");
  const Tensor ids = f->tensor("input_ids"), mask = f->tensor("attention_mask");
  Golden g;
  g.hidden = f->tensor("last_hidden_state");
  for (int64_t b = 0; b < ids.dim(0); ++b) {
    text::Tokens t;
    for (int64_t i = 0; i < ids.dim(1); ++i) {
      t.ids.push_back(static_cast<int32_t>(ids.data<float>()[b * ids.dim(1) + i]));
      t.mask.push_back(static_cast<int32_t>(mask.data<float>()[b * ids.dim(1) + i]));
      t.length += t.mask.back();
    }
    g.prompts.push_back(t);
  }
  return g;
}

// Row b of [B, L, D] as [L, D].
Tensor row(const Tensor& t, int64_t b) {
  return t.slice0(b, b + 1).reshape({t.dim(1), t.dim(2)});
}

void expect_matches_golden(const text::Umt5Encoder& model) {
  const Golden g = golden();
  ASSERT_EQ(g.prompts.size(), 2u);
  // The cases are padded prompts: masking must matter for them to be a test of it.
  EXPECT_LT(g.prompts[1].length, static_cast<int64_t>(g.prompts[1].ids.size()));
  for (size_t b = 0; b < g.prompts.size(); ++b) {
    const Tensor out = model.forward(g.prompts[b].ids, g.prompts[b].mask);
    EXPECT_LT(relative_l2(out, row(g.hidden, static_cast<int64_t>(b))), 1e-4) << "prompt " << b;
  }
}

TEST(Umt5Golden, TransformersNamingMatchesTheReference) {
  const auto model = text::Umt5Encoder::load(kHf, Device::CPU, kConfig);
  EXPECT_EQ(model->config().num_layers, 2);
  EXPECT_EQ(model->config().num_heads, 4);
  expect_matches_golden(*model);
}

TEST(Umt5Golden, OriginalNamingMatchesTheReference) {
  expect_matches_golden(*text::Umt5Encoder::load(kOriginal, Device::CPU, kConfig));
}

TEST(Umt5Golden, ConfigInferredFromShapesMatchesTheJson) {
  const auto inferred = text::Umt5Encoder::load(kOriginal, Device::CPU);
  const text::Umt5Config json = text::Umt5Config::from_json_file(kConfig);
  const text::Umt5Config& c = inferred->config();
  EXPECT_EQ(c.describe(), json.describe());
  EXPECT_EQ(c.num_buckets, json.num_buckets);
  EXPECT_EQ(c.max_distance, json.max_distance);
  expect_matches_golden(*inferred);
}

// resolve_config reads no weight and gives the configuration load() uses; parameter_count is
// the elements of every tensor load() reads (the file holds nothing else).
TEST(Umt5Golden, ResolvedConfigIsTheLoadedOneAndCountsEveryWeight) {
  for (const std::string& path : {kHf, kOriginal}) {
    SCOPED_TRACE(path);
    const text::Umt5Config resolved = text::Umt5Encoder::resolve_config(path);
    EXPECT_EQ(resolved.describe(), text::Umt5Encoder::load(path, Device::CPU)->config().describe());
    const auto f = io::SafetensorsFile::open(path);
    int64_t elements = 0;
    for (const auto& t : f->tensors()) {
      int64_t n = 1;
      for (const int64_t d : t.shape) n *= d;
      elements += n;
    }
    // transformers' files hold the tied embedding twice (shared.weight and
    // encoder.embed_tokens.weight); load() reads one.
    const int64_t tied = f->find("shared.weight") && f->find("encoder.embed_tokens.weight")
                             ? resolved.vocab_size * resolved.d_model
                             : 0;
    EXPECT_EQ(resolved.parameter_count(), elements - tied);
  }
  EXPECT_THROW(text::Umt5Encoder::resolve_config(kGolden + "/no_such_encoder.safetensors"), Error);
}

TEST(Umt5Golden, XxlDefaultsAreWansEncoder) {
  const text::Umt5Config c = text::Umt5Config::xxl();
  EXPECT_EQ(c.describe(), "24 layers of 4096 (64 heads of 64), ffn 10240, vocab 256384");
  EXPECT_EQ(c.num_buckets, 32);
  EXPECT_EQ(c.max_distance, 128);
}

TEST(Umt5Golden, PaddedPositionsAreMaskedOutOfAttention) {
  const auto model = text::Umt5Encoder::load(kHf, Device::CPU, kConfig);
  const Golden g = golden();
  const text::Tokens& p = g.prompts[1];
  const int64_t n = p.length, D = model->config().d_model;
  // Changing what sits in the padding leaves the prompt's positions exactly as they were...
  std::vector<int32_t> other = p.ids;
  for (size_t i = static_cast<size_t>(n); i < other.size(); ++i)
    other[i] = 7 + static_cast<int32_t>(i);
  const Tensor a = model->forward(p.ids, p.mask), b = model->forward(other, p.mask);
  EXPECT_EQ(a.slice0(0, n).to_float_vector(), b.slice0(0, n).to_float_vector());
  // ... while attending to it (mask of ones) changes them.
  const std::vector<int32_t> ones(p.ids.size(), 1);
  EXPECT_GT(relative_l2(model->forward(p.ids, ones).slice0(0, n), a.slice0(0, n)), 1e-3);
  EXPECT_EQ(a.dim(1), D);
}

TEST(Umt5Golden, WanContextEncodesThePromptAndZeroesTheRest) {
  const auto model = text::Umt5Encoder::load(kHf, Device::CPU, kConfig);
  const Golden g = golden();
  const int64_t text_len = 24, D = model->config().d_model;
  for (size_t b = 0; b < g.prompts.size(); ++b) {
    const text::Tokens& p = g.prompts[b];
    const Tensor ctx = model->wan_context(p, text_len);
    ASSERT_EQ(ctx.shape(), (Shape{text_len, D}));
    const Tensor want = row(g.hidden, static_cast<int64_t>(b)).slice0(0, p.length);
    EXPECT_LT(relative_l2(ctx.slice0(0, p.length), want), 1e-4) << "prompt " << b;
    // The same positions of the full padded forward agree to rounding.
    EXPECT_LT(
        relative_l2(ctx.slice0(0, p.length), model->forward(p.ids, p.mask).slice0(0, p.length)),
        1e-6);
    for (float x : ctx.slice0(p.length, text_len).to_float_vector()) ASSERT_EQ(x, 0.f);
  }
  text::Tokens too_long = g.prompts[0];
  EXPECT_THROW(model->wan_context(too_long, too_long.length - 1), Error);
  text::Tokens empty;
  EXPECT_THROW(model->wan_context(empty, text_len), Error);
}

TEST(Umt5Golden, RefusesIdsOutsideTheVocabulary) {
  const auto model = text::Umt5Encoder::load(kHf, Device::CPU, kConfig);
  try {
    model->forward({1, 128}, {1, 1});
    ADD_FAILURE() << "accepted id 128 with a vocabulary of 128";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("token id 128"), std::string::npos) << e.what();
  }
  EXPECT_THROW(model->forward({1, 2}, {1}), Error);
}

std::vector<check::CaseResult> run_suite(const std::string& dir) {
  std::vector<check::CaseResult> results;
  check::Context ctx;
  ctx.golden_dir = dir;
  ctx.report = [&](const check::CaseResult& r) { results.push_back(r); };
  check::check_umt5_cases(ctx);
  return results;
}

TEST(Umt5Check, EveryGoldenCasePasses) {
  const auto results = run_suite(kGolden);
  ASSERT_EQ(results.size(), 4u);  // two cases for each of the two weight files
  for (const auto& r : results)
    EXPECT_TRUE(r.pass) << r.name << ": " << r.error << " " << r.message;
}

TEST(Umt5Check, RunsAnyStemAndWeightFileAndReportsBrokenOnes) {
  const fs::path dir = fs::temp_directory_path() / fmt::format("umt5_check_{}", ::getpid());
  fs::remove_all(dir);
  fs::create_directories(dir);
  for (const char* ext : {"_cases.json", "_cases.safetensors", ".config.json"})
    fs::copy_file(kGolden + "/umt5_tiny" + ext, dir / (std::string("umt5_other") + ext));
  // A bf16 copy of the original weights (checked at the bf16 tolerance) and a broken file.
  const auto f32 = io::SafetensorsFile::open(kOriginal);
  std::vector<std::pair<std::string, Tensor>> bf16;
  for (const auto& t : f32->tensors())
    bf16.emplace_back(t.name, f32->tensor(t.name).to(DType::BF16));
  io::write_safetensors((dir / "umt5_other.original.bf16.safetensors").string(), bf16);
  std::erase_if(bf16, [](const auto& t) { return t.first == "norm.weight"; });
  io::write_safetensors((dir / "umt5_other.broken.safetensors").string(), bf16);

  const auto results = run_suite(dir.string());
  ASSERT_EQ(results.size(), 4u);
  for (const auto& r : results) {
    if (r.name.find("[broken]") != std::string::npos) {
      EXPECT_FALSE(r.pass) << r.name;
      EXPECT_NE(r.message.find("missing tensor 'norm.weight'"), std::string::npos) << r.message;
    } else {
      EXPECT_NE(r.name.find("umt5_other_cases/"), std::string::npos) << r.name;
      EXPECT_TRUE(r.pass) << r.name << ": " << r.error << " " << r.message;
      EXPECT_EQ(r.tolerance, 1e-2);
    }
  }
  fs::remove_all(dir);
}

}  // namespace
}  // namespace freeswim
