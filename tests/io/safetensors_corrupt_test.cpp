// One test per defect: each starts from a valid file written by write_safetensors, damages
// one thing, and requires a freeswim::Error whose message names the file and, where the
// defect belongs to a tensor, that tensor.
#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>

#include "core/error.h"
#include "io/safetensors.h"
#include "io_test_util.h"

namespace freeswim::io::test {
namespace {

class Corrupt : public ::testing::Test {
 protected:
  void SetUp() override {
    valid_ = write_valid_file(dir_);
    parts_ = split(read_bytes(valid_));
  }

  // Replaces `from` (which must occur exactly once) in the valid header.
  std::string edit_header(const std::string& from, const std::string& to) {
    std::string h = parts_.header;
    const size_t at = h.find(from);
    EXPECT_NE(at, std::string::npos) << "'" << from << "' not in " << h;
    EXPECT_EQ(h.find(from, at + 1), std::string::npos) << "'" << from << "' twice in " << h;
    if (at != std::string::npos) h.replace(at, from.size(), to);
    return h;
  }

  // Writes a damaged file and returns the message of the error opening it raises.
  std::string open_error(const std::vector<uint8_t>& bytes) {
    write_bytes(bad_, bytes);
    return error_of([&] { SafetensorsFile::open(bad_); });
  }
  std::string open_error_with_header(const std::string& header) {
    return open_error(join({header, parts_.data}));
  }
  std::vector<uint8_t> with_length_field(uint64_t n) {
    std::vector<uint8_t> b = read_bytes(valid_);
    for (int i = 0; i < 8; ++i) b[static_cast<size_t>(i)] = static_cast<uint8_t>(n >> (8 * i));
    return b;
  }

