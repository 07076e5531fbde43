// --resume after a kill: a run that dies right after step k (--exit-after-step,
// the test hook in pipeline/generate.cpp, exits with status 137 just after that step's state is
// saved, as a SIGKILL there would) and is resumed must write the same mp4 and PNG frames, byte
// for byte, as a run that was never interrupted, and leave no state behind.
#include <gtest/gtest.h>

#include <chrono>
#include <csignal>
#include <map>
#include <nlohmann/json.hpp>
#include <thread>

#include "cli_runner.h"
#include "io/safetensors.h"

namespace freeswim::clitest {
namespace {

// A small generate: 5 frames, base stage of 4 steps at the tiny model's 96x64, FreeSwim stage
// of 10 scheduled steps at strength 0.7, i.e. 7 run (with --cache-every 2: guide, reuse,
// guide, reuse, guide, reuse, guide).
std::vector<std::string> job(const fs::path& dir, const std::vector<std::string>& extra) {
  std::vector<std::string> a{"generate",
                             "--model",
                             "tiny",
                             "-p",
                             "a fox in the snow",
                             "--size",
                             "128x96",
                             "--frames",
                             "5",
                             "--base-steps",
                             "4",
                             "--steps",
                             "10",
                             "--strength",
                             "0.7",
                             "--seed",
                             "7",
                             "-o",
                             (dir / "video.mp4").string(),
                             "--png",
                             (dir / "png").string()};
  a.insert(a.end(), extra.begin(), extra.end());
  return a;
}

// Every file below `dir` by relative path, with its bytes.
std::map<std::string, std::string> snapshot(const fs::path& dir) {
  std::map<std::string, std::string> files;
  for (const auto& name : list_tree(dir))
    if (fs::is_regular_file(dir / name)) files[name] = read_bytes(dir / name);
  return files;
}

class Resume : public ::testing::Test {
 protected:
  // The files of an uninterrupted run with `extra` flags.
  static std::map<std::string, std::string> uninterrupted(const std::vector<std::string>& extra) {
    TempDir d;
    const RunResult r = run_freeswim(job(d.path(), extra));
    EXPECT_EQ(r.exit_code, 0) << r.describe();
    return snapshot(d.path());
  }

  // Kills a run after each of `kills` in turn (each resumed run dies at the next), then
  // resumes to the end; the result must equal `reference` byte for byte.
  static void kill_and_resume(const std::vector<std::string>& kills,
                              const std::vector<std::string>& extra,
                              const std::map<std::string, std::string>& reference) {
    TempDir d;
    const fs::path state = d / "video.mp4.resume.safetensors";
    for (size_t i = 0; i < kills.size(); ++i) {
      std::vector<std::string> args = job(d.path(), extra);
      if (i > 0) args.push_back("--resume");
      args.emplace_back("--exit-after-step");
      args.push_back(kills[i]);
      const RunResult killed = run_freeswim(args);
      ASSERT_EQ(killed.exit_code, 137) << kills[i] << "\n" << killed.describe();
      // Only the state: no mp4, no frames, no temporary file.
      ASSERT_EQ(list_tree(d.path()), std::vector<std::string>{state.filename().string()})
          << killed.describe();
    }
    resume_and_compare(d, extra, kills.back().substr(0, kills.back().find(':')), reference);
  }

  // A real SIGKILL, sent as soon as a state of `stage` is on disk: it lands wherever the run is
  // then (inside a step, or while the next state is being written beside the last one).
  static void sigkill_and_resume(const std::string& stage, const std::vector<std::string>& extra,
                                 const std::map<std::string, std::string>& reference) {
    TempDir d;
    const fs::path state = d / "video.mp4.resume.safetensors";
    Child child(job(d.path(), extra));
    bool killed = false;
    while (!killed && child.running()) {
      if (saved_stage(state) == stage) {
        child.kill(SIGKILL);
        killed = true;
      } else {
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
      }
    }
    const RunResult r = child.wait();
    ASSERT_TRUE(killed) << "the run ended before a '" << stage << "' state appeared\n"
                        << r.describe();
    ASSERT_EQ(r.signal, SIGKILL) << r.describe();
    EXPECT_FALSE(fs::exists(d / "video.mp4"));
    resume_and_compare(d, extra, stage, reference);
  }

  // The stage recorded in a resume state, or "" when there is none yet.
  static std::string saved_stage(const fs::path& state) {
    if (!fs::exists(state)) return "";
    try {
      const auto f = io::SafetensorsFile::open(state.string());
      return nlohmann::json::parse(f->metadata().at("freeswim_resume")).at("stage");
    } catch (const std::exception&) {
      return "";  // replaced while being read: look again
    }
  }

  // Resumes the run in `d` to the end: it must say it resumes `stage`, and leave exactly the
  // files of `reference`, byte for byte.
  static void resume_and_compare(const TempDir& d, const std::vector<std::string>& extra,
                                 const std::string& stage,
                                 const std::map<std::string, std::string>& reference) {
    const fs::path state = d / "video.mp4.resume.safetensors";
    std::vector<std::string> args = job(d.path(), extra);
    args.push_back("--resume");
    const RunResult resumed = run_freeswim(args);
    ASSERT_EQ(resumed.exit_code, 0) << resumed.describe();
    EXPECT_NE(resumed.err.find("resuming the " + stage + " stage"), std::string::npos)
        << resumed.describe();
    const auto files = snapshot(d.path());
    EXPECT_FALSE(fs::exists(state));
    ASSERT_EQ(files.size(), reference.size());
    for (const auto& [name, bytes] : reference) {
      const auto it = files.find(name);
      ASSERT_NE(it, files.end()) << name;
      EXPECT_TRUE(it->second == bytes) << name << " differs from the uninterrupted run's";
    }
  }
};

TEST_F(Resume, CacheModeKillsInEachStageAndStepKind) {
  const std::vector<std::string> cache{"--cache-every", "2"};
  const auto reference = uninterrupted(cache);
  ASSERT_TRUE(reference.count("video.mp4"));
  ASSERT_EQ(reference.size(), 6u);  // the mp4 and 5 PNG frames
  {
    SCOPED_TRACE("base stage, step 2 of 4");
    kill_and_resume({"base:2"}, cache, reference);
  }
  {
    SCOPED_TRACE("base stage, after its last step");
    kill_and_resume({"base:4"}, cache, reference);
  }
  {
    SCOPED_TRACE("FreeSwim stage, right after the first guide step");
    kill_and_resume({"freeswim:1"}, cache, reference);
  }
  {
    SCOPED_TRACE("FreeSwim stage, right after a reuse step");
    kill_and_resume({"freeswim:4"}, cache, reference);
  }
  {
    SCOPED_TRACE("SIGKILL in the FreeSwim stage");
    sigkill_and_resume("freeswim", cache, reference);
  }
  {
    SCOPED_TRACE("killed three times: base, after a guide step, after a reuse step");
    kill_and_resume({"base:1", "freeswim:3", "freeswim:3"}, cache, reference);
  }
}

TEST_F(Resume, NoCacheMode) {
  const std::vector<std::string> no_cache{"--cache-every", "0"};
  const auto reference = uninterrupted(no_cache);
  ASSERT_EQ(reference.size(), 6u);
  {
    SCOPED_TRACE("FreeSwim stage, step 3 of 7");
    kill_and_resume({"freeswim:3"}, no_cache, reference);
  }
  {
    SCOPED_TRACE("FreeSwim stage, after its last step");
    kill_and_resume({"freeswim:7"}, no_cache, reference);
  }
}

}  // namespace
}  // namespace freeswim::clitest
