// 2^x by a polynomial on the FMA pipe instead of the MUFU unit's ex2: a share of the softmax's
// exponentials can go here so that both units work (FlashAttention-4 does the same on
// Blackwell). Host and device (the host side is what the CPU test checks).
//
// x = j + f with j = rint(x) (by the 1.5 * 2^23 rounding trick: adding it leaves j in the low
// mantissa bits) and f in [-0.5, 0.5]; 2^f by a degree-3 polynomial fitted for relative error on
// that interval (iteratively reweighted least squares on Chebyshev nodes; maximum relative error
// 7.5e-5, 7.7e-5 after fp32 rounding, against bf16's 2^-9 = 2e-3 rounding of P); 2^j by adding
// j to the exponent field (j << 23: the constant's own bits vanish in the shift). Inputs below
// -125 give 0 (ex2.approx.ftz's flush to zero), -inf included.
#pragma once

#include <cstdint>
#include <cstring>

#include "core/host_device.h"

namespace freeswim::attention {

FS_HOST_DEVICE inline int32_t float_bits(float v) {
#if defined(__CUDA_ARCH__)
  return __float_as_int(v);
#else
  int32_t b;
  std::memcpy(&b, &v, sizeof(b));
  return b;
#endif
}

FS_HOST_DEVICE inline float bits_float(int32_t b) {
#if defined(__CUDA_ARCH__)
  return __int_as_float(b);
#else
  float v;
  std::memcpy(&v, &b, sizeof(v));
  return v;
#endif
}

FS_HOST_DEVICE inline float exp2_poly(float x) {
  constexpr float kRound = 12582912.f;  // 1.5 * 2^23
  const float xc = x > -125.f ? x : -125.f;
  const float t = xc + kRound;
  const float j = t - kRound;
  const float f = xc - j;
  const float p = ((0.05517249f * f + 0.2426112f) * f + 0.69326085f) * f + 0.99992806f;
  const int32_t r = static_cast<int32_t>(static_cast<uint32_t>(float_bits(p)) +
                                         (static_cast<uint32_t>(float_bits(t)) << 23));
  return x < -125.f ? 0.f : bits_float(r);
}

}  // namespace freeswim::attention
