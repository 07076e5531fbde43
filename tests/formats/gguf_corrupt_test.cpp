// Damaged GGUF files, one defect each, written from a valid file: each is refused with an Error
// that names the file and, where the defect belongs to one, the key or tensor; nothing crashes
// (the ASan build runs these too).
#include <gtest/gtest.h>

#include <cstdio>
#include <cstring>

#include "core/error.h"
#include "format_util.h"
#include "gguf_writer.h"
#include "io/gguf.h"

namespace freeswim::formats {
namespace {

using io::GgufFile;

class GgufCorrupt : public ::testing::Test {
 protected:
  void SetUp() override {
    w_.string("general.architecture", "wan");
    w_.strings("tokenizer.ggml.tokens", {"<pad>", "</s>", "a"});
    w_.tensor("alpha", GgmlType::F32, Tensor::from_vector({2, 32}, std::vector<float>(64, 0.5f)));
    w_.tensor("beta", GgmlType::Q8_0, Tensor::from_vector({1, 64}, std::vector<float>(64, 0.25f)));
    valid_ = w_.bytes();
  }

  // The message of opening `bytes` written to a file.
  std::string open_error(const std::vector<uint8_t>& bytes) {
    write(bytes);
    return error_of([&] { GgufFile::open(path_); });
  }
  void write(const std::vector<uint8_t>& bytes) {
    std::FILE* f = std::fopen(path_.c_str(), "wb");
    std::fwrite(bytes.data(), 1, bytes.size(), f);
    std::fclose(f);
  }
  // A copy of the valid image with `n` little-endian bytes of `v` at `at`.
  std::vector<uint8_t> patched(size_t at, uint64_t v, int n = 8) const {
    std::vector<uint8_t> b = valid_;
    for (int i = 0; i < n; ++i) b[at + static_cast<size_t>(i)] = static_cast<uint8_t>(v >> (8 * i));
    return b;
  }
  const GgufWriter::Layout& layout() const { return w_.layout(); }
  // Offsets inside one tensor description.
  size_t info_at(const std::string& name) const { return layout().tensor_info_at.at(name); }
  size_t ndims_at(const std::string& name) const { return info_at(name) + 8 + name.size(); }
  size_t dim_at(const std::string& name, int d) const {
    return ndims_at(name) + 4 + 8 * static_cast<size_t>(d);
  }
  size_t type_at(const std::string& name, int n_dims) const { return dim_at(name, n_dims); }
  size_t offset_at(const std::string& name, int n_dims) const { return type_at(name, n_dims) + 4; }

