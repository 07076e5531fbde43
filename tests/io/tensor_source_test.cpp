// TensorSource over a single file, a sharded index and a directory, and the ways an index and
// its shards can disagree.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "core/error.h"
#include "io/safetensors.h"
#include "io_test_util.h"

namespace freeswim::io::test {
namespace {

#define EXPECT_MENTIONS(msg, text) \
  EXPECT_NE((msg).find(text), std::string::npos) << "message: " << (msg) << "\nlacks: " << (text)

void write_text(const std::string& path, const std::string& text) {
  std::ofstream(path) << text;
}

// A diffusers-style sharded checkpoint in `dir`: two shards and the index naming them.
class Sharded : public ::testing::Test {
 protected:
  void SetUp() override {
    write_safetensors(shard1_, {{"blocks.0.w", Tensor::from_vector({2, 2}, {1, 2, 3, 4})},
                                {"blocks.0.b", Tensor::from_vector({2}, {5, 6})}});
    write_safetensors(shard2_, {{"head.w", Tensor::from_vector({1, 2}, {7, 8}).to(DType::BF16)}});
    write_index(R"("blocks.0.w": ")" + kShard1 + R"(", "blocks.0.b": ")" + kShard1 +
                R"(", "head.w": ")" + kShard2 + "\"");
  }
  void write_index(const std::string& weight_map_body) {
    write_text(index_,
               R"({"metadata": {"total_size": 28}, "weight_map": {)" + weight_map_body + "}}");
  }
  std::string open_error(const std::string& path) {
    return error_of([&] { TensorSource::open(path); });
  }

  const std::string kShard1 = "diffusion_pytorch_model-00001-of-00002.safetensors";
  const std::string kShard2 = "diffusion_pytorch_model-00002-of-00002.safetensors";
  TempDir dir_;
  std::string shard1_ = dir_.file(kShard1);
  std::string shard2_ = dir_.file(kShard2);
  std::string index_ = dir_.file("diffusion_pytorch_model.safetensors.index.json");
};

TEST(TensorSourceSingle, FileAndDirectory) {
  TempDir dir;
  const std::string path = write_valid_file(dir, "diffusion_pytorch_model.safetensors");
  for (const std::string& p : {path, dir.path()}) {
    SCOPED_TRACE(p);
    TensorSource src = TensorSource::open(p);
    EXPECT_EQ(src.path(), p);
    EXPECT_EQ(src.names(), (std::vector<std::string>{"alpha", "beta", "gamma"}));
    EXPECT_TRUE(src.contains("gamma"));
    EXPECT_FALSE(src.contains("delta"));
    EXPECT_EQ(src.find("delta"), nullptr);
    ASSERT_NE(src.find("alpha"), nullptr);
    EXPECT_EQ(src.find("alpha")->shape, (Shape{2, 3}));
    EXPECT_EQ(src.tensor("gamma").to_float_vector(), (std::vector<float>{-1, -2, -3}));
    EXPECT_EQ(src.file_of("beta"), path);
    std::string msg = error_of([&] { src.tensor("delta"); });
    EXPECT_MENTIONS(msg, p);
    EXPECT_MENTIONS(msg, "'delta'");
    msg = error_of([&] { src.file_of("delta"); });
    EXPECT_MENTIONS(msg, "'delta'");
  }
}

TEST(TensorSourceSingle, DirectoryMustHoldExactlyOneCheckpoint) {
  TempDir dir;
  std::string msg = error_of([&] { TensorSource::open(dir.path()); });
  EXPECT_MENTIONS(msg, dir.path());
  EXPECT_MENTIONS(msg, "no *.safetensors");

  write_valid_file(dir, "diffusion_pytorch_model.safetensors");
  write_valid_file(dir, "diffusion_pytorch_model.fp16.safetensors");
  msg = error_of([&] { TensorSource::open(dir.path()); });
  EXPECT_MENTIONS(msg, dir.path());
  EXPECT_MENTIONS(msg, "diffusion_pytorch_model.safetensors");
  EXPECT_MENTIONS(msg, "diffusion_pytorch_model.fp16.safetensors");
}

TEST_F(Sharded, IndexAndDirectoryOpenAllShards) {
  for (const std::string& p : {index_, dir_.path()}) {
    SCOPED_TRACE(p);
    TensorSource src = TensorSource::open(p);
    EXPECT_EQ(src.names(), (std::vector<std::string>{"blocks.0.b", "blocks.0.w", "head.w"}));
    EXPECT_EQ(src.tensor("blocks.0.w").to_float_vector(), (std::vector<float>{1, 2, 3, 4}));
    EXPECT_EQ(src.tensor("head.w").dtype(), DType::BF16);
    EXPECT_EQ(src.tensor("head.w").to_float_vector(), (std::vector<float>{7, 8}));
    EXPECT_EQ(src.file_of("blocks.0.b"), shard1_);
    EXPECT_EQ(src.file_of("head.w"), shard2_);
    EXPECT_EQ(src.find("head.w")->shape, (Shape{1, 2}));
  }
}

TEST_F(Sharded, ShardSpellingsAreNormalised) {
  write_index(R"("blocks.0.w": "./)" + kShard1 + R"(", "blocks.0.b": ")" + kShard1 +
              R"(", "head.w": ")" + kShard2 + "\"");
  TensorSource src = TensorSource::open(index_);
  EXPECT_EQ(src.file_of("blocks.0.w"), src.file_of("blocks.0.b"));
  EXPECT_EQ(src.tensor("blocks.0.w").to_float_vector(), (std::vector<float>{1, 2, 3, 4}));
}

