// Every DiT op of the CUDA backend against the CPU backend (the fp32 oracle) on random inputs.
// Tolerances are relative L2 errors for bf16 storage with fp32 arithmetic: one bf16 rounding of
// the result is 2^-9 relative, a product over K terms a few times that.
#include <gtest/gtest.h>

#include <cmath>

#include "core/error.h"
#include "ops/cpu/cpu_backend.h"
#include "test_util.h"

namespace freeswim::cuda_test {
namespace {

// Registration touches no GPU, so listing the tests works on machines without one.
[[maybe_unused]] const bool kRegistered = (ops::cuda::register_cuda_backend(), true);

constexpr double kTol = 1e-2;
constexpr DType kBF = DType::BF16;
constexpr DType kF32 = DType::F32;

TEST(CudaOps, ToComputeKeepsVectorsAndTablesFp32) {
  const Tensor w = ops::to_compute(random_cpu({8, 4}, 1), Device::CUDA);
  const Tensor b = ops::to_compute(random_cpu({8}, 2), Device::CUDA);
  const Tensor table = ops::to_compute(random_cpu({1, 6, 8}, 3), Device::CUDA);
  const Tensor lat = ops::to_compute(random_cpu({16, 2, 4, 4}, 4), Device::CUDA);
  EXPECT_EQ(w.dtype(), kBF);
  EXPECT_EQ(b.dtype(), kF32);
  EXPECT_EQ(table.dtype(), kF32);
  EXPECT_EQ(lat.dtype(), kBF);
  EXPECT_EQ(lat.device(), Device::CUDA);
  const Tensor src = random_cpu({8, 4}, 1);
  EXPECT_LT(relative_l2(w, src), 4e-3);  // one bf16 rounding
  EXPECT_EQ(relative_l2(b, random_cpu({8}, 2)), 0.0);
  // bf16 input to a vector: widened exactly.
  const Tensor bb = ops::to_compute(random_cpu({8}, 2).to(kBF), Device::CUDA);
  EXPECT_EQ(bb.dtype(), kF32);
  EXPECT_EQ(relative_l2(bb, random_cpu({8}, 2).to(kBF)), 0.0);
}

struct LinearCase {
  int64_t M, K, N;
  bool bias;
};

class CudaLinear : public ::testing::TestWithParam<LinearCase> {};

TEST_P(CudaLinear, Bf16MatchesCpu) {
  const auto c = GetParam();
  const Tensor x = random_cpu({c.M, c.K}, 10), w = random_cpu({c.N, c.K}, 11, -0.2f, 0.2f);
  const Tensor b = c.bias ? random_cpu({c.N}, 12) : Tensor{};
  const Tensor want =
      ops::cpu::cpu_backend().linear(as_seen(x, kBF), as_seen(w, kBF), b.defined() ? b : Tensor{});
  const Tensor got =
      ops::linear(to_cuda(x, kBF), to_cuda(w, kBF), b.defined() ? to_cuda(b, kF32) : Tensor{});
  EXPECT_EQ(got.dtype(), kBF);
  expect_close(got, want, kTol, "linear");
}

INSTANTIATE_TEST_SUITE_P(Shapes, CudaLinear,
                         ::testing::Values(LinearCase{37, 96, 80, true},
                                           LinearCase{37, 96, 80, false},
                                           LinearCase{1, 64, 48, true},
                                           LinearCase{513, 256, 384, true},
                                           LinearCase{5, 33, 7, true}));

TEST(CudaOps, LinearFp32ActivationsStayFp32) {
  // The timestep path: fp32 [1, K] times a bf16 weight.
  const Tensor x = random_cpu({1, 256}, 20), w = random_cpu({96, 256}, 21, -0.1f, 0.1f);
  const Tensor b = random_cpu({96}, 22);
  const Tensor want = ops::cpu::cpu_backend().linear(x, as_seen(w, kBF), b);
  const Tensor got = ops::linear(to_cuda(x, kF32), to_cuda(w, kBF), to_cuda(b, kF32));
  EXPECT_EQ(got.dtype(), kF32);
  EXPECT_LT(relative_l2(got, want), 1e-5);
}

TEST(CudaOps, GeluAndSilu) {
  for (DType t : {kBF, kF32}) {
    const Tensor x = random_cpu({33, 70}, 30, -4.f, 4.f);
    const double tol = t == kBF ? kTol : 1e-5;
    expect_close(ops::gelu_tanh(to_cuda(x, t)), ops::cpu::cpu_backend().gelu_tanh(as_seen(x, t)),
                 tol, "gelu");
    expect_close(ops::silu(to_cuda(x, t)), ops::cpu::cpu_backend().silu(as_seen(x, t)), tol,
                 "silu");
  }
}

TEST(CudaOps, LayerNormEveryOptionalArgument) {
  const int64_t D = 1536;
  const Tensor x = random_cpu({19, D}, 40, -3.f, 5.f);
  const Tensor w = random_cpu({D}, 41, 0.5f, 1.5f), b = random_cpu({D}, 42);
  const Tensor sc = random_cpu({D}, 43), sh = random_cpu({D}, 44);
  auto& cpu = ops::cpu::cpu_backend();
  for (int mask = 0; mask < 16; ++mask) {
    auto pick = [&](int bit, const Tensor& t) { return (mask >> bit) & 1 ? t : Tensor{}; };
    auto gpu = [&](int bit, const Tensor& t) {
      return (mask >> bit) & 1 ? to_cuda(t, kF32) : Tensor{};
    };
    const Tensor want =
        cpu.layer_norm(as_seen(x, kBF), pick(0, w), pick(1, b), 1e-6f, pick(2, sc), pick(3, sh));
    const Tensor got =
        ops::layer_norm(to_cuda(x, kBF), gpu(0, w), gpu(1, b), 1e-6f, gpu(2, sc), gpu(3, sh));
    EXPECT_EQ(got.dtype(), kBF);
    expect_close(got, want, kTol, "layer_norm");
  }
  // fp32 activations keep fp32 precision.
  expect_close(ops::layer_norm(to_cuda(x, kF32), to_cuda(w, kF32), {}, 1e-6f),
               cpu.layer_norm(x, w, {}, 1e-6f, {}, {}), 1e-5, "layer_norm f32");
}

TEST(CudaOps, RmsNorm) {
  const Tensor x = random_cpu({23, 160}, 50), w = random_cpu({160}, 51, 0.5f, 1.5f);
  expect_close(ops::rms_norm(to_cuda(x, kBF), to_cuda(w, kF32), 1e-6f),
               ops::cpu::cpu_backend().rms_norm(as_seen(x, kBF), w, 1e-6f), kTol, "rms_norm");
}

// Tables as the DiT builds them: [positions, pairs, 2] of (cos, sin).
ops::Rope3D rope_tables(int T, int H, int W, int hd, Device dev) {
  const int hw = 2 * (hd / 6), td = hd - 2 * hw;
  auto axis = [&](int n, int dim) {
    std::vector<float> v;
    for (int p = 0; p < n; ++p)
      for (int i = 0; i < dim / 2; ++i) {
        const double a = p / std::pow(10000.0, 2.0 * i / dim);
        v.push_back(static_cast<float>(std::cos(a)));
        v.push_back(static_cast<float>(std::sin(a)));
      }
    return Tensor::from_vector({n, dim / 2, 2}, v).to(dev);
  };
  return ops::Rope3D{T, H, W, axis(T, td), axis(H, hw), axis(W, hw)};
}

TEST(CudaOps, Rope3d) {
  const int T = 3, H = 5, W = 7, heads = 2, hd = 128;
  const Tensor x = random_cpu({T * H * W, heads, hd}, 60);
  Tensor want = as_seen(x, kBF).clone();
  ops::cpu::cpu_backend().rope_3d(want, rope_tables(T, H, W, hd, Device::CPU));
  Tensor got = to_cuda(x, kBF);
  ops::rope_3d(got, rope_tables(T, H, W, hd, Device::CUDA));
  expect_close(got, want, kTol, "rope_3d");
}

struct AttnCase {
  int T, H, W, heads, hd, dh, dw;
  bool window;
  int64_t nk;  // dense: keys (0: as many as queries)
};

class CudaAttention : public ::testing::TestWithParam<AttnCase> {};

TEST_P(CudaAttention, MatchesCpu) {
  const auto c = GetParam();
  const int64_t n = int64_t{c.T} * c.H * c.W, nk = c.window || c.nk == 0 ? n : c.nk;
  const Tensor q = random_cpu({n, c.heads, c.hd}, 70, -2.f, 2.f);
  const Tensor k = random_cpu({nk, c.heads, c.hd}, 71, -2.f, 2.f);
  const Tensor v = random_cpu({nk, c.heads, c.hd}, 72);
  const WindowGeometry g{c.T, c.H, c.W, c.dh, c.dw};
  const WindowGeometry* win = c.window ? &g : nullptr;
  const float scale = 1.f / std::sqrt(static_cast<float>(c.hd));
  const Tensor want = ops::cpu::cpu_backend().attention(as_seen(q, kBF), as_seen(k, kBF),
                                                        as_seen(v, kBF), scale, win);
  const Tensor got = ops::attention(to_cuda(q, kBF), to_cuda(k, kBF), to_cuda(v, kBF), scale, win);
  EXPECT_EQ(got.dtype(), kBF);
  expect_close(got, want, kTol, "attention");
}

INSTANTIATE_TEST_SUITE_P(
    Kinds, CudaAttention,
    ::testing::Values(AttnCase{3, 12, 16, 2, 32, 2, 3, true, 0},      // tiny model: plain kernel
                      AttnCase{3, 12, 16, 2, 32, 0, 0, false, 0},     // plain dense
                      AttnCase{2, 5, 3, 2, 32, 0, 0, false, 12},      // plain cross-attention
                      AttnCase{3, 9, 14, 2, 64, 2, 3, true, 0},       // Hopper window kernel
                      AttnCase{2, 20, 24, 1, 128, 4, 6, true, 0},     // window, head_dim 128
                      AttnCase{2, 8, 10, 2, 128, 0, 0, false, 0},     // dense self-attention
                      AttnCase{2, 8, 10, 3, 128, 0, 0, false, 77}));  // cross-attention

TEST(CudaOps, AddBroadcastsAndAddGated) {
  auto& cpu = ops::cpu::cpu_backend();
  const Tensor a = random_cpu({6, 40}, 80), b = random_cpu({40}, 81);
  expect_close(ops::add(to_cuda(a, kF32), to_cuda(b, kF32)), cpu.add(a, b), 1e-6, "add f32");
  const Tensor x = random_cpu({30, 40}, 82), y = random_cpu({30, 40}, 83),
               gate = random_cpu({40}, 84);
  for (bool gated : {true, false}) {
    Tensor want = as_seen(x, kBF).clone();
    cpu.add_gated(want, as_seen(y, kBF), gated ? gate : Tensor{});
    Tensor got = to_cuda(x, kBF);
    ops::add_gated(got, to_cuda(y, kBF), gated ? to_cuda(gate, kF32) : Tensor{});
    EXPECT_EQ(got.dtype(), kBF);
    expect_close(got, want, kTol, "add_gated");
  }
}

TEST(CudaOps, PatchifyAndUnpatchifyMoveExactly) {
  auto& cpu = ops::cpu::cpu_backend();
  const Tensor lat = random_cpu({16, 3, 6, 8}, 90);
  for (DType t : {kBF, kF32}) {
    const Tensor p = ops::patchify(to_cuda(lat, t), 1, 2, 2);
    EXPECT_EQ(relative_l2(p, cpu.patchify(as_seen(lat, t), 1, 2, 2)), 0.0);
    const Tensor tokens = random_cpu({3 * 3 * 4, 64}, 91);
    const Tensor u = ops::unpatchify(to_cuda(tokens, t), 3, 3, 4, 1, 2, 2);
    ASSERT_EQ(u.shape(), (Shape{16, 3, 6, 8}));
    EXPECT_EQ(relative_l2(u, cpu.unpatchify(as_seen(tokens, t), 3, 3, 4, 1, 2, 2)), 0.0);
  }
}

TEST(CudaOps, BadArgumentsThrowNamedErrors) {
  const Tensor x = to_cuda(random_cpu({4, 8}, 100), kBF);
  EXPECT_THROW(ops::linear(x, to_cuda(random_cpu({3, 7}, 101), kBF)), Error);
  EXPECT_THROW(ops::layer_norm(x, to_cuda(random_cpu({7}, 102), kF32), {}, 1e-6f), Error);
  EXPECT_THROW(ops::conv3d(x, x, {}, ops::Conv3dParams{}), Error);  // 2-D x, 2-D weight
  const Tensor q = to_cuda(random_cpu({4, 2, 8}, 103), kBF);
  EXPECT_THROW(ops::attention_bias(q, q, to_cuda(random_cpu({4, 2, 8}, 104), kF32), 1.f, {}),
               Error);  // mixed dtypes
}

TEST(CudaMemory, CachingAllocatorReusesAndCountsBlocks) {
  ops::cuda::release_cached_memory();
  const auto before = ops::cuda::memory_stats();
  const void* first = nullptr;
  {
    const Tensor t = Tensor::empty({1 << 20}, kF32, Device::CUDA);  // 4 MiB
    first = t.raw();
    EXPECT_GE(ops::cuda::memory_stats().in_use, before.in_use + (size_t{4} << 20));
  }
  EXPECT_EQ(ops::cuda::memory_stats().in_use, before.in_use);
  const Tensor again = Tensor::empty({1 << 20}, kF32, Device::CUDA);
  EXPECT_EQ(again.raw(), first);  // same bucket: the cached block comes back
  EXPECT_GE(ops::cuda::memory_stats().peak_in_use, before.in_use + (size_t{4} << 20));
}

TEST(CudaMemory, HugeAllocationThrowsOutOfMemoryNamingFlags) {
  try {
    Tensor::empty({int64_t{1} << 48}, kF32, Device::CUDA);  // 1 PiB
    FAIL() << "expected OutOfMemory";
  } catch (const OutOfMemory& e) {
    const std::string m = e.what();
    EXPECT_NE(m.find("--offload"), std::string::npos) << m;
    EXPECT_NE(m.find("--size"), std::string::npos) << m;
  }
}

}  // namespace
}  // namespace freeswim::cuda_test
