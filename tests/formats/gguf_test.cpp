// GGUF: the dequantisers against ggml's own output (known answers), every type's round trip
// through the test's quantiser within the type's error bound, metadata of every value type, shapes
// (ggml order reversed, comfy.gguf.orig_shape), and the tiny DiT from a GGUF file of every type
// against the golden f32 model.
#include "io/gguf.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>

#include "core/error.h"
#include "format_util.h"
#include "gguf_writer.h"
#include "io/safetensors.h"
#include "models/wan_dit.h"

namespace freeswim::formats {
namespace {

using io::GgufFile;

// splitmix64, as the oracle program that produced the known answers used it.
struct SplitMix {
  uint64_t s;
  uint64_t next() {
    uint64_t z = (s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
  }
};

struct KnownAnswer {
  GgmlType type;
  std::vector<int> f16_fields;  // byte offsets of the f16 scales in a block
  uint64_t seed, hash;
  float first;
};

// Eight blocks of random bytes (the f16 scales forced into [0.125, 0.25) with a random sign) fed
// to ggml's reference dequantisers (ggml-quants.c, dequantize_row_*): the FNV-1a hash of the
// output floats' bits and the first value.
const std::vector<KnownAnswer> kKnown = {
    {GgmlType::Q4_0, {0}, 1, 0x7b4fcec207d9060aull, -1.22827148f},
    {GgmlType::Q4_1, {0, 2}, 2, 0x1e3cb50fec9d4f77ull, 1.36584473f},
    {GgmlType::Q5_0, {0}, 3, 0x901e7ded56bf9a4eull, 1.4453125f},
    {GgmlType::Q5_1, {0, 2}, 4, 0xd4040ca589d28cd0ull, -4.27026367f},
    {GgmlType::Q8_0, {0}, 5, 0x631f9fb6c9328930ull, -13.0004883f},
    {GgmlType::Q3_K, {108}, 6, 0xa752c74388ab7036ull, 3.68920898f},
    {GgmlType::Q4_K, {0, 2}, 7, 0x9ff1d4ba8176dfe9ull, -96.248291f},
    {GgmlType::Q5_K, {0, 2}, 8, 0x5247349f7da33274ull, 45.1809082f},
    {GgmlType::Q6_K, {208}, 9, 0x34d075ab62b34348ull, 180.41748f},
};

TEST(GgufDequant, BitIdenticalToGgml) {
  for (const KnownAnswer& k : kKnown) {
    const io::GgmlTypeInfo* info = io::ggml_type_info(static_cast<uint32_t>(k.type));
    ASSERT_NE(info, nullptr);
    const int nb = 8;
    std::vector<uint8_t> b(nb * info->block_bytes);
    SplitMix rng{k.seed};
    for (uint8_t& x : b) x = static_cast<uint8_t>(rng.next());
    for (int blk = 0; blk < nb; ++blk)
      for (int at : k.f16_fields) {
        const uint16_t v = static_cast<uint16_t>((rng.next() & 0x83ff) | 0x3000);
        b[blk * info->block_bytes + at] = static_cast<uint8_t>(v);
        b[blk * info->block_bytes + at + 1] = static_cast<uint8_t>(v >> 8);
      }
    std::vector<float> y(static_cast<size_t>(nb * info->block));
    io::dequantize_blocks(k.type, b.data(), y.data(), static_cast<int64_t>(y.size()));
    uint64_t h = 1469598103934665603ull;
    for (float f : y) {
      uint32_t u;
      std::memcpy(&u, &f, 4);
      for (int q = 0; q < 4; ++q) h = (h ^ ((u >> (8 * q)) & 255)) * 1099511628211ull;
    }
    EXPECT_EQ(y[0], k.first) << info->name;
    EXPECT_EQ(h, k.hash) << info->name;
  }
}

const std::vector<GgmlType> kAllTypes = {
    GgmlType::F32,  GgmlType::F16,  GgmlType::BF16, GgmlType::Q8_0, GgmlType::Q4_0, GgmlType::Q4_1,
    GgmlType::Q5_0, GgmlType::Q5_1, GgmlType::Q3_K, GgmlType::Q4_K, GgmlType::Q5_K, GgmlType::Q6_K};

std::string type_name(GgmlType t) {
  return io::ggml_type_name(static_cast<uint32_t>(t));
}

// Random values shaped like weights: mostly small, some blocks shifted or with an outlier.
std::vector<float> weights_like(int64_t n, uint64_t seed) {
  std::mt19937_64 gen(seed);
  std::normal_distribution<float> normal(0.f, 0.05f);
  std::vector<float> v(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) {
    v[static_cast<size_t>(i)] = normal(gen);
    if (i % 977 == 0) v[static_cast<size_t>(i)] *= 20;           // outliers
    if ((i / 256) % 3 == 1) v[static_cast<size_t>(i)] += 0.03f;  // an offset block
  }
  return v;
}

TEST(GgufDequant, EveryTypeRoundTripsWithinItsBound) {
  const int64_t n = 256 * 12;
  const std::vector<float> x = weights_like(n, 7);
  for (GgmlType t : kAllTypes) {
    const io::GgmlTypeInfo* info = io::ggml_type_info(static_cast<uint32_t>(t));
    const std::vector<uint8_t> packed = quantize(t, x.data(), n);
    ASSERT_EQ(packed.size(), static_cast<size_t>(n / info->block) * info->block_bytes);
    const Tensor y = io::dequantize_tensor(t, packed.data(), {12, 256});
    double sq = 0, ref = 0, worst_ratio = 0;
    for (int64_t i = 0; i < n; ++i) {
      const float* block = x.data() + i / info->block * info->block;
      const double bound = quant_bound(t, info->block == 1 ? x.data() + i : block);
      const double err =
          std::fabs(static_cast<double>(y.data<float>()[i]) - x[static_cast<size_t>(i)]);
      ASSERT_LE(err, bound) << type_name(t) << " value " << i << " = " << x[static_cast<size_t>(i)];
      if (bound > 0) worst_ratio = std::max(worst_ratio, err / bound);
      sq += err * err;
      ref += static_cast<double>(x[static_cast<size_t>(i)]) * x[static_cast<size_t>(i)];
    }
    std::printf(
        "[ measured ] %-5s relative L2 of the round trip %.3e (worst error %.2f of its bound)\n",
        type_name(t).c_str(), std::sqrt(sq / ref), worst_ratio);
  }
}

TEST(GgufFile, MetadataOfEveryTypeAndShapes) {
  Scratch dir;
  GgufWriter w;
  w.string("general.architecture", "wan");
  w.u32("general.alignment", 64);
  w.i32("test.i32", -5);
  w.f32("test.f32", 1.5f);
  w.boolean("test.bool", true);
  w.strings("test.strings", {"a", "", "ü"});
  w.f32s("test.floats", {0.5f, -2.f});
  w.u8s("test.bytes", {1, 2, 255});
  const Tensor a = Tensor::from_vector({2, 3, 32}, weights_like(192, 1));
  w.tensor("a", GgmlType::F32, a);
  w.tensor("b", GgmlType::F16, a);
  w.tensor("c", GgmlType::Q8_0, a);
  // Stored as [3, 64] rows with its true shape in the metadata.
  w.tensor("d", GgmlType::Q8_0, Tensor::from_vector({6, 32}, weights_like(192, 2)), 64);
  w.write(dir.file("m.gguf"), 64);
  const auto f = GgufFile::open(dir.file("m.gguf"));
  EXPECT_EQ(f->version(), 3u);
  EXPECT_EQ(f->alignment(), 64u);
  EXPECT_EQ(f->string_value("general.architecture"), "wan");
  EXPECT_EQ(*f->value("test.i32")->integer(), -5);
  EXPECT_EQ(*f->value("test.f32")->number(), 1.5);
  EXPECT_EQ(*f->value("test.bool")->boolean(), true);
  EXPECT_EQ(f->value("test.strings")->strings, (std::vector<std::string>{"a", "", "ü"}));
  EXPECT_EQ(*f->value("test.floats")->number_at(1), -2.0);
  EXPECT_EQ(*f->value("test.bytes")->integer_at(2), 255);
  EXPECT_FALSE(f->value("test.bytes")->integer_at(3).has_value());
  EXPECT_EQ(f->value("absent"), nullptr);
  EXPECT_EQ(f->find("a")->dims, (std::vector<uint64_t>{32, 3, 2}));
  EXPECT_EQ(f->find("a")->shape, (Shape{2, 3, 32}));
  EXPECT_EQ(f->find("d")->shape, (Shape{6, 32}));
  EXPECT_TRUE(f->find("d")->reshaped);
  for (const auto& t : f->tensors()) EXPECT_EQ(t.offset % 64, 0u) << t.name;
  // F32 and F16 are views in their type; the block types come out as f32.
  EXPECT_EQ(f->tensor("a").dtype(), DType::F32);
  EXPECT_EQ(relative_l2(f->tensor("a"), a), 0.0);
  EXPECT_EQ(f->tensor("b").dtype(), DType::F16);
  EXPECT_LT(relative_l2(f->tensor("b"), a), 1e-3);
  EXPECT_EQ(f->tensor("c").dtype(), DType::F32);
  EXPECT_EQ(f->tensor("c").shape(), (Shape{2, 3, 32}));
  EXPECT_LT(relative_l2(f->tensor("c"), a), 1e-2);
  EXPECT_EQ(f->tensor("d").shape(), (Shape{6, 32}));
  // Through TensorSource, by the magic whatever the name.
  fs::copy_file(dir.file("m.gguf"), dir.file("model.bin"));
  const io::TensorSource src = io::TensorSource::open(dir.file("model.bin"));
  EXPECT_EQ(src.names(), (std::vector<std::string>{"a", "b", "c", "d"}));
  EXPECT_EQ(src.find("c")->shape, (Shape{2, 3, 32}));
  EXPECT_NE(src.storage_summary().find("Q8_0 x 2"), std::string::npos) << src.storage_summary();
  EXPECT_NE(src.storage_summary().find("wan"), std::string::npos);
}

// Which tensors a converter keeps in f32 (vectors, the patch embedding, modulation tables).
bool kept_f32(const std::string& name, const Tensor& t) {
  return t.ndim() != 2 || name.find("modulation") != std::string::npos;
}

// The golden tiny DiT as a Wan GGUF: original names without prefix, 2-d weights in `type`
// (rows that are not whole blocks stored reshaped with their true shape in the metadata), the
// rest in F32, the modulation tables with their leading 1 dropped as GGUF writers do.
std::string write_gguf_dit(const Scratch& dir, GgmlType type, Named* expected = nullptr) {
  const std::string prefix = "model.diffusion_model.";
  GgufWriter w;
  w.string("general.architecture", "wan");
  w.u32("general.quantization_version", 2);
  const io::GgmlTypeInfo* info = io::ggml_type_info(static_cast<uint32_t>(type));
  for (const auto& [full, t] : read_golden("dit_tiny.original.safetensors")) {
    const std::string name = full.substr(prefix.size());
    if (kept_f32(name, t)) {
      Tensor stored = t;
      if (t.ndim() == 3 && t.dim(0) == 1) stored = t.reshape({t.dim(1), t.dim(2)});
      w.tensor(name, GgmlType::F32, stored);
    } else if (t.dim(1) % info->block == 0) {
      w.tensor(name, type, t);
    } else {
      w.tensor(name, type, t, info->block);
    }
    if (expected) expected->emplace_back(name, t);
  }
  const std::string path = dir.file("dit.gguf");
  w.write(path);
  return path;
}

struct DitCase {
  GgmlType type;
  double tolerance;  // relative L2 of the stock forward against the golden f32 output
};

class GgufDit : public ::testing::TestWithParam<DitCase> {};

TEST_P(GgufDit, WeightsWithinBoundAndForwardWithinTolerance) {
  const DitCase c = GetParam();
  const io::GgmlTypeInfo* info = io::ggml_type_info(static_cast<uint32_t>(c.type));
  Scratch dir;
  Named golden;
  const std::string path = write_gguf_dit(dir, c.type, &golden);
  const io::TensorSource src = io::TensorSource::open(path);
  for (const auto& [name, want] : golden) {
    const Tensor got = src.tensor(name).to(DType::F32);
    ASSERT_EQ(got.numel(), want.numel()) << name;
    const std::vector<float> w = want.to_float_vector();
    const bool quantized = !kept_f32(name, want);
    for (int64_t i = 0; i < got.numel(); ++i) {
      const double err =
          std::fabs(static_cast<double>(got.data<float>()[i]) - w[static_cast<size_t>(i)]);
      if (!quantized) {
        ASSERT_EQ(err, 0.0) << name;
        continue;
      }
      const float* block = w.data() + i / info->block * info->block;
      ASSERT_LE(err, quant_bound(c.type, info->block == 1 ? w.data() + i : block))
          << type_name(c.type) << " " << name << "[" << i << "]";
    }
  }
  const double err = dit_forward_error(path);
  std::printf("[ measured ] %-5s DiT forward relative L2 %.3e (tolerance %.0e)\n",
              type_name(c.type).c_str(), err, c.tolerance);
  EXPECT_LT(err, c.tolerance);
}

INSTANTIATE_TEST_SUITE_P(
    Types, GgufDit,
    ::testing::Values(DitCase{GgmlType::F32, 1e-4}, DitCase{GgmlType::F16, 1e-3},
                      DitCase{GgmlType::BF16, 1e-2}, DitCase{GgmlType::Q8_0, 2e-2},
                      DitCase{GgmlType::Q6_K, 3e-2}, DitCase{GgmlType::Q5_1, 5e-2},
                      DitCase{GgmlType::Q5_0, 5e-2}, DitCase{GgmlType::Q5_K, 5e-2},
                      DitCase{GgmlType::Q4_1, 1e-1}, DitCase{GgmlType::Q4_0, 1e-1},
                      DitCase{GgmlType::Q4_K, 1e-1}, DitCase{GgmlType::Q3_K, 2e-1}),
    [](const auto& param_info) { return type_name(param_info.param.type); });

TEST(GgufDitFile, OtherArchitecturesAreRefused) {
  Scratch dir;
  GgufWriter w;
  w.string("general.architecture", "t5encoder");
  w.tensor("token_embd.weight", GgmlType::F32, Tensor::zeros({4, 32}));
  w.write(dir.file("t5.gguf"));
  const std::string msg = error_of([&] {
    models::WanDit::load(dir.file("t5.gguf"), Device::CPU, kGolden + "/dit_tiny.config.json");
  });
  EXPECT_MENTIONS(msg, "'t5encoder'");
  EXPECT_MENTIONS(msg, dir.file("t5.gguf"));
}

}  // namespace
}  // namespace freeswim::formats