  TempDir dir_;
  std::string valid_;
  std::string bad_ = dir_.file("bad.safetensors");
  Parts parts_;
};

#define EXPECT_MENTIONS(msg, text) \
  EXPECT_NE((msg).find(text), std::string::npos) << "message: " << (msg) << "\nlacks: " << (text)

TEST_F(Corrupt, ValidFileOpens) {
  // The baseline every other case damages, and the layout they rely on.
  auto f = SafetensorsFile::open(valid_);
  ASSERT_EQ(f->tensors().size(), 3u);
  EXPECT_EQ(f->find("alpha")->begin, 0u);
  EXPECT_EQ(f->find("gamma")->begin, 24u);
  EXPECT_EQ(f->find("beta")->begin, 36u);
  EXPECT_EQ(parts_.data.size(), 44u);
  EXPECT_NE(parts_.header.find(R"("data_offsets":[24,36])"), std::string::npos) << parts_.header;
}

TEST_F(Corrupt, TruncatedInTheData) {
  std::vector<uint8_t> b = read_bytes(valid_);
  b.resize(b.size() - 5);  // cuts into beta, the last tensor
  std::string msg = open_error(b);
  EXPECT_MENTIONS(msg, bad_);
  EXPECT_MENTIONS(msg, "'beta'");
  EXPECT_MENTIONS(msg, "outside the data");
}

TEST_F(Corrupt, TruncatedInTheHeader) {
  std::vector<uint8_t> b = read_bytes(valid_);
  b.resize(20);
  std::string msg = open_error(b);
  EXPECT_MENTIONS(msg, bad_);
  EXPECT_MENTIONS(msg, "past the end of the file");
}

TEST_F(Corrupt, TruncatedInTheLengthField) {
  std::string msg = open_error({0x10, 0, 0});
  EXPECT_MENTIONS(msg, bad_);
  EXPECT_MENTIONS(msg, "shorter than the 8-byte header length");
  msg = open_error({});
  EXPECT_MENTIONS(msg, bad_);
}

TEST_F(Corrupt, HeaderLengthBeyondTheFile) {
  const uint64_t size = read_bytes(valid_).size();
  std::string msg = open_error(with_length_field(size - 7));  // one byte too many
  EXPECT_MENTIONS(msg, bad_);
  EXPECT_MENTIONS(msg, "header length " + std::to_string(size - 7));
}

TEST_F(Corrupt, TwoGigabyteHeaderLength) {
  std::string msg = open_error(with_length_field(uint64_t{1} << 31));
  EXPECT_MENTIONS(msg, bad_);
  EXPECT_MENTIONS(msg, "header length 2147483648");
}

TEST_F(Corrupt, HeaderLengthTwoToTheSixtyThird) {
  std::string msg = open_error(with_length_field(uint64_t{1} << 63));
  EXPECT_MENTIONS(msg, bad_);
  EXPECT_MENTIONS(msg, "header length 9223372036854775808");
  msg = open_error(with_length_field(~uint64_t{0}));
  EXPECT_MENTIONS(msg, "header length 18446744073709551615");
}

TEST_F(Corrupt, HeaderLengthOverTheLimitInsideALargeFile) {
  // A sparse 256 MiB file (no disk used) whose length field claims a 200 MB header: it fits
  // in the file, so only the header size limit stops it, before anything is read or allocated.
  write_bytes(bad_, with_length_field(200'000'000));
  std::filesystem::resize_file(bad_, uint64_t{256} << 20);
  std::string msg = error_of([&] { SafetensorsFile::open(bad_); });
  EXPECT_MENTIONS(msg, bad_);
  EXPECT_MENTIONS(msg, "header length 200000000 exceeds the limit");
}

TEST_F(Corrupt, OffsetsOutsideTheData) {
  std::string msg =
      open_error_with_header(edit_header(R"("data_offsets":[24,36])", R"("data_offsets":[40,52])"));
  EXPECT_MENTIONS(msg, bad_);
  EXPECT_MENTIONS(msg, "'gamma'");
  EXPECT_MENTIONS(msg, "outside the data section");
  // An end offset so large that begin + size would wrap around.
  msg = open_error_with_header(
      edit_header(R"("data_offsets":[24,36])", R"("data_offsets":[18446744073709551604,24])"));
  EXPECT_MENTIONS(msg, "'gamma'");
  EXPECT_MENTIONS(msg, "end before they begin");
}

TEST_F(Corrupt, OverlappingRanges) {
  std::string msg =
      open_error_with_header(edit_header(R"("data_offsets":[24,36])", R"("data_offsets":[20,32])"));
  EXPECT_MENTIONS(msg, bad_);
  EXPECT_MENTIONS(msg, "'alpha'");
  EXPECT_MENTIONS(msg, "'gamma'");
  EXPECT_MENTIONS(msg, "overlap");
  // Two tensors on exactly the same bytes.
  msg =
      open_error_with_header(edit_header(R"("data_offsets":[24,36])", R"("data_offsets":[0,12])"));
  EXPECT_MENTIONS(msg, "'alpha'");
  EXPECT_MENTIONS(msg, "'gamma'");
}

TEST_F(Corrupt, UnknownDtype) {
  for (const std::string dt : {"F64", "Q4_K", "bf16", ""}) {
    std::string msg = open_error_with_header(edit_header(R"("BF16")", "\"" + dt + "\""));
    EXPECT_MENTIONS(msg, bad_);
    EXPECT_MENTIONS(msg, "'beta'");
    EXPECT_MENTIONS(msg, "unknown dtype '" + dt + "'");
  }
  std::string msg = open_error_with_header(edit_header(R"("BF16")", "16"));
  EXPECT_MENTIONS(msg, "'beta'");
  EXPECT_MENTIONS(msg, "dtype is not a string");
}

TEST_F(Corrupt, ByteCountNotMatchingTheShape) {
  std::string msg = open_error_with_header(edit_header(R"("shape":[2,3])", R"("shape":[2,2])"));
  EXPECT_MENTIONS(msg, bad_);
  EXPECT_MENTIONS(msg, "'alpha'");
  EXPECT_MENTIONS(msg, "hold 24 bytes but shape [2,2] of F32 needs 16");
  // A dtype change alone also breaks the count.
  msg = open_error_with_header(edit_header(R"("BF16")", R"("F32")"));
  EXPECT_MENTIONS(msg, "'beta'");
  EXPECT_MENTIONS(msg, "needs 16");
}

TEST_F(Corrupt, ShapeOverflow) {
  // The element count overflows 64 bits.
  std::string msg = open_error_with_header(
      edit_header(R"("shape":[2,3])", R"("shape":[4294967296,4294967296,4294967296])"));
  EXPECT_MENTIONS(msg, bad_);
  EXPECT_MENTIONS(msg, "'alpha'");
  EXPECT_MENTIONS(msg, "overflows the element count");
  // The element count fits but the byte count (x4 for F32) does not.
  msg = open_error_with_header(edit_header(R"("shape":[2,3])", R"("shape":[4611686018427387904])"));
  EXPECT_MENTIONS(msg, "'alpha'");
  EXPECT_MENTIONS(msg, "overflows the byte count");
  // A dimension beyond int64.
  msg =
      open_error_with_header(edit_header(R"("shape":[2,3])", R"("shape":[18446744073709551615])"));
  EXPECT_MENTIONS(msg, "'alpha'");
  EXPECT_MENTIONS(msg, "overflows");
  // Beyond uint64 nlohmann reads a float, which is refused as a non-integer.
  msg =
      open_error_with_header(edit_header(R"("shape":[2,3])", R"("shape":[99999999999999999999])"));
  EXPECT_MENTIONS(msg, "'alpha'");
  EXPECT_MENTIONS(msg, "not an integer");
}

TEST_F(Corrupt, MissingTensorLookup) {
  auto f = SafetensorsFile::open(valid_);
  EXPECT_EQ(f->find("delta"), nullptr);
  std::string msg = error_of([&] { f->tensor("delta"); });
  EXPECT_MENTIONS(msg, valid_);
  EXPECT_MENTIONS(msg, "'delta'");
}

TEST_F(Corrupt, DuplicateNames) {
  // Insert a second "gamma" entry pointing at gamma's own bytes; nlohmann alone would keep
  // one of the two silently.
  const std::string entry = R"("gamma":{"data_offsets":[24,36],"dtype":"F32","shape":[3]})";
  std::string msg = open_error_with_header(edit_header(entry, entry + "," + entry));
  EXPECT_MENTIONS(msg, bad_);
  EXPECT_MENTIONS(msg, "duplicate key 'gamma' at the top level");
  // A field given twice inside one entry.
  msg = open_error_with_header(edit_header(R"("shape":[3]})", R"("shape":[3],"shape":[2]})"));
  EXPECT_MENTIONS(msg, bad_);
  EXPECT_MENTIONS(msg, "duplicate key 'shape' inside 'gamma'");
}

TEST_F(Corrupt, NonJsonHeader) {
  for (const std::string& h : {std::string("this is not json"), std::string("{\"alpha\":"),
                               std::string("{\"a\":1} trailing"), std::string(16, '\0'),
                               std::string("{\"\xff\xfe\":1}")}) {
    std::string msg = open_error_with_header(h);
    EXPECT_MENTIONS(msg, bad_);
    EXPECT_MENTIONS(msg, "malformed JSON");
  }
  for (const std::string h : {"[1,2,3]", "\"text\"", "42"}) {
    std::string msg = open_error_with_header(h);
    EXPECT_MENTIONS(msg, bad_);
    EXPECT_MENTIONS(msg, "not an object");
  }
}

TEST_F(Corrupt, NestingTooDeep) {
  std::string msg = open_error_with_header(std::string(100000, '[') + std::string(100000, ']'));
  EXPECT_MENTIONS(msg, bad_);
  EXPECT_MENTIONS(msg, "nested deeper");
}

TEST_F(Corrupt, NegativeDimensions) {
  std::string msg = open_error_with_header(edit_header(R"("shape":[2,3])", R"("shape":[-2,-3])"));
  EXPECT_MENTIONS(msg, bad_);
  EXPECT_MENTIONS(msg, "'alpha'");
  EXPECT_MENTIONS(msg, "negative dimension -2");
}

TEST_F(Corrupt, OffsetsNotIntegers) {
  const std::string from = R"("data_offsets":[24,36])";
  for (const std::string to : {R"("data_offsets":[24.0,36.0])", R"("data_offsets":["24","36"])",
                               R"("data_offsets":[-24,36])", R"("data_offsets":[24,null])"}) {
    std::string msg = open_error_with_header(edit_header(from, to));
    EXPECT_MENTIONS(msg, bad_);
    EXPECT_MENTIONS(msg, "'gamma'");
    EXPECT_MENTIONS(msg, "not a non-negative integer");
  }
  for (const std::string to :
       {R"("data_offsets":[24,36,48])", R"("data_offsets":{"a":24})", R"("data_offsets":24)"}) {
    std::string msg = open_error_with_header(edit_header(from, to));
    EXPECT_MENTIONS(msg, "'gamma'");
    EXPECT_MENTIONS(msg, "array of two integers");
  }
}

TEST_F(Corrupt, ShapeNotAnArrayOfIntegers) {
  for (const std::string to :
       {R"("shape":[2.0,3])", R"("shape":["2",3])", R"("shape":[true,3])", R"("shape":6)"}) {
    std::string msg = open_error_with_header(edit_header(R"("shape":[2,3])", to));
    EXPECT_MENTIONS(msg, bad_);
    EXPECT_MENTIONS(msg, "'alpha'");
  }
}

TEST_F(Corrupt, EntryFieldsMissingOrUnexpected) {
  std::string msg = open_error_with_header(edit_header(R"(,"shape":[3]})", "}"));
  EXPECT_MENTIONS(msg, "'gamma'");
  EXPECT_MENTIONS(msg, "missing field 'shape'");
  msg = open_error_with_header(edit_header(R"("shape":[3]})", R"("shape":[3],"stride":[1]})"));
  EXPECT_MENTIONS(msg, "'gamma'");
  EXPECT_MENTIONS(msg, "unexpected field 'stride'");
  msg = open_error_with_header(
      edit_header(R"("gamma":{"data_offsets":[24,36],"dtype":"F32","shape":[3]})", R"("gamma":7)"));
  EXPECT_MENTIONS(msg, "'gamma'");
  EXPECT_MENTIONS(msg, "not an object");
}

TEST_F(Corrupt, MetadataMustBeStrings) {
  std::string msg = open_error_with_header(edit_header(R"("format":"pt")", R"("format":1)"));
  EXPECT_MENTIONS(msg, bad_);
  EXPECT_MENTIONS(msg, "__metadata__ entry 'format' is not a string");
  msg = open_error_with_header(edit_header(R"({"format":"pt"})", R"(["pt"])"));
  EXPECT_MENTIONS(msg, "__metadata__ must be an object");
}

TEST_F(Corrupt, InMemoryImageNamesItsLabel) {
  std::vector<uint8_t> b = read_bytes(valid_);
  b.resize(b.size() - 1);
  std::string msg = error_of([&] { SafetensorsFile::parse("<image 7>", b.data(), b.size()); });
  EXPECT_MENTIONS(msg, "<image 7>");
  EXPECT_MENTIONS(msg, "'beta'");
}

}  // namespace
}  // namespace freeswim::io::test
