// --cache-memory on real runs of the tiny model: every accepted value runs `generate` and
// `upscale` to the end, and the placement does not change the video (on the CPU it is the same
// memory; on a GPU the host copy is bit-exact, see tests/cuda_backend/cache_test.cpp).
#include <gtest/gtest.h>

#include "cli_runner.h"

namespace freeswim::clitest {
namespace {

RunResult generate(const fs::path& out, const std::vector<std::string>& extra) {
  std::vector<std::string> a{"generate", "--model", "tiny",     "-p", "a fox",
                             "--size",   "96x64",   "--frames", "5",  "--base-steps",
                             "1",        "--steps", "3",        "-o", out.string()};
  a.insert(a.end(), extra.begin(), extra.end());
  return run_freeswim(a);
}

TEST(CacheMemory, EveryValueRunsAndGivesTheSameVideo) {
  TempDir d;
  std::string want;
  for (const char* v : {"auto", "device", "host"}) {
    SCOPED_TRACE(v);
    const fs::path out = d / (std::string(v) + ".mp4");
    const RunResult r = generate(out, {"--cache-memory", v});
    ASSERT_EQ(r.exit_code, 0) << r.describe();
    // The stage line says which placement was asked for.
    EXPECT_NE(r.err.find(std::string("--cache-memory ") + v), std::string::npos) << r.describe();
    if (want.empty())
      want = read_bytes(out);
    else
      EXPECT_EQ(read_bytes(out), want);
  }
  ASSERT_FALSE(want.empty());
  // Without the flag: auto.
  const RunResult plain = generate(d / "default.mp4", {"--cache-every", "1"});
  ASSERT_EQ(plain.exit_code, 0) << plain.describe();
  EXPECT_NE(plain.err.find("--cache-memory auto"), std::string::npos) << plain.describe();
  // With the cache off the flag is accepted and has nothing to place.
  const RunResult off = generate(d / "off.mp4", {"--cache-every", "0", "--cache-memory", "host"});
  ASSERT_EQ(off.exit_code, 0) << off.describe();
  EXPECT_EQ(list_tree(d.path()), (std::vector<std::string>{"auto.mp4", "default.mp4", "device.mp4",
                                                           "host.mp4", "off.mp4"}));
}

TEST(CacheMemory, UpscaleAcceptsTheFlag) {
  TempDir d;
  const RunResult gen = generate(d / "small.mp4", {});
  ASSERT_EQ(gen.exit_code, 0) << gen.describe();
  std::string first;
  for (const char* v : {"host", "device"}) {
    SCOPED_TRACE(v);
    const fs::path out = d / (std::string("up_") + v + ".mp4");
    const RunResult up = run_freeswim(
        {"upscale", "--model", "tiny", "-i", (d / "small.mp4").string(), "--size", "128x96",
         "--frames", "5", "--steps", "3", "--cache-memory", v, "-o", out.string()});
    ASSERT_EQ(up.exit_code, 0) << up.describe();
    if (first.empty())
      first = read_bytes(out);
    else
      EXPECT_EQ(read_bytes(out), first);
  }
  const RunResult bad = run_freeswim(
      {"upscale", "--model", "tiny", "-i", (d / "small.mp4").string(), "--size", "128x96",
       "--frames", "5", "--cache-memory", "disk", "-o", (d / "bad.mp4").string()});
  EXPECT_NE(bad.exit_code, 0) << bad.describe();
  EXPECT_NE(bad.err.find("--cache-memory"), std::string::npos) << bad.describe();
  EXPECT_FALSE(fs::exists(d / "bad.mp4"));
}

TEST(Offload, ContradictoryFlagsAreRefusedBeforeLoading) {
  TempDir d;
  const fs::path out = d / "o.mp4";
  const RunResult r = generate(out, {"--offload", "--no-offload"});
  EXPECT_NE(r.exit_code, 0) << r.describe();
  EXPECT_NE(r.err.find("--no-offload"), std::string::npos) << r.describe();
  EXPECT_TRUE(list_tree(d.path()).empty()) << r.describe();
}

// On the cpu the weights are in host memory already: --no-offload changes nothing.
TEST(Offload, NoOffloadOnTheCpuRuns) {
  TempDir d;
  const fs::path out = d / "o.mp4";
  const RunResult r = generate(out, {"--no-offload"});
  EXPECT_EQ(r.exit_code, 0) << r.describe();
  EXPECT_TRUE(fs::exists(out)) << r.describe();
}

TEST(Offload, OnTheCpuIsRefusedNamingTheFlagAndLeavesNoOutput) {
  TempDir d;
  const fs::path out = d / "o.mp4";
  const RunResult r = generate(out, {"--offload"});
  EXPECT_NE(r.exit_code, 0) << r.describe();
  EXPECT_NE(r.err.find("--offload"), std::string::npos) << r.describe();
  EXPECT_NE(r.err.find("--device cuda"), std::string::npos) << r.describe();
  EXPECT_TRUE(list_tree(d.path()).empty()) << r.describe();
}

}  // namespace
}  // namespace freeswim::clitest
