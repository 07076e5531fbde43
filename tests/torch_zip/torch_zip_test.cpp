// torch.save zip checkpoints: fixtures are assembled here (there is no torch on the build
// machines) to mirror what torch.save writes, then read back; hostile archives and pickles must
// be refused with an Error that names the file.
#include "io/torch_zip.h"

#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>

#include "core/dtype.h"
#include "core/error.h"
#include "test_pickle.h"
#include "test_zip_writer.h"

namespace freeswim::io {
namespace {

using test::FixtureTensor;
using test::PickleBuilder;
using test::ZipFixtureEntry;

const std::string kLabel = "fixture.pth";

// An 8-byte aligned copy of an archive image (std::string gives no alignment guarantee).
struct Image {
  std::vector<uint64_t> words;
  size_t size = 0;
  explicit Image(const std::string& bytes) : words(bytes.size() / 8 + 1), size(bytes.size()) {
    std::memcpy(words.data(), bytes.data(), bytes.size());
  }
  const uint8_t* data() const { return reinterpret_cast<const uint8_t*>(words.data()); }
};

// Parses an image; the returned pointer also owns the image the file borrows.
std::shared_ptr<const TorchZipFile> parse(const std::string& bytes) {
  struct Parsed {
    Image image;
    std::shared_ptr<const TorchZipFile> file;
  };
  auto p = std::make_shared<Parsed>(Parsed{Image(bytes), nullptr});
  p->file = TorchZipFile::parse(kLabel, p->image.data(), p->image.size);
  return std::shared_ptr<const TorchZipFile>(p, p->file.get());
}

template <typename T>
std::string raw_bytes(const std::vector<T>& v) {
  return std::string(reinterpret_cast<const char*>(v.data()), v.size() * sizeof(T));
}

std::vector<uint16_t> bf16(const std::vector<float>& v) {
  std::vector<uint16_t> out;
  for (float x : v) out.push_back(float_to_bf16(x));
  return out;
}

// The storages of the standard fixture, keyed by storage key.
std::map<std::string, std::string> standard_storages() {
  return {
      {"0", raw_bytes(std::vector<float>{0.f, 0.5f, 1.f, 1.5f, 2.f, 2.5f})},
      {"1", raw_bytes(bf16({1, 2, 3, 4, 5, 6, 7, 8}))},
      // f16 bit patterns of 1, -2, 0.5, 0.25
      {"2", raw_bytes(std::vector<uint16_t>{0x3c00, 0xc000, 0x3800, 0x3400})},
      {"3", raw_bytes(std::vector<float>{-7.f})},
  };
}

std::vector<FixtureTensor> standard_tensors() {
  return {
      {"weight", "FloatStorage", "0", 6, 0, {2, 3}, {}, false},
      {"bias", "BFloat16Storage", "1", 8, 2, {4}, {}, false},  // a view with a storage offset
      {"half", "HalfStorage", "2", 4, 0, {2, 2}, {}, false},
      {"tied", "FloatStorage", "0", 6, 3, {3}, {}, false},  // shares storage 0 with "weight"
      {"scale", "FloatStorage", "3", 1, 0, {}, {}, true},   // a 0-d nn.Parameter
  };
}

// The records of a torch.save archive, in the order torch writes them.
std::vector<ZipFixtureEntry> records(const std::string& pickle,
                                     const std::map<std::string, std::string>& storages,
                                     const std::string& prefix = "archive") {
  std::vector<ZipFixtureEntry> e{{prefix + "/data.pkl", pickle}, {prefix + "/byteorder", "little"}};
  for (const auto& [key, bytes] : storages) e.push_back({prefix + "/data/" + key, bytes});
  e.push_back({prefix + "/version", "3\n"});
  e.push_back({prefix + "/.data/serialization_id", "1234567890"});
  return e;
}

std::string standard_archive(int protocol = 2, bool zip64 = false, const std::string& wrap = "") {
  return test::write_zip(
      records(test::state_dict_pickle(standard_tensors(), protocol, wrap), standard_storages()),
      zip64);
}

// An archive around an arbitrary pickle (with the standard storages).
std::string archive_with_pickle(const std::string& pickle) {
  return test::write_zip(records(pickle, standard_storages()));
}

// Expects parsing to throw freeswim::Error whose message names the file and contains `what`.
void expect_refused(const std::string& archive, const std::string& what) {
  try {
    parse(archive);
    ADD_FAILURE() << "accepted an archive that should fail with '" << what << "'";
  } catch (const Error& e) {
    std::string msg = e.what();
    EXPECT_NE(msg.find(kLabel), std::string::npos) << msg;
    EXPECT_NE(msg.find(what), std::string::npos) << msg;
  }
}

void expect_standard_contents(const TorchZipFile& f, const std::string& prefix = "") {
  std::vector<std::string> names;
  for (const TensorInfo& t : f.tensors()) names.push_back(t.name);
  std::vector<std::string> want{"bias", "half", "scale", "tied", "weight"};
  for (std::string& n : want) n = prefix + n;
  EXPECT_EQ(names, want);

  Tensor w = f.tensor(prefix + "weight");
  EXPECT_EQ(w.dtype(), DType::F32);
  EXPECT_EQ(w.shape(), (Shape{2, 3}));
  EXPECT_EQ(w.to_float_vector(), (std::vector<float>{0.f, 0.5f, 1.f, 1.5f, 2.f, 2.5f}));

  Tensor b = f.tensor(prefix + "bias");
  EXPECT_EQ(b.dtype(), DType::BF16);
  EXPECT_EQ(b.to_float_vector(), (std::vector<float>{3, 4, 5, 6}));

  Tensor h = f.tensor(prefix + "half");
  EXPECT_EQ(h.dtype(), DType::F16);
  EXPECT_EQ(h.to_float_vector(), (std::vector<float>{1.f, -2.f, 0.5f, 0.25f}));

  Tensor tied = f.tensor(prefix + "tied");
  EXPECT_EQ(tied.to_float_vector(), (std::vector<float>{1.5f, 2.f, 2.5f}));
  EXPECT_EQ(tied.data<float>(), w.data<float>() + 3);  // a view, not a copy

  Tensor s = f.tensor(prefix + "scale");
  EXPECT_EQ(s.shape(), Shape{});
  EXPECT_EQ(s.to_float_vector(), std::vector<float>{-7.f});

  const TensorInfo* bi = f.find(prefix + "bias");
  ASSERT_NE(bi, nullptr);
  EXPECT_EQ(bi->nbytes, 8u);
  EXPECT_EQ(f.bytes(*bi), static_cast<const uint8_t*>(b.raw()));
  EXPECT_EQ(f.find("absent"), nullptr);
}

TEST(TorchZip, ReadsAStateDictAsTorchSaveWritesIt) {
  auto f = parse(standard_archive());
  expect_standard_contents(*f);
  try {
    f->tensor("absent");
    ADD_FAILURE() << "no error for an absent tensor";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("absent"), std::string::npos);
    EXPECT_NE(std::string(e.what()).find(kLabel), std::string::npos);
  }
}

TEST(TorchZip, Zip64RecordsAndPickleProtocol4ReadTheSame) {
  for (int protocol : {2, 4})
    for (bool zip64 : {false, true}) {
      SCOPED_TRACE(testing::Message() << "protocol " << protocol << " zip64 " << zip64);
      expect_standard_contents(*parse(standard_archive(protocol, zip64)));
    }
}

TEST(TorchZip, FlattensNestedDictsWithDottedNames) {
  expect_standard_contents(*parse(standard_archive(2, false, "state_dict")), "state_dict.");
  expect_standard_contents(*parse(standard_archive(4, true, "model")), "model.");
}

TEST(TorchZip, AcceptsAnyArchivePrefixAndStrayStridesOfSizeOneDims) {
  std::vector<FixtureTensor> t{{"w", "FloatStorage", "0", 6, 0, {1, 6}, {99, 1}, false}};
  auto f = parse(test::write_zip(records(test::state_dict_pickle(t), standard_storages(), "wan")));
  EXPECT_EQ(f->tensor("w").shape(), (Shape{1, 6}));
}

TEST(TorchZip, OpensAFileAndTensorsKeepTheMappingAlive) {
  std::string path = testing::TempDir() + "torch_zip_test_fixture.pth";
  {
    std::ofstream out(path, std::ios::binary);
    out << standard_archive();
  }
  EXPECT_TRUE(looks_like_torch_zip(path));
  Tensor w;
  {
    auto f = TorchZipFile::open(path);
    EXPECT_EQ(f->path(), path);
    expect_standard_contents(*f);
    w = f->tensor("weight");
  }
  EXPECT_EQ(w.to_float_vector(), (std::vector<float>{0.f, 0.5f, 1.f, 1.5f, 2.f, 2.5f}));
  std::filesystem::remove(path);

  std::string text = testing::TempDir() + "torch_zip_test_not_zip.pth";
  {
    std::ofstream out(text);
    out << "not a checkpoint";
  }
  EXPECT_FALSE(looks_like_torch_zip(text));
  EXPECT_THROW(TorchZipFile::open(text), Error);
  std::filesystem::remove(text);
  EXPECT_THROW(TorchZipFile::open(text), Error);  // absent
}

// A pickle that would run `module.name('echo pwned')` when loaded by Python's pickle.
std::string call_global(const std::string& module, const std::string& name, int protocol) {
  PickleBuilder p(protocol);
  p.global(module, name).str("echo pwned").op(0x85).op('R');
  return p.finish();
}

TEST(TorchZip, RefusesGlobalsThatRunCode) {
  for (int protocol : {2, 4}) {
    expect_refused(archive_with_pickle(call_global("os", "system", protocol)), "'os.system'");
    expect_refused(archive_with_pickle(call_global("posix", "system", protocol)), "'posix.system'");
    expect_refused(archive_with_pickle(call_global("builtins", "eval", protocol)),
                   "'builtins.eval'");
    expect_refused(archive_with_pickle(call_global("torch", "load", protocol)), "'torch.load'");
  }
}

TEST(TorchZip, RefusesObjectBuildingOpcodes) {
  // INST: MARK, args, 'i' module\nname\n — calls the class with the args.
  PickleBuilder inst;
  inst.op('(').str("echo pwned").op('i').raw("os\nsystem\n");
  expect_refused(archive_with_pickle(inst.finish()), "INST");

  PickleBuilder newobj(4);
  newobj.global("collections", "OrderedDict").op(')').op(0x81);
  expect_refused(archive_with_pickle(newobj.finish()), "NEWOBJ");

  // BUILD may only set a dict's attributes; on a tensor it would call __setstate__.
  PickleBuilder build2;
  build2.global("collections", "OrderedDict");
  FixtureTensor t = standard_tensors()[0];
  build2.op('}').put().str("t");
  test::emit_tensor(build2, t, 0);
  build2.op('}').op('b');
  expect_refused(archive_with_pickle(build2.finish()), "BUILD");

  // REDUCE on a storage class.
  PickleBuilder storage_call;
  storage_call.global("torch", "FloatStorage").op(')').op('R');
  expect_refused(archive_with_pickle(storage_call.finish()), "REDUCE on storage type");
}

TEST(TorchZip, RefusesHugeAndUnsetMemoIndices) {
  PickleBuilder put;
  put.op('}').op('r').raw(std::string("\xf0\xff\xff\xff", 4));
  expect_refused(archive_with_pickle(put.finish()), "memo index 4294967280");
  PickleBuilder get;
  get.op('j').raw(std::string("\x00\x00\x00\x7f", 4));
  expect_refused(archive_with_pickle(get.finish()), "never stored");
}

TEST(TorchZip, RefusesEveryTruncationOfThePickle) {
  for (int protocol : {2, 4}) {
    std::string pickle = test::state_dict_pickle(standard_tensors(), protocol);
    for (size_t n = 0; n < pickle.size(); ++n) {
      SCOPED_TRACE(testing::Message() << "protocol " << protocol << " length " << n);
      EXPECT_THROW(parse(archive_with_pickle(pickle.substr(0, n))), Error);
    }
  }
  // A long string whose length runs past the end.
  PickleBuilder p;
  p.op('X').raw(std::string("\xff\xff\xff\x7f", 4)).raw("abc");
  expect_refused(archive_with_pickle(p.finish()), "truncated pickle");
}

TEST(TorchZip, RefusesAMissingStorage) {
  auto storages = standard_storages();
  storages.erase("1");
  expect_refused(test::write_zip(records(test::state_dict_pickle(standard_tensors()), storages)),
                 "tensor 'bias': its storage 'archive/data/1' is missing");
}

TEST(TorchZip, RefusesTensorsBeyondTheirStorage) {
  auto tensors = standard_tensors();
  tensors[1].offset = 6;  // 6 + 4 > 8 elements
  expect_refused(archive_with_pickle(test::state_dict_pickle(tensors)),
                 "tensor 'bias' [4] at offset 6 exceeds its storage '1' of 8 elements");

  tensors = standard_tensors();
  tensors[2].storage_numel = 5;  // the record holds 4 f16 values
  expect_refused(archive_with_pickle(test::state_dict_pickle(tensors)),
                 "storage '2' claims 5 elements of 2 bytes but holds 8 bytes");

  tensors = standard_tensors();
  tensors[0].shape = {int64_t{1} << 40, int64_t{1} << 40};
  tensors[0].stride = {int64_t{1} << 40, 1};
  expect_refused(archive_with_pickle(test::state_dict_pickle(tensors)),
                 "tensor 'weight': shape [1099511627776, 1099511627776] overflows");
}

TEST(TorchZip, RefusesNonContiguousTensors) {
  auto tensors = standard_tensors();
  tensors[0].stride = {1, 2};  // a transposed view
  expect_refused(archive_with_pickle(test::state_dict_pickle(tensors)),
                 "tensor 'weight' [2, 3] is not contiguous");
}

TEST(TorchZip, RefusesDtypesFreeswimDoesNotLoad) {
  auto tensors = standard_tensors();
  tensors[3].storage_type = "DoubleStorage";
  tensors[3].key = "3";
  tensors[3].storage_numel = 1;
  tensors[3].offset = 0;
  tensors[3].shape = {};
  std::vector<FixtureTensor> one{tensors[3]};
  auto storages = standard_storages();
  storages["3"] = std::string(8, '\0');
  expect_refused(test::write_zip(records(test::state_dict_pickle(one), storages)),
                 "tensor 'tied' is stored as torch.DoubleStorage");
}

TEST(TorchZip, RefusesCyclesAndDuplicateNames) {
  PickleBuilder cycle;
  cycle.op('}').put().str("self").get(0).op('s');
  expect_refused(archive_with_pickle(cycle.finish()), "reached twice");

  // {"a.b": t, "a": {"b": t}} flattens to two tensors named "a.b".
  PickleBuilder dup;
  dup.global("collections", "OrderedDict").op('}').put().op('(').str("a.b");
  test::emit_tensor(dup, standard_tensors()[0], 0);
  dup.str("a").op('}').str("b");
  test::emit_tensor(dup, standard_tensors()[0], 0);
  dup.op('s').op('u');
  expect_refused(archive_with_pickle(dup.finish()), "tensor name 'a.b' appears twice");

  PickleBuilder list_root;
  list_root.op(']');
  expect_refused(archive_with_pickle(list_root.finish()), "top-level object is not a dict");
}

TEST(TorchZip, RefusesArchivesTorchDoesNotWrite) {
  auto entries = records(test::state_dict_pickle(standard_tensors()), standard_storages());
  auto compressed = entries;
  compressed[2].method = 8;
  expect_refused(test::write_zip(compressed), "is compressed (method 8)");

  auto big_endian = entries;
  big_endian[1].data = "big";
  expect_refused(test::write_zip(big_endian), "'big'-endian");

  std::vector<ZipFixtureEntry> no_pickle(entries.begin() + 1, entries.end());
  expect_refused(test::write_zip(no_pickle), "not a torch.save checkpoint");

  auto two = entries;
  two.push_back({"other/data.pkl", entries[0].data});
  expect_refused(test::write_zip(two), "two pickles");

  expect_refused("PK\x03\x04 definitely not a zip archive, but long enough", "not a zip archive");
  expect_refused("", "not a zip archive");
}

// Every single corrupted byte of a valid archive is either still readable or refused with an
// Error; under the sanitizers this also shows that no corruption reads out of bounds.
TEST(TorchZip, SurvivesEverySingleByteCorruption) {
  for (bool zip64 : {false, true}) {
    std::string good = standard_archive(2, zip64, "state_dict");
    for (size_t i = 0; i < good.size(); ++i) {
      for (uint8_t flip : {0x01, 0x80, 0xff}) {
        std::string bad = good;
        bad[i] = static_cast<char>(bad[i] ^ flip);
        try {
          auto f = parse(bad);
          for (const TensorInfo& t : f->tensors()) f->tensor(t.name).to_float_vector();
        } catch (const Error&) {
        }
      }
    }
  }
}

}  // namespace
}  // namespace freeswim::io
