// GPU attention kernels against the CPU backend's fp32 attention on random inputs of awkward
// sizes. Every shipped kernel is run on purpose through AttentionOptions (both paths, each window
// tiling and box width of the Hopper kernels, both Hopper dense feeds, head_dim 64 and 128),
// besides the cases that take the default path. Every output is poisoned with NaN before the
// kernel runs, so an unwritten element fails the NaN check as well as the error bound. Hopper
// cases are skipped where the Hopper kernels cannot run (another GPU, or a build without them).
#include "ops/cuda/attention/attention.h"

#include <cuda_runtime_api.h>
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <initializer_list>
#include <random>
#include <string>
#include <vector>

#include "core/dtype.h"
#include "core/error.h"
#include "core/tensor.h"
#include "ops/cpu/cpu_backend.h"
#include "ops/cuda/attention/window_plan.h"

namespace freeswim::attention {
namespace {

#define CUDA_OK(x) ASSERT_EQ((x), cudaSuccess) << cudaGetErrorString(x)

// Whether the Hopper kernels run here (built, and a compute capability 9.0 GPU).
bool hopper_runs() {
  try {
    return resolve_attention_path(AttentionPath::hopper) == AttentionPath::hopper;
  } catch (const Error&) {
    return false;
  }
}

#define SKIP_UNLESS_PATH_RUNS(path)                         \
  do {                                                      \
    if ((path) == AttentionPath::hopper && !hopper_runs())  \
      GTEST_SKIP() << "the Hopper kernels do not run here"; \
  } while (0)

const char* path_name(AttentionPath p) {
  return p == AttentionPath::hopper ? "hopper" : p == AttentionPath::portable ? "portable" : "auto";
}

const char* block_name(PortableBlock b) {
  return b == PortableBlock::wide ? "_wide" : b == PortableBlock::narrow ? "_narrow" : "";
}

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

// The CPU backend's attention on the same values: [tokens, heads, head_dim] tensors.
std::vector<float> reference(const Inputs& in, int64_t n_q, int64_t n_kv, int heads, int head_dim,
                             float scale, const WindowGeometry* g) {
  const Tensor q = Tensor::from_vector({n_q, heads, head_dim}, in.q);
  const Tensor k = Tensor::from_vector({n_kv, heads, head_dim}, in.k);
  const Tensor v = Tensor::from_vector({n_kv, heads, head_dim}, in.v);
  const Tensor out =
      g ? ops::cpu::attention_window(q, k, v, scale, *g) : ops::cpu::attention_full(q, k, v, scale);
  return std::vector<float>(out.data<float>(), out.data<float>() + out.numel());
}

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

// Which window kernel a case runs: the engine's choice, or one forced.
enum class WindowKernel { automatic, rows, box4, box8, box16 };

AttentionOptions options_for(WindowKernel k) {
  AttentionOptions o;
  if (k == WindowKernel::rows) o.window_tiling = WindowTiling::row_runs;
  if (k == WindowKernel::box4 || k == WindowKernel::box8 || k == WindowKernel::box16) {
    o.window_tiling = WindowTiling::box_tiles;
    o.box_width = k == WindowKernel::box4 ? 4 : k == WindowKernel::box8 ? 8 : 16;
  }
  return o;
}

const char* name_of(WindowKernel k) {
  switch (k) {
    case WindowKernel::automatic:
      return "auto";
    case WindowKernel::rows:
      return "rows";
    case WindowKernel::box4:
      return "box4";
    case WindowKernel::box8:
      return "box8";
    default:
      return "box16";
  }
}

struct WindowCase {
  WindowGeometry g;
  int heads, head_dim;
  WindowKernel kernel = WindowKernel::automatic;
  AttentionPath path = AttentionPath::hopper;
  PortableBlock block = PortableBlock::automatic;  // portable kernels' block shape
};

class WindowAttention : public ::testing::TestWithParam<WindowCase> {};

TEST_P(WindowAttention, MatchesReference) {
  const WindowCase c = GetParam();
  SKIP_UNLESS_PATH_RUNS(c.path);
  AttentionOptions options = options_for(c.kernel);
  options.path = c.path;
  options.portable_block = c.block;
  // The plan says which kernel runs: a forced tiling must get it.
  const WindowPlan plan = window_attention_plan(c.g, options);
  if (c.kernel == WindowKernel::rows || c.path == AttentionPath::portable) {
    EXPECT_EQ(plan.box_w, 0);
  } else if (c.kernel != WindowKernel::automatic) {
    EXPECT_EQ(plan.box_w, options.box_width);
  }
  std::mt19937 rng(1234 + c.g.T * 7 + c.g.H * 31 + c.g.W * 131 + c.heads);
  const size_t n = static_cast<size_t>(c.g.tokens()) * c.heads * c.head_dim;
  Inputs in(n, n, rng);
  const float scale = 1.f / std::sqrt(static_cast<float>(c.head_dim));
  window_attention_forward(in.dq.ptr, in.dk.ptr, in.dv.ptr, in.dout.ptr, c.heads, c.head_dim, c.g,
                           scale, nullptr, options);
  CUDA_OK(cudaDeviceSynchronize());
  expect_close(in.dout,
               reference(in, c.g.tokens(), c.g.tokens(), c.heads, c.head_dim, scale, &c.g));
}

std::vector<WindowCase> window_cases() {
  // {T, H, W, dh, dw}, heads, head_dim: the engine's choice of kernel.
  std::vector<WindowCase> cases = {
      {{1, 1, 1, 0, 0}, 1, 64},      // one token
      {{1, 5, 7, 3, 4}, 1, 128},     // grid smaller than the window
      {{3, 6, 8, 2, 3}, 2, 64},      // the golden data's grid
      {{2, 9, 30, 2, 3}, 1, 128},    // window smaller in both dims
      {{1, 17, 23, 3, 5}, 3, 128},   // T = 1, odd sizes
      {{5, 12, 11, 6, 2}, 2, 64},    // H smaller than the window only
      {{4, 10, 26, 4, 7}, 40, 128},  // 40 heads
      {{21, 8, 12, 2, 3}, 1, 128},   // T = 21 as the real models
      {{2, 31, 5, 7, 0}, 1, 64},     // dw = 0
      // Many patches with multi-tile key rectangles (interior and border patches).
      {{3, 40, 64, 7, 12}, 2, 128},
      {{2, 33, 50, 15, 26}, 1, 64},
      // The 1.3B-1080p window on its real grid, one frame (box tiles of 4 x 32 keys with the fast
      // mask path on most tiles).
      {{1, 68, 120, 15, 26}, 1, 128}};
  // The same shapes through the portable kernels (row runs), and shapes for their steps of 64 keys:
  // rectangles whose last tile holds at most 64 keys (a skipped half), exactly 64 or 128 keys, or
  // 65; frames of one row or one column; the window at 14B-4K's half sizes. Each portable case
  // runs with wide and with narrow blocks (whichever this GPU would choose, and the other).
  const size_t n_default = cases.size();
  std::vector<WindowCase> portable;
  for (size_t i = 0; i < n_default; ++i) portable.push_back(cases[i]);
  for (const WindowCase& c : std::initializer_list<WindowCase>{
           {{1, 8, 8, 3, 3}, 1, 128},      // 64 keys: one full step
           {{2, 8, 8, 3, 3}, 2, 64},       // 128 keys: one full tile
           {{1, 5, 13, 2, 6}, 1, 128},     // 65 keys
           {{3, 1, 40, 0, 5}, 1, 64},      // one row
           {{4, 37, 1, 6, 0}, 3, 128},     // one column
           {{2, 45, 80, 22, 40}, 1, 128},  // 14B-4K's half window on a smaller grid
           {{7, 19, 29, 4, 9}, 2, 64},
           // Zoned plans: 21 frames over band runs that span one or two columns, runs across the
           // bands of clamped columns, and more frames than a block has rows (two chunks).
           {{21, 30, 44, 7, 12}, 1, 128},
           {{3, 26, 70, 3, 20}, 1, 64},
           {{130, 9, 11, 2, 2}, 1, 128}})
    portable.push_back(c);
  for (PortableBlock block : {PortableBlock::wide, PortableBlock::narrow})
    for (WindowCase c : portable) {
      c.path = AttentionPath::portable;
      c.block = block;
      cases.push_back(c);
    }
  // Each shipped window kernel forced, at both head sizes: small grids (windows larger than the
  // grid, boxes past its edge), multi-tile patches, and 21 frames.
  const WindowCase forced[] = {{{1, 5, 7, 3, 4}, 1, 128},
                               {{3, 40, 64, 7, 12}, 2, 128},
                               {{2, 33, 50, 15, 26}, 1, 64},
                               {{21, 8, 12, 2, 3}, 1, 64}};
  for (WindowKernel k :
       {WindowKernel::rows, WindowKernel::box4, WindowKernel::box8, WindowKernel::box16})
    for (WindowCase c : forced) {
      c.kernel = k;
      cases.push_back(c);
    }
  return cases;
}

INSTANTIATE_TEST_SUITE_P(Shapes, WindowAttention, ::testing::ValuesIn(window_cases()),
                         [](const ::testing::TestParamInfo<WindowCase>& i) {
                           const WindowCase& c = i.param;
                           return std::string(path_name(c.path)) + block_name(c.block) + "_" +
                                  name_of(c.kernel) + "_T" + std::to_string(c.g.T) + "_H" +
                                  std::to_string(c.g.H) + "_W" + std::to_string(c.g.W) + "_dh" +
                                  std::to_string(c.g.dh) + "_dw" + std::to_string(c.g.dw) +
                                  "_heads" + std::to_string(c.heads) + "_d" +
                                  std::to_string(c.head_dim);
                         });

struct DenseCase {
  int64_t n_q, n_kv;
  int heads, head_dim;
  DenseFeed feed;
  AttentionPath path = AttentionPath::hopper;
  PortableBlock block = PortableBlock::automatic;  // portable kernels' block shape
};

class DenseAttention : public ::testing::TestWithParam<DenseCase> {};

TEST_P(DenseAttention, MatchesReference) {
  const DenseCase c = GetParam();
  SKIP_UNLESS_PATH_RUNS(c.path);
  std::mt19937 rng(99 + static_cast<unsigned>(c.n_q * 3 + c.n_kv) + c.heads);
  const size_t nq = static_cast<size_t>(c.n_q) * c.heads * c.head_dim;
  const size_t nkv = static_cast<size_t>(c.n_kv) * c.heads * c.head_dim;
  Inputs in(nq, nkv, rng);
  const float scale = 0.7f / std::sqrt(static_cast<float>(c.head_dim));
  AttentionOptions options;
  options.dense_feed = c.feed;
  options.path = c.path;
  options.portable_block = c.block;
  dense_attention_forward(in.dq.ptr, in.dk.ptr, in.dv.ptr, in.dout.ptr, c.n_q, c.n_kv, c.heads,
                          c.head_dim, scale, nullptr, options);
  CUDA_OK(cudaDeviceSynchronize());
  expect_close(in.dout, reference(in, c.n_q, c.n_kv, c.heads, c.head_dim, scale, nullptr));
}

// Every shape through both Hopper dense kernels (fed by TMA, the engine's, and by cp.async) and the
// portable one; key counts around its 64-key steps and 128-key tiles.
std::vector<DenseCase> dense_cases() {
  const DenseCase shapes[] = {
      {1, 1, 1, 64, {}},       {130, 512, 2, 128, {}}, {300, 77, 40, 64, {}},
      {257, 1000, 1, 128, {}}, {64, 64, 3, 128, {}},   {129, 65, 2, 128, {}},
      {200, 128, 1, 64, {}},   {1, 129, 2, 128, {}},   {512, 4097, 2, 128, {}}};
  std::vector<DenseCase> out;
  for (DenseFeed feed : {DenseFeed::tma, DenseFeed::cp_async})
    for (DenseCase c : shapes) {
      c.feed = feed;
      out.push_back(c);
    }
  for (PortableBlock block : {PortableBlock::wide, PortableBlock::narrow})
    for (DenseCase c : shapes) {
      c.feed = DenseFeed::automatic;
      c.path = AttentionPath::portable;
      c.block = block;
      out.push_back(c);
    }
  return out;
}

INSTANTIATE_TEST_SUITE_P(Shapes, DenseAttention, ::testing::ValuesIn(dense_cases()),
                         [](const ::testing::TestParamInfo<DenseCase>& i) {
                           const DenseCase& c = i.param;
                           return std::string(path_name(c.path)) + block_name(c.block) + "_" +
                                  (c.feed == DenseFeed::tma        ? "tma"
                                   : c.feed == DenseFeed::cp_async ? "cp_async"
                                                                   : "auto") +
                                  "_q" + std::to_string(c.n_q) + "_kv" + std::to_string(c.n_kv) +
                                  "_heads" + std::to_string(c.heads) + "_d" +
                                  std::to_string(c.head_dim);
                         });

// Every portable kernel would launch on every target: sm_86, sm_89 and sm_120 give a block at most
// 99 KB of shared memory (static and dynamic), 64K registers and 255 per thread. The attributes are
// those of the code this GPU runs (its machine code, or the PTX compiled by the driver).
TEST(PortableKernels, FitEveryTarget) {
  const std::vector<PortableKernel> kernels = portable_kernels();
  ASSERT_EQ(kernels.size(), 8u);
  for (const PortableKernel& k : kernels) {
    ASSERT_EQ(k.status, cudaSuccess) << k.name << ": " << cudaGetErrorString(k.status);
    const cudaFuncAttributes& a = k.attributes;
    const size_t smem = a.sharedSizeBytes + static_cast<size_t>(k.dynamic_smem);
    std::printf(
        "%-12s %3d threads, %3d registers, %6zu bytes shared (%zu static), %zu bytes local, "
        "PTX %d, SASS %d, %d blocks per SM here\n",
        k.name, k.threads, a.numRegs, smem, a.sharedSizeBytes, a.localSizeBytes, a.ptxVersion,
        a.binaryVersion, k.blocks_per_sm);
    EXPECT_LE(smem, static_cast<size_t>(kPortableSmemLimit)) << k.name;
    EXPECT_LE(a.numRegs, 255) << k.name;
    EXPECT_LE(a.numRegs * k.threads, 65536) << k.name;
    EXPECT_GE(a.maxThreadsPerBlock, k.threads) << k.name;
    // Narrow blocks run two to an SM of 100 KB (each with the 1 KB the system keeps) and of
    // 64K registers; here too.
    if (std::string(k.name).rfind("narrow_", 0) == 0) {
      EXPECT_LE(2 * (smem + kSystemSmemPerBlock), static_cast<size_t>(kSmallSmSmem)) << k.name;
      EXPECT_LE(2 * a.numRegs * k.threads, 65536) << k.name;
      EXPECT_GE(k.blocks_per_sm, 2) << k.name;
    }
  }
}

// One block per SM (the occupancy of sm_86/89/120, for benchmarks): the launch's shared memory
// leaves one block of each kernel resident per SM where two or more fit otherwise, the same bits
// come out (window and dense), and values other than 0 and 1 are refused.
TEST(PortableKernels, OneBlockPerSmGivesTheSameBits) {
  const std::vector<PortableKernel> usual = portable_kernels(), one_each = portable_kernels(1);
  ASSERT_EQ(one_each.size(), usual.size());
  for (size_t i = 0; i < usual.size(); ++i) {
    ASSERT_EQ(one_each[i].status, cudaSuccess) << one_each[i].name;
    EXPECT_EQ(one_each[i].blocks_per_sm, 1) << one_each[i].name;
    EXPECT_GE(one_each[i].dynamic_smem, usual[i].dynamic_smem) << one_each[i].name;
  }
  std::mt19937 rng(11);
  const WindowGeometry g{3, 20, 26, 4, 6};
  const int heads = 2, d = 128;
  const size_t n = static_cast<size_t>(g.tokens()) * heads * d;
  Inputs in(n, n, rng);
  DeviceBf16 other(n);
  AttentionOptions two, one;
  two.path = one.path = AttentionPath::portable;
  one.portable_blocks_per_sm = 1;
  auto bits = [](const DeviceBf16& b) {
    std::vector<uint16_t> h(b.n);
    EXPECT_EQ(cudaMemcpy(h.data(), b.ptr, b.n * 2, cudaMemcpyDeviceToHost), cudaSuccess);
    return h;
  };
  window_attention_forward(in.dq.ptr, in.dk.ptr, in.dv.ptr, in.dout.ptr, heads, d, g, 0.1f, nullptr,
                           two);
  window_attention_forward(in.dq.ptr, in.dk.ptr, in.dv.ptr, other.ptr, heads, d, g, 0.1f, nullptr,
                           one);
  ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  EXPECT_EQ(bits(in.dout), bits(other)) << "window";
  dense_attention_forward(in.dq.ptr, in.dk.ptr, in.dv.ptr, in.dout.ptr, g.tokens(), g.tokens(),
                          heads, d, 0.1f, nullptr, two);
  dense_attention_forward(in.dq.ptr, in.dk.ptr, in.dv.ptr, other.ptr, g.tokens(), g.tokens(), heads,
                          d, 0.1f, nullptr, one);
  ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  EXPECT_EQ(bits(in.dout), bits(other)) << "dense";
  AttentionOptions bad = one;
  bad.portable_blocks_per_sm = 2;
  EXPECT_THROW(window_attention_forward(in.dq.ptr, in.dk.ptr, in.dv.ptr, other.ptr, heads, d, g,
                                        0.1f, nullptr, bad),
               Error);
  bad.portable_blocks_per_sm = -1;
  EXPECT_THROW(dense_attention_forward(in.dq.ptr, in.dk.ptr, in.dv.ptr, other.ptr, g.tokens(),
                                       g.tokens(), heads, d, 0.1f, nullptr, bad),
               Error);
}

// The engine's block shape follows the SM's shared memory: narrow where two wide blocks do not
// fit. A shape outside the enum is refused.
TEST(PortableKernels, ShapeFollowsTheSharedMemory) {
  int dev = 0, per_sm = 0;
  CUDA_OK(cudaGetDevice(&dev));
  CUDA_OK(cudaDeviceGetAttribute(&per_sm, cudaDevAttrMaxSharedMemoryPerMultiprocessor, dev));
  for (const PortableKernel& k : portable_kernels()) {
    const std::string name = k.name;
    if (name != "window_d128" && name != "window_d64") continue;
    const size_t wide = k.dynamic_smem + k.attributes.sharedSizeBytes + kSystemSmemPerBlock;
    EXPECT_EQ(portable_narrow_blocks(name == "window_d128" ? 128 : 64),
              2 * wide > static_cast<size_t>(per_sm))
        << name << " on an SM with " << per_sm << " bytes";
  }
  EXPECT_THROW(portable_narrow_blocks(96), Error);
  std::mt19937 rng(12);
  const WindowGeometry g{2, 9, 13, 2, 3};
  const size_t n = static_cast<size_t>(g.tokens()) * 128;
  Inputs in(n, n, rng);
  AttentionOptions bad;
  bad.path = AttentionPath::portable;
  bad.portable_block = static_cast<PortableBlock>(7);
  EXPECT_THROW(window_attention_forward(in.dq.ptr, in.dk.ptr, in.dv.ptr, in.dout.ptr, 1, 128, g,
                                        0.3f, nullptr, bad),
               Error);
  EXPECT_THROW(dense_attention_forward(in.dq.ptr, in.dk.ptr, in.dv.ptr, in.dout.ptr, g.tokens(),
                                       g.tokens(), 1, 128, 0.3f, nullptr, bad),
               Error);
}

TEST(AttentionPaths, AutomaticTakesTheHopperKernelsWhereTheyRun) {
  const AttentionPath automatic = resolve_attention_path(AttentionPath::automatic);
  EXPECT_EQ(automatic, hopper_runs() ? AttentionPath::hopper : AttentionPath::portable);
  EXPECT_EQ(resolve_attention_path(AttentionPath::portable), AttentionPath::portable);
  if (!hopper_runs()) {
    EXPECT_THROW(resolve_attention_path(AttentionPath::hopper), Error);
  }
  int dev = 0, major = 0, minor = 0;
  CUDA_OK(cudaGetDevice(&dev));
  CUDA_OK(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev));
  CUDA_OK(cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, dev));
  std::printf("compute capability %d.%d, Hopper kernels built: %d, automatic path: %s\n", major,
              minor, hopper_kernels_built() ? 1 : 0, path_name(automatic));
}

