// Knowing what a file is before loading it: each member of the Wan family that this engine does
// not run is recognised from its tensors (names and shapes only) and refused at once, naming what
// it is; `describe_file` (freeswim info) says the same for every kind of file.
#include <gtest/gtest.h>

#include "core/error.h"
#include "format_util.h"
#include "gguf_writer.h"
#include "io/safetensors.h"
#include "models/wan_dit.h"
#include "models/wan_vae.h"
#include "pipeline/file_info.h"
#include "pipeline/models.h"

namespace freeswim::formats {
namespace {

constexpr const char* kP = "model.diffusion_model.";

// The golden T2V DiT (original names, ComfyUI prefix) with tensors replaced or added.
std::string write_variant(const Scratch& dir, const std::string& file, const Named& changes) {
  Named out = read_golden("dit_tiny.original.safetensors");
  for (const auto& [name, t] : changes) {
    bool replaced = false;
    for (auto& [n, old] : out)
      if (n == name) {
        old = t;
        replaced = true;
      }
    if (!replaced) out.emplace_back(name, t);
  }
  const std::string path = dir.file(file);
  io::write_safetensors(path, out);
  return path;
}

std::string p(const std::string& name) {
  return kP + name;
}

struct Kind {
  const char* file;
  Named changes;
  const char* says;
};

TEST(Kinds, EveryOtherWanDitIsRefusedAtOnceByName) {
  Scratch dir;
  const Tensor in36 = Tensor::zeros({64, 36, 1, 2, 2}), in48 = Tensor::zeros({64, 48, 1, 2, 2});
  const std::vector<Kind> kinds = {
      {"i2v.safetensors",
       {{p("patch_embedding.weight"), in36},
        {p("img_emb.proj.1.weight"), Tensor::zeros({8, 8})},
        {p("blocks.0.cross_attn.k_img.weight"), Tensor::zeros({64, 64})}},
       "Wan2.1 image-to-video"},
      {"flf2v.safetensors",
       {{p("patch_embedding.weight"), in36},
        {p("img_emb.proj.1.weight"), Tensor::zeros({8, 8})},
        {p("img_emb.emb_pos"), Tensor::zeros({1, 4, 8})}},
       "FLF2V"},
      {"vace.safetensors",
       {{p("vace_patch_embedding.weight"), Tensor::zeros({64, 96, 1, 2, 2})},
        {p("vace_blocks.0.before_proj.weight"), Tensor::zeros({64, 64})},
        {p("vace_blocks.1.after_proj.weight"), Tensor::zeros({64, 64})}},
       "VACE DiT (video editing and control; 2 VACE blocks)"},
      {"camera.safetensors", {{p("control_adapter.conv.weight"), Tensor::zeros({4, 4})}}, "camera"},
      {"s2v.safetensors",
       {{p("casual_audio_encoder.encoder.final_linear.weight"), Tensor::zeros({4, 4})}},
       "audio"},
      {"ti2v_5b.safetensors",
       {{p("patch_embedding.weight"), in48},
        {p("head.head.weight"), Tensor::zeros({192, 64})},
        {p("head.head.bias"), Tensor::zeros({192})}},
       "Wan2.2 TI2V-5B"},
      {"i2v_a14b_high_noise.safetensors", {{p("patch_embedding.weight"), in36}}, "Wan2.2 I2V-A14B"},
      {"fun_control.safetensors", {{p("patch_embedding.weight"), in48}}, "48 input and 16 output"},
  };
  for (const Kind& k : kinds) {
    const std::string path = write_variant(dir, k.file, k.changes);
    const std::string msg = error_of(
        [&] { models::WanDit::load(path, Device::CPU, kGolden + "/dit_tiny.config.json"); });
    EXPECT_MENTIONS(msg, path);
    EXPECT_MENTIONS(msg, k.says);
    EXPECT_MENTIONS(msg, "this engine runs the Wan2.1 text-to-video DiT");
    const pipeline::FileInfo info = pipeline::describe_file(path);
    EXPECT_EQ(info.kind, "Wan DiT");
    EXPECT_FALSE(info.usable) << k.file;
    ASSERT_FALSE(info.lines.empty());
    EXPECT_MENTIONS(info.lines[0].second, k.says);
  }
}

TEST(Kinds, DiffusersImageToVideoAndT2vFiles) {
  Scratch dir;
  Named d = read_golden("dit_tiny.diffusers.safetensors");
  d.emplace_back("condition_embedder.image_embedder.norm1.weight", Tensor::zeros({8}));
  io::write_safetensors(dir.file("i2v_diffusers.safetensors"), d);
  EXPECT_MENTIONS(models::WanDit::identify(dir.file("i2v_diffusers.safetensors")).what,
                  "image-to-video");
  // The T2V files run; a Wan2.2 expert's file name only adds a remark.
  const io::WanDitIdentity t2v =
      models::WanDit::identify(kGolden + "/dit_tiny.diffusers.safetensors");
  EXPECT_TRUE(t2v.runs());
  EXPECT_EQ(t2v.note, "");
  fs::copy_file(kGolden + "/dit_tiny.original.safetensors",
                dir.file("wan2.2_t2v_low_noise_14B_fp16.safetensors"));
  const io::WanDitIdentity expert =
      models::WanDit::identify(dir.file("wan2.2_t2v_low_noise_14B_fp16.safetensors"));
  EXPECT_TRUE(expert.runs());
  EXPECT_MENTIONS(expert.note, "Wan2.2 T2V-A14B expert");
  EXPECT_NO_THROW(models::WanDit::load(dir.file("wan2.2_t2v_low_noise_14B_fp16.safetensors"),
                                       Device::CPU, kGolden + "/dit_tiny.config.json"));
}

TEST(Kinds, Wan22FoldersAndVaeAreRefused) {
  Scratch dir;
  for (const char* sub : {"high_noise_model", "transformer_2"}) {
    const fs::path root = fs::path(dir.file(sub)).parent_path() / (std::string("model_") + sub);
    fs::create_directories(root / sub);
    pipeline::ModelPaths paths;
    paths.model = root.string();
    const std::string msg = error_of([&] { pipeline::find_models(paths); });
    EXPECT_MENTIONS(msg, "Wan2.2 A14B");
    EXPECT_MENTIONS(msg, root.string());
  }
  // The Wan2.2 VAE: 48 latent channels (original names: conv2 is [48, 48, 1, 1, 1]).
  Named vae = read_golden("vae_tiny.original.safetensors");
  for (auto& [n, t] : vae)
    if (n == "conv2.weight") t = Tensor::zeros({48, 48, 1, 1, 1});
  io::write_safetensors(dir.file("wan2.2_vae.safetensors"), vae);
  const std::string msg =
      error_of([&] { models::WanVae::load(dir.file("wan2.2_vae.safetensors"), Device::CPU); });
  EXPECT_MENTIONS(msg, "Wan2.2 VAE");
  EXPECT_MENTIONS(msg, "'conv2.weight'");
  EXPECT_FALSE(pipeline::describe_file(dir.file("wan2.2_vae.safetensors")).usable);
}

TEST(Kinds, InfoDescribesEveryFileType) {
  Scratch dir;
  struct Case {
    std::string path, kind, says;
    bool usable;
  };
  GgufWriter g;
  g.string("general.architecture", "wan");
  for (const auto& [name, t] : read_golden("dit_tiny.original.safetensors"))
    g.tensor(name.substr(std::string(kP).size()), GgmlType::F32, t);
  g.write(dir.file("dit.gguf"));
  const std::vector<Case> cases = {
      {kGolden + "/dit_tiny.diffusers.safetensors", "Wan DiT", "text-to-video", true},
      {dir.file("dit.gguf"), "Wan DiT", "text-to-video", true},
      {kGolden + "/umt5_tiny.hf.safetensors", "UMT5 text encoder", "transformers naming", true},
      {kGolden + "/vae_tiny.diffusers.safetensors", "Wan VAE", "Wan2.1 VAE", true},
      {kGolden + "/spiece_tiny.model", "tokenizer", "98 pieces", true},
      {kGolden + "/window_mask.safetensors", "unknown", "not a Wan DiT", false},
  };
  for (const Case& c : cases) {
    const pipeline::FileInfo info = pipeline::describe_file(c.path);
    EXPECT_EQ(info.kind, c.kind) << c.path;
    EXPECT_EQ(info.usable, c.usable) << c.path;
    std::string all;
    for (const auto& [label, text] : info.lines) all += label + ": " + text + "\n";
    EXPECT_MENTIONS(all, c.says);
    EXPECT_MENTIONS(all, "storage: ");
  }
  EXPECT_MENTIONS(error_of([&] { pipeline::describe_file(dir.file("absent")); }), "does not exist");
}

}  // namespace
}  // namespace freeswim::formats
