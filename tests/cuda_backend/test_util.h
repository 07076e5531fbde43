// Helpers of the CUDA backend tests: random CPU tensors, copies to the GPU in a given dtype,
// the registration of the backend is in ops_test.cpp.
#pragma once

#include <gtest/gtest.h>

#include <cstdlib>
#include <random>
#include <string>

#include "core/tensor.h"
#include "ops/cuda/cuda_backend.h"
#include "ops/ops.h"

namespace freeswim::cuda_test {

// The dtypes the tests name most.
inline constexpr DType kBF = DType::BF16;
inline constexpr DType kF32 = DType::F32;

// The golden directory: FREESWIM_GOLDEN_DIR from the environment when set (a GPU machine that
// holds a copy elsewhere), else the build's.
inline std::string golden_dir() {
  const char* env = std::getenv("FREESWIM_GOLDEN_DIR");
  return env && *env ? env : FREESWIM_GOLDEN_DIR;
}

inline Tensor random_cpu(const Shape& s, uint64_t seed, float lo = -1.f, float hi = 1.f) {
  std::mt19937_64 gen(seed);
  std::uniform_real_distribution<float> dist(lo, hi);
  std::vector<float> v(static_cast<size_t>(shape_numel(s)));
  for (float& x : v) x = dist(gen);
  return Tensor::from_vector(s, v);
}

// The CPU tensor on the GPU in `dtype` (F32 or BF16).
inline Tensor to_cuda(const Tensor& cpu, DType dtype) {
  return cpu.to(dtype).to(Device::CUDA);
}

// The CPU oracle's input: the same values the GPU sees (bf16-rounded when it sees bf16).
inline Tensor as_seen(const Tensor& cpu, DType dtype) {
  return cpu.to(dtype).to(DType::F32);
}

inline void expect_close(const Tensor& gpu, const Tensor& cpu, double tol, const char* what) {
  ASSERT_EQ(gpu.device(), Device::CUDA) << what;
  ASSERT_EQ(gpu.shape(), cpu.shape()) << what << ": " << gpu.describe() << " vs " << cpu.describe();
  const double err = relative_l2(gpu, cpu);
  EXPECT_LT(err, tol) << what << ": relative L2 error " << err;
}

// Values that differ between two predictions of one shape (any device and float dtype), compared
// as f32 on the CPU: 0 when the GPU computed the same bits twice.
inline int64_t count_differing(const Tensor& a, const Tensor& b) {
  const Tensor x = a.to(Device::CPU).to(DType::F32), y = b.to(Device::CPU).to(DType::F32);
  EXPECT_EQ(x.shape(), y.shape());
  if (x.shape() != y.shape()) return x.numel();
  int64_t n = 0;
  for (int64_t i = 0; i < x.numel(); ++i) n += x.data<float>()[i] != y.data<float>()[i];
  return n;
}

}  // namespace freeswim::cuda_test
