// The tokenizer against the golden sentencepiece cases (every case in the json), plus padding,
// truncation, model discovery in checkpoint layouts and the errors a user can cause.
#include "text/tokenizer.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "golden_dir.h"

namespace freeswim::text {
namespace {

namespace fs = std::filesystem;

const std::string kModel = kGolden + "/spiece_tiny.model";

nlohmann::json golden_cases() {
  std::ifstream in(kGolden + "/spiece_tiny.cases.json");
  EXPECT_TRUE(in.good()) << "missing " << kGolden << "/spiece_tiny.cases.json";
  return nlohmann::json::parse(in).at("cases");
}

TEST(Tokenizer, MatchesEveryGoldenCase) {
  Tokenizer tok = Tokenizer::load(kModel);
  EXPECT_EQ(tok.eos_id(), 1);
  EXPECT_EQ(tok.pad_id(), 0);
  nlohmann::json cases = golden_cases();
  ASSERT_FALSE(cases.empty());
  for (const auto& [text, ids] : cases.items()) {
    SCOPED_TRACE(text);
    EXPECT_EQ(tok.encode(text), ids.get<std::vector<int32_t>>());
  }
}

TEST(Tokenizer, PadsToLengthWithAMask) {
  Tokenizer tok = Tokenizer::load(kModel);
  const nlohmann::json cases = golden_cases();
  for (const auto& [text, ids_json] : cases.items()) {
    auto ids = ids_json.get<std::vector<int32_t>>();
    Tokens t = tok.tokenize(text, 64);
    ASSERT_EQ(t.ids.size(), 64u);
    ASSERT_EQ(t.mask.size(), 64u);
    EXPECT_EQ(t.length, static_cast<int64_t>(ids.size()));
    for (size_t i = 0; i < 64; ++i) {
      EXPECT_EQ(t.ids[i], i < ids.size() ? ids[i] : 0) << text << " position " << i;
      EXPECT_EQ(t.mask[i], i < ids.size() ? 1 : 0) << text << " position " << i;
    }
  }
  EXPECT_EQ(tok.tokenize("a gray cat").ids.size(), 512u);  // Wan's length by default
}

TEST(Tokenizer, TruncationKeepsTheEndOfSequence) {
  Tokenizer tok = Tokenizer::load(kModel);
  const std::string text = "a gray cat, cinematic";
  std::vector<int32_t> full = tok.encode(text);
  ASSERT_GT(full.size(), 4u);
  Tokens t = tok.tokenize(text, 4);
  EXPECT_EQ(t.ids, (std::vector<int32_t>{full[0], full[1], full[2], 1}));
  EXPECT_EQ(t.mask, (std::vector<int32_t>{1, 1, 1, 1}));
  EXPECT_EQ(t.length, 4);
  EXPECT_EQ(tok.tokenize(text, 1).ids, std::vector<int32_t>{1});
  EXPECT_THROW(tok.tokenize(text, 0), Error);
}

TEST(Tokenizer, TokenizePromptCleansFirst) {
  Tokenizer tok = Tokenizer::load(kModel);
  EXPECT_EQ(tok.tokenize_prompt("  a&nbsp;gray &amp;amp; cat,\tcinematic \n").ids,
            tok.tokenize("a gray & cat, cinematic").ids);
}

TEST(Tokenizer, FindsTheModelInCheckpointLayouts) {
  fs::path root = fs::path(testing::TempDir()) / "fs_tokenizer_layouts";
  fs::remove_all(root);
  for (const char* sub : {"flat", "diffusers/tokenizer", "wan/google/umt5-xxl"}) {
    fs::create_directories(root / sub);
    fs::copy_file(kModel, root / sub / "spiece.model");
  }
  Tokenizer reference = Tokenizer::load(kModel);
  for (const char* dir : {"flat", "diffusers", "wan"}) {
    Tokenizer t = Tokenizer::load((root / dir).string());
    EXPECT_EQ(t.path(), (root / dir).string() + (std::string(dir) == "flat" ? "/spiece.model"
                                                 : std::string(dir) == "diffusers"
                                                     ? "/tokenizer/spiece.model"
                                                     : "/google/umt5-xxl/spiece.model"));
    EXPECT_EQ(t.encode("a gray cat"), reference.encode("a gray cat"));
    EXPECT_EQ(t.vocab_size(), reference.vocab_size());
  }
  fs::remove_all(root);
}

void expect_error_naming(const std::string& path, const std::string& what) {
  try {
    Tokenizer::load(path);
    ADD_FAILURE() << "loaded " << path;
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(path), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find(what), std::string::npos) << e.what();
  }
}

TEST(Tokenizer, RefusesMissingAndCorruptModels) {
  fs::path root = fs::path(testing::TempDir()) / "fs_tokenizer_bad";
  fs::remove_all(root);
  fs::create_directories(root / "empty");
  expect_error_naming((root / "absent.model").string(), "no such file");
  expect_error_naming((root / "empty").string(), "holds no spiece.model");
  std::ofstream((root / "junk.model").string()) << "this is not a protobuf";
  expect_error_naming((root / "junk.model").string(), "not a sentencepiece model");
  fs::remove_all(root);
}

}  // namespace
}  // namespace freeswim::text
