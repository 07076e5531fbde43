// fp8 safetensors: plain F8_E4M3 / F8_E5M2 weights and ComfyUI's scaled forms (scaled_fp8 with
// scale_weight; comfy_quant tensors or metadata with weight_scale), read as f32 weights whose
// error against the golden f32 model is within what the format can hold, and a DiT forward
// within the tolerance stated per format; malformed scale data refused by name.
#include <gtest/gtest.h>

#include <cmath>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "format_util.h"
#include "io/safetensors.h"

namespace freeswim::formats {
namespace {

constexpr const char* kPrefix = "model.diffusion_model.";

// The golden tiny DiT in original names with the ComfyUI prefix.
Named golden_original() {
  return read_golden("dit_tiny.original.safetensors");
}

bool quantized(const std::string& name, const Tensor& t) {
  // What ComfyUI's fp8 files store in fp8: the matrices (and the patch embedding); biases,
  // norms and modulation tables stay in a float type.
  return t.ndim() >= 2 && name.find("modulation") == std::string::npos;
}

enum class Form { Plain, ScaledFp8, ComfyQuantTensors, ComfyQuantMetadata };

// Writes the golden DiT with its matrices in `type`, in one of the four forms; returns the path.
std::string write_fp8_dit(const Scratch& dir, DType type, Form form) {
  const Named golden = golden_original();
  Named out;
  nlohmann::json layers = nlohmann::json::object();
  const std::string format = type == DType::F8_E4M3 ? "float8_e4m3fn" : "float8_e5m2";
  for (const auto& [name, t] : golden) {
    if (!quantized(name, t)) {
      out.emplace_back(name, t.to(DType::BF16));
      continue;
    }
    float amax = 0;
    for (float v : t.to_float_vector()) amax = std::fmax(amax, std::fabs(v));
    const float scale = form == Form::Plain ? 1.f : amax / fp8_max(type);
    out.emplace_back(name, to_fp8(t, type, scale));
    const std::string layer = name.substr(0, name.size() - std::string(".weight").size());
    const Tensor s = Tensor::from_vector({}, {scale});
    const Tensor one = Tensor::from_vector({}, {1.f});
    if (form == Form::ScaledFp8) {
      out.emplace_back(layer + ".scale_weight", s);
      out.emplace_back(layer + ".scale_input", one);
    } else if (form == Form::ComfyQuantTensors || form == Form::ComfyQuantMetadata) {
      out.emplace_back(layer + ".weight_scale", s);
      out.emplace_back(layer + ".input_scale", one);
      const std::string conf = nlohmann::json{{"format", format}}.dump();
      if (form == Form::ComfyQuantTensors) {
        Tensor bytes = Tensor::empty({static_cast<int64_t>(conf.size())}, DType::U8);
        std::memcpy(bytes.raw(), conf.data(), conf.size());
        out.emplace_back(layer + ".comfy_quant", bytes);
      } else {
        layers[layer] = {{"format", format}};
      }
    }
  }
  std::map<std::string, std::string> metadata;
  if (form == Form::ScaledFp8)
    out.emplace_back(std::string(kPrefix) + "scaled_fp8", Tensor::empty({0}, type));
  if (form == Form::ComfyQuantMetadata)
    metadata["_quantization_metadata"] =
        nlohmann::json{{"format_version", "1.0"}, {"layers", layers}}.dump();
  const std::string path = dir.file("dit_fp8.safetensors");
  io::write_safetensors(path, out, metadata);
  return path;
}

// The documented error of one fp8 value (docs/fp8.md): half a unit in the last place of the
// 3 (E4M3) or 2 (E5M2) mantissa bits, relative, for values in the normal range; below it half
// the subnormal step, absolute. Both scaled by the tensor's scale.
double fp8_bound(double x, DType type, double scale) {
  const bool e4 = type == DType::F8_E4M3;
  const double rel = e4 ? std::ldexp(1.0, -4) : std::ldexp(1.0, -3);
  const double abs = e4 ? std::ldexp(1.0, -10) : std::ldexp(1.0, -17);
  return std::max(rel * std::fabs(x), abs * scale);
}

struct FormCase {
  DType type;
  Form form;
  const char* label;
  double forward_tolerance;  // relative L2 of the stock forward against the golden f32 output
};

class Fp8Forms : public ::testing::TestWithParam<FormCase> {};

TEST_P(Fp8Forms, WeightsWithinTheFormatsErrorAndForwardWithinTolerance) {
  const FormCase c = GetParam();
  Scratch dir;
  const std::string path = write_fp8_dit(dir, c.type, c.form);
  const io::TensorSource src = io::TensorSource::open(path);
  // The checkpoint is seen as its weights: no scales, markers or configurations among the names.
  const Named golden = golden_original();
  EXPECT_EQ(src.names().size(), golden.size());
  for (const std::string& n : src.names()) {
    EXPECT_EQ(n.find("scale"), std::string::npos) << n;
    EXPECT_EQ(n.find("comfy_quant"), std::string::npos) << n;
  }
  int checked = 0;
  for (const auto& [name, want] : golden) {
    if (!quantized(name, want)) continue;
    const Tensor got = src.tensor(name);
    ASSERT_EQ(got.dtype(), DType::F32) << name;
    ASSERT_EQ(got.shape(), want.shape()) << name;
    float amax = 0;
    const std::vector<float> w = want.to_float_vector();
    for (float v : w) amax = std::fmax(amax, std::fabs(v));
    const double scale = c.form == Form::Plain ? 1.0 : amax / fp8_max(c.type);
    // The value read is exactly decode(code) * scale, and within the format's error.
    const Tensor decoded = to_fp8(want, c.type, static_cast<float>(scale)).to(DType::F32);
    for (int64_t i = 0; i < got.numel(); ++i) {
      const float g = got.data<float>()[i];
      const float exact = decoded.data<float>()[i] * static_cast<float>(scale);
      ASSERT_EQ(g, exact) << name << "[" << i << "]";
      ASSERT_LE(std::fabs(static_cast<double>(g) - w[static_cast<size_t>(i)]),
                fp8_bound(w[static_cast<size_t>(i)], c.type, scale) * (1 + 1e-6))
          << name << "[" << i << "] " << c.label;
    }
    ++checked;
  }
  EXPECT_GT(checked, 20);
  const double err = dit_forward_error(path);
  std::printf("[ measured ] %s: DiT forward relative L2 %.3e (tolerance %.0e)\n", c.label, err,
              c.forward_tolerance);
  EXPECT_LT(err, c.forward_tolerance) << c.label;
}

INSTANTIATE_TEST_SUITE_P(
    Formats, Fp8Forms,
    ::testing::Values(
        FormCase{DType::F8_E4M3, Form::Plain, "F8_E4M3 plain", 5e-2},
        FormCase{DType::F8_E5M2, Form::Plain, "F8_E5M2 plain", 1e-1},
        FormCase{DType::F8_E4M3, Form::ScaledFp8, "F8_E4M3 scaled_fp8", 5e-2},
        FormCase{DType::F8_E4M3, Form::ComfyQuantTensors, "F8_E4M3 comfy_quant", 5e-2},
        FormCase{DType::F8_E5M2, Form::ComfyQuantMetadata, "F8_E5M2 comfy_quant metadata", 1e-1}),
    [](const auto& param_info) {
      std::string s = param_info.param.label;
      for (char& ch : s)
        if (!std::isalnum(static_cast<unsigned char>(ch))) ch = '_';
      return s;
    });

// Damaged scale data: one defect each, refused naming the file and the tensor.
class Fp8Refused : public ::testing::Test {
 protected:
  std::string open_error(Named tensors, const std::map<std::string, std::string>& meta = {}) {
    io::write_safetensors(path_, tensors, meta);
    return error_of([&] { io::TensorSource::open(path_); });
  }
  static Tensor fp8(const Shape& s) { return Tensor::zeros(s, DType::F8_E4M3); }
  static Tensor bytes(const std::string& text) {
    Tensor t = Tensor::empty({static_cast<int64_t>(text.size())}, DType::U8);
    std::memcpy(t.raw(), text.data(), text.size());
    return t;
  }
  Scratch dir_;
  std::string path_ = dir_.file("bad.safetensors");
};

TEST_F(Fp8Refused, ScaleWithoutItsWeight) {
  const std::string msg =
      open_error({{"a.weight", fp8({2, 2})}, {"b.scale_weight", Tensor::from_vector({}, {0.5f})}});
  EXPECT_MENTIONS(msg, path_);
  EXPECT_MENTIONS(msg, "'b.scale_weight'");
  EXPECT_MENTIONS(msg, "'b.weight'");
}

TEST_F(Fp8Refused, ScaleOnAWeightThatIsNotFp8) {
  const std::string msg = open_error(
      {{"a.weight", Tensor::zeros({2, 2})}, {"a.weight_scale", Tensor::from_vector({}, {0.5f})}});
  EXPECT_MENTIONS(msg, "'a.weight_scale'");
  EXPECT_MENTIONS(msg, "not fp8");
}

TEST_F(Fp8Refused, ScaleThatIsNotOneNumber) {
  const std::string msg = open_error(
      {{"a.weight", fp8({2, 2})}, {"a.scale_weight", Tensor::from_vector({2}, {0.5f, 1})}});
  EXPECT_MENTIONS(msg, "'a.scale_weight'");
  EXPECT_MENTIONS(msg, "[2]");
  const std::string msg2 =
      open_error({{"a.weight", fp8({2, 2})}, {"a.scale_weight", Tensor::zeros({}, DType::I32)}});
  EXPECT_MENTIONS(msg2, "dtype I32");
}

TEST_F(Fp8Refused, TwoScalesForOneWeight) {
  const std::string msg = open_error({{"a.weight", fp8({2, 2})},
                                      {"a.scale_weight", Tensor::from_vector({}, {0.5f})},
                                      {"a.weight_scale", Tensor::from_vector({}, {0.5f})}});
  EXPECT_MENTIONS(msg, "two scales");
}

TEST_F(Fp8Refused, FormatsThisEngineDoesNotRead) {
  const std::string msg = open_error({{"a.weight", Tensor::zeros({2, 1}, DType::U8)},
                                      {"a.comfy_quant", bytes(R"({"format": "nvfp4"})")}});
  EXPECT_MENTIONS(msg, "'a'");
  EXPECT_MENTIONS(msg, "'nvfp4'");
  const std::string msg2 = open_error(
      {{"a.weight", fp8({2, 2})}},
      {{"_quantization_metadata", R"({"layers": {"a": {"format": "int8_tensorwise"}}})"}});
  EXPECT_MENTIONS(msg2, "'int8_tensorwise'");
}

TEST_F(Fp8Refused, FormatThatDisagreesWithTheDtype) {
  const std::string msg = open_error(
      {{"a.weight", fp8({2, 2})}, {"a.comfy_quant", bytes(R"({"format": "float8_e5m2"})")}});
  EXPECT_MENTIONS(msg, "'a.weight' is F8_E4M3");
  EXPECT_MENTIONS(msg, "F8_E5M2");
}

TEST_F(Fp8Refused, MalformedConfiguration) {
  EXPECT_MENTIONS(open_error({{"a.weight", fp8({2, 2})}, {"a.comfy_quant", bytes("{\"format\":")}}),
                  "'a.comfy_quant'");
  EXPECT_MENTIONS(open_error({{"a.weight", fp8({2, 2})}, {"a.comfy_quant", bytes("[1]")}}),
                  "no \"format\"");
  EXPECT_MENTIONS(
      open_error({{"a.weight", fp8({2, 2})}},
                 {{"_quantization_metadata", R"({"layers": {"b": {"format": "float8_e4m3fn"}}})"}}),
      "no tensor 'b.weight'");
  EXPECT_MENTIONS(open_error({{"a.weight", fp8({2, 2})}}, {{"_quantization_metadata", "{}"}}),
                  "\"layers\"");
}

TEST(Fp8Plain, CodesReadExactly) {
  Scratch dir;
  Tensor a = Tensor::empty({256}, DType::F8_E4M3), b = Tensor::empty({16, 16}, DType::F8_E5M2);
  for (int c = 0; c < 256; ++c) {
    a.data<uint8_t>()[c] = static_cast<uint8_t>(c);
    b.data<uint8_t>()[c] = static_cast<uint8_t>(c);
  }
  io::write_safetensors(dir.file("f.safetensors"), {{"a", a}, {"b", b}});
  const io::TensorSource src = io::TensorSource::open(dir.file("f.safetensors"));
  EXPECT_EQ(src.find("a")->dtype, DType::F8_E4M3);
  const Tensor fa = src.tensor("a"), fb = src.tensor("b");
  ASSERT_EQ(fb.shape(), (Shape{16, 16}));
  for (int c = 0; c < 256; ++c) {
    const float x = f8e4m3_to_float(static_cast<uint8_t>(c)),
                y = f8e5m2_to_float(static_cast<uint8_t>(c));
    if (std::isnan(x))
      EXPECT_TRUE(std::isnan(fa.data<float>()[c]));
    else
      EXPECT_EQ(fa.data<float>()[c], x);
    if (std::isnan(y))
      EXPECT_TRUE(std::isnan(fb.data<float>()[c]));
    else
      EXPECT_EQ(fb.data<float>()[c], y);
  }
  EXPECT_NE(src.storage_summary().find("F8_E4M3 x 1"), std::string::npos) << src.storage_summary();
}

}  // namespace
}  // namespace freeswim::formats
