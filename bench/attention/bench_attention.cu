// Times the shipped attention kernels (Hopper and portable) at Wan2.1-1.3B 1080p and Wan2.1-14B
// 4K shapes, with cuDNN's fused SDPA as the dense baseline. Prints one table row per (shape,
// kernel) and writes the same numbers as JSON lines to the file named by the first argument
// (torch_attention.py reads them to print ratios against PyTorch).
//
// Usage: bench_attention [results.jsonl] [heads_4k] [dense_queries] [kernels] [hold_s]
//   heads_4k: heads timed at the 4K shape (default 4 of 40; heads are independent, so the rate
//             per head is the rate of the whole layer and a full layer would take seconds)
//   dense_queries: queries timed in the dense runs (default 16384, against all keys; queries
//             are independent, so the rate is the full problem's)
//   kernels: comma-separated, default window,dense,cudnn:
//     window       the window as the engine runs it on this GPU (automatic path and tiling)
//     window-box   Hopper box tiles forced (the plan's box width)
//     window-rows  Hopper row runs forced
//     dense        dense as the engine runs it on this GPU
//     dense-rows   Hopper dense fed by cp.async (the kernel for tensors TMA cannot address)
//     portable-window  the portable window kernel forced (row runs; mma.sync)
//     portable-dense   the portable dense kernel forced
//     portable-window-1, portable-dense-1  wide blocks with one resident per SM
//                  (AttentionOptions::portable_blocks_per_sm): what a wide D = 128 block would
//                  get on sm_80/86/89/120
//     portable-window-narrow, portable-dense-narrow  narrow blocks (AttentionOptions::
//                  portable_block), two per SM as on those GPUs: the shape they run
//     cudnn        cuDNN's SDPA (baseline; its relative L2 distance to `dense` is printed too)
//   hold_s: 0 (default): each row is the median of a few calls after two untimed ones (5 for the
//             window, 3 for dense), so a dense row (16384 queries, ~45 ms a call on an H100) is
//             timed over ~0.13 s and a window row over 0.5-1.5 s. > 0: each row first runs its
//             kernel untimed for hold_s seconds, then times calls for at least hold_s seconds more
//             (3 or more; the median), so every row is timed at the clock the GPU holds under that
//             kernel. An H100 under a long heavy kernel sits at its 700 W cap and lowers its SM
//             clock (1.6-1.75 GHz measured under the portable window, against ~1.85 GHz in the
//             first 0.1 s of a dense row): short rows are timed before the cap bites, long ones
//             after, and the engine's denoising steps (seconds of back-to-back kernels) run at the
//             cap. bench/device_check_portable.sh runs both and samples the clock meanwhile.
// Rows whose kernels cannot run on this GPU (Hopper ones elsewhere) print why and are skipped.
#include <cuda_bf16.h>
#include <cuda_runtime_api.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <stdexcept>
#include <string>
#include <vector>

#include "cudnn_sdpa.h"
#include "ops/cuda/attention/attention.h"
#include "ops/cuda/attention/row_steps.h"
#include "ops/cuda/attention/window_plan.h"

namespace {

using freeswim::WindowGeometry;
namespace fa = freeswim::attention;

void check(cudaError_t e, const char* what) {
  if (e != cudaSuccess) {
    std::fprintf(stderr, "%s: %s\n", what, cudaGetErrorString(e));
    std::exit(1);
  }
}

// Uniform values in [-2, 2) from a hash of the index: random-looking, not zeros, reproducible.
__global__ void fill_random(__nv_bfloat16* x, int64_t n, uint32_t seed) {
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < n;
       i += int64_t{gridDim.x} * blockDim.x) {
    uint32_t h = static_cast<uint32_t>(i) * 0x9E3779B1u ^ seed ^ static_cast<uint32_t>(i >> 32);
    h ^= h >> 16;
    h *= 0x85EBCA6Bu;
    h ^= h >> 13;
    h *= 0xC2B2AE35u;
    h ^= h >> 16;
    x[i] = __float2bfloat16(static_cast<float>(h) * (4.f / 4294967296.f) - 2.f);
  }
}

struct Shape {
  const char* name;
  WindowGeometry g;
  int heads, base_h, base_w;
};

