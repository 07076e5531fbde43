// Every DiT op of the CUDA backend against the CPU backend (the fp32 oracle) on random inputs.
// Tolerances are relative L2 errors for bf16 storage with fp32 arithmetic: one bf16 rounding of
// the result is 2^-9 relative, a product over K terms a few times that.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <vector>

#include "core/error.h"
#include "models/wan_dit.h"
#include "models/wan_dit_chunks.h"
#include "models/wan_rope.h"
#include "ops/cpu/cpu_backend.h"
#include "ops/cuda/gemm.h"
#include "test_util.h"

namespace freeswim::cuda_test {
namespace {

// The backend is registered in main.cpp (with the attention kernels the command line names).

constexpr double kTol = 1e-2;

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

// Leaves NaN in the caching allocator's free block of `numel` bf16 values, so that an op whose
// output lands there and misses elements shows it.
void poison_next_bf16(int64_t numel) {
  std::vector<float> nan(static_cast<size_t>(numel), std::nanf(""));
  Tensor t = Tensor::from_vector({numel}, nan).to(kBF).to(Device::CUDA);
}

class CudaLinearGelu : public ::testing::TestWithParam<LinearCase> {};

TEST_P(CudaLinearGelu, Bf16MatchesCpu) {
  const auto c = GetParam();
  const Tensor x = random_cpu({c.M, c.K}, 13, -2.f, 2.f),
               w = random_cpu({c.N, c.K}, 14, -0.3f, 0.3f);
  const Tensor b = c.bias ? random_cpu({c.N}, 15) : Tensor{};
  const Tensor want = ops::cpu::cpu_backend().linear_gelu_tanh(as_seen(x, kBF), as_seen(w, kBF), b);
  const Tensor gx = to_cuda(x, kBF), gw = to_cuda(w, kBF);
  const Tensor gb = b.defined() ? to_cuda(b, kF32) : Tensor{};
  poison_next_bf16(c.M * c.N);
  const Tensor got = ops::linear_gelu_tanh(gx, gw, gb);
  EXPECT_EQ(got.dtype(), kBF);
  expect_close(got, want, kTol, "linear_gelu_tanh");
}

INSTANTIATE_TEST_SUITE_P(Shapes, CudaLinearGelu,
                         ::testing::Values(LinearCase{37, 96, 80, true},
                                           LinearCase{37, 96, 80, false},
                                           LinearCase{1, 64, 48, true},
                                           LinearCase{513, 256, 384, true},
                                           LinearCase{5, 33, 7, true}));

// The GELU must be the tanh form, whichever path runs (cuBLASLt's epilogue when gemm.cpp's probe
// found it to be the tanh form, else the GELU kernel): w = 0 makes the pre-activation the bias,
// set where the tanh and erf forms differ by 7 to 50 bf16 ulps; relative L2 could not tell them
// apart, so the mean absolute error must be a small part of the gap between the two forms.
TEST(CudaOps, LinearGeluIsTheTanhForm) {
  const int64_t M = 24, K = 40, N = 96;
  std::vector<float> bias(N);
  for (int64_t n = 0; n < N; ++n) bias[n] = -3.5f + static_cast<float>(n) / (N - 1);
  // Values exact in bf16: cuBLASLt's epilogue takes the bias in bf16 (gemm.cpp), and rounding
  // it would move the pre-activation by about as much as the two forms differ here.
  bias = Tensor::from_vector({N}, bias).to(kBF).to(kF32).to_float_vector();
  const Tensor x = random_cpu({M, K}, 16);
  const Tensor got = ops::linear_gelu_tanh(to_cuda(x, kBF), to_cuda(Tensor::zeros({N, K}), kBF),
                                           to_cuda(Tensor::from_vector({N}, bias), kF32));
  const std::vector<float> g = got.to_float_vector();
  double err = 0, gap = 0;
  for (int64_t m = 0; m < M; ++m)
    for (int64_t n = 0; n < N; ++n) {
      const double z = bias[n];
      const double t = 0.5 * z * (1 + std::tanh(0.7978845608028654 * (z + 0.044715 * z * z * z)));
      const double e = 0.5 * z * (1 + std::erf(z / std::sqrt(2.0)));
      err += std::abs(g[m * N + n] - t);
      gap += std::abs(t - e);
    }
  EXPECT_LT(err, 0.25 * gap) << "mean error " << err / (M * N) << ", tanh-erf gap "
                             << gap / (M * N);
  const auto counts = ops::cuda::gemm_fusion_counts();
  std::printf(
      "cuBLASLt GELU epilogue is the tanh form: %s; GELU products fused %lld, unfused %lld\n",
      ops::cuda::gelu_epilogue_is_tanh() ? "yes" : "no", static_cast<long long>(counts.gelu_fused),
      static_cast<long long>(counts.gelu_unfused));
  std::printf("fusion probes: %s; bias products fused %lld, unfused %lld\n",
              ops::cuda::fusion_probe_report().c_str(), static_cast<long long>(counts.bias_fused),
              static_cast<long long>(counts.bias_unfused));
  EXPECT_GT(counts.gelu_fused + counts.gelu_unfused, 0);
}

struct AddCase {
  int64_t M, K, N;
  bool bias, gate;
};

class CudaLinearAddGated : public ::testing::TestWithParam<AddCase> {};

// x += gate * (y w^T + b) in place, on rows [3, 3 + M) of a larger x: the product lands only
// there (the rows around are compared bit for bit), and the increment matches the CPU's.
TEST_P(CudaLinearAddGated, Bf16MatchesCpuInARowView) {
  const auto c = GetParam();
  const Tensor x0 = random_cpu({c.M + 7, c.N}, 30, -0.5f, 0.5f);
  const Tensor y = random_cpu({c.M, c.K}, 31), w = random_cpu({c.N, c.K}, 32, -0.2f, 0.2f);
  const Tensor b = c.bias ? random_cpu({c.N}, 33) : Tensor{};
  const Tensor gate = c.gate ? random_cpu({c.N}, 34, -1.5f, 1.5f) : Tensor{};
  const Tensor seen = as_seen(x0, kBF);
  Tensor want = seen.clone();
  Tensor want_rows = want.slice0(3, 3 + c.M);
  ops::cpu::cpu_backend().linear_add_gated(want_rows, as_seen(y, kBF), as_seen(w, kBF), b, gate);

  const auto before = ops::cuda::gemm_fusion_counts();
  Tensor got = to_cuda(x0, kBF);
  Tensor got_rows = got.slice0(3, 3 + c.M);
  ops::linear_add_gated(got_rows, to_cuda(y, kBF), to_cuda(w, kBF),
                        b.defined() ? to_cuda(b, kF32) : Tensor{},
                        gate.defined() ? to_cuda(gate, kF32) : Tensor{});
  const auto after = ops::cuda::gemm_fusion_counts();
  EXPECT_EQ(after.accumulate_fused + after.accumulate_refused,
            before.accumulate_fused + before.accumulate_refused + 1)
      << "the fused product was not attempted";
  std::printf("linear_add_gated %lldx%lldx%lld bias %d gate %d: %s\n", static_cast<long long>(c.M),
              static_cast<long long>(c.K), static_cast<long long>(c.N), c.bias, c.gate,
              after.accumulate_fused > before.accumulate_fused ? "fused epilogue"
                                                               : "cuBLASLt refused, unfused");

  const std::vector<float> g = got.to_float_vector(), s0 = seen.to_float_vector(),
                           wv = want.to_float_vector();
  double num = 0, den = 0;
  int64_t outside_changed = 0;
  for (int64_t r = 0; r < c.M + 7; ++r)
    for (int64_t n = 0; n < c.N; ++n) {
      const size_t i = static_cast<size_t>(r * c.N + n);
      if (r < 3 || r >= 3 + c.M) {
        outside_changed += g[i] != s0[i];
        continue;
      }
      const double dg = g[i] - s0[i], dw = wv[i] - s0[i];
      num += (dg - dw) * (dg - dw);
      den += dw * dw;
    }
  EXPECT_EQ(outside_changed, 0) << "rows outside the view changed";
  EXPECT_LT(std::sqrt(num / den), kTol) << "relative L2 error of the increment";
}

INSTANTIATE_TEST_SUITE_P(
    Shapes, CudaLinearAddGated,
    ::testing::Values(AddCase{37, 96, 80, true, true}, AddCase{37, 96, 80, true, false},
                      AddCase{37, 96, 80, false, true}, AddCase{1, 64, 48, true, true},
                      AddCase{513, 256, 384, true, true}, AddCase{5, 33, 7, true, true},
                      AddCase{300, 1536, 1536, true, true}));

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

// Tables as the DiT builds them (models/wan_rope.h).
ops::Rope3D rope_tables(int T, int H, int W, int hd, Device dev) {
  ops::Rope3D r = models::wan_rope_tables(T, H, W, hd);
  r.frame = r.frame.to(dev);
  r.row = r.row.to(dev);
  r.col = r.col.to(dev);
  return r;
}

TEST(CudaOps, Rope3d) {
  for (int hd : {128, 64, 16}) {  // 64 and 16: the layout with a mixed pair (wan_rope.h)
    const int T = 3, H = 5, W = 7, heads = 2;
    const Tensor x = random_cpu({T * H * W, heads, hd}, 60);
    Tensor want = as_seen(x, kBF).clone();
    ops::cpu::cpu_backend().rope_3d(want, rope_tables(T, H, W, hd, Device::CPU));
    Tensor got = to_cuda(x, kBF);
    ops::rope_3d(got, rope_tables(T, H, W, hd, Device::CUDA));
    expect_close(got, want, kTol, "rope_3d");
  }
}

TEST(CudaOps, RmsNormRope3dMatchesCpu) {
  auto& cpu = ops::cpu::cpu_backend();
  for (int hd : {128, 64, 32, 16}) {
    const int T = 3, H = 5, W = 7, heads = 3;
    const Tensor x = random_cpu({T * H * W, heads, hd}, 61, -3.f, 3.f);
    const Tensor w = random_cpu({heads * hd}, 62, 0.5f, 1.5f);
    for (DType t : {kBF, kF32}) {
      Tensor want =
          cpu.rms_norm(as_seen(x, t).reshape({T * H * W, heads * hd}), w, 1e-6f).reshape(x.shape());
      cpu.rope_3d(want, rope_tables(T, H, W, hd, Device::CPU));
      Tensor got = to_cuda(x, t);
      ops::rms_norm_rope_3d(got, to_cuda(w, kF32), 1e-6f, rope_tables(T, H, W, hd, Device::CUDA));
      EXPECT_EQ(got.dtype(), t);
      expect_close(got, want, t == kBF ? kTol : 1e-5, "rms_norm_rope_3d");
    }
  }
}

// A DiT forward whose FFN runs in several row chunks on the GPU (the chunk capped at 512 rows,
// 1152 tokens: chunks of 512, 512, 128) against the CPU's, for a stock and a dual step.
TEST(CudaDitChunks, ChunkedFfnForwardMatchesCpu) {
  models::WanDitConfig c;
  c.heads = 2;
  c.head_dim = 64;
  c.num_layers = 2;
  c.ffn_dim = 256;
  c.text_dim = 64;
  const auto cpu = models::WanDit::random(c, Device::CPU, 9);
  const auto gpu = models::WanDit::random(c, Device::CUDA, 9);
  models::DitInput in;
  in.latents = random_cpu({16, 3, 32, 48}, 40);
  in.timestep = 700.f;
  in.context = random_cpu({9, c.text_dim}, 41);
  FreeSwimParams fsp;
  fsp.dh = 3;
  fsp.dw = 4;
  fsp.attn_scale = freeswim_attention_scale(int64_t{2 * fsp.dh} * (2 * fsp.dw), c.head_dim);
  const int64_t previous = models::set_ffn_chunk_rows_cap(ops::kLinearRowBlock);
  ASSERT_LT(models::ffn_chunk_rows(3 * 16 * 24, c.ffn_dim), 3 * 16 * 24);
  for (StepKind kind : {StepKind::Stock, StepKind::Dual}) {
    const FreeSwimParams* p = kind == StepKind::Stock ? nullptr : &fsp;
    const Tensor got = gpu->forward(in, kind, p);
    const Tensor want = cpu->forward(in, kind, p);
    expect_close(got, want, kTol, step_kind_name(kind).c_str());
  }
  models::set_ffn_chunk_rows_cap(previous);
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

// trim_device_memory() (what the pipeline calls between stages) gives cached blocks back.
TEST(CudaMemory, TrimReturnsCachedBlocksToTheDriver) {
  { const Tensor t = Tensor::empty({3 << 20}, kF32, Device::CUDA); }  // 12 MiB, now cached
  const size_t cached = ops::cuda::memory_stats().reserved;
  ASSERT_GE(cached, size_t{12} << 20);
  trim_device_memory();
  EXPECT_LE(ops::cuda::memory_stats().reserved + (size_t{12} << 20), cached);
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
    // No DiT is on the GPU here, so --offload would move nothing and is not offered.
    EXPECT_EQ(m.find("--offload"), std::string::npos) << m;
    EXPECT_NE(m.find("--size"), std::string::npos) << m;
  }
}

// Sets a memory cap for one test and puts the previous one back however the test ends (a cap left
// behind would make every later test fail).
struct MemoryLimitGuard {
  size_t old = ops::cuda::memory_limit();
  explicit MemoryLimitGuard(size_t bytes) { ops::cuda::set_memory_limit(bytes); }
  ~MemoryLimitGuard() {
    ops::cuda::set_memory_limit(old);
    ops::cuda::release_cached_memory();
  }
  MemoryLimitGuard(const MemoryLimitGuard&) = delete;
  MemoryLimitGuard& operator=(const MemoryLimitGuard&) = delete;
};

TEST(CudaMemory, LimitReleasesCachedBlocksThenRefusesNamingTheCap) {
  ops::cuda::release_cached_memory();
  const size_t mib = size_t{1} << 20;
  ops::cuda::reset_peak_memory();
  const auto before = ops::cuda::memory_stats();
  const MemoryLimitGuard cap(before.reserved + 64 * mib);
  {
    // 40 MiB cached, then a 48 MiB request: it fits only once the cached block is given back.
    { const Tensor a = Tensor::empty({int64_t{10} << 20}, kF32, Device::CUDA); }
    EXPECT_EQ(ops::cuda::memory_stats().reserved, before.reserved + 40 * mib);
    const Tensor b = Tensor::empty({int64_t{12} << 20}, kF32, Device::CUDA);
    EXPECT_EQ(ops::cuda::memory_stats().reserved, before.reserved + 48 * mib);
    // Another 48 MiB would pass the cap with nothing cached to give back.
    try {
      Tensor::empty({int64_t{12} << 20}, kF32, Device::CUDA);
      ADD_FAILURE() << "expected OutOfMemory";
    } catch (const OutOfMemory& e) {
      EXPECT_NE(std::string(e.what()).find("FREESWIM_GPU_MEMORY_LIMIT"), std::string::npos)
          << e.what();
    }
    EXPECT_LE(ops::cuda::memory_stats().peak_reserved, before.reserved + 64 * mib);
  }
}

// Under the cap a request takes a larger cached block (up to 4x its size) instead of giving the
// cache back to the driver (block_cache.h).
TEST(CudaMemory, LimitReusesALargerCachedBlockBeforeReleasing) {
  ops::cuda::release_cached_memory();
  const size_t mib = size_t{1} << 20;
  const auto before = ops::cuda::memory_stats();
  const MemoryLimitGuard cap(before.reserved + 64 * mib);
  {
    { const Tensor a = Tensor::empty({int64_t{15} << 20}, kF32, Device::CUDA); }  // 60 MiB cached
    EXPECT_EQ(ops::cuda::memory_stats().reserved, before.reserved + 60 * mib);
    // 20 MiB more would pass the cap: the cached 60 MiB block serves it, nothing new is reserved.
    const Tensor b = Tensor::empty({int64_t{5} << 20}, kF32, Device::CUDA);
    EXPECT_EQ(ops::cuda::memory_stats().reserved, before.reserved + 60 * mib);
    EXPECT_EQ(ops::cuda::memory_stats().in_use, before.in_use + 60 * mib);
    // 10 MiB more: nothing cached is left to take, and 70 MiB would pass the cap.
    EXPECT_THROW(Tensor::empty({int64_t{10} << 18}, kF32, Device::CUDA), OutOfMemory);
  }
  EXPECT_EQ(ops::cuda::memory_stats().in_use, before.in_use);
}

TEST(CudaProfile, WrapperForwardsOpsAndCountsTheirGpuTime) {
  ops::Backend* prof = ops::cuda::make_profiling_backend(&ops::backend(Device::CUDA));
  ops::cuda::reset_op_profile();
  const Tensor x = Tensor::zeros({256, 64}, kBF, Device::CUDA);
  const Tensor w = Tensor::zeros({128, 64}, kBF, Device::CUDA);
  const Tensor direct = ops::backend(Device::CUDA).linear(x, w, Tensor{});
  const Tensor y = prof->linear(x, w, Tensor{});
  EXPECT_EQ(y.shape(), direct.shape());
  prof->add(y, y);
  const std::string r = ops::cuda::op_profile_report();
  EXPECT_NE(r.find("| linear w[128x64] | 1 |"), std::string::npos) << r;
  EXPECT_NE(r.find("| add | 1 |"), std::string::npos) << r;
  EXPECT_NE(r.find("| all ops |"), std::string::npos) << r;
  ops::cuda::reset_op_profile();
  EXPECT_EQ(ops::cuda::op_profile_report().find("| add |"), std::string::npos);
}

}  // namespace
}  // namespace freeswim::cuda_test
