// GPU attention kernels against the CPU fp32 reference on random inputs of awkward sizes.
// Every output is poisoned with NaN before the kernel runs, so an unwritten element fails the
// NaN check as well as the error bound.
#include "ops/cuda/attention/attention.h"

#include <cuda_runtime_api.h>
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "core/dtype.h"
#include "core/error.h"
#include "ops/cuda/attention/cudnn_sdpa.h"
#include "ops/cuda/attention/window_plan.h"

namespace freeswim::attention {
namespace {

#define CUDA_OK(x) ASSERT_EQ((x), cudaSuccess) << cudaGetErrorString(x)

// Device buffer of bf16 values.
struct DeviceBf16 {
  uint16_t* ptr = nullptr;
  size_t n = 0;
  explicit DeviceBf16(size_t count) : n(count) {
    if (cudaMalloc(reinterpret_cast<void**>(&ptr), n * 2) != cudaSuccess)
      throw Error("test: cudaMalloc failed");
  }
  ~DeviceBf16() { cudaFree(ptr); }
  DeviceBf16(const DeviceBf16&) = delete;
  DeviceBf16& operator=(const DeviceBf16&) = delete;
};

// Random bf16 values; `host` gets the same values in fp32 for the reference.
std::vector<uint16_t> random_bf16(size_t n, std::mt19937& rng, std::vector<float>& host) {
  std::normal_distribution<float> dist(0.f, 1.f);
  std::vector<uint16_t> bits(n);
  host.resize(n);
  for (size_t i = 0; i < n; ++i) {
    bits[i] = float_to_bf16(dist(rng));
    host[i] = bf16_to_float(bits[i]);
  }
  return bits;
}

struct Inputs {
  std::vector<float> q, k, v;
  DeviceBf16 dq, dk, dv, dout;
  Inputs(size_t nq, size_t nkv, std::mt19937& rng) : dq(nq), dk(nkv), dv(nkv), dout(nq) {
    const auto bq = random_bf16(nq, rng, q), bk = random_bf16(nkv, rng, k),
               bv = random_bf16(nkv, rng, v);
    cudaMemcpy(dq.ptr, bq.data(), nq * 2, cudaMemcpyHostToDevice);
    cudaMemcpy(dk.ptr, bk.data(), nkv * 2, cudaMemcpyHostToDevice);
    cudaMemcpy(dv.ptr, bv.data(), nkv * 2, cudaMemcpyHostToDevice);
    cudaMemset(dout.ptr, 0xff, nq * 2);  // 0xffff is a bf16 NaN
  }
};

// Relative L2 error of the GPU output against the reference; fails on any NaN/Inf.
void expect_close(const DeviceBf16& out, const std::vector<float>& ref) {
  std::vector<uint16_t> bits(out.n);
  ASSERT_EQ(cudaMemcpy(bits.data(), out.ptr, out.n * 2, cudaMemcpyDeviceToHost), cudaSuccess);
  double err = 0, norm = 0;
  size_t bad = 0;
  for (size_t i = 0; i < out.n; ++i) {
    const float x = bf16_to_float(bits[i]);
    if (!std::isfinite(x)) {
      ++bad;
      continue;
    }
    err += (x - ref[i]) * double(x - ref[i]);
    norm += ref[i] * double(ref[i]);
  }
  EXPECT_EQ(bad, 0u) << "elements not written or not finite";
  const double rel = std::sqrt(err / norm);
  EXPECT_LT(rel, 1e-2) << "relative L2 error " << rel;
}

struct WindowCase {
  WindowGeometry g;
  int heads, head_dim;
};

class WindowAttention : public ::testing::TestWithParam<WindowCase> {};

TEST_P(WindowAttention, MatchesReference) {
  const WindowCase c = GetParam();
  std::mt19937 rng(1234 + c.g.T * 7 + c.g.H * 31 + c.g.W * 131 + c.heads);
  const size_t n = static_cast<size_t>(c.g.tokens()) * c.heads * c.head_dim;
  Inputs in(n, n, rng);
  const float scale = 1.f / std::sqrt(static_cast<float>(c.head_dim));
  window_attention_forward(in.dq.ptr, in.dk.ptr, in.dv.ptr, in.dout.ptr, c.heads, c.head_dim, c.g,
                           scale, nullptr);
  CUDA_OK(cudaDeviceSynchronize());
  std::vector<float> ref(n);
  window_attention_reference(in.q.data(), in.k.data(), in.v.data(), ref.data(), c.heads, c.head_dim,
                             c.g, scale);
  expect_close(in.dout, ref);
}

// {T, H, W, dh, dw}, heads, head_dim.
INSTANTIATE_TEST_SUITE_P(
    Shapes, WindowAttention,
    ::testing::Values(WindowCase{{1, 1, 1, 0, 0}, 1, 64},      // one token
                      WindowCase{{1, 5, 7, 3, 4}, 1, 128},     // grid smaller than the box
                      WindowCase{{3, 6, 8, 2, 3}, 2, 64},      // the golden data's grid
                      WindowCase{{2, 9, 30, 2, 3}, 1, 128},    // box smaller in both dims
                      WindowCase{{1, 17, 23, 3, 5}, 3, 128},   // T = 1, odd sizes
                      WindowCase{{5, 12, 11, 6, 2}, 2, 64},    // H smaller than the box only
                      WindowCase{{4, 10, 26, 4, 7}, 40, 128},  // 40 heads
                      WindowCase{{21, 8, 12, 2, 3}, 1, 128},   // T = 21 as the real models
                      WindowCase{{2, 31, 5, 7, 0}, 1, 64},     // dw = 0
                      // Many patches with multi-tile key rectangles (several 128-key tiles per
                      // rectangle, interior and border patches), both head sizes.
                      WindowCase{{3, 40, 64, 7, 12}, 2, 128},
                      WindowCase{{2, 33, 50, 15, 26}, 1, 64},
                      // The 1.3B-1080p window on its real grid, one frame (box tiles of 4 x 32
                      // keys with the fast mask path on most tiles).
                      WindowCase{{1, 68, 120, 15, 26}, 1, 128}),
    [](const ::testing::TestParamInfo<WindowCase>& i) {
      const WindowCase& c = i.param;
      return "T" + std::to_string(c.g.T) + "_H" + std::to_string(c.g.H) + "_W" +
             std::to_string(c.g.W) + "_dh" + std::to_string(c.g.dh) + "_dw" +
             std::to_string(c.g.dw) + "_heads" + std::to_string(c.heads) + "_d" +
             std::to_string(c.head_dim);
    });

struct DenseCase {
  int64_t n_q, n_kv;
  int heads, head_dim;
  DenseImpl impl;
};

class DenseAttention : public ::testing::TestWithParam<DenseCase> {};

TEST_P(DenseAttention, MatchesReference) {
  const DenseCase c = GetParam();
  std::mt19937 rng(99 + static_cast<unsigned>(c.n_q * 3 + c.n_kv) + c.heads);
  const size_t nq = static_cast<size_t>(c.n_q) * c.heads * c.head_dim;
  const size_t nkv = static_cast<size_t>(c.n_kv) * c.heads * c.head_dim;
  Inputs in(nq, nkv, rng);
  const float scale = 0.7f / std::sqrt(static_cast<float>(c.head_dim));
  if (c.impl == DenseImpl::cudnn && !detail::cudnn_sdpa_available()) {
    // A build without cuDNN must refuse an explicit cuDNN request, not fall back silently.
    EXPECT_THROW(dense_attention_forward(in.dq.ptr, in.dk.ptr, in.dv.ptr, in.dout.ptr, c.n_q,
                                         c.n_kv, c.heads, c.head_dim, scale, nullptr, c.impl),
                 Error);
    return;
  }
  dense_attention_forward(in.dq.ptr, in.dk.ptr, in.dv.ptr, in.dout.ptr, c.n_q, c.n_kv, c.heads,
                          c.head_dim, scale, nullptr, c.impl);
  CUDA_OK(cudaDeviceSynchronize());
  std::vector<float> ref(nq);
  dense_attention_reference(in.q.data(), in.k.data(), in.v.data(), ref.data(), c.n_q, c.n_kv,
                            c.heads, c.head_dim, scale);
  expect_close(in.dout, ref);
}

// Every shape through the own kernel and through cuDNN's SDPA.
std::vector<DenseCase> dense_cases() {
  const DenseCase shapes[] = {{1, 1, 1, 64, {}},
                              {130, 512, 2, 128, {}},
                              {300, 77, 40, 64, {}},
                              {257, 1000, 1, 128, {}},
                              {64, 64, 3, 128, {}}};
  std::vector<DenseCase> out;
  for (DenseImpl impl : {DenseImpl::own, DenseImpl::cudnn})
    for (DenseCase c : shapes) {
      c.impl = impl;
      out.push_back(c);
    }
  return out;
}

INSTANTIATE_TEST_SUITE_P(Shapes, DenseAttention, ::testing::ValuesIn(dense_cases()),
                         [](const ::testing::TestParamInfo<DenseCase>& i) {
                           const DenseCase& c = i.param;
                           return std::string(c.impl == DenseImpl::own ? "own" : "cudnn") + "_q" +
                                  std::to_string(c.n_q) + "_kv" + std::to_string(c.n_kv) +
                                  "_heads" + std::to_string(c.heads) + "_d" +
                                  std::to_string(c.head_dim);
                         });

TEST(AttentionErrors, RejectsBadArguments) {
  DeviceBf16 buf(64 * 128);
  const WindowGeometry g{1, 4, 4, 1, 1};
  EXPECT_THROW(
      window_attention_forward(buf.ptr, buf.ptr, buf.ptr, buf.ptr, 1, 96, g, 0.1f, nullptr), Error);
  EXPECT_THROW(
      dense_attention_forward(buf.ptr, buf.ptr, buf.ptr, buf.ptr, 4, 4, 1, 32, 0.1f, nullptr),
      Error);
  EXPECT_THROW(
      dense_attention_forward(buf.ptr, buf.ptr, buf.ptr, buf.ptr, 0, 4, 1, 64, 0.1f, nullptr),
      Error);
  EXPECT_THROW(
      window_attention_forward(buf.ptr, buf.ptr, buf.ptr, buf.ptr, 0, 64, g, 0.1f, nullptr), Error);
  EXPECT_THROW(window_attention_forward(buf.ptr, buf.ptr, buf.ptr, buf.ptr, 1, 64,
                                        WindowGeometry{1, 4, 4, -1, 1}, 0.1f, nullptr),
               Error);
  EXPECT_THROW(
      dense_attention_forward(nullptr, buf.ptr, buf.ptr, buf.ptr, 4, 4, 1, 64, 0.1f, nullptr),
      Error);
  EXPECT_THROW(
      dense_attention_forward(buf.ptr, buf.ptr, buf.ptr, buf.ptr, 4, 4, 1, 64, NAN, nullptr),
      Error);
}

// The plan's key rectangles cover exactly the union of the patch's boxes, and the core is seen
// by every position of the patch (host-only: checks the tiling the kernel relies on).
TEST(WindowPlan, RectanglesCoverEveryVisibleKeyOnce) {
  const WindowGeometry geos[] = {{2, 9, 30, 2, 3}, {1, 5, 7, 3, 4}, {3, 68, 120, 15, 26}};
  for (const WindowGeometry& g : geos) {
    const WindowPlan plan = choose_plan(g);
    for (int h0 = 0; h0 < g.H; h0 += plan.ph) {
      for (int w0 = 0; w0 < g.W; w0 += plan.pw) {
        const PatchKeys pk = patch_keys(g, plan.ph, plan.pw, h0, w0);
        std::vector<int> cover(static_cast<size_t>(g.H * g.W), 0);
        for (int i = 0; i < 5; ++i)
          for (int r = pk.rect[i].r0; r < pk.rect[i].r1; ++r)
            for (int c = pk.rect[i].c0; c < pk.rect[i].c1; ++c) cover[r * g.W + c] += 1;
        for (int r = 0; r < g.H; ++r) {
          for (int c = 0; c < g.W; ++c) {
            bool seen = false, seen_by_all = true;
            for (int h = h0; h < std::min(h0 + plan.ph, g.H); ++h) {
              for (int w = w0; w < std::min(w0 + plan.pw, g.W); ++w) {
                const bool s = window_visible(g, h * g.W + w, r * g.W + c);
                seen = seen || s;
                seen_by_all = seen_by_all && s;
              }
            }
            ASSERT_EQ(cover[r * g.W + c], seen ? 1 : 0) << r << "," << c;
            const KeyRect& core = pk.rect[0];
            const bool in_core = r >= core.r0 && r < core.r1 && c >= core.c0 && c < core.c1;
            if (in_core) {
              ASSERT_TRUE(seen_by_all) << r << "," << c;
            }
          }
        }
      }
    }
  }
}

}  // namespace
}  // namespace freeswim::attention
