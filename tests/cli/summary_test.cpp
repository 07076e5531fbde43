// The summary that closes the log of `generate` and `upscale`: one `freeswim: summary:` line per
// stage in the order the stages ran, the VAE's passes together, the total, and the peak memory,
// so that a benchmark (bench/cli/run_real_size.sh) lifts the table out of the CLI's own log.
#include <gtest/gtest.h>

#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "cli_runner.h"

namespace freeswim::clitest {
namespace {

constexpr const char* kPrefix = "freeswim: summary: ";

// (name, seconds) of every stage-time line, in order; the other summary lines in `other`.
std::vector<std::pair<std::string, double>> summary_times(const std::string& err,
                                                          std::vector<std::string>* other) {
  std::vector<std::pair<std::string, double>> out;
  std::istringstream in(err);
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind(kPrefix, 0) != 0) continue;
    const std::string rest = line.substr(std::string(kPrefix).size());
    // "<name padded to 18> <seconds> s  <percent>%"
    const size_t s = rest.rfind(" s ");
    const size_t num = s == std::string::npos ? s : rest.rfind(' ', s - 1);
    if (s == std::string::npos || num == std::string::npos || rest.back() != '%') {
      other->push_back(rest);
      continue;
    }
    std::string name = rest.substr(0, num);
    while (!name.empty() && name.back() == ' ') name.pop_back();
    out.emplace_back(name, std::stod(rest.substr(num + 1, s - num - 1)));
  }
  return out;
}

std::vector<std::string> names(const std::vector<std::pair<std::string, double>>& times) {
  std::vector<std::string> n;
  for (const auto& [name, secs] : times) n.push_back(name);
  return n;
}

void expect_consistent(const std::vector<std::pair<std::string, double>>& times,
                       const std::string& log) {
  ASSERT_FALSE(times.empty()) << log;
  ASSERT_EQ(times.back().first, "total") << log;
  const double total = times.back().second;
  double stages = 0, vae = 0, vae_line = -1;
  for (const auto& [name, secs] : times) {
    EXPECT_GE(secs, 0.0) << name << "\n" << log;
    EXPECT_LE(secs, total + 0.01) << name << "\n" << log;
    if (name == "total") continue;
    if (name == "VAE (all passes)") {
      vae_line = secs;
      continue;
    }
    stages += secs;
    if (name.rfind("VAE", 0) == 0) vae += secs;
  }
  // Rounded to 0.01 s per line; the few lines between the stages take no measurable time.
  EXPECT_NEAR(stages, total, 0.02 * static_cast<double>(times.size()) + 0.05) << log;
  EXPECT_NEAR(vae_line, vae, 0.02 * static_cast<double>(times.size())) << log;
}

TEST(CliSummary, GenerateListsEveryStageTotalAndPeakMemory) {
  TempDir d;
  const RunResult r = run_freeswim({"generate", "--model", "tiny", "-p", "a fox", "--size",
                                    "128x96", "--frames", "5", "--base-steps", "2", "--steps", "4",
                                    "--device", "cpu", "-o", (d / "out.mp4").string()});
  ASSERT_EQ(r.exit_code, 0) << r.describe();
  std::vector<std::string> other;
  const auto times = summary_times(r.err, &other);
  EXPECT_EQ(names(times), (std::vector<std::string>{"model loading", "text encoding", "base stage",
                                                    "VAE decode (base)", "upsampling", "VAE encode",
                                                    "FreeSwim stage", "VAE decode", "mp4 writing",
                                                    "VAE (all passes)", "total"}))
      << r.err;
  expect_consistent(times, r.err);
  // On the cpu: the host's peak, and no GPU line.
  ASSERT_EQ(other.size(), 1u) << r.err;
  EXPECT_EQ(other[0].rfind("peak host memory ", 0), 0u) << r.err;
  EXPECT_NE(other[0].find(" GiB resident (max RSS)"), std::string::npos) << r.err;
  // The summary comes after the line naming the mp4, and before the CLI's own closing line.
  const size_t wrote = r.err.find("freeswim: wrote ");
  const size_t first = r.err.find(kPrefix);
  const size_t done = r.err.find("freeswim: done in ");
  ASSERT_NE(wrote, std::string::npos) << r.err;
  ASSERT_NE(done, std::string::npos) << r.err;
  EXPECT_LT(wrote, first) << r.err;
  EXPECT_LT(r.err.rfind(kPrefix), done) << r.err;
}

TEST(CliSummary, UpscaleAndPngFramesHaveTheirOwnLines) {
  TempDir d;
  RunResult r = run_freeswim({"generate", "--model", "tiny", "-p", "a fox", "--size", "96x64",
                              "--frames", "5", "--base-steps", "1", "--steps", "2", "--device",
                              "cpu", "-o", (d / "in.mp4").string()});
  ASSERT_EQ(r.exit_code, 0) << r.describe();
  r = run_freeswim({"upscale", "--model", "tiny", "-i", (d / "in.mp4").string(), "-p", "a fox",
                    "--size", "128x96", "--frames", "5", "--steps", "2", "--device", "cpu", "-o",
                    (d / "out.mp4").string(), "--png", (d / "frames").string()});
  ASSERT_EQ(r.exit_code, 0) << r.describe();
  std::vector<std::string> other;
  const auto times = summary_times(r.err, &other);
  EXPECT_EQ(names(times),
            (std::vector<std::string>{"model loading", "text encoding", "video reading",
                                      "upsampling", "VAE encode", "FreeSwim stage", "VAE decode",
                                      "mp4 writing", "png writing", "VAE (all passes)", "total"}))
      << r.err;
  expect_consistent(times, r.err);
}

}  // namespace
}  // namespace freeswim::clitest
