// Every bad input a user can give the CLI: the run must fail with a non-zero status, a message
// on stderr naming the file / tensor / flag at fault, and leave nothing in the output folder
// (no partial mp4, no temporary file, no resume state).
#include <gtest/gtest.h>

#include <algorithm>
#include <initializer_list>

#include "cli_runner.h"

namespace freeswim::clitest {
namespace {

class BadInput : public ::testing::Test {
 protected:
  void SetUp() override { fs::create_directory(out_dir()); }

  fs::path out_dir() const { return tmp_ / "out"; }
  std::string out_mp4() const { return (out_dir() / "video.mp4").string(); }

  // A quick tiny-model generate with `extra` flags; a default flag that `extra` names is left
  // out (CLI11 refuses a flag given twice).
  std::vector<std::string> tiny(const std::vector<std::string>& extra) const {
    const std::vector<std::pair<std::string, std::string>> defaults{
        {"--model", "tiny"}, {"-p", "a fox"},       {"--size", "96x64"}, {"--frames", "5"},
        {"--steps", "2"},    {"--base-steps", "1"}, {"-o", out_mp4()}};
    std::vector<std::string> a{"generate"};
    for (const auto& [flag, value] : defaults)
      if (std::find(extra.begin(), extra.end(), flag) == extra.end()) {
        a.push_back(flag);
        a.push_back(value);
      }
    a.insert(a.end(), extra.begin(), extra.end());
    return a;
  }

  // Runs and expects a refusal whose stderr holds every one of `needles`, and an output
  // folder holding exactly `allowed` afterwards (by default: nothing).
  RunResult expect_refused(const std::vector<std::string>& args,
                           std::initializer_list<std::string> needles,
                           const std::vector<std::string>& allowed = {}) const {
    const RunResult r = run_freeswim(args);
    EXPECT_NE(r.exit_code, 0) << r.describe();
    EXPECT_EQ(r.signal, 0) << r.describe();
    EXPECT_NE(r.exit_code, -1) << r.describe();
    // A user's mistake is an error message, never a crash or an internal error.
    for (const char* bad : {"internal error", "Sanitizer", "runtime error:"})
      EXPECT_EQ(r.err.find(bad), std::string::npos) << r.describe();
    for (const auto& n : needles)
      EXPECT_NE(r.err.find(n), std::string::npos) << n << "\n" << r.describe();
    EXPECT_EQ(list_tree(out_dir()), allowed) << r.describe();
    return r;
  }

