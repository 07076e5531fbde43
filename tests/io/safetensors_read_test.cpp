// Reading real files (the golden checkpoints), views of bf16 data, and write -> read round
// trips of every supported dtype.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <filesystem>

#include "core/dtype.h"
#include "core/error.h"
#include "golden_dir.h"
#include "io/safetensors.h"
#include "io/strict_json.h"
#include "io_test_util.h"

namespace freeswim::io::test {
namespace {

TEST(SafetensorsRead, EveryGoldenFileValidates) {
  int files = 0;
  for (const auto& e : std::filesystem::directory_iterator(kGolden)) {
    if (e.path().extension() != ".safetensors") continue;
    auto f = SafetensorsFile::open(e.path().string());
    EXPECT_FALSE(f->tensors().empty()) << e.path();
    for (const TensorInfo& t : f->tensors()) {
      EXPECT_EQ(t.nbytes, static_cast<size_t>(shape_numel(t.shape)) * dtype_size(t.dtype))
          << t.name;
      EXPECT_EQ(f->find(t.name), &t);
    }
    ++files;
  }
  EXPECT_GE(files, 3) << "golden directory " << kGolden << " holds too few safetensors files";
}

TEST(SafetensorsRead, WindowMaskMatchesItsJson) {
  auto f = SafetensorsFile::open(kGolden + "/window_mask.safetensors");
  const nlohmann::json meta = read_json_file(kGolden + "/window_mask.json", 8);
  ASSERT_TRUE(meta.contains("tensors"));
  EXPECT_EQ(meta["tensors"].size(), f->tensors().size());
  for (const auto& [name, shape] : meta["tensors"].items()) {
    const TensorInfo* t = f->find(name);
    ASSERT_NE(t, nullptr) << name;
    EXPECT_EQ(t->dtype, DType::F32);
    EXPECT_EQ(t->shape, shape.get<Shape>()) << name;
  }
  // The mask is 0/1 and every token may attend to itself.
  Tensor mask = f->tensor("mask");
  ASSERT_EQ(mask.ndim(), 2);
  const int64_t n = mask.dim(0);
  std::vector<float> v = mask.to_float_vector();
  for (float x : v) ASSERT_TRUE(x == 0.f || x == 1.f) << x;
  for (int64_t i = 0; i < n; ++i) EXPECT_EQ(v[static_cast<size_t>(i * n + i)], 1.f) << i;
}

TEST(SafetensorsRead, Bf16FileIsTheRoundedFp32File) {
  auto bf = SafetensorsFile::open(kGolden + "/dit_tiny.original.bf16.safetensors");
  auto fp = SafetensorsFile::open(kGolden + "/dit_tiny.original.safetensors");
  ASSERT_EQ(bf->tensors().size(), fp->tensors().size());
  for (const TensorInfo& t : bf->tensors()) {
    ASSERT_EQ(t.dtype, DType::BF16) << t.name;
    const std::string full = "model.diffusion_model." + t.name;
    const TensorInfo* ref = fp->find(full);
    ASSERT_NE(ref, nullptr) << full;
    ASSERT_EQ(ref->dtype, DType::F32);
    ASSERT_EQ(ref->shape, t.shape) << t.name;

    // The view aliases the mapped bytes: no copy for an aligned tensor.
    Tensor view = bf->tensor(t.name);
    EXPECT_EQ(view.raw(), static_cast<const void*>(bf->bytes(t)));
    EXPECT_EQ(view.dtype(), DType::BF16);
    EXPECT_EQ(view.shape(), t.shape);

    std::vector<float> got = view.to_float_vector();
    std::vector<float> want = fp->tensor(full).to_float_vector();
    double num = 0, den = 0;
    for (size_t i = 0; i < got.size(); ++i) {
      num += (got[i] - want[i]) * static_cast<double>(got[i] - want[i]);
      den += want[i] * static_cast<double>(want[i]);
    }
    EXPECT_LE(std::sqrt(num / std::max(den, 1e-30)), 1e-2) << t.name;
  }
}

TEST(SafetensorsRead, RoundTripEveryDtype) {
  TempDir dir;
  const std::string path = dir.file("rt.safetensors");
  std::vector<std::pair<std::string, Tensor>> in;
  // Sizes chosen so that a packing by name alone would misalign the 8-byte types.
  const DType types[] = {DType::U8, DType::BF16, DType::F16, DType::F32, DType::I32, DType::I64};
  int64_t count = 3;
  for (DType t : types) {
    Tensor x = Tensor::empty({count}, t);
    auto* p = static_cast<uint8_t*>(x.raw());
    for (size_t i = 0; i < x.nbytes(); ++i) p[i] = static_cast<uint8_t>(i * 37 + count);
    in.emplace_back(std::string("t_") + std::string(dtype_name(t)), x);
    count += 2;
  }
  in.emplace_back("scalar", Tensor::from_vector({}, {42.f}));
  in.emplace_back("empty", Tensor::empty({0, 5}, DType::F32));
  write_safetensors(path, in, {{"format", "pt"}, {"note", "round trip"}});
  EXPECT_FALSE(std::filesystem::exists(path + ".tmp"));

  auto f = SafetensorsFile::open(path);
  EXPECT_EQ(f->metadata().at("format"), "pt");
  EXPECT_EQ(f->metadata().at("note"), "round trip");
  ASSERT_EQ(f->tensors().size(), in.size());
  for (const auto& [name, t] : in) {
    SCOPED_TRACE(name);
    Tensor got = f->tensor(name);
    EXPECT_EQ(got.dtype(), t.dtype());
    EXPECT_EQ(got.shape(), t.shape());
    ASSERT_EQ(got.nbytes(), t.nbytes());
    EXPECT_EQ(std::memcmp(got.raw(), t.raw(), t.nbytes()), 0);
    EXPECT_EQ(reinterpret_cast<uintptr_t>(got.raw()) % dtype_size(t.dtype()), 0u);
  }

  // Layout: header padded to 8 bytes, tensors packed with no gap.
  const std::vector<uint8_t> bytes = read_bytes(path);
  const Parts parts = split(bytes);
  EXPECT_EQ(parts.header.size() % 8, 0u);
  size_t total = 0;
  for (const auto& [name, t] : in) total += t.nbytes();
  EXPECT_EQ(parts.data.size(), total);
}

TEST(SafetensorsRead, OverwriteReplacesTheFile) {
  TempDir dir;
  const std::string path = dir.file("w.safetensors");
  write_safetensors(path, {{"a", Tensor::from_vector({2}, {1, 2})}});
  write_safetensors(path, {{"b", Tensor::from_vector({1}, {3})}});
  auto f = SafetensorsFile::open(path);
  EXPECT_EQ(f->find("a"), nullptr);
  EXPECT_EQ(f->tensor("b").to_float_vector(), std::vector<float>{3.f});
}

TEST(SafetensorsRead, WriteRefusesDuplicateAndReservedNames) {
  TempDir dir;
  const std::string path = dir.file("bad.safetensors");
  Tensor x = Tensor::from_vector({1}, {1});
  std::string msg = error_of([&] { write_safetensors(path, {{"dup", x}, {"dup", x}}); });
  EXPECT_NE(msg.find(path), std::string::npos) << msg;
  EXPECT_NE(msg.find("'dup'"), std::string::npos) << msg;
  msg = error_of([&] { write_safetensors(path, {{"__metadata__", x}}); });
  EXPECT_NE(msg.find("__metadata__"), std::string::npos) << msg;
  EXPECT_FALSE(std::filesystem::exists(path));
  EXPECT_FALSE(std::filesystem::exists(path + ".tmp"));
}

TEST(SafetensorsRead, MisalignedDataIsCopiedNotViewed) {
  // A header of odd length puts the data section at an odd address; reading floats through
  // it would be undefined (UBSan checks this build), so tensor() must copy.
  TempDir dir;
  Parts p;
  p.header = R"({"x":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})";
  if (p.header.size() % 2 == 0) p.header += ' ';
  const float vals[2] = {1.5f, -7.25f};
  p.data.resize(8);
  std::memcpy(p.data.data(), vals, 8);
  const std::string path = dir.file("odd.safetensors");
  write_bytes(path, join(p));
  auto f = SafetensorsFile::open(path);
  Tensor x = f->tensor("x");
  EXPECT_NE(x.raw(), static_cast<const void*>(f->bytes(*f->find("x"))));
  EXPECT_EQ(x.to_float_vector(), (std::vector<float>{1.5f, -7.25f}));
}

TEST(SafetensorsRead, ViewKeepsTheMappingAlive) {
  TempDir dir;
  const std::string path = write_valid_file(dir);
  Tensor alpha;
  {
    auto f = SafetensorsFile::open(path);
    alpha = f->tensor("alpha");
  }
  std::filesystem::remove(path);
  EXPECT_EQ(alpha.to_float_vector(), (std::vector<float>{0, 1, 2, 3, 4, 5}));
}

TEST(SafetensorsRead, ParseInMemoryAndEmptyHeader) {
  Parts p;
  p.header = "{}      ";
  const std::vector<uint8_t> img = join(p);
  auto f = SafetensorsFile::parse("in-memory", img.data(), img.size());
  EXPECT_TRUE(f->tensors().empty());
  EXPECT_EQ(f->path(), "in-memory");

  TempDir dir;
  const std::vector<uint8_t> file = read_bytes(write_valid_file(dir));
  auto g = SafetensorsFile::parse("copy", file.data(), file.size());
  EXPECT_EQ(g->tensor("gamma").to_float_vector(), (std::vector<float>{-1, -2, -3}));
  EXPECT_EQ(g->tensor("beta").to_float_vector(), (std::vector<float>{1, -2, 0.5f, 3}));
}

TEST(SafetensorsRead, MissingFileNamesThePath) {
  const std::string path = "/nonexistent/dir/model.safetensors";
  std::string msg = error_of([&] { SafetensorsFile::open(path); });
  EXPECT_NE(msg.find(path), std::string::npos) << msg;
}

}  // namespace
}  // namespace freeswim::io::test
