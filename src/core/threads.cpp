#include "core/threads.h"

#include <atomic>
#include <condition_variable>
#include <utility>

namespace freeswim {

namespace {

std::atomic<int> g_threads{0};

// The worker threads parallel_for hands its chunks to: made on first use and kept, so that a call
// costs a wake-up rather than creating and joining threads (the CPU path calls parallel_for for
// every elementwise op). One job at a time: parallel_for enters run() holding g_pool_mutex.
class Pool {
 public:
  explicit Pool(int workers) {
    threads_.reserve(static_cast<size_t>(workers));
    for (int i = 0; i < workers; ++i) threads_.emplace_back([this] { work(); });
  }
  ~Pool() {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      stop_ = true;
    }
    wake_.notify_all();
    for (std::thread& t : threads_) t.join();
  }
  Pool(const Pool&) = delete;
  Pool& operator=(const Pool&) = delete;

  int workers() const { return static_cast<int>(threads_.size()); }

  // task(i) for i in [1, n) on the workers and task(0) on the caller (n - 1 <= workers()); returns
  // when all have finished, rethrowing the first exception any of them threw.
  void run(int n, const std::function<void(int)>& task) {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      task_ = &task;
      next_ = 1;
      count_ = n;
      pending_ = n - 1;
      error_ = nullptr;
      ++generation_;
    }
    wake_.notify_all();
    call(task, 0);
    std::unique_lock<std::mutex> lock(mutex_);
    done_.wait(lock, [&] { return pending_ == 0; });
    task_ = nullptr;
    if (error_) std::rethrow_exception(std::exchange(error_, nullptr));
  }

 private:
  void call(const std::function<void(int)>& task, int i) {
    try {
      task(i);
    } catch (...) {
      std::lock_guard<std::mutex> lock(mutex_);
      if (!error_) error_ = std::current_exception();
    }
  }

  void work() {
    uint64_t seen = 0;
    std::unique_lock<std::mutex> lock(mutex_);
    for (;;) {
      wake_.wait(lock, [&] { return stop_ || generation_ != seen; });
      if (stop_) return;
      seen = generation_;
      while (task_ != nullptr && next_ < count_) {
        const int i = next_++;
        const std::function<void(int)>& task = *task_;
        lock.unlock();
        call(task, i);
        lock.lock();
        if (--pending_ == 0) done_.notify_one();
      }
    }
  }

  std::vector<std::thread> threads_;
  std::mutex mutex_;
  std::condition_variable wake_, done_;
  const std::function<void(int)>* task_ = nullptr;
  int next_ = 0, count_ = 0, pending_ = 0;
  uint64_t generation_ = 0;
  bool stop_ = false;
  std::exception_ptr error_;
};

// The pool, and which thread may use it: one parallel_for at a time. A call made while another
// runs (from another thread, or nested inside a chunk) runs its chunks itself, one after the
// other: the results are the same (each index is computed by one thread with the same
// arithmetic), and no thread waits on a pool that is waiting on it.
std::mutex g_pool_mutex;
Pool* g_pool = nullptr;  // kept to the end of the process, its workers idle
thread_local bool t_in_job = false;

}  // namespace

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
  const int64_t workers = std::min<int64_t>(max_threads(), (n + grain - 1) / grain);
  const int64_t chunk = workers > 1 ? (n + workers - 1) / workers : n;
  const int chunks = static_cast<int>((n + chunk - 1) / chunk);
  auto run_chunk = [&](int c) {
    const int64_t b = c * chunk;
    fn(b, std::min(n, b + chunk));
  };
  std::unique_lock<std::mutex> pool_lock(g_pool_mutex, std::defer_lock);
  if (chunks <= 1 || t_in_job || !pool_lock.try_lock()) {
    for (int c = 0; c < chunks; ++c) run_chunk(c);
    return;
  }
  if (g_pool == nullptr || g_pool->workers() < chunks - 1) {
    delete g_pool;  // idle: its workers are joined
    g_pool = new Pool(chunks - 1);
  }
  // Marks the thread (the caller for chunk 0, a worker for the others) as inside a chunk for the
  // chunk's duration, also when it throws.
  struct InJob {
    InJob() { t_in_job = true; }
    ~InJob() { t_in_job = false; }
  };
  g_pool->run(chunks, [&](int c) {
    const InJob in_job;
    run_chunk(c);
  });
}

}  // namespace freeswim
