// The text encoder files users keep: ComfyUI's single UMT5 file (transformers names, the
// sentencepiece model inside as a U8 `spiece_model` tensor; in f32 and in scaled fp8) and a
// llama.cpp GGUF T5 encoder (t5encoder names, tokenizer.ggml.*), each enough on its own: the
// tokenizer inside gives the golden ids and the encoder the golden outputs.
#include <gtest/gtest.h>

#include <cmath>
#include <fstream>
#include <iterator>
#include <nlohmann/json.hpp>

#include "check/golden_files.h"
#include "core/error.h"
#include "format_util.h"
#include "gguf_writer.h"
#include "io/safetensors.h"
#include "io/umt5_names.h"
#include "pipeline/models.h"
#include "text/tokenizer.h"
#include "text/umt5.h"

namespace freeswim::formats {
namespace {

std::string file_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

Tensor u8_tensor(const std::string& bytes) {
  Tensor t = Tensor::empty({static_cast<int64_t>(bytes.size())}, DType::U8);
  std::memcpy(t.raw(), bytes.data(), bytes.size());
  return t;
}

// Every golden prompt's ids through `tok` equal the golden ids.
void expect_golden_ids(const text::Tokenizer& tok) {
  const nlohmann::json cases = check::read_json(kGolden + "/spiece_tiny.cases.json").at("cases");
  ASSERT_GT(cases.size(), 2u);
  for (const auto& [prompt, ids] : cases.items())
    EXPECT_EQ(tok.encode(prompt), ids.get<std::vector<int32_t>>()) << prompt;
}

// The encoder's output for the golden case rows against the golden hidden states.
double encoder_error(const text::Umt5Encoder& enc) {
  const check::CaseFile c = check::open_case_file(kGolden + "/umt5_tiny_cases.json",
                                                  kGolden + "/umt5_tiny_cases.safetensors");
  const Tensor ids = c.tensor("input_ids"), mask = c.tensor("attention_mask");
  const Tensor want = c.tensor("last_hidden_state");
  double worst = 0;
  for (int64_t r = 0; r < ids.dim(0); ++r) {
    std::vector<int32_t> i, m;
    for (int64_t k = 0; k < ids.dim(1); ++k) {
      i.push_back(static_cast<int32_t>(ids.data<float>()[r * ids.dim(1) + k]));
      m.push_back(static_cast<int32_t>(mask.data<float>()[r * ids.dim(1) + k]));
    }
    const Tensor got = enc.forward(i, m);
    const Tensor row = want.slice0(r, r + 1).reshape({want.dim(1), want.dim(2)});
    worst = std::max(worst, relative_l2(got, row));
  }
  return worst;
}

// ComfyUI's file: the golden encoder in transformers names, optionally in scaled fp8, with the
// tokenizer model's bytes as `spiece_model`.
std::string write_comfy_umt5(const Scratch& dir, bool fp8) {
  Named out;
  for (const auto& [name, t] : read_golden("umt5_tiny.hf.safetensors")) {
    if (fp8 && t.ndim() == 2 && name.find("relative_attention_bias") == std::string::npos) {
      float amax = 0;
      for (float v : t.to_float_vector()) amax = std::fmax(amax, std::fabs(v));
      const float scale = amax / 448;
      out.emplace_back(name, to_fp8(t, DType::F8_E4M3, scale));
      out.emplace_back(name.substr(0, name.size() - 7) + ".scale_weight",
                       Tensor::from_vector({}, {scale}));
    } else {
      out.emplace_back(name, t);
    }
  }
  if (fp8) out.emplace_back("scaled_fp8", Tensor::empty({0}, DType::F8_E4M3));
  out.emplace_back("spiece_model", u8_tensor(file_bytes(kGolden + "/spiece_tiny.model")));
  const std::string path =
      dir.file(fp8 ? "umt5_fp8_e4m3fn_scaled.safetensors" : "umt5.safetensors");
  io::write_safetensors(path, out);
  return path;
}

TEST(ComfyUmt5, TheFileAloneGivesTokenizerAndEncoder) {
  Scratch dir;
  for (bool fp8 : {false, true}) {
    const std::string path = write_comfy_umt5(dir, fp8);
    const std::optional<text::Tokenizer> tok = text::Tokenizer::embedded_in(path);
    ASSERT_TRUE(tok.has_value());
    expect_golden_ids(*tok);
    EXPECT_EQ(tok->eos_id(), 1);
    EXPECT_EQ(tok->pad_id(), 0);
    const auto enc = text::Umt5Encoder::load(path, Device::CPU, kGolden + "/umt5_tiny.config.json");
    const double err = encoder_error(*enc);
    std::printf("[ measured ] ComfyUI UMT5 %s: encoder relative L2 %.3e\n",
                fp8 ? "fp8 scaled" : "f32", err);
    EXPECT_LT(err, fp8 ? 1.5e-1 : 1e-4);
    // What the pipeline does with --t5 FILE and no --tokenizer.
    pipeline::ModelPaths paths;
    paths.t5 = path;
    pipeline::ModelLayout layout;
    layout.t5 = path;
    expect_golden_ids(pipeline::load_tokenizer(paths, layout));
  }
}

TEST(ComfyUmt5, AFileWithoutATokenizerSaysSo) {
  Scratch dir;
  io::write_safetensors(dir.file("plain.safetensors"), read_golden("umt5_tiny.hf.safetensors"));
  EXPECT_FALSE(text::Tokenizer::embedded_in(dir.file("plain.safetensors")).has_value());
  pipeline::ModelPaths paths;
  pipeline::ModelLayout layout;
  layout.t5 = dir.file("plain.safetensors");
  const std::string msg = error_of([&] { pipeline::load_tokenizer(paths, layout); });
  EXPECT_MENTIONS(msg, dir.file("plain.safetensors"));
  EXPECT_MENTIONS(msg, "--tokenizer");
  // A spiece_model that is not one.
  Named bad = read_golden("umt5_tiny.hf.safetensors");
  bad.emplace_back("spiece_model", u8_tensor("not a model"));
  io::write_safetensors(dir.file("bad.safetensors"), bad);
  EXPECT_MENTIONS(error_of([&] { text::Tokenizer::embedded_in(dir.file("bad.safetensors")); }),
                  "'spiece_model'");
}

// --- A minimal protocol-buffer reader, to take the golden sentencepiece model apart ---

struct Field {
  int number, wire;
  uint64_t value;
  std::string bytes;
};

std::vector<Field> fields(const std::string& b) {
  std::vector<Field> out;
  size_t i = 0;
  auto varint = [&] {
    uint64_t v = 0;
    for (int s = 0;; s += 7) {
      const uint8_t c = static_cast<uint8_t>(b.at(i++));
      v |= static_cast<uint64_t>(c & 0x7f) << s;
      if (c < 0x80) return v;
    }
  };
  while (i < b.size()) {
    const uint64_t key = varint();
    Field f{static_cast<int>(key >> 3), static_cast<int>(key & 7), 0, {}};
    if (f.wire == 0) {
      f.value = varint();
    } else if (f.wire == 2) {
      const size_t n = static_cast<size_t>(varint());
      f.bytes = b.substr(i, n);
      i += n;
    } else if (f.wire == 5) {
      f.bytes = b.substr(i, 4);
      i += 4;
    } else {
      throw std::runtime_error("unexpected wire type");
    }
    out.push_back(f);
  }
  return out;
}

// The golden tokenizer as llama.cpp's converter writes a T5 tokenizer.
void add_gguf_tokenizer(GgufWriter& w) {
  std::vector<std::string> tokens;
  std::vector<float> scores;
  std::vector<int32_t> types;
  std::vector<uint8_t> charsmap;
  for (const Field& f : fields(file_bytes(kGolden + "/spiece_tiny.model"))) {
    if (f.number == 1) {
      std::string piece;
      float score = 0;
      int32_t type = 1;
      for (const Field& p : fields(f.bytes)) {
        if (p.number == 1) piece = p.bytes;
        if (p.number == 2) std::memcpy(&score, p.bytes.data(), 4);
        if (p.number == 3) type = static_cast<int32_t>(p.value);
      }
      tokens.push_back(piece);
      scores.push_back(score);
      types.push_back(type);
    }
    if (f.number == 3)
      for (const Field& n : fields(f.bytes))
        if (n.number == 2) charsmap.assign(n.bytes.begin(), n.bytes.end());
  }
  w.string("tokenizer.ggml.model", "t5");
  w.string("tokenizer.ggml.pre", "default");
  w.strings("tokenizer.ggml.tokens", tokens);
  w.f32s("tokenizer.ggml.scores", scores);
  w.i32s("tokenizer.ggml.token_type", types);
  w.boolean("tokenizer.ggml.add_space_prefix", true);
  w.boolean("tokenizer.ggml.remove_extra_whitespaces", true);
  w.u8s("tokenizer.ggml.precompiled_charsmap", charsmap);
  w.u32("tokenizer.ggml.eos_token_id", 1);
  w.u32("tokenizer.ggml.unknown_token_id", 2);
  w.u32("tokenizer.ggml.padding_token_id", 0);
}

std::string write_gguf_umt5(const Scratch& dir, GgmlType type, bool tokenizer = true,
                            const std::string& name = "umt5.gguf") {
  GgufWriter w;
  w.string("general.architecture", "t5encoder");
  if (tokenizer) add_gguf_tokenizer(w);
  for (const auto& [hf, t] : read_golden("umt5_tiny.hf.safetensors")) {
    if (hf == "shared.weight" || hf.rfind("encoder.", 0) != 0) continue;  // the tied copy
    const std::string g = io::umt5_gguf_name(hf);
    // As llama.cpp's converter: vectors, norms and the position bias stay f32.
    const bool f32 = t.ndim() != 2 || g.find("attn_rel_b") != std::string::npos;
    w.tensor(g, f32 ? GgmlType::F32 : type, t);
  }
  const std::string path = dir.file(name);
  w.write(path);
  return path;
}

TEST(GgufUmt5, TheFileAloneGivesTokenizerAndEncoder) {
  Scratch dir;
  for (auto [type, tolerance] : {std::pair{GgmlType::F32, 1e-4}, std::pair{GgmlType::F16, 1e-3},
                                 std::pair{GgmlType::Q8_0, 2e-2}}) {
    const std::string path = write_gguf_umt5(dir, type);
    const std::optional<text::Tokenizer> tok = text::Tokenizer::embedded_in(path);
    ASSERT_TRUE(tok.has_value());
    expect_golden_ids(*tok);
    const auto enc = text::Umt5Encoder::load(path, Device::CPU);  // config from the shapes
    EXPECT_EQ(enc->config().num_layers, 2);
    EXPECT_EQ(enc->config().num_heads, 4);
    const double err = encoder_error(*enc);
    std::printf("[ measured ] GGUF UMT5 %s: encoder relative L2 %.3e (tolerance %.0e)\n",
                io::ggml_type_name(static_cast<uint32_t>(type)).c_str(), err, tolerance);
    EXPECT_LT(err, tolerance);
  }
}

TEST(GgufUmt5, BrokenTokenizersAreRefusedByName) {
  Scratch dir;
  GgufWriter w;
  w.string("general.architecture", "t5encoder");
  w.string("tokenizer.ggml.model", "llama");
  w.strings("tokenizer.ggml.tokens", {"<pad>", "</s>", "<unk>"});
  w.write(dir.file("llama.gguf"));
  EXPECT_MENTIONS(error_of([&] { text::Tokenizer::embedded_in(dir.file("llama.gguf")); }),
                  "'llama'");
  GgufWriter s;
  s.string("tokenizer.ggml.model", "t5");
  s.strings("tokenizer.ggml.tokens", {"<pad>", "</s>", "<unk>"});
  s.f32s("tokenizer.ggml.scores", {0.f, 0.f});
  s.write(dir.file("scores.gguf"));
  EXPECT_MENTIONS(error_of([&] { text::Tokenizer::embedded_in(dir.file("scores.gguf")); }),
                  "tokenizer.ggml.scores");
  GgufWriter u;
  u.string("tokenizer.ggml.model", "t5");
  u.strings("tokenizer.ggml.tokens", {"<pad>", "</s>", "<unk>"});
  u.f32s("tokenizer.ggml.scores", {0.f, 0.f, 0.f});
  u.i32s("tokenizer.ggml.token_type", {3, 3, 1});
  u.write(dir.file("nounk.gguf"));
  EXPECT_MENTIONS(error_of([&] { text::Tokenizer::embedded_in(dir.file("nounk.gguf")); }),
                  "unknown");
  // A GGUF encoder without a tokenizer: none embedded.
  EXPECT_FALSE(text::Tokenizer::embedded_in(write_gguf_umt5(dir, GgmlType::F32, false, "bare.gguf"))
                   .has_value());
  // A Wan GGUF given as the text encoder.
  GgufWriter wan;
  wan.string("general.architecture", "wan");
  wan.tensor("patch_embedding.weight", GgmlType::F32, Tensor::zeros({4, 16, 1, 2, 2}));
  wan.write(dir.file("wan.gguf"));
  EXPECT_MENTIONS(error_of([&] { text::Umt5Encoder::load(dir.file("wan.gguf"), Device::CPU); }),
                  "'wan'");
}

}  // namespace
}  // namespace freeswim::formats
