// Counter-based random numbers (Philox-4x32-10, Salmon et al., SC'11), written for this
// project. A counter-based generator has no state to advance: the value at position i is a pure
// function of (seed, i). That is what makes noise reproducible whatever the thread count, and
// identical on the GPU later: a CUDA kernel includes this header and calls the same inline
// functions (they are marked FS_HOST_DEVICE).
//
// Layout of the stream: element i of the normal stream of `seed` comes from the Philox block
// with key = seed (low word, high word) and counter = (i / 4 low word, i / 4 high word, 0, 0);
// the block's four 32-bit words are two Box-Muller pairs giving elements 4k .. 4k+3.
#pragma once

#include <cmath>
#include <cstdint>
#include <vector>

#include "core/host_device.h"
#include "core/tensor.h"

namespace freeswim::rng {

struct PhiloxBlock {
  uint32_t v[4];
};

// The multipliers and Weyl key increments of Philox-4x32 (from the paper).
constexpr uint32_t kPhiloxM0 = 0xD2511F53u;
constexpr uint32_t kPhiloxM1 = 0xCD9E8D57u;
constexpr uint32_t kPhiloxW0 = 0x9E3779B9u;
constexpr uint32_t kPhiloxW1 = 0xBB67AE85u;

// One round: two 32x32->64 products, their high halves mixed with the other words and the key.
FS_HOST_DEVICE inline PhiloxBlock philox_round(PhiloxBlock x, uint32_t k0, uint32_t k1) {
  const uint64_t p0 = static_cast<uint64_t>(kPhiloxM0) * x.v[0];
  const uint64_t p1 = static_cast<uint64_t>(kPhiloxM1) * x.v[2];
  PhiloxBlock y;
  y.v[0] = static_cast<uint32_t>(p1 >> 32) ^ x.v[1] ^ k0;
  y.v[1] = static_cast<uint32_t>(p1);
  y.v[2] = static_cast<uint32_t>(p0 >> 32) ^ x.v[3] ^ k1;
  y.v[3] = static_cast<uint32_t>(p0);
  return y;
}

// Philox-4x32 with 10 rounds; the key is bumped by the Weyl constants between rounds.
FS_HOST_DEVICE inline PhiloxBlock philox4x32_10(PhiloxBlock counter, uint32_t k0, uint32_t k1) {
  for (int r = 0; r < 10; ++r) {
    if (r > 0) {
      k0 += kPhiloxW0;
      k1 += kPhiloxW1;
    }
    counter = philox_round(counter, k0, k1);
  }
  return counter;
}

// A 32-bit word to a uniform in the open interval (0, 1): the centre of its 2^-32 bin, so
// log() in Box-Muller never sees 0.
FS_HOST_DEVICE inline double uniform_open(uint32_t w) {
  return (static_cast<double>(w) + 0.5) * (1.0 / 4294967296.0);
}

// The four standard normals of block `block` (elements 4*block .. 4*block+3) of stream `seed`.
// Computed in double and rounded once to float, so that libm differences between host and
// device (a few double ulps) almost never change the float result.
FS_HOST_DEVICE inline void normal4(uint64_t seed, uint64_t block, float out[4]) {
  const PhiloxBlock ctr{{static_cast<uint32_t>(block), static_cast<uint32_t>(block >> 32), 0u, 0u}};
  const PhiloxBlock w =
      philox4x32_10(ctr, static_cast<uint32_t>(seed), static_cast<uint32_t>(seed >> 32));
  const double two_pi = 6.283185307179586476925286766559;
  for (int pair = 0; pair < 2; ++pair) {
    // Unqualified math calls: the <cmath> overloads on the host, CUDA's on the device.
    const double r = sqrt(-2.0 * log(uniform_open(w.v[2 * pair])));
    const double theta = two_pi * uniform_open(w.v[2 * pair + 1]);
    out[2 * pair] = static_cast<float>(r * cos(theta));
    out[2 * pair + 1] = static_cast<float>(r * sin(theta));
  }
}

// Standard normals for elements [offset, offset + n) of stream `seed`. `threads` <= 0 picks the
// hardware concurrency for large n; the values never depend on it.
std::vector<float> normal(uint64_t seed, uint64_t offset, int64_t n, int threads = 0);
void fill_normal(float* out, uint64_t seed, uint64_t offset, int64_t n, int threads = 0);
// A CPU f32 tensor of `shape` filled with elements [offset, offset + numel) of stream `seed`
// (row-major order), e.g. the initial latent noise of a run.
Tensor normal_tensor(const Shape& shape, uint64_t seed, uint64_t offset = 0, int threads = 0);

}  // namespace freeswim::rng
