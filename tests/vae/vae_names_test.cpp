// The VAE naming map against the golden files of both schemes, the `.pth` route, and the
// refusal of broken checkpoints and inputs.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <map>

#include "core/error.h"
#include "golden_dir.h"
#include "io/safetensors.h"
#include "io/wan_vae_names.h"
#include "models/wan_vae.h"
#include "test_pickle.h"
#include "test_zip_writer.h"

namespace freeswim {
namespace {

namespace fs = std::filesystem;
const std::string kDiffusers = kGolden + "/vae_tiny.diffusers.safetensors";
const std::string kOriginal = kGolden + "/vae_tiny.original.safetensors";
const std::string kConfig = kGolden + "/vae_tiny.config.json";

using Named = std::vector<std::pair<std::string, Tensor>>;

Named read_all(const std::string& path) {
  auto f = io::SafetensorsFile::open(path);
  Named out;
  for (const auto& t : f->tensors()) out.emplace_back(t.name, f->tensor(t.name).clone());
  return out;
}

class VaeFiles : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           ("freeswim_vae_" + std::to_string(::testing::UnitTest::GetInstance()->random_seed()) +
            "_" + ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  std::string path(const std::string& name) const { return (dir_ / name).string(); }
  fs::path dir_;
};

// A torch.save zip checkpoint of f32 `tensors`, one storage per tensor.
void write_pth(const std::string& file, const Named& tensors) {
  std::vector<test::FixtureTensor> fixtures;
  std::vector<test::ZipFixtureEntry> entries;
  std::vector<std::pair<std::string, std::string>> storages;
  for (size_t i = 0; i < tensors.size(); ++i) {
    const Tensor& t = tensors[i].second;
    const std::string key = std::to_string(i);
    fixtures.push_back({tensors[i].first, "FloatStorage", key, t.numel(), 0, t.shape(), {}, false});
    storages.emplace_back(key, std::string(static_cast<const char*>(t.raw()), t.nbytes()));
  }
  entries.push_back({"archive/data.pkl", test::state_dict_pickle(fixtures)});
  entries.push_back({"archive/byteorder", "little"});
  for (const auto& [key, bytes] : storages) entries.push_back({"archive/data/" + key, bytes});
  entries.push_back({"archive/version", "3\n"});
  std::ofstream(file, std::ios::binary) << test::write_zip(entries);
}

Tensor golden_latents() {
  auto f = io::SafetensorsFile::open(kGolden + "/vae_tiny_cases.safetensors");
  Tensor t = f->tensor("latent_mean").clone();
  return t.reshape({t.dim(1), t.dim(2), t.dim(3), t.dim(4)});
}

TEST(VaeNames, EveryDiffusersNameMapsToTheSameOriginalTensor) {
  const auto diff = io::SafetensorsFile::open(kDiffusers),
             orig = io::SafetensorsFile::open(kOriginal);
  ASSERT_EQ(diff->tensors().size(), orig->tensors().size());
  std::map<std::string, std::string> seen;
  for (const auto& t : diff->tensors()) {
    const std::string o = io::wan_vae_original_name(t.name, 2);
    ASSERT_NE(orig->find(o), nullptr) << t.name << " -> " << o;
    EXPECT_TRUE(seen.emplace(o, t.name).second) << o << " reached twice";
    EXPECT_EQ(diff->tensor(t.name).to_float_vector(), orig->tensor(o).to_float_vector()) << t.name;
  }
}

TEST(VaeNames, DetectsSchemeAndPrefix) {
  std::vector<std::string> names{"vae.decoder.conv_in.weight", "vae.encoder.conv_in.weight"};
  auto n = io::detect_wan_vae_naming(names, "x");
  EXPECT_EQ(n.scheme, io::WanVaeScheme::Diffusers);
  EXPECT_EQ(n.prefix, "vae.");
  n.num_res_blocks = 2;
  EXPECT_EQ(n.stored("decoder.up_blocks.1.upsamplers.0.time_conv.weight"),
            "vae.decoder.up_blocks.1.upsamplers.0.time_conv.weight");
  names = {"decoder.conv1.weight", "encoder.conv1.weight"};
  n = io::detect_wan_vae_naming(names, "x");
  EXPECT_EQ(n.scheme, io::WanVaeScheme::Original);
  n.num_res_blocks = 2;
  EXPECT_EQ(n.stored("decoder.up_blocks.1.upsamplers.0.time_conv.weight"),
            "decoder.upsamples.7.time_conv.weight");
  EXPECT_EQ(n.stored("decoder.up_blocks.2.resnets.0.norm1.gamma"),
            "decoder.upsamples.8.residual.0.gamma");
  EXPECT_EQ(n.stored("encoder.mid_block.resnets.1.conv2.bias"), "encoder.middle.2.residual.6.bias");
  EXPECT_EQ(n.stored("quant_conv.weight"), "conv1.weight");
  try {
    io::detect_wan_vae_naming({"patch_embedding.weight"}, "dit.safetensors");
    FAIL() << "a DiT checkpoint was taken for a VAE";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("dit.safetensors"), std::string::npos);
  }
  EXPECT_THROW(io::wan_vae_original_name("decoder.bogus.weight", 2), Error);
}

TEST_F(VaeFiles, WansPthLoadsAndDecodesLikeTheSafetensors) {
  write_pth(path("Wan2.1_VAE.pth"), read_all(kOriginal));
  const Tensor z = golden_latents();
  const Tensor want = models::WanVae::load(kDiffusers, Device::CPU, kConfig)->decode(z);
  // With the config and with the configuration inferred from shapes (Wan's constants).
  for (const std::string& cfg : {kConfig, std::string()}) {
    const auto vae = models::WanVae::load(path("Wan2.1_VAE.pth"), Device::CPU, cfg);
    EXPECT_EQ(vae->decode(z).to_float_vector(), want.to_float_vector()) << "config '" << cfg << "'";
  }
}

TEST_F(VaeFiles, BrokenCheckpointsAreRefusedNamingTheTensor) {
  Named t = read_all(kOriginal);
  Named missing = t;
  std::erase_if(missing,
                [](const auto& x) { return x.first == "decoder.upsamples.7.time_conv.weight"; });
  io::write_safetensors(path("missing.safetensors"), missing);
  try {
    models::WanVae::load(path("missing.safetensors"), Device::CPU, kConfig);
    FAIL() << "a checkpoint without a tensor loaded";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("decoder.upsamples.7.time_conv.weight"), std::string::npos)
        << e.what();
  }
  Named wrong = t;
  for (auto& [name, tensor] : wrong)
    if (name == "decoder.head.2.weight") tensor = Tensor::zeros({3, 4, 1, 3, 3});
  io::write_safetensors(path("wrong.safetensors"), wrong);
  try {
    models::WanVae::load(path("wrong.safetensors"), Device::CPU, kConfig);
    FAIL() << "a tensor of the wrong shape loaded";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("decoder.head.2.weight"), std::string::npos) << e.what();
  }
  std::ofstream(path("bad.json")) << R"({"base_dim": 4, "z_dim": 16, "is_residual": true})";
  EXPECT_THROW(models::WanVae::load(kDiffusers, Device::CPU, path("bad.json")), Error);
}

TEST(VaeInputs, WrongFrameCountsAndSizesAreRefused) {
  const auto vae = models::WanVae::load(kDiffusers, Device::CPU, kConfig);
  try {
    vae->encode(Tensor::zeros({3, 6, 32, 32}));
    FAIL() << "6 frames were encoded";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("nearest: 5 or 9"), std::string::npos) << e.what();
  }
  EXPECT_THROW(vae->encode(Tensor::zeros({3, 5, 30, 32})), Error);
  EXPECT_THROW(vae->decode(Tensor::zeros({4, 2, 4, 4})), Error);
  models::VaeTiling odd;
  odd.tile = 60;  // not a multiple of 8
  EXPECT_THROW(vae->decode(Tensor::zeros({16, 1, 16, 16}), odd), Error);
}

}  // namespace
}  // namespace freeswim
