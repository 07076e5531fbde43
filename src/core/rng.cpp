#include "core/rng.h"

#include <algorithm>
#include <thread>

#include "core/error.h"

namespace freeswim::rng {

namespace {

// Below this many elements a thread costs more than it saves.
constexpr int64_t kElementsPerThread = 1 << 16;

// Elements [offset, offset + n) into out[0 .. n). The first and last blocks may be partial
// when offset or offset + n is not a multiple of 4.
void fill_range(float* out, uint64_t seed, uint64_t offset, int64_t n) {
  int64_t done = 0;
  while (done < n) {
    const uint64_t index = offset + static_cast<uint64_t>(done);
    const uint64_t block = index / 4;
    const int lane = static_cast<int>(index % 4);
    float four[4];
    normal4(seed, block, four);
    const int64_t take = std::min<int64_t>(4 - lane, n - done);
    for (int64_t j = 0; j < take; ++j) out[done + j] = four[lane + j];
    done += take;
  }
}

}  // namespace

void fill_normal(float* out, uint64_t seed, uint64_t offset, int64_t n, int threads) {
  FS_CHECK(n >= 0, "rng: negative element count {}", n);
  if (n == 0) return;
  FS_CHECK(offset + static_cast<uint64_t>(n) >= offset,
           "rng: elements [{}, {} + {}) run past the end of the stream", offset, offset, n);
  int want = threads > 0 ? threads : static_cast<int>(std::thread::hardware_concurrency());
  want = std::max(1, want);
  const int64_t useful = std::max<int64_t>(1, n / kElementsPerThread);
  const int count = static_cast<int>(std::min<int64_t>(want, useful));
  if (count == 1) {
    fill_range(out, seed, offset, n);
    return;
  }
  // Contiguous chunks; each element is computed from (seed, index) alone, so the split does not
  // change any value.
  const int64_t chunk = (n + count - 1) / count;
  std::vector<std::thread> pool;
  pool.reserve(static_cast<size_t>(count));
  for (int t = 0; t < count; ++t) {
    const int64_t begin = std::min<int64_t>(n, t * chunk);
    const int64_t end = std::min<int64_t>(n, begin + chunk);
    // fill_range allocates nothing and cannot throw, so no exception needs carrying back.
    pool.emplace_back(
        [=] { fill_range(out + begin, seed, offset + static_cast<uint64_t>(begin), end - begin); });
  }
  for (auto& th : pool) th.join();
}

std::vector<float> normal(uint64_t seed, uint64_t offset, int64_t n, int threads) {
  FS_CHECK(n >= 0, "rng: negative element count {}", n);
  std::vector<float> out(static_cast<size_t>(n));
  fill_normal(out.data(), seed, offset, n, threads);
  return out;
}

Tensor normal_tensor(const Shape& shape, uint64_t seed, uint64_t offset, int threads) {
  Tensor t = Tensor::empty(shape, DType::F32, Device::CPU);
  fill_normal(t.data<float>(), seed, offset, t.numel(), threads);
  return t;
}

}  // namespace freeswim::rng
