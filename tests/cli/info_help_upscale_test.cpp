// The commands that must simply work: `info` on the tiny model and on model folders laid out
// as diffusers and the original Wan release do, `--help` (exit 0, every flag listed, the device
// defaults as the README states them), the device settings a run logs, and `upscale` of a video
// the tiny model wrote.
#include <gtest/gtest.h>

#include <cctype>

#include "cli_runner.h"
#include "core/tensor.h"
#include "io/safetensors.h"

namespace freeswim::clitest {
namespace {

void expect_contains(const std::string& text, const std::vector<std::string>& needles,
                     const RunResult& r) {
  for (const auto& n : needles)
    EXPECT_NE(text.find(n), std::string::npos) << "missing '" << n << "'\n" << r.describe();
}

TEST(Info, TinyModel) {
  const RunResult r = run_freeswim({"info", "--model", "tiny"});
  ASSERT_EQ(r.exit_code, 0) << r.describe();
  expect_contains(r.out, {"layout:", "tiny"}, r);
}

TEST(Info, DiffusersLayoutFromGoldenFiles) {
  TempDir d;
  const fs::path model = d / "Wan2.1-T2V-tiny-Diffusers";
  fs::create_directories(model / "transformer");
  fs::create_directories(model / "vae");
  fs::copy_file(golden("dit_tiny.diffusers.safetensors"),
                model / "transformer" / "diffusion_pytorch_model.safetensors");
  fs::copy_file(golden("dit_tiny.config.json"), model / "transformer" / "config.json");
  fs::copy_file(golden("vae_tiny.diffusers.safetensors"),
                model / "vae" / "diffusion_pytorch_model.safetensors");
  fs::copy_file(golden("vae_tiny.config.json"), model / "vae" / "config.json");
  const RunResult r = run_freeswim({"info", "--model", model.string()});
  ASSERT_EQ(r.exit_code, 0) << r.describe();
  expect_contains(r.out,
                  {"layout:      diffusers", (model / "transformer").string(), "69 tensors",
                   "unknown Wan2.1 variant", (model / "vae").string(), "(not found)"},
                  r);
}

TEST(Info, OriginalLayoutFromGoldenFiles) {
  TempDir d;
  fs::copy_file(golden("dit_tiny.original.safetensors"), d / "diffusion_pytorch_model.safetensors");
  // The original release's config.json names (the tiny DiT's shapes).
  write_bytes(d / "config.json",
              R"({"model_type": "t2v", "dim": 64, "num_heads": 2, "ffn_dim": 96, "num_layers": 2,)"
              R"( "text_dim": 32, "freq_dim": 256, "in_dim": 16, "out_dim": 16, "eps": 1e-06})");
  const RunResult r = run_freeswim({"info", "--model", d.path().string()});
  ASSERT_EQ(r.exit_code, 0) << r.describe();
  // Only the DiT is there: the rest is reported missing, not an error.
  expect_contains(
      r.out,
      {"layout:      original", "69 tensors", "2 layers of 64", "unknown Wan2.1 variant",
       "vae:         (not found)", "text:        (not found)"},
      r);
}

TEST(Info, RefusesWhatIsNotAModel) {
  TempDir d;
  const RunResult missing = run_freeswim({"info", "--model", (d / "nothing").string()});
  EXPECT_NE(missing.exit_code, 0);
  expect_contains(missing.err, {"--model", (d / "nothing").string()}, missing);
  const RunResult empty = run_freeswim({"info", "--model", d.path().string()});
  EXPECT_NE(empty.exit_code, 0);
  expect_contains(empty.err, {"--model", d.path().string(), "diffusers", "original"}, empty);
}

TEST(Info, DescribesEachFileGiven) {
  const RunResult r = run_freeswim({"info", golden("dit_tiny.original.safetensors").string(),
                                    golden("umt5_tiny.hf.safetensors").string(),
                                    golden("vae_tiny.original.safetensors").string(),
                                    golden("spiece_tiny.model").string()});
  ASSERT_EQ(r.exit_code, 0) << r.describe();
  expect_contains(r.out,
                  {"kind:        Wan DiT", "text-to-video", "kind:        UMT5 text encoder",
                   "not inside: give --tokenizer", "kind:        Wan VAE", "Wan2.1 VAE",
                   "kind:        tokenizer", "storage:     safetensors (F32 x 69)"},
                  r);
}

TEST(Info, OtherWanModelsAreNamedAndRefused) {
  // The golden DiT made an image-to-video one: 36 input channels and a CLIP image projection.
  TempDir d;
  auto f = io::SafetensorsFile::open(golden("dit_tiny.original.safetensors").string());
  std::vector<std::pair<std::string, Tensor>> t;
  for (const auto& i : f->tensors()) {
    Tensor x = f->tensor(i.name);
    if (i.name.ends_with("patch_embedding.weight")) x = Tensor::zeros({64, 36, 1, 2, 2});
    t.emplace_back(i.name, x);
  }
  t.emplace_back("model.diffusion_model.img_emb.proj.1.weight", Tensor::zeros({4, 4}));
  const fs::path i2v = d / "wan2.1_i2v_480p.safetensors";
  io::write_safetensors(i2v.string(), t);
  const RunResult info = run_freeswim({"info", i2v.string()});
  ASSERT_EQ(info.exit_code, 0) << info.describe();
  expect_contains(info.out, {"(not run by this engine)", "image-to-video", "36 input"}, info);
  const RunResult gen = run_freeswim({"generate", "--dit", i2v.string(), "--dit-config",
                                      golden("dit_tiny.config.json").string(), "--vae",
                                      golden("vae_tiny.original.safetensors").string(), "--t5",
                                      golden("umt5_tiny.hf.safetensors").string(), "--tokenizer",
                                      golden("spiece_tiny.model").string(), "-p", "a fox", "--size",
                                      "96x64", "--frames", "5", "-o", (d / "v.mp4").string()});
  EXPECT_NE(gen.exit_code, 0);
  expect_contains(gen.err, {i2v.string(), "image-to-video", "this engine runs the Wan2.1"}, gen);
  EXPECT_FALSE(fs::exists(d / "v.mp4"));
}

TEST(Help, ListsCommandsAndFlags) {
  const RunResult top = run_freeswim({"--help"});
  ASSERT_EQ(top.exit_code, 0) << top.describe();
  expect_contains(top.out, {"generate", "upscale", "info", "check"}, top);
  const std::vector<std::string> job_flags{
      "--model",           "--dit",   "--vae",    "--t5",          "--tokenizer", "--prompt",
      "--negative-prompt", "--size",  "--frames", "--fps",         "--steps",     "--strength",
      "--guidance",        "--shift", "--seed",   "--cache-every", "--window",    "--attn-scale",
      "--output",          "--png",   "--resume", "--device",      "--threads",   "--cache-memory",
      "--text-device"};
  const RunResult gen = run_freeswim({"generate", "--help"});
  ASSERT_EQ(gen.exit_code, 0) << gen.describe();
  expect_contains(gen.out, job_flags, gen);
  expect_contains(gen.out, {"--base-steps", "1920x1080", "4n+1", "pinned host"}, gen);
  const RunResult up = run_freeswim({"upscale", "--help"});
  ASSERT_EQ(up.exit_code, 0) << up.describe();
  expect_contains(up.out, job_flags, up);
  expect_contains(up.out, {"--input"}, up);
  const RunResult info = run_freeswim({"info", "--help"});
  ASSERT_EQ(info.exit_code, 0) << info.describe();
  expect_contains(info.out, {"--model", "--dit"}, info);
}

std::string lower(std::string s) {
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

// The device-dependent VAE tile default as --help and the README state it (the values themselves
// are tested against the code in tests/pipeline/device_settings_test.cpp).
TEST(Help, VaeTileDefaultAgreesWithTheReadme) {
  const std::string stated =
      "default on cuda: the largest tile up to 768 that fits in free memory at each pass; 256 on "
      "cpu";
  for (const char* job : {"generate", "upscale"}) {
    const RunResult help = run_freeswim({job, "--help"});
    ASSERT_EQ(help.exit_code, 0) << help.describe();
    expect_contains(help.out, {stated}, help);
  }
  const std::string readme = lower(read_bytes(fs::path(FREESWIM_SOURCE_DIR) / "README.md"));
  EXPECT_NE(readme.find(stated), std::string::npos) << "README.md does not say '" << stated << "'";
}

// The run says where it runs and what that decided; flags given win. (The test runner hides
// every GPU from the child, so `--device auto` is the CPU here.)
TEST(DeviceSettings, TheRunLogsTheDecidedSettings) {
  TempDir d;
  const std::vector<std::string> job{"generate", "--model", "tiny",     "-p", "a fox",
                                     "--size",   "96x64",   "--frames", "5",  "--base-steps",
                                     "1",        "--steps", "2"};
  auto run = [&](const std::string& name, const std::vector<std::string>& extra) {
    std::vector<std::string> a = job;
    a.insert(a.end(), {"-o", (d / name).string()});
    a.insert(a.end(), extra.begin(), extra.end());
    return run_freeswim(a);
  };
  const RunResult plain = run("plain.mp4", {});
  ASSERT_EQ(plain.exit_code, 0) << plain.describe();
  expect_contains(plain.err,
                  {"device: cpu",
                   "device settings: VAE tile 256 px (overlap 64), VAE fp32, DiT "
                   "offload off, cross-attention cache auto, every CPU core"},
                  plain);
  const RunResult given =
      run("given.mp4", {"--vae-tile", "512", "--vae-precision", "tf32", "--cache-memory", "host",
                        "--threads", "2", "--device", "cpu"});
  ASSERT_EQ(given.exit_code, 0) << given.describe();
  expect_contains(given.err,
                  {"device: cpu (--device cpu)", "VAE tile 512 px (overlap 64)", "VAE tf32",
                   "cross-attention cache host", "2 CPU threads"},
                  given);
}

TEST(Upscale, VideoFromTheTinyModel) {
  TempDir d;
  const fs::path small = d / "small.mp4";
  const RunResult gen =
      run_freeswim({"generate", "--model", "tiny", "-p", "a fox", "--size", "96x64", "--frames",
                    "9", "--base-steps", "2", "--steps", "2", "-o", small.string()});
  ASSERT_EQ(gen.exit_code, 0) << gen.describe();
  const fs::path big = d / "big.mp4";
  const RunResult up =
      run_freeswim({"upscale", "--model", "tiny", "-i", small.string(), "--size", "160x112",
                    "--frames", "9", "--steps", "4", "-o", big.string()});
  ASSERT_EQ(up.exit_code, 0) << up.describe();
  EXPECT_GT(fs::file_size(big), 0u);
  EXPECT_EQ(list_tree(d.path()), (std::vector<std::string>{"big.mp4", "small.mp4"}));
  // Asking for more frames than the video has is refused, naming the file and the flag.
  const fs::path more = d / "more.mp4";
  const RunResult too_many =
      run_freeswim({"upscale", "--model", "tiny", "-i", small.string(), "--size", "160x112",
                    "--frames", "13", "--steps", "4", "-o", more.string()});
  EXPECT_NE(too_many.exit_code, 0);
  expect_contains(too_many.err, {small.string(), "--frames"}, too_many);
  EXPECT_FALSE(fs::exists(more));
}

}  // namespace
}  // namespace freeswim::clitest
