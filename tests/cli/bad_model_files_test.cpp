// Broken model files given to `generate`: a truncated or lying safetensors header, a missing
// tensor, a tensor of the wrong shape, and a malicious `.pth` (a pickle that would call
// os.system) as the VAE. The loader must refuse each with a message naming the file (and the
// tensor), before anything is written, and the pickle must never run.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <functional>
#include <initializer_list>
#include <map>
#include <nlohmann/json.hpp>

#include "../torch_zip/test_pickle.h"
#include "../torch_zip/test_zip_writer.h"
#include "cli_runner.h"
#include "core/tensor.h"
#include "io/safetensors.h"

namespace freeswim::clitest {
namespace {

constexpr const char* kVictim = "blocks.0.attn1.to_k.weight";  // [64, 64] in the tiny DiT

class BadModelFile : public ::testing::Test {
 protected:
  void SetUp() override { fs::create_directory(out_dir()); }
  fs::path out_dir() const { return tmp_ / "out"; }

  // generate on real (tiny) model files, with `dit` and `vae` in place of the golden ones. The
  // files' DiT takes the 1.3B's native 832x480 for its base stage: one frame keeps the base
  // decode, most of a good run's time, small (a quarter of five frames' in a release build).
  std::vector<std::string> args(const fs::path& dit, const fs::path& vae) const {
    return {"generate",
            "--dit",
            dit.string(),
            "--dit-config",
            golden("dit_tiny.config.json").string(),
            "--vae",
            vae.string(),
            "--t5",
            golden("umt5_tiny.hf.safetensors").string(),
            "--tokenizer",
            golden("spiece_tiny.model").string(),
            "-p",
            "a fox",
            "--size",
            "96x64",
            "--frames",
            "1",
            "--steps",
            "2",
            "--base-steps",
            "1",
            "-o",
            (out_dir() / "video.mp4").string()};
  }

  void expect_refused(const std::vector<std::string>& a,
                      std::initializer_list<std::string> needles) {
    const RunResult r = run_freeswim(a);
    EXPECT_GT(r.exit_code, 0) << r.describe();
    // A user's mistake is an error message, never a crash or an internal error.
    for (const char* bad : {"internal error", "Sanitizer", "runtime error:"})
      EXPECT_EQ(r.err.find(bad), std::string::npos) << r.describe();
    for (const auto& n : needles)
      EXPECT_NE(r.err.find(n), std::string::npos) << n << "\n" << r.describe();
    EXPECT_EQ(list_tree(out_dir()), std::vector<std::string>{}) << r.describe();
  }

  // A safetensors image with `header` (JSON) and `data`.
  static std::string image(const std::string& header, const std::string& data) {
    std::string out(8, '\0');
    uint64_t n = header.size();
    std::memcpy(out.data(), &n, 8);  // little-endian hosts only, as the format itself
    return out + header + data;
  }

