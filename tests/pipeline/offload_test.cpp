// The automatic --offload policy (pipeline/models.h): a DiT that does not fit is loaded again
// with its blocks in host memory; the explicit modes never retry. The loader here is a stand-in
// that records what it was asked and fails as a full GPU would.
#include <gtest/gtest.h>

#include <memory>
#include <string>
#include <vector>

#include "core/error.h"
#include "pipeline/models.h"

namespace freeswim::pipeline {
namespace {

struct FakeLoader {
  bool fits_on_gpu = true;
  bool other_error = false;
  std::vector<bool> calls;  // the `offload` argument of each call
  std::unique_ptr<models::WanDit> operator()(bool offload) {
    calls.push_back(offload);
    if (other_error) throw Error("dit.safetensors: tensor 'blocks.0.ffn.0.weight' is missing");
    if (!offload && !fits_on_gpu)
      throw OutOfMemory(
          "cuda: out of memory allocating 2.00 GiB for 'blocks.7.ffn.0.weight'\nuse --offload");
    return nullptr;  // a real loader returns the model; the policy does not look at it
  }
};

TEST(Offload, AutomaticLoadsOnTheGpuWhenItFits) {
  FakeLoader l;
  int notes = 0;
  load_dit_with_offload(
      Offload::automatic, [&](bool o) { return l(o); }, [&](const std::string&) { ++notes; });
  EXPECT_EQ(l.calls, std::vector<bool>{false});
  EXPECT_EQ(notes, 0);
}

TEST(Offload, AutomaticRetriesInHostMemoryAfterAnOutOfMemory) {
  FakeLoader l;
  l.fits_on_gpu = false;
  std::string why;
  load_dit_with_offload(
      Offload::automatic, [&](bool o) { return l(o); }, [&](const std::string& w) { why = w; });
  EXPECT_EQ(l.calls, (std::vector<bool>{false, true}));
  EXPECT_NE(why.find("blocks.7.ffn.0.weight"), std::string::npos) << why;
}

TEST(Offload, ExplicitModesNeverRetry) {
  FakeLoader l;
  l.fits_on_gpu = false;
  auto never = [](const std::string& w) { ADD_FAILURE() << "fell back: " << w; };
  load_dit_with_offload(
      Offload::on, [&](bool o) { return l(o); }, never);
  EXPECT_EQ(l.calls, std::vector<bool>{true});
  l.calls.clear();
  EXPECT_THROW(load_dit_with_offload(
                   Offload::off, [&](bool o) { return l(o); }, never),
               OutOfMemory);
  EXPECT_EQ(l.calls, std::vector<bool>{false});
}

TEST(Offload, OtherErrorsAreNotRetried) {
  FakeLoader l;
  l.other_error = true;
  auto never = [](const std::string& w) { ADD_FAILURE() << "fell back: " << w; };
  try {
    load_dit_with_offload(
        Offload::automatic, [&](bool o) { return l(o); }, never);
    ADD_FAILURE() << "no error";
  } catch (const OutOfMemory&) {
    ADD_FAILURE() << "an out-of-memory instead of the file's error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("is missing"), std::string::npos) << e.what();
  }
  EXPECT_EQ(l.calls, std::vector<bool>{false});
}

}  // namespace
}  // namespace freeswim::pipeline
