// pipeline::launch_job, the CLI's path for `generate --gpus N`, over the CPU stand-in
// (parallel::LocalWorld instead of NcclWorld): the golden tiny model's whole generate on 1 and 2
// ranks, and an upscale on 2, give one rank's frames; only rank 0 reports and writes; a rank that
// fails (while loading, or after the others have their frames) fails the launch with an Error
// naming it, without a hang and without an output file. Four ranks run the same loops through
// the same LocalWorld in generate_ranks_test.cpp, and fail here before loading.
#include "pipeline/launch.h"

#include <gtest/gtest.h>

#include <atomic>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <map>
#include <mutex>
#include <set>
#include <thread>

#include "core/error.h"
#include "local_world.h"

namespace freeswim::pipeline {
namespace {

namespace fs = std::filesystem;

LaunchJob tiny_job(const std::string& output) {
  LaunchJob job;
  job.paths.model = "tiny";
  job.options = tiny_ranks_job(output);
  return job;
}

// What a launch reported, and from which threads.
struct Log {
  std::mutex mutex;
  std::vector<std::string> lines;
  std::set<std::thread::id> progress_threads;
  std::map<std::string, int> steps;  // "stage step" -> times reported

  JobReporter reporter() {
    JobReporter r;
    r.info = [this](const std::string& line) {
      std::lock_guard<std::mutex> lock(mutex);
      lines.push_back(line);
    };
    r.progress = [this](const std::string& stage, int done, int, double) {
      std::lock_guard<std::mutex> lock(mutex);
      progress_threads.insert(std::this_thread::get_id());
      ++steps[stage + " " + std::to_string(done)];
    };
    return r;
  }
  int count(const std::string& part) const {
    int n = 0;
    for (const std::string& l : lines) n += l.find(part) != std::string::npos;
    return n;
  }
};

class Launch : public testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           ("freeswim_launch_" + std::to_string(testing::UnitTest::GetInstance()->random_seed()) +
            "_" + testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  std::string out(const std::string& name) const { return (dir_ / name).string(); }
  // The names in the test's folder.
  std::set<std::string> files() const {
    std::set<std::string> names;
    for (const auto& e : fs::directory_iterator(dir_)) names.insert(e.path().filename().string());
    return names;
  }
  fs::path dir_;
};

TEST_F(Launch, SameFramesOnOneAndTwoRanksAndOnlyRankZeroWrites) {
  Log single_log;
  const Tensor single = launch_job(tiny_job(out("single.mp4")), single_log.reporter());
  EXPECT_EQ(single_log.count("wrote " + out("single.mp4")), 1);
  for (int n : {1, 2}) {
    SCOPED_TRACE(n);
    const std::string name = "ranks" + std::to_string(n) + ".mp4";
    parallel::LocalWorld world(n, true);
    Log log;
    const Tensor frames = launch_job(tiny_job(out(name)), log.reporter(), &world);
    ASSERT_EQ(frames.shape(), single.shape());
    const double l2 = relative_l2(frames, single);
    std::printf("%d rank(s) vs one: relative L2 %.3g\n", n, l2);
    if (n == 1) {  // a world of one rank runs the single rank's code: the same bits
      EXPECT_EQ(std::memcmp(frames.raw(), single.raw(), single.nbytes()), 0);
    }
    EXPECT_LT(l2, 1e-6);
    EXPECT_EQ(log.count(std::to_string(n) + " ranks: "), 1);
    // Rank 0 alone reports: the model once, every step once, from one thread; one mp4 written.
    EXPECT_EQ(log.count("model tiny"), 1);
    EXPECT_EQ(log.count("wrote " + out(name)), 1);
    EXPECT_EQ(log.progress_threads.size(), 1u);
    EXPECT_EQ(log.steps, single_log.steps);
    for (const auto& [step, times] : log.steps) EXPECT_EQ(times, 1) << step;
  }
  // The outputs and nothing else: no second writer's temporary, no resume state left.
  EXPECT_EQ(files(), (std::set<std::string>{"single.mp4", "ranks1.mp4", "ranks2.mp4"}));
}

// upscale through the launcher: a video made by a one-rank generate, upscaled on 2 ranks
// (CFG-parallel) and, at guidance 1, on 2 ranks of one sequence group, against one rank.
TEST_F(Launch, UpscaleOnTwoRanksEqualsOneRank) {
  launch_job(tiny_job(out("input.mp4")), {});
  for (const double guidance : {5.0, 1.0}) {
    SCOPED_TRACE(guidance);
    LaunchJob job = tiny_job(out("single.mp4"));
    job.generate = false;
    job.input = out("input.mp4");
    job.options.guidance = guidance;
    const Tensor single = launch_job(job, {});
    job.options.output = out("ranks.mp4");
    parallel::LocalWorld world(2, guidance != 1.0);
    EXPECT_EQ(world.layout().seq, guidance == 1.0 ? 2 : 1);
    Log log;
    const Tensor frames = launch_job(job, log.reporter(), &world);
    ASSERT_EQ(frames.shape(), single.shape());
    EXPECT_LT(relative_l2(frames, single), 1e-5);
    EXPECT_EQ(log.count("wrote " + out("ranks.mp4")), 1);
    EXPECT_EQ(log.progress_threads.size(), 1u);
  }
  EXPECT_EQ(files(), (std::set<std::string>{"input.mp4", "single.mp4", "ranks.mp4"}));
}

// Rank `failing` of an inner LocalWorld fails: at its world barrier (the one before rank 0 writes,
// when every rank has its frames), or before it loads anything.
class FailingWorld final : public parallel::World {
 public:
  enum class When { AtTheLastBarrier, BeforeLoading };
  FailingWorld(int size, int failing, When when)
      : inner_(size, true), failing_(failing), when_(when) {}
  int size() const override { return inner_.size(); }
  parallel::WorldLayout layout() const override { return inner_.layout(); }
  void run(const std::function<void(const parallel::RankGroups&)>& fn) override {
    inner_.run([&](const parallel::RankGroups& g) {
      if (g.world->rank() != failing_) return fn(g);
      if (when_ == When::BeforeLoading) fail("injected failure before loading");
      Failing comm(*g.world);
      parallel::RankGroups mine = g;
      mine.world = &comm;
      fn(mine);
    });
  }

