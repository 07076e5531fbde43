// parallel_for (core/threads.h): every index once, whatever the thread count; calls nested inside a
// chunk and calls from several threads at once; an exception reaches the caller, and the workers
// serve the next call.
#include "core/threads.h"

#include <gtest/gtest.h>

#include <atomic>
#include <stdexcept>
#include <thread>
#include <vector>

namespace freeswim {
namespace {

// Marks each index of [0, n) as parallel_for hands it out; true when each came exactly once.
bool covers_once(int64_t n, int64_t grain) {
  std::vector<std::atomic<int>> hits(static_cast<size_t>(n));
  parallel_for(n, grain, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) hits[static_cast<size_t>(i)].fetch_add(1);
  });
  for (const auto& h : hits)
    if (h.load() != 1) return false;
  return true;
}

TEST(ParallelFor, EveryIndexOnceForAnyThreadCount) {
  for (const int threads : {1, 2, 3, 8, 0}) {
    set_max_threads(threads);
    for (const int64_t n : {1, 2, 7, 64, 1000, 100003})
      for (const int64_t grain : {1, 16, 5000}) EXPECT_TRUE(covers_once(n, grain)) << threads;
  }
  set_max_threads(0);
}

TEST(ParallelFor, NestedCallsRunInsideTheChunk) {
  set_max_threads(4);
  std::vector<std::atomic<int>> hits(64 * 64);
  parallel_for(64, 1, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i)
      parallel_for(64, 1, [&](int64_t b2, int64_t e2) {
        for (int64_t j = b2; j < e2; ++j) hits[static_cast<size_t>(i * 64 + j)].fetch_add(1);
      });
  });
  for (const auto& h : hits) ASSERT_EQ(h.load(), 1);
  set_max_threads(0);
}

TEST(ParallelFor, CallsFromSeveralThreadsAtOnce) {
  set_max_threads(4);
  std::atomic<int> bad{0};
  std::vector<std::thread> callers;
  for (int t = 0; t < 6; ++t)
    callers.emplace_back([&] {
      for (int r = 0; r < 50; ++r)
        if (!covers_once(5000, 100)) bad.fetch_add(1);
    });
  for (std::thread& c : callers) c.join();
  EXPECT_EQ(bad.load(), 0);
  set_max_threads(0);
}

TEST(ParallelFor, AnExceptionReachesTheCallerAndTheWorkersGoOn) {
  set_max_threads(4);
  for (int round = 0; round < 3; ++round) {
    EXPECT_THROW(parallel_for(1000, 1,
                              [](int64_t b, int64_t) {
                                if (b > 0) throw std::runtime_error("chunk failed");
                              }),
                 std::runtime_error);
    EXPECT_TRUE(covers_once(1000, 1));
  }
  set_max_threads(0);
}

}  // namespace
}  // namespace freeswim