  TempDir tmp_;
};

// The unmodified golden files make a video; the text encoder runs first (where, and why, logged)
// and is released once the prompts are encoded, before the DiT and VAE are loaded (the line
// naming the loaded model) and the base stage starts.
TEST_F(BadModelFile, GoodFilesRunAndReleaseTheTextEncoderBeforeTheBaseStage) {
  std::vector<std::string> a =
      args(golden("dit_tiny.diffusers.safetensors"), golden("vae_tiny.diffusers.safetensors"));
  a.insert(a.end(), {"--device", "cpu"});
  const RunResult r = run_freeswim(a);
  ASSERT_EQ(r.exit_code, 0) << r.describe();
  const size_t placed = r.err.find("freeswim: text encoder on cpu (the job's device)");
  const size_t released = r.err.find("text encoder released");
  ASSERT_NE(placed, std::string::npos) << r.describe();
  ASSERT_NE(released, std::string::npos) << r.describe();
  EXPECT_LT(placed, released) << r.describe();
  EXPECT_LT(released, r.err.find("freeswim: model ")) << r.describe();
  EXPECT_LT(released, r.err.find("base stage")) << r.describe();
  EXPECT_EQ(list_tree(out_dir()), std::vector<std::string>{"video.mp4"}) << r.describe();
}

TEST_F(BadModelFile, CorruptDitHeaderOrData) {
  const std::string good = read_bytes(golden("dit_tiny.diffusers.safetensors"));
  uint64_t header_len = 0;
  std::memcpy(&header_len, good.data(), 8);
  const std::string header = good.substr(8, header_len);
  const std::string data = good.substr(8 + header_len);
  nlohmann::json h = nlohmann::json::parse(header);

  std::map<std::string, std::string> cases;  // (a map: GCC 12 -O3 misreads a vector of pairs here)
  cases.emplace("empty", "");
  cases.emplace("only_length", good.substr(0, 8));
  cases.emplace("cut_in_header", good.substr(0, 8 + header_len / 2));
  cases.emplace("cut_in_data", good.substr(0, good.size() - data.size() / 2));
  {
    std::string s = good;  // header length beyond the file
    const uint64_t lie = good.size() + 1000;
    std::memcpy(s.data(), &lie, 8);
    cases.emplace("length_past_end", s);
    const uint64_t huge = uint64_t{1} << 62;
    std::memcpy(s.data(), &huge, 8);
    cases.emplace("length_huge", s);
  }
  {
    std::string s = good;  // JSON broken in place
    s[8] = '[';
    cases.emplace("not_json", s);
  }
  {
    nlohmann::json l = h;  // offsets past the data
    l[kVictim]["data_offsets"][1] = data.size() + 64;
    cases.emplace("offsets_past_end", image(l.dump(), data));
  }
  {
    nlohmann::json l = h;  // offsets that do not match shape x dtype
    auto& off = l[kVictim]["data_offsets"];
    off[1] = off[1].get<uint64_t>() - 4;
    cases.emplace("offsets_wrong_size", image(l.dump(), data));
  }
  {
    nlohmann::json l = h;  // dtype changed: byte size no longer matches
    l[kVictim]["dtype"] = "F16";
    cases.emplace("dtype_lie", image(l.dump(), data));
  }
  {
    nlohmann::json l = h;  // negative dimension
    l[kVictim]["shape"][0] = -64;
    cases.emplace("negative_shape", image(l.dump(), data));
  }
  for (const auto& [name, bytes] : cases) {
    SCOPED_TRACE(name);
    const fs::path bad = tmp_ / (name + ".safetensors");
    write_bytes(bad, bytes);
    expect_refused(args(bad, golden("vae_tiny.diffusers.safetensors")), {bad.string()});
  }
}

TEST_F(BadModelFile, CorruptVae) {
  const std::string good = read_bytes(golden("vae_tiny.diffusers.safetensors"));
  const fs::path bad = tmp_ / "vae_cut.safetensors";
  write_bytes(bad, good.substr(0, good.size() / 3));
  expect_refused(args(golden("dit_tiny.diffusers.safetensors"), bad), {bad.string()});
}

TEST_F(BadModelFile, FlagsAreCheckedBeforeLoading) {
  // A bad flag is reported before the (possibly minutes long) model load, so the flag's error
  // shows even when the model file is broken too.
  const fs::path bad = tmp_ / "empty.safetensors";
  write_bytes(bad, "");
  auto a = args(bad, golden("vae_tiny.diffusers.safetensors"));
  a.insert(a.end(), {"--strength", "2"});
  expect_refused(a, {"--strength"});
}

TEST_F(BadModelFile, DitAndVaeAreCheckedBeforeTheTextEncoderIsLoaded) {
  // The text encoder is loaded (a minute for UMT5-XXL) before the DiT and VAE; their files are
  // checked from their headers first, so a broken DiT or VAE is named even when the encoder
  // file is broken too.
  const fs::path bad_t5 = tmp_ / "t5_empty.safetensors";
  write_bytes(bad_t5, "");
  const fs::path bad_dit = tmp_ / "dit_empty.safetensors";
  write_bytes(bad_dit, "");
  auto a = args(bad_dit, golden("vae_tiny.diffusers.safetensors"));
  std::replace(a.begin(), a.end(), golden("umt5_tiny.hf.safetensors").string(), bad_t5.string());
  expect_refused(a, {bad_dit.string()});
  const std::string vae = read_bytes(golden("vae_tiny.diffusers.safetensors"));
  const fs::path bad_vae = tmp_ / "vae_cut.safetensors";
  write_bytes(bad_vae, vae.substr(0, 8));
  a = args(golden("dit_tiny.diffusers.safetensors"), bad_vae);
  std::replace(a.begin(), a.end(), golden("umt5_tiny.hf.safetensors").string(), bad_t5.string());
  expect_refused(a, {bad_vae.string()});
  // With both good, the broken encoder is the one named.
  a = args(golden("dit_tiny.diffusers.safetensors"), golden("vae_tiny.diffusers.safetensors"));
  std::replace(a.begin(), a.end(), golden("umt5_tiny.hf.safetensors").string(), bad_t5.string());
  expect_refused(a, {bad_t5.string()});
}

// The golden DiT rewritten with `edit` applied to its tensor list.
fs::path rewritten_dit(
    const fs::path& path,
    const std::function<void(std::vector<std::pair<std::string, Tensor>>&)>& edit) {
  const auto src = io::SafetensorsFile::open(golden("dit_tiny.diffusers.safetensors").string());
  std::vector<std::pair<std::string, Tensor>> tensors;
  for (const auto& t : src->tensors()) tensors.emplace_back(t.name, src->tensor(t.name));
  edit(tensors);
  io::write_safetensors(path.string(), tensors);
  return path;
}

TEST_F(BadModelFile, MissingTensor) {
  const fs::path dit = rewritten_dit(tmp_ / "missing.safetensors", [](auto& tensors) {
    std::erase_if(tensors, [](const auto& t) { return t.first == kVictim; });
  });
  expect_refused(args(dit, golden("vae_tiny.diffusers.safetensors")), {dit.string(), "to_k"});
}

TEST_F(BadModelFile, WrongShape) {
  const fs::path dit = rewritten_dit(tmp_ / "shape.safetensors", [](auto& tensors) {
    for (auto& t : tensors)
      if (t.first == kVictim) t.second = Tensor::zeros({64, 32});
  });
  expect_refused(args(dit, golden("vae_tiny.diffusers.safetensors")), {dit.string(), "to_k"});
}

TEST_F(BadModelFile, MaliciousPthAsVae) {
  // What pickle.load would turn into os.system("touch <marker>"): a torch.save archive whose
  // data.pkl calls a global. If anything executed it, the marker would appear.
  const fs::path marker = tmp_ / "pwned";
  const std::map<std::string, std::string> calls{
      {"os", "system"}, {"posix", "system"}, {"subprocess", "call"}, {"builtins", "exec"}};
  for (const auto& [module, name] : calls) {
    SCOPED_TRACE(module + "." + name);
    test::PickleBuilder p(2);
    p.global(module, name)
        .str("touch " + marker.string())
        .op(0x85 /* TUPLE1 */)
        .op('R' /* REDUCE */);
    const std::string zip = test::write_zip({{"archive/data.pkl", p.finish()},
                                             {"archive/byteorder", "little"},
                                             {"archive/version", "3\n"}});
    const fs::path pth = tmp_ / "Wan2.1_VAE.pth";
    write_bytes(pth, zip);
    expect_refused(args(golden("dit_tiny.diffusers.safetensors"), pth),
                   {pth.string(), "'" + module + "." + name + "'"});
    EXPECT_FALSE(fs::exists(marker));
  }
}

}  // namespace
}  // namespace freeswim::clitest
