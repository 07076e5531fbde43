// Loading the UMT5 encoder from every container it ships in (one file, diffusers shards with an
// index and config.json, a diffusers model root, Wan's .pth and Wan's folder), and the refusal
// of broken checkpoints with messages that name the tensor or file.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <map>

#include "core/error.h"
#include "io/safetensors.h"
#include "test_pickle.h"
#include "test_zip_writer.h"
#include "text/umt5.h"
#include "umt5_files.h"

namespace freeswim {
namespace {

namespace fs = std::filesystem;

using Named = std::vector<std::pair<std::string, Tensor>>;

Named read_all(const std::string& path) {
  const auto f = io::SafetensorsFile::open(path);
  Named out;
  for (const auto& t : f->tensors()) out.emplace_back(t.name, f->tensor(t.name));
  return out;
}

class Umt5Load : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           fmt::format("umt5_load_{}_{}", ::getpid(),
                       ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  std::string path(const std::string& name) const { return (dir_ / name).string(); }

  // The golden prompts' outputs of a model, for comparing two loads of the same weights.
  static std::vector<float> outputs(const text::Umt5Encoder& m) {
    std::vector<float> out = m.forward({5, 9, 1, 0, 0}, {1, 1, 1, 0, 0}).to_float_vector();
    const std::vector<float> b = m.forward({3, 64, 127, 2, 1}, {1, 1, 1, 1, 1}).to_float_vector();
    out.insert(out.end(), b.begin(), b.end());
    return out;
  }
  static std::string load_error(const std::string& p, const std::string& config = "") {
    try {
      text::Umt5Encoder::load(p, Device::CPU, config);
    } catch (const Error& e) {
      return e.what();
    }
    return "(loaded)";
  }

  fs::path dir_;
};

TEST_F(Umt5Load, RefusesAMissingTensorNamingIt) {
  Named t = read_all(kHf);
  std::erase_if(t, [](const auto& x) {
    return x.first == "encoder.block.1.layer.1.DenseReluDense.wo.weight";
  });
  io::write_safetensors(path("model.safetensors"), t);
  const std::string msg = load_error(path("model.safetensors"), kConfig);
  EXPECT_NE(msg.find("missing tensor 'encoder.block.1.layer.1.DenseReluDense.wo.weight'"),
            std::string::npos)
      << msg;
  EXPECT_NE(msg.find(path("model.safetensors")), std::string::npos) << msg;
}

TEST_F(Umt5Load, RefusesAWrongShapeNamingTensorAndShapes) {
  Named t = read_all(kOriginal);
  for (auto& [name, tensor] : t)
    if (name == "blocks.1.attn.k.weight") tensor = Tensor::zeros({32, 16});
  io::write_safetensors(path("t5.safetensors"), t);
  const std::string msg = load_error(path("t5.safetensors"), kConfig);
  EXPECT_NE(msg.find("'blocks.1.attn.k.weight' has shape [32, 16], expected [32, 32]"),
            std::string::npos)
      << msg;
  // Without a config the first layer sets the shapes and the second is refused the same way.
  EXPECT_NE(load_error(path("t5.safetensors")).find("'blocks.1.attn.k.weight' has shape [32, 16]"),
            std::string::npos);
}

TEST_F(Umt5Load, RefusesIntegerWeightsAndNonUmt5Configs) {
  Named t = read_all(kHf);
  for (auto& [name, tensor] : t)
    if (name == "encoder.final_layer_norm.weight") tensor = Tensor::zeros({32}, DType::I32);
  io::write_safetensors(path("model.safetensors"), t);
  EXPECT_NE(load_error(path("model.safetensors"), kConfig)
                .find("'encoder.final_layer_norm.weight' has dtype I32"),
            std::string::npos);

  std::ofstream(path("t5.json")) << R"({"model_type": "t5", "d_model": 32})";
  const std::string msg = load_error(kHf, path("t5.json"));
  EXPECT_NE(msg.find(path("t5.json")), std::string::npos) << msg;
  EXPECT_NE(msg.find("model_type 't5'"), std::string::npos) << msg;
  EXPECT_NE(load_error(path("nothing_here")).find("does not exist"), std::string::npos);
}

TEST_F(Umt5Load, DiffusersShardsWithIndexAndConfigLoadAsOneFile) {
  // The diffusers layout: text_encoder/ with config.json, an index and two shards.
  const fs::path te = dir_ / "text_encoder";
  fs::create_directories(te);
  const Named t = read_all(kHf);
  Named a(t.begin(), t.begin() + 9), b(t.begin() + 9, t.end());
  io::write_safetensors((te / "model-00001-of-00002.safetensors").string(), a);
  io::write_safetensors((te / "model-00002-of-00002.safetensors").string(), b);
  std::ofstream index(te / "model.safetensors.index.json");
  index << R"({"metadata": {}, "weight_map": {)";
  for (size_t i = 0; i < t.size(); ++i)
    index << (i ? "," : "") << '"' << t[i].first << "\": \"model-0000" << (i < 9 ? 1 : 2)
          << "-of-00002.safetensors\"";
  index << "}}";
  index.close();
  fs::copy_file(kConfig, te / "config.json");

  const auto single = Umt5Load::outputs(*text::Umt5Encoder::load(kHf, Device::CPU, kConfig));
  EXPECT_EQ(outputs(*text::Umt5Encoder::load(te.string(), Device::CPU)), single);
  // A diffusers model root finds its text_encoder/.
  EXPECT_EQ(outputs(*text::Umt5Encoder::load(dir_.string(), Device::CPU)), single);
  // Only the tied `shared.weight` stored: still the same model.
  Named tied = t;
  std::erase_if(tied, [](const auto& x) { return x.first == "encoder.embed_tokens.weight"; });
  io::write_safetensors(path("tied.safetensors"), tied);
  EXPECT_EQ(outputs(*text::Umt5Encoder::load(path("tied.safetensors"), Device::CPU, kConfig)),
            single);
}

// Writes `tensors` (f32 or bf16) as a torch.save zip checkpoint, one storage per tensor.
void write_pth(const std::string& file, const Named& tensors) {
  std::vector<test::FixtureTensor> fixtures;
  std::vector<test::ZipFixtureEntry> entries;
  std::map<std::string, std::string> storages;
  for (size_t i = 0; i < tensors.size(); ++i) {
    const Tensor& t = tensors[i].second;
    const std::string key = std::to_string(i);
    const std::string storage = t.dtype() == DType::BF16 ? "BFloat16Storage" : "FloatStorage";
    fixtures.push_back({tensors[i].first, storage, key, t.numel(), 0, t.shape(), {}, false});
    storages[key] = std::string(static_cast<const char*>(t.raw()), t.nbytes());
  }
  entries.push_back({"archive/data.pkl", test::state_dict_pickle(fixtures)});
  entries.push_back({"archive/byteorder", "little"});
  for (const auto& [key, bytes] : storages) entries.push_back({"archive/data/" + key, bytes});
  entries.push_back({"archive/version", "3\n"});
  std::ofstream(file, std::ios::binary) << test::write_zip(entries);
}

TEST_F(Umt5Load, WansPthAndWansFolderLoadTheOriginalNaming) {
  write_pth(path("models_t5_umt5-xxl-enc-bf16.pth"), read_all(kOriginal));
  // Wan's folder also holds the DiT's config.json, which must not be taken for the encoder's.
  std::ofstream(path("config.json")) << R"({"model_type": "t2v", "dim": 1536, "num_heads": 12})";
  const auto want = outputs(*text::Umt5Encoder::load(kOriginal, Device::CPU, kConfig));
  EXPECT_EQ(outputs(*text::Umt5Encoder::load(path("models_t5_umt5-xxl-enc-bf16.pth"), Device::CPU)),
            want);
  EXPECT_EQ(outputs(*text::Umt5Encoder::load(dir_.string(), Device::CPU)), want);
  // And the transformers naming gives the same model.
  EXPECT_EQ(outputs(*text::Umt5Encoder::load(kHf, Device::CPU, kConfig)), want);
}

TEST_F(Umt5Load, Bf16PthAsWanShipsItIsUpcastOnLoad) {
  Named t = read_all(kOriginal);
  for (auto& [name, tensor] : t) tensor = tensor.to(DType::BF16);
  write_pth(path("models_t5_umt5-xxl-enc-bf16.pth"), t);
  const auto f32 = text::Umt5Encoder::load(kOriginal, Device::CPU, kConfig);
  const auto bf16 = text::Umt5Encoder::load(dir_.string(), Device::CPU, kConfig);
  const std::vector<int32_t> ids{5, 9, 77, 1, 0, 0}, mask{1, 1, 1, 1, 0, 0};
  const Tensor a = f32->forward(ids, mask), b = bf16->forward(ids, mask);
  // Stated in golden/README.md for bf16 weights against the f32 result.
  EXPECT_LT(relative_l2(b, a), 1e-2);
  EXPECT_GT(relative_l2(b, a), 0.0);  // the weights really were rounded
}

}  // namespace
}  // namespace freeswim
