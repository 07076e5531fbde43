// Loading the DiT: config inference, every naming scheme, and refusal of broken checkpoints
// with messages that name the file and the tensor.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "golden_dir.h"
#include "io/safetensors.h"
#include "models/wan_dit.h"

namespace freeswim::models {
namespace {

namespace fs = std::filesystem;

struct TempDir {
  fs::path path;
  TempDir() {
    path = fs::temp_directory_path() /
           ("fs_dit_" + std::to_string(::testing::UnitTest::GetInstance()->random_seed()) + "_" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(path);
    fs::create_directories(path);
  }
  ~TempDir() { fs::remove_all(path); }
  std::string file(const std::string& name) const { return (path / name).string(); }
};

using TensorList = std::vector<std::pair<std::string, Tensor>>;

TensorList golden_tensors(const std::string& file) {
  auto f = io::SafetensorsFile::open(kGolden + "/" + file);
  TensorList out;
  for (const auto& t : f->tensors())
    out.emplace_back(t.name, f->tensor(t.name).to(DType::F32).clone());
  return out;
}

std::string error_of(const std::function<void()>& fn) {
  try {
    fn();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

TEST(WanDitLoad, AllNamingSchemesGiveTheSameModel) {
  const std::string cfg = kGolden + "/dit_tiny.config.json";
  DitInput in;
  in.latents = Tensor::zeros({16, 1, 4, 4});
  for (int64_t i = 0; i < in.latents.numel(); ++i) in.latents.data<float>()[i] = std::sin(0.1f * i);
  in.timestep = 500.f;
  in.context = Tensor::zeros({3, 32});
  for (int64_t i = 0; i < in.context.numel(); ++i) in.context.data<float>()[i] = std::cos(0.3f * i);
  auto a = WanDit::load(kGolden + "/dit_tiny.diffusers.safetensors", Device::CPU, cfg);
  auto b = WanDit::load(kGolden + "/dit_tiny.original.safetensors", Device::CPU, cfg);
  EXPECT_EQ(a->config().num_layers, 2);
  EXPECT_EQ(a->config().heads, 2);
  EXPECT_EQ(relative_l2(a->forward(in, StepKind::Stock), b->forward(in, StepKind::Stock)), 0.0);
}

TEST(WanDitLoad, InfersConfigFromShapes) {
  // A 1-layer model of one 128-wide head, written under original names with the ComfyUI prefix.
  WanDitConfig c;
  c.heads = 1;
  c.num_layers = 1;
  c.ffn_dim = 64;
  c.text_dim = 24;
  TempDir tmp;
  // Build the checkpoint by name: every tensor the loader asks for, zero-filled.
  const int64_t D = 128;
  const std::string p = "model.diffusion_model.";
  TensorList t{{p + "patch_embedding.weight", Tensor::zeros({D, 16, 1, 2, 2})},
               {p + "patch_embedding.bias", Tensor::zeros({D})},
               {p + "time_projection.1.weight", Tensor::zeros({6 * D, D})},
               {p + "text_embedding.0.weight", Tensor::zeros({D, 24})},
               {p + "time_embedding.0.weight", Tensor::zeros({D, 256})},
               {p + "blocks.0.ffn.0.weight", Tensor::zeros({64, D})},
               {p + "blocks.0.self_attn.q.weight", Tensor::zeros({D, D})},
               {p + "head.head.weight", Tensor::zeros({64, D})}};
  io::write_safetensors(tmp.file("w.safetensors"), t);
  const WanDitConfig got = WanDit::infer_config(io::TensorSource::open(tmp.file("w.safetensors")));
  EXPECT_EQ(got.heads, 1);
  EXPECT_EQ(got.head_dim, 128);
  EXPECT_EQ(got.num_layers, 1);
  EXPECT_EQ(got.ffn_dim, 64);
  EXPECT_EQ(got.text_dim, 24);
  EXPECT_EQ(got.freq_dim, 256);
  EXPECT_EQ(got.out_channels, 16);
  // Loading it completely fails on the first tensor it lacks, named with its stored name.
  const std::string msg = error_of([&] { WanDit::load(tmp.file("w.safetensors"), Device::CPU); });
  EXPECT_NE(msg.find("missing tensor 'model.diffusion_model."), std::string::npos) << msg;
}

TEST(WanDitLoad, TinyModelNeedsItsConfig) {
  // The tiny model has 32-wide heads, which shapes cannot reveal: without a config it is refused.
  const std::string msg =
      error_of([] { WanDit::load(kGolden + "/dit_tiny.diffusers.safetensors", Device::CPU); });
  EXPECT_NE(msg.find("not a multiple of 128"), std::string::npos) << msg;
}

TEST(WanDitLoad, MissingTensorIsNamed) {
  TempDir tmp;
  TensorList t = golden_tensors("dit_tiny.diffusers.safetensors");
  std::erase_if(t, [](const auto& x) { return x.first == "blocks.1.attn2.norm_k.weight"; });
  io::write_safetensors(tmp.file("dit.safetensors"), t);
  const std::string msg = error_of([&] {
    WanDit::load(tmp.file("dit.safetensors"), Device::CPU, kGolden + "/dit_tiny.config.json");
  });
  EXPECT_NE(msg.find("blocks.1.attn2.norm_k.weight"), std::string::npos) << msg;
  EXPECT_NE(msg.find(tmp.file("dit.safetensors")), std::string::npos) << msg;
}

TEST(WanDitLoad, WrongShapeIsNamed) {
  TempDir tmp;
  TensorList t = golden_tensors("dit_tiny.original.safetensors");
  for (auto& [name, tensor] : t)
    if (name.ends_with("blocks.0.ffn.2.weight")) tensor = Tensor::zeros({64, 95});
  io::write_safetensors(tmp.file("dit.safetensors"), t);
  const std::string msg = error_of([&] {
    WanDit::load(tmp.file("dit.safetensors"), Device::CPU, kGolden + "/dit_tiny.config.json");
  });
  EXPECT_NE(msg.find("blocks.0.ffn.2.weight"), std::string::npos) << msg;
  EXPECT_NE(msg.find("[64, 95]"), std::string::npos) << msg;
  EXPECT_NE(msg.find("[64, 96]"), std::string::npos) << msg;
}

TEST(WanDitLoad, MoreBlocksThanTheConfigIsRefused) {
  TempDir tmp;
  std::ifstream in(kGolden + "/dit_tiny.config.json");
  auto cfg = nlohmann::json::parse(in);
  cfg["num_layers"] = 1;
  std::ofstream(tmp.file("config.json")) << cfg.dump();
  const std::string msg = error_of([&] {
    WanDit::load(kGolden + "/dit_tiny.diffusers.safetensors", Device::CPU, tmp.file("config.json"));
  });
  EXPECT_NE(msg.find("more than the 1 blocks"), std::string::npos) << msg;
}

TEST(WanDitConfig, RefusesBadConfigs) {
  TempDir tmp;
  std::ofstream(tmp.file("bad.json")) << "{ not json";
  EXPECT_NE(error_of([&] {
              WanDitConfig::from_json_file(tmp.file("bad.json"));
            }).find(tmp.file("bad.json")),
            std::string::npos);
  std::ofstream(tmp.file("i2v.json"))
      << R"({"num_attention_heads": 40, "attention_head_dim": 128, "ffn_dim": 13824,
      "num_layers": 40, "image_dim": 1280})";
  EXPECT_NE(
      error_of([&] { WanDitConfig::from_json_file(tmp.file("i2v.json")); }).find("image-to-video"),
      std::string::npos);
  std::ofstream(tmp.file("zero.json"))
      << R"({"num_attention_heads": 0, "attention_head_dim": 128, "ffn_dim": 1,
      "num_layers": 1})";
  EXPECT_NE(error_of([&] {
              WanDitConfig::from_json_file(tmp.file("zero.json"));
            }).find("num_attention_heads"),
            std::string::npos);
  std::ofstream(tmp.file("orig.json"))
      << R"({"dim": 1536, "num_heads": 12, "ffn_dim": 8960, "num_layers": 30,
      "model_type": "t2v", "in_dim": 16, "out_dim": 16, "text_dim": 4096, "freq_dim": 256, "eps": 1e-6})";
  const WanDitConfig c = WanDitConfig::from_json_file(tmp.file("orig.json"));
  EXPECT_EQ(c.heads, 12);
  EXPECT_EQ(c.head_dim, 128);
  EXPECT_EQ(c.num_layers, 30);
  EXPECT_EQ(WanDitConfig::preset("14B").dim(), 5120);
  EXPECT_THROW(WanDitConfig::preset("7B"), Error);
}

