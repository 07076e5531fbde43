// parallel_for: splits [0, n) into contiguous chunks run on up to hardware_concurrency threads:
// the caller and workers that wait between calls (threads.cpp). Results never depend on the thread
// count (each index is computed by exactly one thread with the same arithmetic), so CPU outputs
// are reproducible on any machine; a call made inside a chunk, or while another thread's call
// runs, runs its chunks on its own thread.
#pragma once

#include <algorithm>
#include <cstdint>
#include <exception>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace freeswim {

int max_threads();
void set_max_threads(int n);  // 0: hardware concurrency

// fn(begin, end) over chunks; `grain` is the smallest chunk worth a thread.
void parallel_for(int64_t n, int64_t grain, const std::function<void(int64_t, int64_t)>& fn);

}  // namespace freeswim