TEST(AttentionErrors, PortableRefusesWhatOnlyHopperKernelsDo) {
  DeviceBf16 buf(64 * 128);
  const WindowGeometry g{1, 4, 4, 1, 1};
  AttentionOptions box;
  box.path = AttentionPath::portable;
  box.window_tiling = WindowTiling::box_tiles;
  EXPECT_THROW(
      window_attention_forward(buf.ptr, buf.ptr, buf.ptr, buf.ptr, 1, 64, g, 0.1f, nullptr, box),
      Error);
  AttentionOptions tma;
  tma.path = AttentionPath::portable;
  tma.dense_feed = DenseFeed::tma;
  EXPECT_THROW(
      dense_attention_forward(buf.ptr, buf.ptr, buf.ptr, buf.ptr, 4, 4, 1, 64, 0.1f, nullptr, tma),
      Error);
  AttentionOptions portable;
  portable.path = AttentionPath::portable;
  EXPECT_THROW(dense_attention_forward(buf.ptr, buf.ptr, buf.ptr, buf.ptr, 4, 4, 1, 96, 0.1f,
                                       nullptr, portable),
               Error);
}

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
  AttentionOptions bad_box;
  bad_box.window_tiling = WindowTiling::box_tiles;
  bad_box.box_width = 5;
  EXPECT_THROW(window_attention_forward(buf.ptr, buf.ptr, buf.ptr, buf.ptr, 1, 64, g, 0.1f, nullptr,
                                        bad_box),
               Error);
}

}  // namespace
}  // namespace freeswim::attention
