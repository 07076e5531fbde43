// The files and flags users bring, through the binary (upscale of a small clip, so that each run
// takes a second): ComfyUI's UMT5 file with its tokenizer
// inside given alone, a LoRA with a strength, --guidance 1, and the stable-diffusion.cpp / Wan
// spellings of the flags giving exactly the frames the engine's own spellings give; bad values
// of the new flags refused before any work, naming the flag or file.
#include <gtest/gtest.h>

#include <cstring>
#include <random>

#include "cli_runner.h"
#include "core/tensor.h"
#include "io/safetensors.h"

namespace freeswim::clitest {
namespace {

class Loaders : public ::testing::Test {
 protected:
  void SetUp() override {
    // ComfyUI's UMT5: transformers names plus the sentencepiece model as a U8 tensor.
    auto f = io::SafetensorsFile::open(golden("umt5_tiny.hf.safetensors").string());
    std::vector<std::pair<std::string, Tensor>> t;
    for (const auto& i : f->tensors()) t.emplace_back(i.name, f->tensor(i.name));
    const std::string model = read_bytes(golden("spiece_tiny.model"));
    Tensor bytes = Tensor::empty({static_cast<int64_t>(model.size())}, DType::U8);
    std::memcpy(bytes.raw(), model.data(), model.size());
    t.emplace_back("spiece_model", bytes);
    io::write_safetensors(umt5_.string(), t);
    // A ComfyUI LoRA on one attention projection of the tiny DiT.
    std::mt19937 gen(5);
    std::normal_distribution<float> d(0.f, 0.2f);
    std::vector<float> down(4 * 64), up(64 * 4);
    for (float& x : down) x = d(gen);
    for (float& x : up) x = d(gen);
    io::write_safetensors(
        lora_.string(),
        {{"diffusion_model.blocks.0.self_attn.q.lora_down.weight",
          Tensor::from_vector({4, 64}, down)},
         {"diffusion_model.blocks.0.self_attn.q.lora_up.weight", Tensor::from_vector({64, 4}, up)},
         {"diffusion_model.blocks.0.self_attn.q.alpha", Tensor::from_vector({}, {4.f})}});
  }

  // `upscale` of a small video: the FreeSwim stage only, at the target size (a `generate` with
  // the golden DiT would run its base stage at the 832x480 native size: minutes on a CPU).
  std::vector<std::string> common(const std::string& out) {
    if (!fs::exists(input_)) {
      const RunResult r =
          run_freeswim({"generate", "--model", "tiny", "-p", "a fox", "--size", "96x64", "--frames",
                        "5", "--base-steps", "1", "--steps", "2", "-o", input_.string()});
      EXPECT_EQ(r.exit_code, 0) << r.describe();
    }
    return {"upscale",
            "-i",
            input_.string(),
            "-p",
            "a fox",
            "--dit-config",
            golden("dit_tiny.config.json").string(),
            "--vae",
            golden("vae_tiny.diffusers.safetensors").string(),
            "--steps",
            "2",
            "--strength",
            "1",
            "--fps",
            "8",
            "-o",
            (tmp_ / out).string() + ".mp4",
            "--png",
            (tmp_ / out).string()};
  }
  static std::vector<std::string> plus(std::vector<std::string> a,
                                       const std::vector<std::string>& b) {
    a.insert(a.end(), b.begin(), b.end());
    return a;
  }
  std::vector<std::string> frames(const std::string& dir) const {
    std::vector<std::string> out;
    for (const std::string& f : list_tree(tmp_ / dir)) out.push_back(read_bytes(tmp_ / dir / f));
    return out;
  }