 private:
  // The rank's world communicator, but for barrier.
  class Failing final : public parallel::Communicator {
   public:
    explicit Failing(parallel::Communicator& c) : c_(c) {}
    int rank() const override { return c_.rank(); }
    int size() const override { return c_.size(); }
    std::string describe() const override { return c_.describe(); }
    Tensor all_to_all(const Tensor& x, int s, int c) override { return c_.all_to_all(x, s, c); }
    Tensor all_gather(const Tensor& x, int dim) override { return c_.all_gather(x, dim); }
    Tensor all_reduce_sum(const Tensor& x) override { return c_.all_reduce_sum(x); }
    void broadcast(Tensor& x, int root) override { c_.broadcast(x, root); }
    void barrier() override { fail("injected failure at the barrier"); }

   private:
    parallel::Communicator& c_;
  };
  parallel::LocalWorld inner_;
  int failing_;
  When when_;
};

std::string launch_error(const LaunchJob& job, parallel::World& world) {
  Log log;
  try {
    launch_job(job, log.reporter(), &world);
  } catch (const Error& e) {
    EXPECT_EQ(log.count("wrote "), 0);
    return e.what();
  }
  return "";
}

TEST_F(Launch, ARankFailingAfterTheOthersHaveTheirFramesLeavesNoOutput) {
  FailingWorld world(2, 1, FailingWorld::When::AtTheLastBarrier);
  const std::string e = launch_error(tiny_job(out("video.mp4")), world);
  EXPECT_EQ(e, "rank 1 of 2: injected failure at the barrier");
  // Rank 0 saved its resume state during the stages and kept it (a --resume continues there); no
  // mp4, no temporary.
  EXPECT_EQ(files(), (std::set<std::string>{"video.mp4.resume.safetensors"}));
}

TEST_F(Launch, ARankFailingToLoadStopsTheOthers) {
  FailingWorld world(4, 3, FailingWorld::When::BeforeLoading);
  const std::string e = launch_error(tiny_job(out("video.mp4")), world);
  EXPECT_EQ(e, "rank 3 of 4: injected failure before loading");
  EXPECT_FALSE(fs::exists(out("video.mp4")));
}

TEST_F(Launch, AWorldLaidOutForAnotherGuidanceIsRefused) {
  parallel::LocalWorld world(2, false);  // one sequence group of 2: guidance 1's layout
  const std::string e = launch_error(tiny_job(out("video.mp4")), world);
  EXPECT_NE(e.find("laid out 1 x 2"), std::string::npos) << e;
  EXPECT_NE(e.find("needs 2 x 1"), std::string::npos) << e;
  EXPECT_TRUE(files().empty());
}

}  // namespace
}  // namespace freeswim::pipeline