// The median of reps timed calls (after two untimed ones), and the wall-clock span of the timed
// ones in seconds since the epoch (bench.jsonl's t0 / t1: device_check_portable.sh matches them
// with the SM clock and power it samples meanwhile).
struct Timing {
  double ms = 0, t0 = 0, t1 = 0;
};
double wall_seconds() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}
// hold_s > 0: untimed calls for hold_s seconds first, then at least `reps` timed calls covering
// at least hold_s seconds (see the usage above).
template <typename F>
Timing time_ms(F f, int reps, double hold_s) {
  cudaEvent_t a, b;
  check(cudaEventCreate(&a), "event");
  check(cudaEventCreate(&b), "event");
  f();
  f();
  check(cudaDeviceSynchronize(), "sync");
  for (const double until = wall_seconds() + hold_s; wall_seconds() < until;) {
    f();
    check(cudaDeviceSynchronize(), "sync");
  }
  Timing out;
  out.t0 = wall_seconds();
  std::vector<float> t;
  for (int i = 0; i < reps || wall_seconds() < out.t0 + hold_s; ++i) {
    check(cudaEventRecord(a), "record");
    f();
    check(cudaEventRecord(b), "record");
    check(cudaEventSynchronize(b), "sync");
    float ms = 0;
    check(cudaEventElapsedTime(&ms, a, b), "elapsed");
    t.push_back(ms);
  }
  out.t1 = wall_seconds();
  cudaEventDestroy(a);
  cudaEventDestroy(b);
  std::sort(t.begin(), t.end());
  out.ms = t[t.size() / 2];
  return out;
}

// Relative L2 distance between two bf16 device tensors of n values.
double rel_l2(const __nv_bfloat16* a, const __nv_bfloat16* b, int64_t n) {
  std::vector<__nv_bfloat16> ha(static_cast<size_t>(n)), hb(static_cast<size_t>(n));
  check(cudaMemcpy(ha.data(), a, n * 2, cudaMemcpyDeviceToHost), "copy");
  check(cudaMemcpy(hb.data(), b, n * 2, cudaMemcpyDeviceToHost), "copy");
  double err = 0, norm = 0;
  for (size_t i = 0; i < ha.size(); ++i) {
    const double x = __bfloat162float(ha[i]), y = __bfloat162float(hb[i]);
    err += (x - y) * (x - y);
    norm += y * y;
  }
  return std::sqrt(err / norm);
}

bool wanted(const std::string& list, const char* kernel) {
  return ("," + list + ",").find("," + std::string(kernel) + ",") != std::string::npos;
}

const char* box_label(const fa::WindowPlan& plan) {
  return plan.box_w == 4    ? " box 4x32"
         : plan.box_w == 8  ? " box 8x16"
         : plan.box_w == 16 ? " box 16x8"
                            : " rows";
}

}  // namespace

