// LoRAs on the golden tiny DiT: the three key formats (ComfyUI / original, kohya / musubi,
// diffusers / PEFT) with and without alpha, full deltas (diff, diff_b, diff_m), several files at
// several strengths; the merge checked bit for bit against a reference merge computed here, and
// through the model: a forward from the LoRA'd load equals the forward of a file holding the
// reference-merged weights. Malformed and foreign LoRAs refused naming their keys.
#include "io/lora.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <map>
#include <random>

#include "check/golden_files.h"
#include "core/error.h"
#include "format_util.h"
#include "io/safetensors.h"
#include "io/wan_names.h"
#include "models/wan_dit.h"
#include "pipeline/file_info.h"

namespace freeswim::formats {
namespace {

const std::string kConfig = kGolden + "/dit_tiny.config.json";
const std::string kDiffusers = kGolden + "/dit_tiny.diffusers.safetensors";

Tensor random(const Shape& s, uint64_t seed, float scale = 0.1f) {
  std::mt19937_64 gen(seed);
  std::normal_distribution<float> d(0.f, scale);
  std::vector<float> v(static_cast<size_t>(shape_numel(s)));
  for (float& x : v) x = d(gen);
  return Tensor::from_vector(s, v);
}

std::string underscored(std::string s) {
  std::replace(s.begin(), s.end(), '.', '_');
  return s;
}

// One low-rank patch or full delta, by the diffusers name of the weight it changes.
struct Patch {
  std::string weight;  // diffusers name, e.g. "blocks.0.attn1.to_q.weight"
  Tensor up, down;     // low rank (up [out, r, 1...], down [r, in...])
  float alpha = 0;     // 0: no alpha key
  Tensor delta;        // full delta (weight, bias or modulation)
};

enum class Format { ComfyUI, Kohya, Diffusers };

// The key stem of a weight's module in a format, and the key of a full delta.
std::string module_key(const std::string& weight, Format f) {
  const std::string base = weight.substr(0, weight.rfind('.'));  // drop .weight / .bias
  switch (f) {
    case Format::ComfyUI:
      return "diffusion_model." + io::wan_dit_original_name(weight).substr(
                                      0, io::wan_dit_original_name(weight).rfind('.'));
    case Format::Kohya: {
      const std::string o = io::wan_dit_original_name(weight);
      return "lora_unet_" + underscored(o.substr(0, o.rfind('.')));
    }
    case Format::Diffusers:
      return "transformer." + base;
  }
  return base;
}

Named to_file(const std::vector<Patch>& patches, Format f, bool lora_ab) {
  Named out;
  for (const Patch& p : patches) {
    const std::string m = module_key(p.weight, f);
    if (p.up.defined()) {
      const bool ab = lora_ab || f == Format::Diffusers;
      out.emplace_back(m + (ab ? ".lora_A.weight" : ".lora_down.weight"), p.down);
      out.emplace_back(m + (ab ? ".lora_B.weight" : ".lora_up.weight"), p.up);
      if (p.alpha != 0) out.emplace_back(m + ".alpha", Tensor::from_vector({}, {p.alpha}));
    } else if (p.weight.ends_with(".bias")) {
      out.emplace_back(m + (f == Format::Diffusers ? ".lora_B.bias" : ".diff_b"), p.delta);
    } else if (p.weight.ends_with("scale_shift_table")) {
      // lightx2v's modulation delta: <block>.diff_m (the module without ".modulation").
      const std::string o = io::wan_dit_original_name(p.weight);  // blocks.0.modulation
      out.emplace_back("diffusion_model." +
                           o.substr(0, o.size() - std::string(".modulation").size()) + ".diff_m",
                       p.delta);
    } else {
      out.emplace_back(m + ".diff", p.delta);
    }
  }
  return out;
}

// The golden model's weights (diffusers names, f32) and their shapes.
Named golden_weights() {
  return read_golden("dit_tiny.diffusers.safetensors");
}

std::vector<Patch> some_patches(uint64_t seed, bool with_alpha, bool with_deltas) {
  std::vector<Patch> v;
  auto low_rank = [&](const std::string& w, const Shape& up, const Shape& down, float alpha) {
    v.push_back(Patch{w, random(up, seed++), random(down, seed++), with_alpha ? alpha : 0, {}});
  };
  low_rank("blocks.0.attn1.to_q.weight", {64, 4}, {4, 64}, 2.f);
  low_rank("blocks.1.attn2.to_out.0.weight", {64, 8}, {8, 64}, 8.f);
  low_rank("blocks.0.ffn.net.0.proj.weight", {96, 4}, {4, 64}, 1.f);
  low_rank("blocks.1.ffn.net.2.weight", {64, 4}, {4, 96}, 4.f);
  low_rank("condition_embedder.time_proj.weight", {384, 2}, {2, 64}, 1.f);
  low_rank("condition_embedder.text_embedder.linear_1.weight", {64, 4}, {4, 32}, 3.f);
  low_rank("proj_out.weight", {64, 4}, {4, 64}, 4.f);
  // A convolution's LoRA: up [D, r, 1, 1, 1], down [r, C, 1, 2, 2].
  low_rank("patch_embedding.weight", {64, 4, 1, 1, 1}, {4, 16, 1, 2, 2}, 2.f);
  if (with_deltas) {
    v.push_back(Patch{"blocks.0.attn2.to_k.bias", {}, {}, 0, random({64}, seed++)});
    v.push_back(Patch{"blocks.1.norm2.weight", {}, {}, 0, random({64}, seed++)});
    v.push_back(Patch{"blocks.0.attn1.norm_q.weight", {}, {}, 0, random({64}, seed++)});
    v.push_back(Patch{"blocks.1.attn1.to_v.weight", {}, {}, 0, random({64, 64}, seed++, 0.01f)});
    v.push_back(Patch{"blocks.0.scale_shift_table", {}, {}, 0, random({1, 6, 64}, seed++)});
    v.push_back(Patch{"scale_shift_table", {}, {}, 0, random({1, 2, 64}, seed++)});
  }
  return v;
}

// The reference merge, written from the definition: for each value, the products up[i][r] *
// down[r][j] summed over r in double, times strength * alpha / rank (or the strength), added to
// the weight with a fused multiply-add, file after file, and rounded to float once.
Named reference_merge(const Named& weights,
                      const std::vector<std::pair<std::vector<Patch>, double>>& files) {
  Named out;
  for (const auto& [name, w] : weights) {
    const int64_t rows = w.dim(0), cols = w.numel() / rows;
    std::vector<double> sum(static_cast<size_t>(w.numel()));
    for (int64_t i = 0; i < w.numel(); ++i) sum[static_cast<size_t>(i)] = w.data<float>()[i];
    for (const auto& [patches, strength] : files) {
      for (const Patch& p : patches) {
        if (p.weight != name) continue;
        for (int64_t i = 0; i < rows; ++i)
          for (int64_t j = 0; j < cols; ++j) {
            double acc = 0, scale = strength;
            if (p.up.defined()) {
              const int64_t r = p.down.dim(0);
              for (int64_t k = 0; k < r; ++k)
                acc += static_cast<double>(p.up.data<float>()[i * r + k]) *
                       static_cast<double>(p.down.data<float>()[k * cols + j]);
              if (p.alpha != 0)
                scale = strength * (static_cast<double>(p.alpha) / static_cast<double>(r));
            } else {
              acc = p.delta.data<float>()[i * cols + j];
            }
            double& s = sum[static_cast<size_t>(i * cols + j)];
            s = std::fma(scale, acc, s);
          }
      }
    }
    std::vector<float> f(sum.begin(), sum.end());
    out.emplace_back(name, Tensor::from_vector(w.shape(), f));
  }
  return out;
}

bool same_bits(const Tensor& a, const Tensor& b) {
  return a.shape() == b.shape() && std::memcmp(a.raw(), b.raw(), a.nbytes()) == 0;
}

Tensor plain_forward(const models::WanDit& m) {
  const check::CaseFile c = check::open_case_file(kGolden + "/dit_tiny_cases.json",
                                                  kGolden + "/dit_tiny_cases.safetensors");
  models::DitInput in;
  const Tensor lat = c.tensor("latents");
  in.latents = lat.reshape({lat.dim(1), lat.dim(2), lat.dim(3), lat.dim(4)});
  in.timestep = c.tensor("timestep").data<float>()[0];
  const Tensor ctx = c.tensor("context");
  in.context = ctx.reshape({ctx.dim(1), ctx.dim(2)});
  return m.forward(in, StepKind::Stock);
}

std::map<std::string, Shape> shapes_of(const Named& w) {
  std::map<std::string, Shape> s;
  for (const auto& [n, t] : w) s[n] = t.shape();
  return s;
}

struct FormatCase {
  Format format;
  bool lora_ab;
  bool alpha;
  const char* label;
};

class LoraFormats : public ::testing::TestWithParam<FormatCase> {};

TEST_P(LoraFormats, MergeIsExactAndTheModelCarriesIt) {
  const FormatCase c = GetParam();
  Scratch dir;
  const Named weights = golden_weights();
  const std::vector<Patch> patches = some_patches(11, c.alpha, c.format != Format::Kohya);
  const std::string path = dir.file("lora.safetensors");
  io::write_safetensors(path, to_file(patches, c.format, c.lora_ab));
  const double strength = 0.75;
  const Named want = reference_merge(weights, {{patches, strength}});

  // LoraSet::apply, weight by weight, against the reference.
  const auto set = io::LoraSet::open({io::LoraSpec{path, strength}}, shapes_of(weights));
  int touched = 0;
  for (size_t i = 0; i < weights.size(); ++i) {
    const auto& [name, w] = weights[i];
    const Tensor got = set->apply(name, w);
    EXPECT_TRUE(same_bits(got, want[i].second)) << c.label << " " << name;
    touched += set->touches(name);
  }
  EXPECT_EQ(touched, static_cast<int>(patches.size()));

  // Through the model: the LoRA'd load and the reference-merged file give the same forward.
  io::write_safetensors(dir.file("merged.safetensors"), want);
  const auto merged = models::WanDit::load(dir.file("merged.safetensors"), Device::CPU, kConfig);
  const auto with_lora =
      models::WanDit::load(kDiffusers, Device::CPU, kConfig, false, {io::LoraSpec{path, strength}});
  EXPECT_TRUE(same_bits(plain_forward(*with_lora), plain_forward(*merged))) << c.label;
  // And the LoRA changed the output.
  const auto plain = models::WanDit::load(kDiffusers, Device::CPU, kConfig);
  EXPECT_GT(relative_l2(plain_forward(*with_lora), plain_forward(*plain)), 1e-3);
}

INSTANTIATE_TEST_SUITE_P(
    Formats, LoraFormats,
    ::testing::Values(FormatCase{Format::ComfyUI, false, true, "ComfyUI_lora_down_up_alpha"},
                      FormatCase{Format::ComfyUI, true, false, "ComfyUI_lora_A_B_no_alpha"},
                      FormatCase{Format::Kohya, false, true, "kohya_alpha"},
                      FormatCase{Format::Kohya, false, false, "kohya_no_alpha"},
                      FormatCase{Format::Diffusers, true, false, "diffusers_no_alpha"},
                      FormatCase{Format::Diffusers, true, true, "diffusers_alpha"}),
    [](const auto& param_info) { return std::string(param_info.param.label); });

TEST(Lora, SeveralFilesAtSeveralStrengthsInOrder) {
  Scratch dir;
  const Named weights = golden_weights();
  const std::vector<Patch> a = some_patches(21, true, true), b = some_patches(41, false, true);
  io::write_safetensors(dir.file("a.safetensors"), to_file(a, Format::ComfyUI, false));
  io::write_safetensors(dir.file("b.safetensors"), to_file(b, Format::Diffusers, true));
  const Named want = reference_merge(weights, {{a, 1.0}, {b, -0.5}});
  const auto set = io::LoraSet::open({io::LoraSpec::parse(dir.file("a.safetensors")),
                                      io::LoraSpec::parse(dir.file("b.safetensors") + ":-0.5")},
                                     shapes_of(weights));
  for (size_t i = 0; i < weights.size(); ++i)
    EXPECT_TRUE(same_bits(set->apply(weights[i].first, weights[i].second), want[i].second))
        << weights[i].first;
  EXPECT_EQ(set->describe().size(), 2u);
  // The same LoRA from an original-named checkpoint: the names map across schemes.
  io::write_safetensors(dir.file("merged.safetensors"), want);
  const auto merged = models::WanDit::load(dir.file("merged.safetensors"), Device::CPU, kConfig);
  const auto loaded =
      models::WanDit::load(kGolden + "/dit_tiny.original.safetensors", Device::CPU, kConfig, false,
                           {io::LoraSpec{dir.file("a.safetensors"), 1.0},
                            io::LoraSpec{dir.file("b.safetensors"), -0.5}});
  EXPECT_TRUE(same_bits(plain_forward(*loaded), plain_forward(*merged)));
}

TEST(Lora, InfoDescribesALoraFile) {
  Scratch dir;
  io::write_safetensors(dir.file("l.safetensors"),
                        to_file(some_patches(3, true, true), Format::Kohya, false));
  const pipeline::FileInfo info = pipeline::describe_file(dir.file("l.safetensors"));
  EXPECT_EQ(info.kind, "LoRA");
  std::string all;
  for (const auto& [label, text] : info.lines) all += label + ": " + text + "\n";
  EXPECT_MENTIONS(all, "kohya");
  EXPECT_MENTIONS(all, "8 low-rank pairs (rank 2-8, 8 with alpha), 6 full deltas");
}

TEST(Lora, SpecsParse) {
  EXPECT_EQ(io::LoraSpec::parse("a.safetensors").strength, 1.0);
  EXPECT_EQ(io::LoraSpec::parse("a.safetensors:0.8").strength, 0.8);
  EXPECT_EQ(io::LoraSpec::parse("a.safetensors:0.8").path, "a.safetensors");
  EXPECT_EQ(io::LoraSpec::parse("dir:x/a.safetensors").path, "dir:x/a.safetensors");
  EXPECT_EQ(io::LoraSpec::parse("a.safetensors:-1e-1").strength, -0.1);
  EXPECT_MENTIONS(error_of([] { io::LoraSpec::parse(":0.5"); }), "no file");
  EXPECT_MENTIONS(error_of([] { io::LoraSpec::parse("a:inf"); }), "finite");
}

class LoraRefused : public ::testing::Test {
 protected:
  std::string open_error(const Named& tensors) {
    io::write_safetensors(path_, tensors);
    return error_of([&] {
      io::LoraSet::open({io::LoraSpec{path_, 1.0}}, shapes_of(golden_weights()));
    });
  }
  Scratch dir_;
  std::string path_ = dir_.file("bad_lora.safetensors");
};

TEST_F(LoraRefused, KeysOfAnotherModel) {
  // An image-to-video LoRA (k_img) and a text-encoder one: nothing of them may half-apply.
  const std::string msg = open_error(
      {{"diffusion_model.blocks.0.self_attn.q.lora_down.weight", random({4, 64}, 1)},
       {"diffusion_model.blocks.0.self_attn.q.lora_up.weight", random({64, 4}, 2)},
       {"diffusion_model.blocks.0.cross_attn.k_img.lora_down.weight", random({4, 64}, 3)},
       {"diffusion_model.blocks.0.cross_attn.k_img.lora_up.weight", random({64, 4}, 4)},
       {"lora_te_encoder_block_0_layer_0_SelfAttention_q.lora_down.weight", random({4, 32}, 5)},
       {"lora_te_encoder_block_0_layer_0_SelfAttention_q.lora_up.weight", random({32, 4}, 6)}});
  EXPECT_MENTIONS(msg, path_);
  EXPECT_MENTIONS(msg, "match no weight of this model");
  EXPECT_MENTIONS(msg, "k_img");
  EXPECT_MENTIONS(msg, "lora_te_encoder_block_0");
  // Blocks the model does not have.
  EXPECT_MENTIONS(open_error({{"diffusion_model.blocks.7.ffn.0.diff_b", random({96}, 1)}}),
                  "blocks.7.ffn.0.diff_b");
}

TEST_F(LoraRefused, KeysThatAreNotLora) {
  std::string msg =
      open_error({{"diffusion_model.blocks.0.self_attn.q.hada_w1_a", random({4, 4}, 1)}});
  EXPECT_MENTIONS(msg, "LoHa / LoKr");
  EXPECT_MENTIONS(msg, "hada_w1_a");
  msg = open_error({{"blocks.0.self_attn.q.weight", random({64, 64}, 1)}});
  EXPECT_MENTIONS(msg, "blocks.0.self_attn.q.weight");
  EXPECT_MENTIONS(msg, "not LoRA keys");
}

TEST_F(LoraRefused, HalfPairsShapesAndDuplicates) {
  EXPECT_MENTIONS(
      open_error({{"diffusion_model.blocks.0.self_attn.q.lora_down.weight", random({4, 64}, 1)}}),
      "no up");
  EXPECT_MENTIONS(
      open_error({{"diffusion_model.blocks.0.self_attn.q.alpha", Tensor::from_vector({}, {1})}}),
      "no lora_down / lora_up pair");
  std::string msg =
      open_error({{"diffusion_model.blocks.0.self_attn.q.lora_down.weight", random({4, 64}, 1)},
                  {"diffusion_model.blocks.0.self_attn.q.lora_up.weight", random({64, 3}, 2)}});
  EXPECT_MENTIONS(msg, "do not make a delta of weight 'blocks.0.attn1.to_q.weight'");
  msg = open_error({{"diffusion_model.blocks.0.self_attn.q.diff", random({64, 63}, 1)}});
  EXPECT_MENTIONS(msg, "does not fit weight");
  msg = open_error({{"diffusion_model.blocks.0.self_attn.q.lora_down.weight", random({4, 64}, 1)},
                    {"diffusion_model.blocks.0.self_attn.q.lora_up.weight", random({64, 4}, 2)},
                    {"diffusion_model.blocks.0.self_attn.q.lora_A.weight", random({4, 64}, 3)}});
  EXPECT_MENTIONS(msg, "two");
  msg = open_error({{"diffusion_model.blocks.0.self_attn.q.diff", random({64, 64}, 1)},
                    {"transformer.blocks.0.attn1.to_q.lora_A.weight", random({4, 64}, 3)},
                    {"transformer.blocks.0.attn1.to_q.lora_B.weight", random({64, 4}, 3)}});
  EXPECT_MENTIONS(msg, "both change weight 'blocks.0.attn1.to_q.weight'");
  Named integer{{"diffusion_model.blocks.0.self_attn.q.diff", Tensor::zeros({64, 64}, DType::I32)}};
  EXPECT_MENTIONS(open_error(integer), "dtype I32");
}

}  // namespace
}  // namespace freeswim::formats
