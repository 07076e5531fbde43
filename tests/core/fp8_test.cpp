// The fp8 conversion tables against the formats' defining formula, over all 256 codes of each:
// value = (-1)^s * 2^(e - bias) * (1 + m / 2^M) for a normal code, (-1)^s * 2^(1 - bias) * m / 2^M
// for a subnormal one (e = 0), with the special codes of each format.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>

#include "core/dtype.h"
#include "core/tensor.h"

namespace freeswim {
namespace {

// The formula, in double, written from the format description rather than from bit moves.
double formula(int code, int exp_bits, int man_bits) {
  const int sign = code >> 7;
  const int e = (code >> man_bits) & ((1 << exp_bits) - 1);
  const int m = code & ((1 << man_bits) - 1);
  const int bias = (1 << (exp_bits - 1)) - 1;
  const double mag = e == 0 ? std::ldexp(m, 1 - bias - man_bits)
                            : std::ldexp(1.0 + std::ldexp(m, -man_bits), e - bias);
  return sign ? -mag : mag;
}

uint32_t bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}

TEST(Fp8, E4M3EveryCode) {
  int nans = 0;
  for (int c = 0; c < 256; ++c) {
    const float got = f8e4m3_to_float(static_cast<uint8_t>(c));
    // E4M3FN: exponent and mantissa all ones is NaN; there is no infinity.
    if ((c & 0x7f) == 0x7f) {
      EXPECT_TRUE(std::isnan(got)) << "code " << c;
      ++nans;
      continue;
    }
    const double want = formula(c, 4, 3);
    EXPECT_EQ(static_cast<double>(got), want) << "code " << c;
    EXPECT_EQ(std::signbit(got), (c & 0x80) != 0) << "code " << c;  // -0 included
  }
  EXPECT_EQ(nans, 2);
  EXPECT_EQ(f8e4m3_to_float(0x7e), 448.f);  // largest finite
  EXPECT_EQ(f8e4m3_to_float(0xfe), -448.f);
  EXPECT_EQ(f8e4m3_to_float(0x08), 0.015625f);     // smallest normal, 2^-6
  EXPECT_EQ(f8e4m3_to_float(0x01), 0.001953125f);  // smallest subnormal, 2^-9
  EXPECT_EQ(f8e4m3_to_float(0x38), 1.f);
  EXPECT_EQ(bits(f8e4m3_to_float(0x80)), 0x80000000u);  // negative zero
}

TEST(Fp8, E5M2EveryCode) {
  int nans = 0, infs = 0;
  for (int c = 0; c < 256; ++c) {
    const float got = f8e5m2_to_float(static_cast<uint8_t>(c));
    // IEEE-like: exponent all ones is infinity (mantissa 0) or NaN.
    if (((c >> 2) & 0x1f) == 0x1f) {
      if ((c & 3) == 0) {
        EXPECT_TRUE(std::isinf(got)) << "code " << c;
        EXPECT_EQ(std::signbit(got), (c & 0x80) != 0) << "code " << c;
        ++infs;
      } else {
        EXPECT_TRUE(std::isnan(got)) << "code " << c;
        ++nans;
      }
      continue;
    }
    EXPECT_EQ(static_cast<double>(got), formula(c, 5, 2)) << "code " << c;
    EXPECT_EQ(std::signbit(got), (c & 0x80) != 0) << "code " << c;
  }
  EXPECT_EQ(nans, 6);
  EXPECT_EQ(infs, 2);
  EXPECT_EQ(f8e5m2_to_float(0x7b), 57344.f);               // largest finite
  EXPECT_EQ(f8e5m2_to_float(0x01), std::ldexp(1.f, -16));  // smallest subnormal
  EXPECT_EQ(f8e5m2_to_float(0x3c), 1.f);
}

TEST(Fp8, TensorConversionUsesTheTables) {
  Tensor t = Tensor::empty({256}, DType::F8_E4M3);
  Tensor u = Tensor::empty({256}, DType::F8_E5M2);
  for (int c = 0; c < 256; ++c) {
    t.data<uint8_t>()[c] = static_cast<uint8_t>(c);
    u.data<uint8_t>()[c] = static_cast<uint8_t>(c);
  }
  const Tensor tf = t.to(DType::F32), uf = u.to(DType::F32);
  for (int c = 0; c < 256; ++c) {
    EXPECT_EQ(bits(tf.data<float>()[c]), bits(f8e4m3_to_float(static_cast<uint8_t>(c))));
    EXPECT_EQ(bits(uf.data<float>()[c]), bits(f8e5m2_to_float(static_cast<uint8_t>(c))));
  }
  EXPECT_EQ(dtype_size(DType::F8_E4M3), 1u);
  EXPECT_EQ(dtype_name(DType::F8_E5M2), "F8_E5M2");
}

}  // namespace
}  // namespace freeswim
