// The VAE ops and the text encoder ops (mul, embedding, attention_bias) of the CUDA backend
// against the CPU oracle on random inputs, and the VAE on the GPU at each convolution precision:
// the golden cases (both namings) and tiled encode / decode against the CPU. Tolerances: FP32
// (fp32 FMA) convolutions 3e-5, whole VAE passes 1e-3 / 1e-4, since cuDNN's algorithms (Winograd,
// FFT, implicit GEMM) sum in other orders than the CPU's sgemm; TF32 (10-bit mantissa products,
// fp32 sums) 1e-2, the bound the bf16 paths use; element moves are exact.
#include <cuda_runtime_api.h>
#include <gtest/gtest.h>

#include <chrono>
#include <cmath>
#include <cstdio>

#include "check/golden_files.h"
#include "check/suites.h"
#include "core/error.h"
#include "models/wan_vae.h"
#include "ops/cpu/cpu_backend.h"
#include "ops/cuda/conv3d.h"
#include "pipeline/frames.h"
#include "test_util.h"

namespace freeswim::cuda_test {
namespace {

constexpr double kConvTol = 3e-5;

ops::Backend& cpu() {
  return ops::cpu::cpu_backend();
}

struct ConvCase {
  const char* name;
  Shape x, w;
  ops::Conv3dParams p;
  bool bias;
};

ops::Conv3dParams params(int pf, int pb, int pt, int pbot, int pl, int pr, int st = 1, int sh = 1,
                         int sw = 1) {
  ops::Conv3dParams p;
  p.pad_front = pf;
  p.pad_back = pb;
  p.pad_top = pt;
  p.pad_bottom = pbot;
  p.pad_left = pl;
  p.pad_right = pr;
  p.stride_t = st;
  p.stride_h = sh;
  p.stride_w = sw;
  return p;
}

class CudaConv3d : public ::testing::TestWithParam<ConvCase> {};

TEST_P(CudaConv3d, Fp32MatchesCpu) {
  const ConvCase& c = GetParam();
  const Tensor x = random_cpu(c.x, 100), w = random_cpu(c.w, 101, -0.3f, 0.3f);
  const Tensor b = c.bias ? random_cpu({c.w[0]}, 102) : Tensor{};
  const Tensor want = cpu().conv3d(x, w, b, c.p);
  const Tensor got =
      ops::conv3d(to_cuda(x, kF32), to_cuda(w, kF32), c.bias ? to_cuda(b, kF32) : Tensor{}, c.p);
  EXPECT_EQ(got.dtype(), kF32);
  expect_close(got, want, kConvTol, c.name);
}

// TF32 products keep 10 mantissa bits: ~5e-4 relative per product, less after summation.
constexpr double kTf32Tol = 1e-2;

TEST_P(CudaConv3d, Tf32MatchesCpuWithinTf32Rounding) {
  const ConvCase& c = GetParam();
  const Tensor x = random_cpu(c.x, 100), w = random_cpu(c.w, 101, -0.3f, 0.3f);
  const Tensor b = c.bias ? random_cpu({c.w[0]}, 102) : Tensor{};
  const Tensor want = cpu().conv3d(x, w, b, c.p);
  ops::Conv3dParams p = c.p;
  p.precision = ops::ConvPrecision::TF32;
  const Tensor got =
      ops::conv3d(to_cuda(x, kF32), to_cuda(w, kF32), c.bias ? to_cuda(b, kF32) : Tensor{}, p);
  EXPECT_EQ(got.dtype(), kF32);
  expect_close(got, want, kTf32Tol, c.name);
}

INSTANTIATE_TEST_SUITE_P(
    Shapes, CudaConv3d,
    ::testing::Values(
        // The causal 3x3x3 convolution: time padded in front only, space symmetric.
        ConvCase{"causal 3x3x3", {6, 3, 9, 11}, {8, 6, 3, 3, 3}, params(2, 0, 1, 1, 1, 1), true},
        // Symmetric padding handed to cuDNN directly.
        ConvCase{"symmetric", {5, 4, 7, 6}, {4, 5, 3, 3, 3}, params(1, 1, 1, 1, 1, 1), false},
        ConvCase{"pointwise", {12, 2, 5, 7}, {16, 12, 1, 1, 1}, params(0, 0, 0, 0, 0, 0), true},
        // The downsampler: ZeroPad2d((0, 1, 0, 1)) then a stride-2 3x3.
        ConvCase{"stride-2 spatial",
                 {4, 3, 10, 12},
                 {4, 4, 1, 3, 3},
                 params(0, 0, 0, 1, 0, 1, 1, 2, 2),
                 true},
        // The time downsampler: 3x1x1 with stride 2 in time.
        ConvCase{"stride-2 time",
                 {8, 5, 4, 4},
                 {8, 8, 3, 1, 1},
                 params(0, 0, 0, 0, 0, 0, 2, 1, 1),
                 true},
        // The 2-frame causal cache of a time upsampler.
        ConvCase{
            "time 3x1x1 causal", {6, 1, 6, 5}, {12, 6, 3, 1, 1}, params(2, 0, 0, 0, 0, 0), true}));

TEST(CudaVaeOps, Conv3dBf16InputsComputeInFp32AndKeepTheInputDtype) {
  const Tensor x = random_cpu({6, 3, 8, 9}, 110), w = random_cpu({5, 6, 3, 3, 3}, 111, -0.3f, 0.3f);
  const Tensor b = random_cpu({5}, 112);
  const auto p = params(2, 0, 1, 1, 1, 1);
  const Tensor want = cpu().conv3d(as_seen(x, kBF), as_seen(w, kBF), b, p);
  const Tensor got = ops::conv3d(to_cuda(x, kBF), to_cuda(w, kBF), to_cuda(b, kF32), p);
  EXPECT_EQ(got.dtype(), kBF);
  expect_close(got, want, 1e-2, "bf16 conv3d");
}

TEST(CudaVaeOps, Conv3dRefusesMismatchedArguments) {
  const Tensor x = to_cuda(random_cpu({4, 2, 5, 5}, 120), kF32);
  EXPECT_THROW(ops::conv3d(x, to_cuda(random_cpu({3, 5, 1, 3, 3}, 121), kF32), {}, {}), Error);
  EXPECT_THROW(ops::conv3d(x, to_cuda(random_cpu({3, 4, 1, 3, 3}, 121), kF32),
                           to_cuda(random_cpu({4}, 122), kF32), {}),
               Error);  // bias of 4 for 3 outputs
  EXPECT_THROW(ops::conv3d(x, to_cuda(random_cpu({3, 4, 3, 3, 3}, 121), kF32), {}, {}),
               Error);  // 2 frames, kernel of 3
}

TEST(CudaVaeOps, RmsNormChannels) {
  const Tensor x = random_cpu({24, 3, 5, 7}, 130, -2.f, 2.f);
  const Tensor g = random_cpu({24}, 131, 0.5f, 1.5f), b = random_cpu({24}, 132);
  for (bool silu : {false, true})
    for (bool with_bias : {false, true}) {
      const Tensor bias = with_bias ? b : Tensor{};
      const Tensor want = cpu().rms_norm_channels(x, g, bias, silu);
      const Tensor got = ops::rms_norm_channels(to_cuda(x, kF32), to_cuda(g, kF32),
                                                with_bias ? to_cuda(b, kF32) : Tensor{}, silu);
      EXPECT_EQ(got.dtype(), kF32);
      expect_close(got, want, 1e-6, "rms_norm_channels f32");
      const Tensor got_bf = ops::rms_norm_channels(to_cuda(x, kBF), to_cuda(g, kF32),
                                                   with_bias ? to_cuda(b, kF32) : Tensor{}, silu);
      EXPECT_EQ(got_bf.dtype(), kBF);
      expect_close(got_bf, cpu().rms_norm_channels(as_seen(x, kBF), g, bias, silu), 1e-2,
                   "rms_norm_channels bf16");
    }
  // A zero channel vector is divided by 1e-12, not by zero: the result is 0, not NaN.
  const Tensor z = ops::rms_norm_channels(Tensor::zeros({24, 1, 2, 2}).to(Device::CUDA),
                                          to_cuda(g, kF32), {}, false)
                       .to(Device::CPU);
  for (int64_t i = 0; i < z.numel(); ++i) EXPECT_EQ(z.data<float>()[i], 0.f) << i;
}

TEST(CudaVaeOps, MovesAreExact) {
  for (DType t : {kF32, kBF}) {
    const Tensor x = random_cpu({5, 3, 4, 6}, 140), y = random_cpu({5, 3, 4, 2}, 141);
    const Tensor xs = as_seen(x, t), ys = as_seen(y, t);
    const Tensor xc = to_cuda(x, t), yc = to_cuda(y, t);
    EXPECT_EQ(relative_l2(ops::upsample_nearest2x(xc), cpu().upsample_nearest2x(xs)), 0.0);
    EXPECT_EQ(ops::upsample_nearest2x(xc).dtype(), t);
    EXPECT_EQ(relative_l2(ops::concat(xc, yc, 3), cpu().concat(xs, ys, 3)), 0.0);
    EXPECT_EQ(relative_l2(ops::concat(xc, yc, -1), cpu().concat(xs, ys, -1)), 0.0);
    for (int d = 0; d < 3; ++d)
      EXPECT_EQ(relative_l2(ops::concat(xc, xc, d), cpu().concat(xs, xs, d)), 0.0) << d;
    for (int d = 0; d < 4; ++d) {
      const int64_t n = x.dim(d);
      EXPECT_EQ(relative_l2(ops::slice(xc, d, 1, n), cpu().slice(xs, d, 1, n)), 0.0) << d;
      EXPECT_EQ(relative_l2(ops::slice(xc, d, 0, 1), cpu().slice(xs, d, 0, 1)), 0.0) << d;
    }
    EXPECT_EQ(ops::slice(xc, 1, 2, 2).numel(), 0);
    // Sizes in whole 16-byte units take the vector copy (copy_blocks), the ones above the
    // element-wise one.
    const Tensor xv = random_cpu({4, 3, 8, 16}, 147), yv = random_cpu({4, 3, 8, 8}, 148);
    const Tensor xvs = as_seen(xv, t), yvs = as_seen(yv, t);
    const Tensor xvc = to_cuda(xv, t), yvc = to_cuda(yv, t);
    EXPECT_EQ(relative_l2(ops::concat(xvc, yvc, 3), cpu().concat(xvs, yvs, 3)), 0.0);
    for (int d = 0; d < 4; ++d) {
      EXPECT_EQ(relative_l2(ops::concat(xvc, xvc, d), cpu().concat(xvs, xvs, d)), 0.0) << d;
      EXPECT_EQ(
          relative_l2(ops::slice(xvc, d, 0, xv.dim(d) / 2), cpu().slice(xvs, d, 0, xv.dim(d) / 2)),
          0.0)
          << d;
    }
    for (Shape s : {Shape{37, 70}, Shape{1, 5}, Shape{64, 33}, Shape{100, 1}}) {
      const Tensor m = random_cpu(s, 142);
      const Tensor got = ops::transpose2d(to_cuda(m, t));
      EXPECT_EQ(relative_l2(got, cpu().transpose2d(as_seen(m, t))), 0.0);
      EXPECT_EQ(got.shape(), (Shape{s[1], s[0]}));
    }
    EXPECT_EQ(relative_l2(ops::clamp(to_cuda(random_cpu({1000}, 143, -3.f, 3.f), t), -1.f, 1.f),
                          cpu().clamp(as_seen(random_cpu({1000}, 143, -3.f, 3.f), t), -1.f, 1.f)),
              0.0);
  }
  const Tensor x = to_cuda(random_cpu({2, 3}, 144), kF32);
  EXPECT_THROW(ops::slice(x, 1, 2, 4), Error);
  EXPECT_THROW(ops::slice(x, 2, 0, 1), Error);
  EXPECT_THROW(ops::concat(x, to_cuda(random_cpu({3, 3}, 145), kF32), 1), Error);
  EXPECT_THROW(ops::transpose2d(to_cuda(random_cpu({2, 3, 4}, 146), kF32)), Error);
}

TEST(CudaVaeOps, ChannelAffineEveryOptionalArgument) {
  const Tensor x = random_cpu({16, 3, 4, 5}, 150);
  const Tensor s = random_cpu({16}, 151), t = random_cpu({16}, 152);
  for (int mask = 0; mask < 4; ++mask) {
    const Tensor sc = mask & 1 ? s : Tensor{}, sh = mask & 2 ? t : Tensor{};
    const Tensor got =
        ops::channel_affine(to_cuda(x, kF32), sc.defined() ? to_cuda(sc, kF32) : Tensor{},
                            sh.defined() ? to_cuda(sh, kF32) : Tensor{});
    expect_close(got, cpu().channel_affine(x, sc, sh), 1e-6, "channel_affine");
  }
  EXPECT_THROW(ops::channel_affine(to_cuda(x, kF32), to_cuda(random_cpu({15}, 153), kF32), {}),
               Error);
}

TEST(CudaVaeOps, AccumulateTileWithAndWithoutWeight) {
  const Tensor acc0 = random_cpu({3, 5, 12, 14}, 160), tile = random_cpu({3, 2, 6, 7}, 161);
  const Tensor weight = random_cpu({6, 7}, 162, 0.f, 1.f);
  for (bool weighted : {false, true}) {
    Tensor want = acc0.to(Device::CUDA).to(Device::CPU);  // a copy of acc0
    cpu().accumulate_tile(want, tile, weighted ? weight : Tensor{}, 2, 5, 7);
    Tensor got = acc0.to(Device::CUDA);
    ops::accumulate_tile(got, to_cuda(tile, kF32), weighted ? to_cuda(weight, kF32) : Tensor{}, 2,
                         5, 7);
    expect_close(got, want, 1e-6, "accumulate_tile");
  }
  Tensor acc = acc0.to(Device::CUDA);
  EXPECT_THROW(ops::accumulate_tile(acc, to_cuda(tile, kF32), {}, 4, 0, 0), Error);
  EXPECT_THROW(ops::accumulate_tile(acc, to_cuda(tile, kF32),
                                    to_cuda(random_cpu({6, 6}, 163), kF32), 0, 0, 0),
               Error);
}

TEST(CudaTextOps, MulAndEmbedding) {
  const Tensor a = random_cpu({7, 33}, 170), b = random_cpu({7, 33}, 171);
  expect_close(ops::mul(to_cuda(a, kF32), to_cuda(b, kF32)), cpu().mul(a, b), 1e-7, "mul f32");
  const Tensor mb = ops::mul(to_cuda(a, kBF), to_cuda(b, kF32));
  EXPECT_EQ(mb.dtype(), kBF);
  expect_close(mb, cpu().mul(as_seen(a, kBF), b), 1e-2, "mul bf16");
  const Tensor table = random_cpu({50, 24}, 172);
  const std::vector<int32_t> ids = {3, 0, 49, 3, 17};
  for (DType t : {kF32, kBF}) {
    const Tensor got = ops::embedding(to_cuda(table, t), ids);
    EXPECT_EQ(got.dtype(), t);
    EXPECT_EQ(relative_l2(got, cpu().embedding(as_seen(table, t), ids)), 0.0);
  }
  EXPECT_THROW(ops::embedding(to_cuda(table, kF32), {1, 50}), Error);
  EXPECT_THROW(ops::embedding(to_cuda(table, kF32), {-1}), Error);
}

struct BiasCase {
  int64_t nq, nk;
  int heads, d;
  bool bias, mask, all_padding;
};

class CudaAttentionBias : public ::testing::TestWithParam<BiasCase> {};

TEST_P(CudaAttentionBias, MatchesCpu) {
  const BiasCase c = GetParam();
  const Tensor q = random_cpu({c.nq, c.heads, c.d}, 190), k = random_cpu({c.nk, c.heads, c.d}, 191);
  const Tensor v = random_cpu({c.nk, c.heads, c.d}, 192);
  const Tensor bias = c.bias ? random_cpu({c.nq, c.nk, c.heads}, 193, -3.f, 3.f) : Tensor{};
  Tensor mask;
  if (c.mask) {
    std::vector<float> m(static_cast<size_t>(c.nk), 0.f);
    if (!c.all_padding)
      for (size_t j = 0; j < m.size(); ++j) m[j] = j % 3 == 1 ? 0.f : 1.f;
    mask = Tensor::from_vector({c.nk}, m);
  }
  const float scale = 1.f / std::sqrt(static_cast<float>(c.d));
  for (DType t : {kF32, kBF}) {
    const Tensor want =
        cpu().attention_bias(as_seen(q, t), as_seen(k, t), as_seen(v, t), scale, bias, mask);
    const Tensor got = ops::attention_bias(to_cuda(q, t), to_cuda(k, t), to_cuda(v, t), scale,
                                           c.bias ? to_cuda(bias, kF32) : Tensor{},
                                           c.mask ? to_cuda(mask, kF32) : Tensor{});
    EXPECT_EQ(got.dtype(), t);
    expect_close(got, want, t == kF32 ? 1e-5 : 1e-2, "attention_bias");
  }
}

INSTANTIATE_TEST_SUITE_P(Cases, CudaAttentionBias,
                         ::testing::Values(BiasCase{7, 7, 2, 64, false, false, false},
                                           BiasCase{12, 12, 4, 64, true, true, false},
                                           BiasCase{5, 9, 3, 32, true, false, false},
                                           BiasCase{6, 6, 2, 16, true, true, true},
                                           BiasCase{3, 40, 1, 384, false, true, false}));

// The VAE's middle attention: fp32 q/k/v with one head of all channels (384 in the real VAE).
TEST(CudaVaeOps, Fp32AttentionStaysFp32UpToHeadDim512) {
  for (int d : {16, 384}) {
    const Tensor q = random_cpu({50, 1, d}, 200), k = random_cpu({50, 1, d}, 201),
                 v = random_cpu({50, 1, d}, 202);
    const float scale = 1.f / std::sqrt(static_cast<float>(d));
    const Tensor got =
        ops::attention(to_cuda(q, kF32), to_cuda(k, kF32), to_cuda(v, kF32), scale, nullptr);
    EXPECT_EQ(got.dtype(), kF32);
    expect_close(got, cpu().attention(q, k, v, scale, nullptr), 1e-5, "fp32 attention");
  }
  // Two heads, and more query x key scores than one 256 MiB chunk of the product path holds.
  const Tensor q = random_cpu({8300, 2, 16}, 203), k = random_cpu({8200, 2, 16}, 204),
               v = random_cpu({8200, 2, 16}, 205);
  expect_close(ops::attention(to_cuda(q, kF32), to_cuda(k, kF32), to_cuda(v, kF32), 0.25f, nullptr),
               cpu().attention(q, k, v, 0.25f, nullptr), 1e-5, "fp32 attention in chunks");
}

TEST(CudaVae, GoldenCasesPassInFp32) {
  std::vector<check::CaseResult> results;
  check::Context ctx;
  ctx.golden_dir = golden_dir();
  ctx.device = Device::CUDA;
  ctx.report = [&](const check::CaseResult& r) { results.push_back(r); };
  check::check_vae_cases(ctx);
  // vae_tiny_cases: latent_mean, latent_logvar, decoded, decoded_original and the two
  // normalisation vectors, from the diffusers and the original weight files.
  ASSERT_EQ(results.size(), 2u * 6u);
  for (const auto& r : results) {
    EXPECT_TRUE(r.pass) << r.name << " error " << r.error << " " << r.message;
    EXPECT_LT(r.error, 1e-3) << r.name << ": the VAE runs in fp32 on the GPU";
  }
}

TEST(CudaVae, TiledEncodeAndDecodeMatchCpu) {
  const std::string weights = golden_dir() + "/vae_tiny.diffusers.safetensors";
  const std::string config = golden_dir() + "/vae_tiny.config.json";
  const auto on_cpu = models::WanVae::load(weights, Device::CPU, config);
  const auto on_gpu = models::WanVae::load(weights, Device::CUDA, config);
  models::VaeTiling tiling;
  tiling.tile = 32;
  tiling.overlap = 16;
  const Tensor video = random_cpu({3, 5, 48, 64}, 180);
  const auto enc_cpu = on_cpu->encode(video, tiling);
  const auto enc_gpu = on_gpu->encode(video, tiling);
  EXPECT_EQ(enc_gpu.mean.dtype(), kF32);
  expect_close(enc_gpu.mean, enc_cpu.mean, 1e-4, "tiled encode mean");
  expect_close(enc_gpu.logvar, enc_cpu.logvar, 1e-4, "tiled encode logvar");
  const Tensor z = random_cpu({16, 2, 6, 8}, 181);
  expect_close(on_gpu->decode(z, tiling, true), on_cpu->decode(z, tiling, true), 1e-4,
               "tiled decode");
}

// Seconds of one conv3d call (after a first, untimed call that picks the algorithm).
double time_conv(const Tensor& x, const Tensor& w, const Tensor& b, const ops::Conv3dParams& p,
                 int reps) {
  ops::conv3d(x, w, b, p);
  EXPECT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  const auto t0 = std::chrono::steady_clock::now();
  for (int i = 0; i < reps; ++i) ops::conv3d(x, w, b, p);
  EXPECT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() / reps;
}

// TF32 on a real-size convolution: within the TF32 tolerance of FP32. Whether cuDNN found a
// tensor-core algorithm faster than the FMA ones (it may not for NCDHW fp32 3D convolutions: on
// the H200 the heuristic's TF32 picks ran at half the FMA speed, so TF32 now times both kinds,
// conv3d.cpp) is printed with both speeds; the speed itself is bench/generate's to measure.
TEST(CudaConv3dPrecision, Tf32IsWithinToleranceOnARealSizeConvolution) {
  const Tensor x = to_cuda(random_cpu({96, 6, 256, 256}, 210), kF32);
  const Tensor w = to_cuda(random_cpu({96, 96, 3, 3, 3}, 211, -0.05f, 0.05f), kF32);
  const Tensor b = to_cuda(random_cpu({96}, 212), kF32);
  ops::Conv3dParams fp32 = params(0, 0, 1, 1, 1, 1), tf32 = fp32;
  tf32.precision = ops::ConvPrecision::TF32;
  const Tensor y32 = ops::conv3d(x, w, b, fp32), yt = ops::conv3d(x, w, b, tf32);
  // The first call (which chooses the algorithm) and a later one give the same bits.
  EXPECT_EQ(relative_l2(ops::conv3d(x, w, b, tf32), yt.to(Device::CPU)), 0.0);
  // fp32 against fp32: order-of-summation differences only (~1e-7); TF32 rounds the operands to
  // 10 mantissa bits (~1e-4 here).
  const double diff = relative_l2(yt, y32.to(Device::CPU));
  EXPECT_LT(diff, kTf32Tol);
  const double s32 = time_conv(x, w, b, fp32, 3), st = time_conv(x, w, b, tf32, 3);
  const double flop = 2.0 * 96 * 96 * 27 * 4 * 256 * 256;
  std::printf(
      "conv3d [96, 6, 256, 256] x [96, 96, 3, 3, 3]: fp32 %.2f ms (%.1f TFLOP/s), tf32 "
      "%.2f ms (%.1f TFLOP/s); tf32 vs fp32 relative L2 %.3g (%s)\n",
      s32 * 1e3, flop / s32 / 1e12, st * 1e3, flop / st / 1e12, diff,
      diff > 1e-5 ? "tensor cores" : "an FMA algorithm won");
}

// Each layout of the TF32 search on its own, against the CPU: NCDHW, and channels-last (x and w
// transposed to NDHWC, y back), on a strided, asymmetrically padded convolution with odd sizes and
// on a real-size one; then the timed choice between them.
TEST(CudaConv3dPrecision, EveryLayoutMatchesTheCpu) {
  struct Case {
    std::vector<int64_t> x, w;
    ops::Conv3dParams p;
  };
  // Causal time padding, asymmetric spatial padding (an explicit zero border before cuDNN),
  // stride 2 along the height.
  const ops::Conv3dParams odd = params(2, 0, 1, 0, 1, 0, 1, 2, 1);
  const Case cases[] = {{{5, 3, 9, 11}, {7, 5, 3, 3, 3}, odd},
                        {{96, 4, 40, 64}, {96, 96, 3, 3, 3}, params(0, 0, 1, 1, 1, 1)},
                        {{64, 4, 30, 34}, {32, 64, 1, 1, 1}, params(0, 0, 0, 0, 0, 0)}};
  int seed = 300;
  for (const auto& c : cases) {
    const Tensor x = random_cpu(c.x, seed++), w = random_cpu(c.w, seed++, -0.1f, 0.1f);
    const Tensor b = random_cpu({c.w[0]}, seed++);
    const Tensor want = ops::cpu::cpu_backend().conv3d(x, w, b, c.p);
    ops::Conv3dParams tf32 = c.p;
    tf32.precision = ops::ConvPrecision::TF32;
    for (auto layout : {ops::cuda::ConvLayout::ncdhw, ops::cuda::ConvLayout::channels_last,
                        ops::cuda::ConvLayout::timed}) {
      ops::cuda::set_conv_layout(layout);
      const Tensor got = ops::conv3d(to_cuda(x, kF32), to_cuda(w, kF32), to_cuda(b, kF32), tf32);
      EXPECT_LT(relative_l2(got, want), kTf32Tol)
          << "layout " << static_cast<int>(layout) << " x " << x.describe();
    }
    ops::cuda::set_conv_layout(ops::cuda::ConvLayout::timed);
  }
}

// The golden tiny-VAE case at TF32, computed here rather than through check_vae_cases (which
// loads the VAE at its default FP32).
TEST(CudaVae, GoldenCaseAtTf32) {
  const std::string dir = golden_dir();
  const check::CaseFile cases =
      check::open_case_file(dir + "/vae_tiny_cases.json", dir + "/vae_tiny_cases.safetensors");
  const auto vae = models::WanVae::load(dir + "/vae_tiny.diffusers.safetensors", Device::CUDA,
                                        dir + "/vae_tiny.config.json");
  vae->set_precision(ops::ConvPrecision::TF32);
  auto unbatch = [](const Tensor& t) {
    return t.reshape({t.dim(1), t.dim(2), t.dim(3), t.dim(4)});
  };
  models::VaeTiling untiled;
  untiled.enabled = false;
  const auto enc = vae->encode(unbatch(cases.tensor("video")), untiled);
  expect_close(enc.mean, unbatch(cases.tensor("latent_mean")), kTf32Tol, "tf32 latent_mean");
  expect_close(enc.logvar, unbatch(cases.tensor("latent_logvar")), kTf32Tol, "tf32 latent_logvar");
  const Tensor z = unbatch(cases.tensor("latent_mean"));
  expect_close(vae->decode(z, untiled, true), unbatch(cases.tensor("decoded")), kTf32Tol,
               "tf32 decoded");
  expect_close(vae->decode(z, untiled, false), unbatch(cases.tensor("decoded_original")), kTf32Tol,
               "tf32 decoded_original");
}

// Tiled passes at both precisions against the CPU: a 9 x 7 latent grid in 5-cell tiles with 2
// shared is 3 x 2 tiles of 5 x 5 cells; both precisions cache their own algorithms per shape.
TEST(CudaVae, TiledEncodeAndDecodeMatchCpuAtEachPrecision) {
  const std::string weights = golden_dir() + "/vae_tiny.diffusers.safetensors";
  const std::string config = golden_dir() + "/vae_tiny.config.json";
  const auto on_cpu = models::WanVae::load(weights, Device::CPU, config);
  const auto on_gpu = models::WanVae::load(weights, Device::CUDA, config);
  models::VaeTiling tiling;
  tiling.tile = 40;
  tiling.overlap = 16;
  const Tensor video = random_cpu({3, 9, 72, 56}, 220);
  const Tensor z = random_cpu({16, 3, 9, 7}, 221);
  const auto enc_cpu = on_cpu->encode(video, tiling);
  const Tensor dec_cpu = on_cpu->decode(z, tiling, true);
  for (auto prec : {ops::ConvPrecision::FP32, ops::ConvPrecision::TF32}) {
    const bool tf = prec == ops::ConvPrecision::TF32;
    const double tol = tf ? kTf32Tol : 1e-4;
    on_gpu->set_precision(prec);
    const auto enc = on_gpu->encode(video, tiling);
    expect_close(enc.mean, enc_cpu.mean, tol, tf ? "tf32 tiled mean" : "fp32 tiled mean");
    expect_close(enc.logvar, enc_cpu.logvar, tol, tf ? "tf32 tiled logvar" : "fp32 tiled logvar");
    expect_close(on_gpu->decode(z, tiling, true), dec_cpu, tol,
                 tf ? "tf32 tiled decode" : "fp32 tiled decode");
  }
}

// The pipeline's pixel <-> latent conversions do their layout change and affine map on the GPU
// when the VAE is there: same layout and values as the CPU route (a transposed layout would be
// off by O(1)).
TEST(CudaVae, FrameConversionsOnTheGpuMatchTheCpuRoute) {
  const std::string weights = golden_dir() + "/vae_tiny.diffusers.safetensors";
  const std::string config = golden_dir() + "/vae_tiny.config.json";
  const auto on_cpu = models::WanVae::load(weights, Device::CPU, config);
  const auto on_gpu = models::WanVae::load(weights, Device::CUDA, config);
  const Tensor frames = random_cpu({5, 24, 40, 3}, 230, 0.f, 1.f);
  const Tensor lat_cpu = pipeline::encode_frames(*on_cpu, frames);
  const Tensor lat_gpu = pipeline::encode_frames(*on_gpu, frames);
  ASSERT_EQ(lat_gpu.device(), Device::CPU);
  ASSERT_EQ(lat_gpu.shape(), lat_cpu.shape());
  EXPECT_LT(relative_l2(lat_gpu, lat_cpu), 1e-4);
  const Tensor back_cpu = pipeline::decode_latents(*on_cpu, lat_cpu);
  const Tensor back_gpu = pipeline::decode_latents(*on_gpu, lat_cpu);
  ASSERT_EQ(back_gpu.device(), Device::CPU);
  ASSERT_EQ(back_gpu.shape(), back_cpu.shape());
  EXPECT_LT(relative_l2(back_gpu, back_cpu), 1e-4);
}

}  // namespace
}  // namespace freeswim::cuda_test