TEST(WanDitForward, StepKindsNeedTheirInputs) {
  auto model = WanDit::load(kGolden + "/dit_tiny.diffusers.safetensors", Device::CPU,
                            kGolden + "/dit_tiny.config.json");
  DitInput in;
  in.latents = Tensor::zeros({16, 1, 4, 4});
  in.context = Tensor::zeros({3, 32});
  FreeSwimParams p{1, 1, 0.2};
  EXPECT_THROW(model->forward(in, StepKind::Dual), Error);
  EXPECT_THROW(model->forward(in, StepKind::Guide, &p), Error);
  CrossAttentionCache empty;
  EXPECT_THROW(model->forward(in, StepKind::Reuse, &p, &empty), Error);
  in.latents = Tensor::zeros({16, 1, 3, 4});  // odd height: not divisible by the patch
  EXPECT_THROW(model->forward(in, StepKind::Stock), Error);
  in.latents = Tensor::zeros({4, 1, 4, 4});  // wrong channel count
  EXPECT_THROW(model->forward(in, StepKind::Stock), Error);
  // A guide step fills one cache entry per block, which a reuse step then accepts.
  in.latents = Tensor::zeros({16, 1, 4, 4});
  CrossAttentionCache cache;
  const Tensor guided = model->forward(in, StepKind::Guide, &p, &cache);
  ASSERT_EQ(cache.blocks.size(), 2u);
  EXPECT_EQ(cache.bytes(), 2u * 4 * 64 * 4);
  // With the same latents, reuse and dual give the same prediction (the cache is exact).
  EXPECT_LT(relative_l2(model->forward(in, StepKind::Reuse, &p, &cache), guided), 1e-6);
}

}  // namespace
}  // namespace freeswim::models