TEST_F(Sharded, ShardListedButMissing) {
  std::filesystem::remove(shard2_);
  std::string msg = open_error(index_);
  EXPECT_MENTIONS(msg, index_);
  EXPECT_MENTIONS(msg, kShard2);
  EXPECT_MENTIONS(msg, "'head.w'");
}

TEST_F(Sharded, CorruptShardNamesIndexAndShard) {
  std::vector<uint8_t> b = read_bytes(shard2_);
  b.resize(b.size() - 1);
  write_bytes(shard2_, b);
  std::string msg = open_error(index_);
  EXPECT_MENTIONS(msg, index_);
  EXPECT_MENTIONS(msg, shard2_);
  EXPECT_MENTIONS(msg, "'head.w'");
}

TEST_F(Sharded, TensorNamedByIndexButAbsentFromShard) {
  write_index(R"("blocks.0.w": ")" + kShard1 + R"(", "blocks.0.b": ")" + kShard1 +
              R"(", "head.w": ")" + kShard2 + R"(", "head.b": ")" + kShard2 + "\"");
  std::string msg = open_error(index_);
  EXPECT_MENTIONS(msg, index_);
  EXPECT_MENTIONS(msg, "'head.b'");
  EXPECT_MENTIONS(msg, shard2_);
  EXPECT_MENTIONS(msg, "does not contain it");
}

TEST_F(Sharded, ShardHoldsTensorTheIndexDoesNotList) {
  write_index(R"("blocks.0.w": ")" + kShard1 + R"(", "head.w": ")" + kShard2 + "\"");
  std::string msg = open_error(index_);
  EXPECT_MENTIONS(msg, index_);
  EXPECT_MENTIONS(msg, "'blocks.0.b'");
  EXPECT_MENTIONS(msg, "does not list");
}

TEST_F(Sharded, NameInTwoShards) {
  write_safetensors(shard2_, {{"head.w", Tensor::from_vector({1, 2}, {7, 8})},
                              {"blocks.0.b", Tensor::from_vector({2}, {5, 6})}});
  std::string msg = open_error(index_);
  EXPECT_MENTIONS(msg, index_);
  EXPECT_MENTIONS(msg, "'blocks.0.b'");
  EXPECT_MENTIONS(msg, "assigns to '" + kShard1 + "'");
}

TEST_F(Sharded, DuplicateNameInWeightMap) {
  write_index(R"("blocks.0.w": ")" + kShard1 + R"(", "blocks.0.b": ")" + kShard1 +
              R"(", "head.w": ")" + kShard2 + R"(", "head.w": ")" + kShard1 + "\"");
  std::string msg = open_error(index_);
  EXPECT_MENTIONS(msg, index_);
  EXPECT_MENTIONS(msg, "duplicate key 'head.w' inside 'weight_map'");
}

TEST_F(Sharded, MalformedIndex) {
  write_text(index_, R"({"weight_map": {"a": )");
  std::string msg = open_error(index_);
  EXPECT_MENTIONS(msg, index_);
  EXPECT_MENTIONS(msg, "malformed JSON");

  write_text(index_, R"({"metadata": {}})");
  msg = open_error(index_);
  EXPECT_MENTIONS(msg, index_);
  EXPECT_MENTIONS(msg, "weight_map");

  write_index(R"("head.w": 3)");
  msg = open_error(index_);
  EXPECT_MENTIONS(msg, "'head.w'");
  EXPECT_MENTIONS(msg, "not a string");
}

TEST_F(Sharded, ShardPathsMustStayBesideTheIndex) {
  for (const std::string& shard : {"../" + kShard1, "/etc/" + kShard1, std::string("")}) {
    write_index(R"("head.w": ")" + shard + "\"");
    std::string msg = open_error(index_);
    EXPECT_MENTIONS(msg, index_);
    EXPECT_MENTIONS(msg, "'head.w'");
    EXPECT_MENTIONS(msg, "not a path relative to the index");
  }
}

TEST_F(Sharded, DirectoryWithIndexAndAnUnlistedFile) {
  const std::string stray = write_valid_file(dir_, "diffusion_pytorch_model.safetensors");
  std::string msg = open_error(dir_.path());
  EXPECT_MENTIONS(msg, dir_.path());
  EXPECT_MENTIONS(msg, "diffusion_pytorch_model.safetensors'");
  // Naming the index itself is unambiguous.
  EXPECT_EQ(TensorSource::open(index_).names().size(), 3u);
}

TEST_F(Sharded, DirectoryWithTwoIndexes) {
  std::filesystem::copy_file(index_, dir_.file("other.safetensors.index.json"));
  std::string msg = open_error(dir_.path());
  EXPECT_MENTIONS(msg, dir_.path());
  EXPECT_MENTIONS(msg, "several shard indexes");
}

}  // namespace
}  // namespace freeswim::io::test