int main(int argc, char** argv) {
  const char* json_path = argc > 1 ? argv[1] : "attention_bench.jsonl";
  const int heads_4k = argc > 2 ? std::atoi(argv[2]) : 4;
  const int64_t dense_queries = argc > 3 ? std::atoll(argv[3]) : 16384;
  const std::string kernels = argc > 4 ? argv[4] : "window,dense,cudnn";
  char* hold_end = nullptr;
  const double hold_s = argc > 5 ? std::strtod(argv[5], &hold_end) : 0.0;
  if ((argc > 5 && (hold_end == argv[5] || *hold_end != '\0')) || !(hold_s >= 0 && hold_s <= 60)) {
    std::fprintf(stderr, "hold_s: %s is not a number of seconds in [0, 60]\n", argv[5]);
    return 2;
  }
  const int d = 128;
  const Shape shapes[] = {{"1.3B-1080p", {21, 68, 120, 15, 26}, 12, 30, 52},
                          {"14B-4K", {21, 135, 240, 22, 40}, heads_4k, 45, 80}};
  cudaDeviceProp prop{};
  check(cudaGetDeviceProperties(&prop, 0), "properties");
  std::printf("device: %s, %d SMs; kernels %s; hold %.1f s\n", prop.name, prop.multiProcessorCount,
              kernels.c_str(), hold_s);
  std::FILE* json = std::fopen(json_path, "w");
  if (!json) {
    std::fprintf(stderr, "cannot write %s\n", json_path);
    return 1;
  }
  std::printf("%-11s %-15s %5s %8s %10s %9s %8s %6s\n", "shape", "kernel", "heads", "queries",
              "time_ms", "TFLOP/s", "density", "patch");
  for (const Shape& s : shapes) {
    const int64_t tokens = s.g.tokens();
    const int64_t n = tokens * s.heads * d;
    __nv_bfloat16 *q, *k, *v, *o, *o_ref;
    check(cudaMalloc(&q, n * 2), "malloc q");
    check(cudaMalloc(&k, n * 2), "malloc k");
    check(cudaMalloc(&v, n * 2), "malloc v");
    check(cudaMalloc(&o, n * 2), "malloc out");
    check(cudaMalloc(&o_ref, n * 2), "malloc out");
    fill_random<<<1024, 256>>>(q, n, 1u);
    fill_random<<<1024, 256>>>(k, n, 2u);
    fill_random<<<1024, 256>>>(v, n, 3u);
    check(cudaDeviceSynchronize(), "fill");
    // FreeSwim's self-attention scale, N = tokens per frame of the base grid.
    const double nb = double{1} * s.base_h * s.base_w;
    const float scale = static_cast<float>(std::sqrt(std::log(2 * nb) / std::log(nb) / d));

    const double kpq = static_cast<double>(freeswim::window_keys_per_query(s.g));
    const double useful_pairs = static_cast<double>(tokens) * kpq;
    const struct {
      const char* name;
      fa::WindowTiling tiling;
      fa::AttentionPath path;
      int blocks_per_sm;
      fa::PortableBlock block;
    } windows[] = {{"window", fa::WindowTiling::automatic, fa::AttentionPath::automatic, 0,
                    fa::PortableBlock::automatic},
                   {"window-box", fa::WindowTiling::box_tiles, fa::AttentionPath::hopper, 0,
                    fa::PortableBlock::automatic},
                   {"window-rows", fa::WindowTiling::row_runs, fa::AttentionPath::hopper, 0,
                    fa::PortableBlock::automatic},
                   {"portable-window", fa::WindowTiling::automatic, fa::AttentionPath::portable, 0,
                    fa::PortableBlock::automatic},
                   {"portable-window-1", fa::WindowTiling::automatic, fa::AttentionPath::portable,
                    1, fa::PortableBlock::wide},
                   {"portable-window-narrow", fa::WindowTiling::automatic,
                    fa::AttentionPath::portable, 0, fa::PortableBlock::narrow}};
    bool have_window = false;  // o_ref holds the first window row's output
    for (const auto& w : windows) {
      if (!wanted(kernels, w.name)) continue;
      fa::AttentionOptions options;
      options.window_tiling = w.tiling;
      options.path = w.path;
      options.portable_blocks_per_sm = w.blocks_per_sm;
      options.portable_block = w.block;
      fa::WindowPlan plan;
      Timing wt;
      __nv_bfloat16* out = have_window ? o : o_ref;
      try {
        plan = fa::window_attention_plan(s.g, options);
        wt = time_ms(
            [&] {
              fa::window_attention_forward(q, k, v, out, s.heads, d, s.g, scale, nullptr, options);
            },
            5, hold_s);
      } catch (const std::exception& e) {
        std::printf("%-11s %-15s failed: %s\n", s.name, w.name, e.what());
        continue;
      }
      // The portable kernels compute row runs in steps of 64 keys, or 32 in narrow blocks
      // (row_steps.h).
      const bool narrow =
          w.block == fa::PortableBlock::narrow ||
          (w.block == fa::PortableBlock::automatic && fa::portable_narrow_blocks(d));
      const int tile_keys =
          w.path == fa::AttentionPath::portable ||
                  (w.path == fa::AttentionPath::automatic &&
                   fa::resolve_attention_path(w.path) == fa::AttentionPath::portable)
              ? (narrow ? fa::kNarrowStepKeys : fa::kStepKeys)
              : fa::kTileKeys;
      const double density =
          useful_pairs / static_cast<double>(fa::computed_pairs(s.g, plan, tile_keys));
      check(cudaDeviceSynchronize(), w.name);
      const double wms = wt.ms;
      const double wtf = 4.0 * useful_pairs * d * s.heads / (wms * 1e-3) / 1e12;
      char agree[64] = "";
      if (have_window)
        std::snprintf(agree, sizeof agree, " rel L2 to the first %.2e", rel_l2(o, o_ref, n));
      have_window = true;
      std::printf("%-11s %-15s %5d %8lld %10.3f %9.1f %8.3f %3dx%-2d%s%s\n", s.name, w.name,
                  s.heads, static_cast<long long>(tokens), wms, wtf, density, plan.ph, plan.pw,
                  box_label(plan), agree);
      std::fprintf(json,
                   "{\"shape\":\"%s\",\"kernel\":\"%s\",\"heads\":%d,\"queries\":%lld,"
                   "\"T\":%d,\"H\":%d,\"W\":%d,\"dh\":%d,\"dw\":%d,\"scale\":%.9g,"
                   "\"ms\":%.6f,\"tflops\":%.3f,\"density\":%.5f,\"box_w\":%d,\"t0\":%.3f,"
                   "\"t1\":%.3f,\"hold_s\":%.1f}\n",
                   s.name, w.name, s.heads, static_cast<long long>(tokens), s.g.T, s.g.H, s.g.W,
                   s.g.dh, s.g.dw, scale, wms, wtf, density, plan.box_w, wt.t0, wt.t1, hold_s);
    }

    const int64_t nq = std::min(dense_queries, tokens);
    const double dq_pad = std::ceil(double(nq) / fa::kBlockQ) * fa::kBlockQ;
    const double dk_pad = std::ceil(double(tokens) / fa::kTileKeys) * fa::kTileKeys;
    const double own_density = double(nq) * double(tokens) / (dq_pad * dk_pad);
    bool have_ref = false;  // o_ref holds the `dense` output
    const struct {
      const char* name;
      fa::DenseFeed feed;
      fa::AttentionPath path;
      bool cudnn;
      int blocks_per_sm;
      fa::PortableBlock block;
    } denses[] = {{"dense", fa::DenseFeed::automatic, fa::AttentionPath::automatic, false, 0,
                   fa::PortableBlock::automatic},
                  {"dense-rows", fa::DenseFeed::cp_async, fa::AttentionPath::hopper, false, 0,
                   fa::PortableBlock::automatic},
                  {"portable-dense", fa::DenseFeed::automatic, fa::AttentionPath::portable, false,
                   0, fa::PortableBlock::automatic},
                  {"portable-dense-1", fa::DenseFeed::automatic, fa::AttentionPath::portable, false,
                   1, fa::PortableBlock::wide},
                  {"portable-dense-narrow", fa::DenseFeed::automatic, fa::AttentionPath::portable,
                   false, 0, fa::PortableBlock::narrow},
                  {"cudnn", fa::DenseFeed::automatic, fa::AttentionPath::automatic, true, 0,
                   fa::PortableBlock::automatic}};
    for (const auto& di : denses) {
      if (!wanted(kernels, di.name)) continue;
      fa::AttentionOptions options;
      options.dense_feed = di.feed;
      options.path = di.path;
      options.portable_blocks_per_sm = di.blocks_per_sm;
      options.portable_block = di.block;
      __nv_bfloat16* out = std::strcmp(di.name, "dense") == 0 ? o_ref : o;
      Timing dt;
      try {
        dt = time_ms(
            [&] {
              if (di.cudnn) {
                std::string why;
                if (!freeswim::bench::cudnn_sdpa_forward(q, k, v, out, nq, tokens, s.heads, d,
                                                         scale, nullptr, &why))
                  throw std::runtime_error("cuDNN SDPA: " + why);
              } else {
                fa::dense_attention_forward(q, k, v, out, nq, tokens, s.heads, d, scale, nullptr,
                                            options);
              }
            },
            3, hold_s);
      } catch (const std::exception& e) {
        std::printf("%-11s %-15s failed: %s\n", s.name, di.name, e.what());
        continue;
      }
      check(cudaDeviceSynchronize(), di.name);
      have_ref = have_ref || out == o_ref;
      const double dms = dt.ms;
      const double dtf = 4.0 * double(nq) * double(tokens) * d * s.heads / (dms * 1e-3) / 1e12;
      char agree[64] = "";
      if (out != o_ref && have_ref)
        std::snprintf(agree, sizeof agree, " rel L2 to dense %.2e",
                      rel_l2(out, o_ref, nq * s.heads * d));
      std::printf("%-11s %-15s %5d %8lld %10.3f %9.1f %8.3f %6s%s\n", s.name, di.name, s.heads,
                  static_cast<long long>(nq), dms, dtf, di.cudnn ? 1.0 : own_density, "-", agree);
      std::fprintf(json,
                   "{\"shape\":\"%s\",\"kernel\":\"%s\",\"heads\":%d,\"queries\":%lld,"
                   "\"keys\":%lld,\"scale\":%.9g,\"ms\":%.6f,\"tflops\":%.3f,\"density\":%.5f,"
                   "\"t0\":%.3f,\"t1\":%.3f,\"hold_s\":%.1f}\n",
                   s.name, di.name, s.heads, static_cast<long long>(nq),
                   static_cast<long long>(tokens), scale, dms, dtf, di.cudnn ? 1.0 : own_density,
                   dt.t0, dt.t1, hold_s);
    }
    cudaFree(q);
    cudaFree(k);
    cudaFree(v);
    cudaFree(o);
    cudaFree(o_ref);
  }
  std::fclose(json);
  return 0;
}
