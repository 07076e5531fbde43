// Host-only checks of PerDevice (ops/cuda/per_device.h): the per-GPU state of the CUDA backend.
// The device lookup is injected (a thread-local "current device"), so no GPU or CUDA library is
// needed: one creation per device however many threads ask at once, each thread getting its
// device's slot, retry after a failed creation, the device range, destruction order.
#include "ops/cuda/per_device.h"

#include <gtest/gtest.h>

#include <atomic>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <thread>
#include <vector>

#include "core/error.h"

namespace freeswim::ops::cuda {
namespace {

thread_local int t_device = 0;  // what the test's lookup calls the current device

struct TestDevice {
  int operator()() const { return t_device; }
};

struct State {
  explicit State(int d) : device(d) {}
  int device;
  std::thread::id made_by = std::this_thread::get_id();
  int uses = 0;
};

using Slots = PerDevice<State, TestDevice>;

Slots::Make counting(std::atomic<int>* made) {
  return [made](int device) {
    ++made[device];
    return std::make_unique<State>(device);
  };
}

TEST(PerDevice, MakesASlotOnFirstUseOnly) {
  std::atomic<int> made[kMaxDevices] = {};
  Slots slots(counting(made));
  EXPECT_EQ(slots.made(), 0);
  EXPECT_EQ(slots.find(0), nullptr);
  t_device = 3;
  State& a = slots.get();
  EXPECT_EQ(a.device, 3);
  EXPECT_EQ(&slots.get(), &a);
  EXPECT_EQ(&slots.get(3), &a);
  EXPECT_EQ(slots.find(3), &a);
  EXPECT_EQ(slots.find(0), nullptr);  // find never makes
  EXPECT_EQ(slots.made(), 1);
  EXPECT_EQ(made[3].load(), 1);
  t_device = 0;
  State& b = slots.get();
  EXPECT_EQ(b.device, 0);
  EXPECT_NE(&a, &b);
  EXPECT_EQ(slots.made(), 2);
  EXPECT_EQ(slots.device(), 0);
  for (int d = 0; d < kMaxDevices; ++d) EXPECT_EQ(made[d].load(), d == 0 || d == 3 ? 1 : 0);
}

TEST(PerDevice, ForEachVisitsTheSlotsInTheOrderMade) {
  std::atomic<int> made[kMaxDevices] = {};
  Slots slots(counting(made));
  for (int d : {5, 1, 63, 0}) slots.get(d);
  slots.get(1);
  std::vector<int> seen;
  slots.for_each([&](int device, State& s) {
    EXPECT_EQ(s.device, device);
    seen.push_back(device);
  });
  EXPECT_EQ(seen, (std::vector<int>{5, 1, 63, 0}));
}

TEST(PerDevice, DevicesOutsideTheSlotsAreRefused) {
  std::atomic<int> made[kMaxDevices] = {};
  Slots slots(counting(made));
  EXPECT_THROW(slots.get(-1), Error);
  EXPECT_THROW(slots.get(kMaxDevices), Error);
  t_device = kMaxDevices + 7;
  try {
    slots.get();
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("device 71"), std::string::npos) << e.what();
  }
  t_device = 0;
  EXPECT_EQ(slots.find(-1), nullptr);
  EXPECT_EQ(slots.find(kMaxDevices), nullptr);
  EXPECT_EQ(slots.made(), 0);
}

TEST(PerDevice, AFailedCreationLeavesTheSlotEmptyAndIsRetried) {
  int calls = 0;
  Slots slots([&](int device) -> std::unique_ptr<State> {
    if (++calls == 1) throw std::runtime_error("no handle");
    return std::make_unique<State>(device);
  });
  EXPECT_THROW(slots.get(2), std::runtime_error);
  EXPECT_EQ(slots.find(2), nullptr);
  EXPECT_EQ(slots.made(), 0);
  EXPECT_EQ(slots.get(2).device, 2);
  EXPECT_EQ(calls, 2);
  EXPECT_EQ(slots.made(), 1);
}

TEST(PerDevice, AFactoryGivingNothingIsAnError) {
  Slots slots([](int) { return std::unique_ptr<State>(); });
  EXPECT_THROW(slots.get(0), Error);
  EXPECT_EQ(slots.made(), 0);
}

// Many threads, several per device, all asking at once (released together), many times each:
// every device's state is made exactly once, by one of that device's threads, and every thread
// of a device gets the same object; devices nobody asked for have none.
TEST(PerDevice, ConcurrentThreadsMakeOneStatePerDevice) {
  constexpr int kDevices = 8, kThreadsPerDevice = 4, kRounds = 2000;
  std::atomic<int> made[kMaxDevices] = {};
  Slots slots([&](int device) {
    ++made[device];
    std::this_thread::yield();  // widen the window for a second creation
    return std::make_unique<State>(device);
  });
  std::atomic<int> waiting{kDevices * kThreadsPerDevice};
  std::vector<State*> got(kDevices * kThreadsPerDevice, nullptr);
  std::vector<std::thread::id> ids(got.size());
  std::atomic<int> wrong{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kDevices * kThreadsPerDevice; ++t) {
    threads.emplace_back([&, t] {
      t_device = (t * 5) % kDevices;  // threads of a device are not neighbours
      ids[static_cast<size_t>(t)] = std::this_thread::get_id();
      --waiting;
      while (waiting.load() > 0) std::this_thread::yield();
      State* first = &slots.get();
      for (int r = 0; r < kRounds; ++r) {
        State* s = &slots.get();
        if (s != first || s->device != t_device) ++wrong;
      }
      got[static_cast<size_t>(t)] = first;
    });
  }
  for (std::thread& th : threads) th.join();
  EXPECT_EQ(wrong.load(), 0);
  EXPECT_EQ(slots.made(), kDevices);
  for (int d = 0; d < kMaxDevices; ++d) EXPECT_EQ(made[d].load(), d < kDevices ? 1 : 0) << d;
  for (size_t t = 0; t < got.size(); ++t) {
    const int d = (static_cast<int>(t) * 5) % kDevices;
    ASSERT_NE(got[t], nullptr);
    EXPECT_EQ(got[t], slots.find(d));
    EXPECT_EQ(got[t]->device, d);
  }
  // Each state was made on a thread whose device it is.
  for (int d = 0; d < kDevices; ++d) {
    bool by_own_thread = false;
    for (size_t t = 0; t < ids.size(); ++t)
      if ((static_cast<int>(t) * 5) % kDevices == d && ids[t] == slots.find(d)->made_by)
        by_own_thread = true;
    EXPECT_TRUE(by_own_thread) << d;
  }
  // for_each while nothing is being made sees every slot once.
  int visited = 0;
  slots.for_each([&](int, State& s) {
    ++s.uses;
    ++visited;
  });
  EXPECT_EQ(visited, kDevices);
}

// Threads reading made slots through for_each and find while others make new ones: readers see
// only fully made states.
TEST(PerDevice, ReadersSeeOnlyMadeStatesWhileOthersAreMade) {
  Slots slots([](int device) { return std::make_unique<State>(device); });
  std::atomic<bool> done{false};
  std::atomic<int> bad{0};
  std::thread reader([&] {
    while (!done.load()) {
      slots.for_each([&](int device, State& s) {
        if (s.device != device) ++bad;
      });
      for (int d = 0; d < kMaxDevices; ++d)
        if (const State* s = slots.find(d); s != nullptr && s->device != d) ++bad;
    }
  });
  std::vector<std::thread> makers;
  for (int m = 0; m < 4; ++m)
    makers.emplace_back([&, m] {
      for (int d = m; d < kMaxDevices; d += 4) {
        t_device = d;
        slots.get();
      }
    });
  for (std::thread& th : makers) th.join();
  done = true;
  reader.join();
  EXPECT_EQ(bad.load(), 0);
  EXPECT_EQ(slots.made(), kMaxDevices);
}

struct Noted {
  Noted(int d, std::vector<int>* log, std::mutex* mu) : device(d), log_(log), mu_(mu) {}
  ~Noted() {
    const std::lock_guard<std::mutex> lock(*mu_);
    log_->push_back(device);
  }
  int device;
  std::vector<int>* log_;
  std::mutex* mu_;
};

TEST(PerDevice, DestroysTheSlotsLastMadeFirst) {
  std::vector<int> destroyed;
  std::mutex mu;
  {
    PerDevice<Noted, TestDevice> slots(
        [&](int device) { return std::make_unique<Noted>(device, &destroyed, &mu); });
    for (int d : {3, 0, 5}) slots.get(d);
    EXPECT_TRUE(destroyed.empty());
  }
  EXPECT_EQ(destroyed, (std::vector<int>{5, 0, 3}));
}

}  // namespace
}  // namespace freeswim::ops::cuda
