#include "core/threads.h"

#include <atomic>

namespace freeswim {

namespace {
std::atomic<int> g_threads{0};
}

int max_threads() {
  int n = g_threads.load();
  if (n > 0) return n;
  unsigned hc = std::thread::hardware_concurrency();
  return hc ? static_cast<int>(hc) : 1;
}

void set_max_threads(int n) {
  g_threads.store(n < 0 ? 0 : n);
}

void parallel_for(int64_t n, int64_t grain, const std::function<void(int64_t, int64_t)>& fn) {
  if (n <= 0) return;
  grain = std::max<int64_t>(grain, 1);
  int64_t workers = std::min<int64_t>(max_threads(), (n + grain - 1) / grain);
  if (workers <= 1) {
    fn(0, n);
    return;
  }
  const int64_t chunk = (n + workers - 1) / workers;
  std::vector<std::thread> pool;
  std::exception_ptr error;
  std::mutex error_mutex;
  auto run = [&](int64_t b, int64_t e) {
    try {
      fn(b, e);
    } catch (...) {
      std::lock_guard<std::mutex> lock(error_mutex);
      if (!error) error = std::current_exception();
    }
  };
  for (int64_t w = 1; w < workers; ++w) {
    int64_t b = w * chunk, e = std::min(n, b + chunk);
    if (b < e) pool.emplace_back(run, b, e);
  }
  run(0, std::min(n, chunk));
  for (auto& t : pool) t.join();
  if (error) std::rethrow_exception(error);
}

}  // namespace freeswim