  TempDir tmp_;
};

TEST_F(BadInput, SizeOutOfRangeOrNotASize) {
  for (const char* s : {"0x0", "0x64", "64x0", "-64x64", "64x-2", "16385x64", "64x16385", "abc",
                        "64", "64x", "x64", "64x64x3", "6 4x64", "1e3x64", "0x10x64"}) {
    SCOPED_TRACE(s);
    expect_refused(tiny({"--size", s}), {"--size", s});
  }
}

TEST_F(BadInput, OddSizeRefusedBeforeAnyWork) {
  // H.264 in yuv420p cannot hold an odd side; the run must say so at once, naming even sizes,
  // instead of failing at the mp4 after the whole generation.
  expect_refused(tiny({"--size", "191x128"}), {"--size", "191x128", "192x128"});
  expect_refused(tiny({"--size", "192x127"}), {"--size", "192x127", "192x128"});
}

TEST_F(BadInput, FrameCountNot4nPlus1) {
  expect_refused(tiny({"--frames", "10"}), {"--frames", "10", "9", "13"});
  expect_refused(tiny({"--frames", "0"}), {"--frames"});
  expect_refused(tiny({"--frames", "-3"}), {"--frames"});
  expect_refused(tiny({"--frames", "many"}), {"--frames"});
}

TEST_F(BadInput, StepsStrengthCacheFps) {
  expect_refused(tiny({"--steps", "0"}), {"--steps"});
  expect_refused(tiny({"--base-steps", "0"}), {"--base-steps"});
  expect_refused(tiny({"--strength", "0"}), {"--strength"});
  expect_refused(tiny({"--strength", "1.5"}), {"--strength"});
  expect_refused(tiny({"--strength", "-0.5"}), {"--strength"});
  expect_refused(tiny({"--cache-every", "-1"}), {"--cache-every"});
  expect_refused(tiny({"--fps", "0"}), {"--fps"});
  expect_refused(tiny({"--fps", "-24"}), {"--fps"});
  expect_refused(tiny({"--guidance", "-1"}), {"--guidance"});
  expect_refused(tiny({"--shift", "0"}), {"--shift"});
  expect_refused(tiny({"--attn-scale", "-1"}), {"--attn-scale"});
  expect_refused(tiny({"--vae-tile", "10"}), {"--vae-tile"});
  expect_refused(tiny({"--threads", "-1"}), {"--threads"});
}

TEST_F(BadInput, VaePrecision) {
  for (const char* v : {"fp16", "TF32", "", "bf16", "tf32,fp32"}) {
    SCOPED_TRACE(v);
    expect_refused(tiny({"--vae-precision", v}), {"--vae-precision", "tf32", "fp32"});
  }
}

TEST_F(BadInput, GpuKernels) {
  // A program-wide flag: refused the same before or after the subcommand.
  for (const char* v : {"Hopper", "", "sm_80", "automatic", "hopper,portable", "narrow"}) {
    SCOPED_TRACE(v);
    expect_refused(tiny({"--gpu-kernels", v}),
                   {"--gpu-kernels", "auto", "hopper", "portable", "portable-narrow"});
    std::vector<std::string> before{"--gpu-kernels", v};
    const std::vector<std::string> job = tiny({});
    before.insert(before.end(), job.begin(), job.end());
    expect_refused(before, {"--gpu-kernels", "portable"});
  }
}

TEST_F(BadInput, CacheMemory) {
  for (const char* v : {"gpu", "Host", "", "pinned", "device,host"}) {
    SCOPED_TRACE(v);
    expect_refused(tiny({"--cache-memory", v}), {"--cache-memory", "device", "host", "auto"});
  }
  expect_refused(tiny({"--cache-memory", "gpu"}), {"'gpu'"});
  // Refused before the model is loaded, like every other flag.
  expect_refused(tiny({"--model", "/no/such/model", "--cache-memory", "gpu"}), {"--cache-memory"});
}

TEST_F(BadInput, TextDevice) {
  for (const char* v : {"gpu", "CUDA", "", "cpu,cuda", "cuda:0"}) {
    SCOPED_TRACE(v);
    expect_refused(tiny({"--text-device", v}), {"--text-device", "auto", "cpu", "cuda"});
  }
  // Refused before the model is loaded, like every other flag.
  expect_refused(tiny({"--model", "/no/such/model", "--text-device", "gpu"}), {"--text-device"});
  // The text encoder on the GPU of a cpu job: the error names --device.
  expect_refused(tiny({"--device", "cpu", "--text-device", "cuda"}), {"--text-device", "--device"});
}

TEST_F(BadInput, Window) {
  for (const char* w : {"0x3", "3x0", "abc", "3", "3x", "x3", "-1x3", "3x3x3", "3xabc"}) {
    SCOPED_TRACE(w);
    expect_refused(tiny({"--window", w}), {"--window", w});
  }
}

TEST_F(BadInput, Device) {
  expect_refused(tiny({"--device", "tpu"}), {"--device", "tpu"});
#if !FREESWIM_CLI_HAS_CUDA
  // This build has no CUDA backend: asking for it must say so, not crash or run on the CPU.
  expect_refused(tiny({"--device", "cuda"}), {"--device", "CUDA"});
#else
  // The test runner hides every GPU from the child (CUDA_VISIBLE_DEVICES=): --device cuda must
  // fail cleanly naming the fallback, and --device auto (the default) runs on the CPU.
  expect_refused(tiny({"--device", "cuda"}), {"--device cuda", "--device cpu"});
#endif
}

TEST_F(BadInput, Gpus) {
  for (const char* n : {"3", "0", "16"}) {
    SCOPED_TRACE(n);
    expect_refused(tiny({"--gpus", n}), {"--gpus", n, "1, 2, 4 or 8"});
  }
  // The runner's child sees no GPU: several GPUs on the CPU are refused naming both flags.
  expect_refused(tiny({"--gpus", "2"}), {"--gpus 2", "--device cuda"});
  expect_refused(tiny({"--gpus", "8", "--device", "cpu"}), {"--gpus 8", "--device cuda"});
}

TEST_F(BadInput, DeviceAutoSaysWhereItRuns) {
  const RunResult r = run_freeswim(tiny({}));
  EXPECT_EQ(r.exit_code, 0) << r.describe();
  EXPECT_NE(r.err.find("device: cpu"), std::string::npos) << r.describe();
}

TEST_F(BadInput, OutputPath) {
  const fs::path missing = tmp_ / "no_such_dir" / "video.mp4";
  expect_refused(tiny({"-o", missing.string()}), {"-o", missing.string()});
  EXPECT_FALSE(fs::exists(missing.parent_path()));
  const std::string avi = (out_dir() / "foo.avi").string();
  expect_refused(tiny({"-o", avi}), {"-o", "foo.avi", ".mp4"});
  const std::string none = (out_dir() / "video").string();
  expect_refused(tiny({"-o", none}), {"-o", ".mp4"});
}

TEST_F(BadInput, MissingPromptOrModel) {
  expect_refused({"generate", "--model", "tiny", "-o", out_mp4()}, {"--prompt"});
  expect_refused({"generate", "-p", "a fox", "-o", out_mp4()}, {"--model"});
  const fs::path nowhere = tmp_ / "no_model_here";
  expect_refused({"generate", "--model", nowhere.string(), "-p", "a fox", "-o", out_mp4()},
                 {"--model", nowhere.string()});
  const fs::path empty = tmp_ / "empty_model";
  fs::create_directory(empty);
  expect_refused({"generate", "--model", empty.string(), "-p", "a fox", "-o", out_mp4()},
                 {"--model", empty.string()});
  expect_refused({"frobnicate"}, {"subcommand"});
}

TEST_F(BadInput, UpscaleInput) {
  const fs::path missing = tmp_ / "missing.mp4";
  expect_refused({"upscale", "--model", "tiny", "-i", missing.string(), "--size", "96x64",
                  "--frames", "5", "--steps", "2", "-o", out_mp4()},
                 {missing.string()});
  const fs::path corrupt = tmp_ / "corrupt.mp4";
  std::string junk(4096, '\0');
  for (size_t i = 0; i < junk.size(); ++i) junk[i] = static_cast<char>((i * 7919u + 13u) % 251u);
  write_bytes(corrupt, junk);
  expect_refused({"upscale", "--model", "tiny", "-i", corrupt.string(), "--size", "96x64",
                  "--frames", "5", "--steps", "2", "-o", out_mp4()},
                 {corrupt.string()});
  const fs::path empty = tmp_ / "empty.mp4";
  write_bytes(empty, "");
  expect_refused({"upscale", "--model", "tiny", "-i", empty.string(), "--size", "96x64", "--frames",
                  "5", "--steps", "2", "-o", out_mp4()},
                 {empty.string()});
  expect_refused({"upscale", "--model", "tiny", "--size", "96x64", "-o", out_mp4()}, {"--input"});
}

TEST_F(BadInput, ResumeWithoutState) {
  expect_refused(tiny({"--resume"}), {"--resume", "video.mp4.resume.safetensors"});
}

TEST_F(BadInput, ResumeStateFromOtherSettings) {
  // A real state: a run that dies right after its first base step.
  const RunResult killed = run_freeswim(tiny({"--seed", "1", "--exit-after-step", "base:1"}));
  ASSERT_EQ(killed.exit_code, 137) << killed.describe();
  const std::vector<std::string> state{"video.mp4.resume.safetensors"};
  ASSERT_EQ(list_tree(out_dir()), state);
  const std::string before = read_bytes(out_dir() / state[0]);
  for (std::initializer_list<std::string> other :
       {std::initializer_list<std::string>{"--seed", "2"},
        {"-p", "a cat"},
        {"--steps", "3"},
        {"--size", "112x64"},
        {"--cache-every", "0"},
        {"--frames", "9"}}) {
    std::vector<std::string> extra{"--resume"};
    extra.insert(extra.end(), other.begin(), other.end());
    if (std::find(extra.begin(), extra.end(), "--seed") == extra.end())
      extra.insert(extra.end(), {"--seed", "1"});
    expect_refused(tiny(extra), {"--resume", state[0], "other settings"}, state);
  }
  // The refused resumes left the state as it was.
  EXPECT_EQ(read_bytes(out_dir() / state[0]), before);
}

TEST_F(BadInput, CorruptResumeState) {
  const fs::path state = out_dir() / "video.mp4.resume.safetensors";
  write_bytes(state, "not a safetensors file at all");
  expect_refused(tiny({"--resume"}), {state.string()}, {"video.mp4.resume.safetensors"});
}

}  // namespace
}  // namespace freeswim::clitest