  GgufWriter w_;
  std::vector<uint8_t> valid_;
  Scratch dir_;
  std::string path_ = dir_.file("bad.gguf");
};

TEST_F(GgufCorrupt, ValidFileOpens) {
  write(valid_);
  const auto f = GgufFile::open(path_);
  EXPECT_EQ(f->tensors().size(), 2u);
  EXPECT_EQ(f->find("beta")->shape, (Shape{1, 64}));
  EXPECT_EQ(f->tensor("alpha").data<float>()[63], 0.5f);
}

TEST_F(GgufCorrupt, TruncatedAnywhere) {
  // Every cut of the file: in the header, a key, a value, a tensor description, the data.
  for (size_t n = 0; n < valid_.size(); ++n) {
    const std::vector<uint8_t> cut(valid_.begin(), valid_.begin() + static_cast<std::ptrdiff_t>(n));
    const std::string msg = open_error(cut);
    ASSERT_NE(msg.find(path_), std::string::npos) << "cut at " << n << ": " << msg;
  }
  // A cut in the data section names the tensor that no longer fits.
  std::vector<uint8_t> cut = valid_;
  cut.resize(cut.size() - 5);
  const std::string msg = open_error(cut);
  EXPECT_MENTIONS(msg, "'beta'");
  EXPECT_MENTIONS(msg, "outside the data section");
}

TEST_F(GgufCorrupt, NotGgufOrWrongVersion) {
  std::vector<uint8_t> b = valid_;
  b[0] = 'X';
  EXPECT_MENTIONS(open_error(b), "not a GGUF file");
  EXPECT_MENTIONS(open_error(patched(4, 2, 4)), "version 2");
  EXPECT_MENTIONS(open_error(patched(4, 0x03000000u, 4)), "big-endian");
}

TEST_F(GgufCorrupt, LyingCounts) {
  EXPECT_MENTIONS(open_error(patched(layout().tensor_count_at, uint64_t{1} << 60)),
                  "tensor descriptions cannot fit");
  EXPECT_MENTIONS(open_error(patched(layout().kv_count_at, ~uint64_t{0})),
                  "metadata entries cannot fit");
  // One more tensor than described: the data of the last one is read as a description.
  EXPECT_MENTIONS(open_error(patched(layout().tensor_count_at, 3)), path_);
  // An array claiming more elements than the file holds.
  const size_t tokens = layout().kv_at.at("tokenizer.ggml.tokens");
  const size_t count_at = tokens + 8 + std::strlen("tokenizer.ggml.tokens") + 4 + 4;
  const std::string msg = open_error(patched(count_at, uint64_t{1} << 40));
  EXPECT_MENTIONS(msg, "'tokenizer.ggml.tokens'");
  EXPECT_MENTIONS(msg, "cannot fit");
}

TEST_F(GgufCorrupt, StringLengthOf2To63) {
  // The key length of the first entry, then the length of the architecture string.
  const size_t key_at = layout().kv_at.at("general.architecture");
  EXPECT_MENTIONS(open_error(patched(key_at, uint64_t{1} << 63)),
                  "string of 9223372036854775808 bytes");
  const size_t value_at = key_at + 8 + std::strlen("general.architecture") + 4;
  const std::string msg = open_error(patched(value_at, uint64_t{1} << 63));
  EXPECT_MENTIONS(msg, "'general.architecture'");
  EXPECT_MENTIONS(msg, "9223372036854775808");
  // A tensor name.
  EXPECT_MENTIONS(open_error(patched(info_at("beta"), uint64_t{1} << 63)), "name of tensor 1");
}

TEST_F(GgufCorrupt, OffsetsOutside) {
  const std::string msg = open_error(patched(offset_at("beta", 2), uint64_t{1} << 20));
  EXPECT_MENTIONS(msg, "'beta'");
  EXPECT_MENTIONS(msg, "outside the data section");
  // Near 2^64: the end would wrap around.
  EXPECT_MENTIONS(open_error(patched(offset_at("beta", 2), ~uint64_t{0} - 31)), "'beta'");
  EXPECT_MENTIONS(open_error(patched(offset_at("beta", 2), 8)), "not a multiple of the alignment");
  // Both tensors at offset 0.
  EXPECT_MENTIONS(open_error(patched(offset_at("beta", 2), 0)), "overlap");
}

TEST_F(GgufCorrupt, UnknownAndUnreadTypes) {
  std::string msg = open_error(patched(type_at("alpha", 2), 99, 4));
  EXPECT_MENTIONS(msg, "'alpha'");
  EXPECT_MENTIONS(msg, "unknown type 99");
  msg = open_error(patched(type_at("alpha", 2), 16, 4));  // IQ2_XXS
  EXPECT_MENTIONS(msg, "IQ2_XXS");
  EXPECT_MENTIONS(msg, "does not read");
  // An unknown metadata value type.
  const size_t type_field =
      layout().kv_at.at("general.architecture") + 8 + std::strlen("general.architecture");
  EXPECT_MENTIONS(open_error(patched(type_field, 13, 4)), "unknown value type 13");
}

TEST_F(GgufCorrupt, OverflowInDimensions) {
  std::vector<uint8_t> b = patched(dim_at("alpha", 0), uint64_t{1} << 32);
  for (int i = 0; i < 8; ++i)
    b[dim_at("alpha", 1) + static_cast<size_t>(i)] =
        static_cast<uint8_t>((uint64_t{1} << 32) >> (8 * i));
  std::string msg = open_error(b);
  EXPECT_MENTIONS(msg, "'alpha'");
  EXPECT_MENTIONS(msg, "overflow");
  EXPECT_MENTIONS(open_error(patched(dim_at("alpha", 0), ~uint64_t{0})), "overflow");
  EXPECT_MENTIONS(open_error(patched(ndims_at("alpha"), 9, 4)), "9 dimensions");
  EXPECT_MENTIONS(open_error(patched(ndims_at("alpha"), 0, 4)), "0 dimensions");
  // A zero dimension beside two whose product overflows (found by the fuzzer): the shape is
  // multiplied out in the other order later.
  GgufWriter zero;
  zero.tensor("z", 0, {0, uint64_t{1} << 56, uint64_t{1} << 45}, {});
  EXPECT_MENTIONS(open_error(zero.bytes()), "'z': dimensions overflow");
  // Rows of the block type that are not whole blocks.
  msg = open_error(patched(dim_at("beta", 0), 48));
  EXPECT_MENTIONS(msg, "not whole blocks");
}

TEST_F(GgufCorrupt, DuplicatesAndBadValues) {
  GgufWriter w;
  w.u32("a.b", 1);
  w.u32("a.b", 2);
  EXPECT_MENTIONS(open_error(w.bytes()), "'a.b' appears twice");
  GgufWriter t;
  t.tensor("x", GgmlType::F32, Tensor::zeros({4}));
  t.tensor("x", GgmlType::F32, Tensor::zeros({4}));
  EXPECT_MENTIONS(open_error(t.bytes()), "'x' is described twice");
  GgufWriter bad_bool;
  bad_bool.raw("flag", static_cast<uint32_t>(GgufValueType::BOOL), {2});
  EXPECT_MENTIONS(open_error(bad_bool.bytes()), "'flag'");
  GgufWriter align;
  align.u32("general.alignment", 24);
  EXPECT_MENTIONS(open_error(align.bytes()), "general.alignment");
  GgufWriter shape;
  shape.i32s("comfy.gguf.orig_shape.x", {3, 3});
  shape.tensor("x", GgmlType::F32, Tensor::zeros({8}));
  const std::string msg = open_error(shape.bytes());
  EXPECT_MENTIONS(msg, "'x'");
  EXPECT_MENTIONS(msg, "[3, 3]");
  GgufWriter stray;
  stray.i32s("comfy.gguf.orig_shape.nothing", {1});
  EXPECT_MENTIONS(open_error(stray.bytes()), "'nothing'");
  GgufWriter nested;
  std::vector<uint8_t> v;  // ARRAY of ARRAY of ARRAY of ARRAY of UINT8, each of one element
  for (int depth = 0; depth < 4; ++depth) {
    const uint32_t elem = depth < 3 ? 9 : 0;
    for (int i = 0; i < 4; ++i) v.push_back(static_cast<uint8_t>(elem >> (8 * i)));
    for (int i = 0; i < 8; ++i) v.push_back(i == 0 ? 1 : 0);
  }
  v.push_back(7);
  nested.raw("deep", 9, v);
  EXPECT_MENTIONS(open_error(nested.bytes()), "nested more than");
}

}  // namespace
}  // namespace freeswim::formats
