// Helpers shared by the DiT tests on the CPU: seeded random tensors and bitwise comparison.
#pragma once

#include <gtest/gtest.h>

#include <cstring>
#include <random>
#include <vector>

#include "core/tensor.h"

namespace freeswim::models {

inline Tensor random_tensor(const Shape& s, uint64_t seed, float lo = -1.f, float hi = 1.f) {
  std::mt19937_64 gen(seed);
  std::uniform_real_distribution<float> dist(lo, hi);
  std::vector<float> v(static_cast<size_t>(shape_numel(s)));
  for (float& x : v) x = dist(gen);
  return Tensor::from_vector(s, v);
}

// Bitwise equality of two f32 CPU tensors of one shape.
inline void expect_identical(const Tensor& a, const Tensor& b, const std::string& what) {
  ASSERT_EQ(a.shape(), b.shape()) << what;
  ASSERT_EQ(a.dtype(), DType::F32) << what;
  ASSERT_EQ(b.dtype(), DType::F32) << what;
  const float* pa = a.data<float>();
  const float* pb = b.data<float>();
  int64_t differ = 0;
  for (int64_t i = 0; i < a.numel(); ++i) differ += std::memcmp(pa + i, pb + i, sizeof(float)) != 0;
  EXPECT_EQ(differ, 0) << what << ": " << differ << " of " << a.numel() << " values differ";
}

}  // namespace freeswim::models
