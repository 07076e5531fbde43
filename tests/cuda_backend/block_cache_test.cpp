// The caching allocator's free lists (ops/cuda/block_cache.h): exact reuse, the bounded larger fit
// under memory pressure, largest-first release, and the byte count. Host-only (fake addresses).
#include "ops/cuda/block_cache.h"

#include <gtest/gtest.h>

#include <cstdint>

namespace freeswim::ops::cuda {
namespace {

void* fake(uintptr_t i) {
  return reinterpret_cast<void*>(i * 4096);
}

TEST(BlockCache, ExactSizeFirstInLastOut) {
  BlockCache c;
  EXPECT_TRUE(c.empty());
  EXPECT_EQ(c.take_exact(512), nullptr);
  c.put(fake(1), 512);
  c.put(fake(2), 512);
  c.put(fake(3), 1024);
  EXPECT_EQ(c.bytes(), 2048u);
  EXPECT_EQ(c.take_exact(512), fake(2));
  EXPECT_EQ(c.take_exact(512), fake(1));
  EXPECT_EQ(c.take_exact(512), nullptr);
  EXPECT_EQ(c.bytes(), 1024u);
  EXPECT_EQ(c.take_exact(1024), fake(3));
  EXPECT_TRUE(c.empty());
  EXPECT_EQ(c.bytes(), 0u);
}

TEST(BlockCache, FitTakesTheSmallestLargerBlockWithinTheFactor) {
  BlockCache c;
  const size_t mib = size_t{1} << 20;
  c.put(fake(1), 64 * mib);
  c.put(fake(2), 10 * mib);
  c.put(fake(3), 6 * mib);
  size_t got = 0;
  EXPECT_EQ(c.take_fit(7 * mib, &got), fake(2));  // 10 MiB: the smallest of at least 7
  EXPECT_EQ(got, 10 * mib);
  got = 0;
  EXPECT_EQ(c.take_fit(8 * mib, &got), nullptr);  // 64 MiB is more than 4 x 8 MiB
  EXPECT_EQ(got, 0u);
  EXPECT_EQ(c.take_fit(16 * mib, &got), fake(1));  // exactly 4 x
  EXPECT_EQ(got, 64 * mib);
  EXPECT_EQ(c.take_fit(6 * mib, &got), fake(3));  // an exact size fits too
  EXPECT_TRUE(c.empty());
}

TEST(BlockCache, PopLargestEmptiesInDecreasingSize) {
  BlockCache c;
  c.put(fake(1), 2048);
  c.put(fake(2), 8192);
  c.put(fake(3), 4096);
  c.put(fake(4), 8192);
  size_t got = 0, last = SIZE_MAX, total = 0;
  int n = 0;
  while (void* b = c.pop_largest(&got)) {
    EXPECT_NE(b, nullptr);
    EXPECT_LE(got, last);
    last = got;
    total += got;
    ++n;
  }
  EXPECT_EQ(n, 4);
  EXPECT_EQ(total, 2048u + 8192u + 4096u + 8192u);
  EXPECT_TRUE(c.empty());
  EXPECT_EQ(c.bytes(), 0u);
}

}  // namespace
}  // namespace freeswim::ops::cuda