  TempDir tmp_;
  fs::path umt5_ = tmp_ / "umt5_xxl_fp16.safetensors";
  fs::path lora_ = tmp_ / "style_lora.safetensors";
  fs::path input_ = tmp_ / "input.mp4";
};

TEST_F(Loaders, AliasesComfyTextEncoderLoraAndGuidanceOne) {
  const std::string dit = golden("dit_tiny.diffusers.safetensors").string();
  const RunResult own = run_freeswim(
      plus(common("own"), {"--dit", dit, "--t5", umt5_.string(), "--guidance", "1", "--frames", "5",
                           "--size", "96x64", "--seed", "7", "--lora", lora_.string() + ":0.5"}));
  ASSERT_EQ(own.exit_code, 0) << own.describe();
  EXPECT_NE(own.err.find("unconditional pass (and the negative prompt) is skipped"),
            std::string::npos)
      << own.describe();
  EXPECT_NE(own.err.find("LoRA " + lora_.string() + " merged at strength 0.5"), std::string::npos)
      << own.describe();
  const RunResult theirs = run_freeswim(plus(
      common("theirs"),
      {"--diffusion-model", dit, "--t5xxl", umt5_.string(), "--cfg-scale", "1", "--video-frames",
       "5", "-W", "96", "-H", "64", "-s", "7", "--lora", lora_.string() + ":0.5"}));
  ASSERT_EQ(theirs.exit_code, 0) << theirs.describe();
  const RunResult wan = run_freeswim(
      plus(common("wan"),
           {"--dit", dit, "--t5", umt5_.string(), "--sample_guide_scale", "1", "--frame_num", "5",
            "--size", "96*64", "--base_seed", "7", "--lora", lora_.string() + ":0.5"}));
  ASSERT_EQ(wan.exit_code, 0) << wan.describe();
  const std::vector<std::string> a = frames("own"), b = frames("theirs"), c = frames("wan");
  ASSERT_EQ(a.size(), 5u);
  EXPECT_TRUE(a == b && a == c) << "the spellings gave different frames";
  // The LoRA changes the frames (at strength 0 it is a no-op merge).
  const RunResult none = run_freeswim(plus(
      common("none"), {"--dit", dit, "--t5", umt5_.string(), "--guidance", "1", "--frames", "5",
                       "--size", "96x64", "--seed", "7", "--lora", lora_.string() + ":0"}));
  ASSERT_EQ(none.exit_code, 0) << none.describe();
  EXPECT_NE(frames("none"), a);
}

TEST_F(Loaders, BadValuesOfTheNewFlags) {
  const std::string dit = golden("dit_tiny.diffusers.safetensors").string();
  auto refused = [&](const std::vector<std::string>& extra,
                     const std::vector<std::string>& needles) {
    const RunResult r = run_freeswim(plus(common("bad"), extra));
    EXPECT_GT(r.exit_code, 0) << r.describe();
    for (const auto& n : needles)
      EXPECT_NE(r.err.find(n), std::string::npos) << n << "\n" << r.describe();
    EXPECT_FALSE(fs::exists(tmp_ / "bad.mp4"));
  };
  const std::vector<std::string> model = {"--dit", dit, "--t5", umt5_.string(), "--frames", "5"};
  refused(plus(model, {"-W", "96"}), {"-W and -H"});
  refused(plus(model, {"-W", "96", "-H", "64", "--size", "96x64"}), {"--size or as -W/-H"});
  refused(plus(model, {"--size", "96*"}), {"--size", "96*"});
  refused(plus(model, {"--size", "96x64", "--lora", (tmp_ / "missing.safetensors").string()}),
          {"--lora", "missing.safetensors"});
  refused({"--model", "tiny", "--size", "96x64", "--frames", "5", "--lora", lora_.string()},
          {"--lora", "tiny"});
  // The built-in tiny model with a weight file beside it: refused, not silently ignored.
  refused({"--model", "tiny", "--size", "96x64", "--frames", "5", "--dit", dit},
          {"--dit", "--model tiny"});
  // A LoRA for an image-to-video model: its keys are named, nothing is generated.
  io::write_safetensors(
      (tmp_ / "i2v_lora.safetensors").string(),
      {{"diffusion_model.blocks.0.cross_attn.k_img.diff_b", Tensor::zeros({64})}});
  refused(plus(model, {"--size", "96x64", "--lora", (tmp_ / "i2v_lora.safetensors").string()}),
          {"k_img", "match no weight"});
  // The golden encoder file has no tokenizer inside: the error says so and names --tokenizer.
  refused({"--dit", dit, "--t5", golden("umt5_tiny.hf.safetensors").string(), "--size", "96x64",
           "--frames", "5"},
          {"umt5_tiny.hf.safetensors", "--tokenizer"});
}

TEST(LoadersHelp, AliasesAreListed) {
  const RunResult r = run_freeswim({"generate", "--help"});
  ASSERT_EQ(r.exit_code, 0) << r.describe();
  for (const char* flag :
       {"--diffusion-model", "--t5xxl", "--cfg-scale", "--video-frames", "-W", "-H", "-s", "--lora",
        "--ckpt_dir", "--frame_num", "--sample_guide_scale", "--base_seed", "W*H"})
    EXPECT_NE(r.out.find(flag), std::string::npos) << flag << "\n" << r.out;
}

}  // namespace
}  // namespace freeswim::clitest
