// bench_step [T Hg Wg [kinds [cache [kernels]]]]: times one DiT forward of each step kind of
// Wan2.1-1.3B with random weights on the GPU. Default grid 21x68x120 tokens (1088x1920, 81
// frames), a 512-token text context, FreeSwim window of the 30x52 base grid. `kinds` is a comma
// list of stock, dual, guide, reuse, uncond (reuse needs guide before it); `cache` is where the
// cross-attention cache lives: device (default), host (pinned host memory) or auto; `kernels` a
// comma list of attention kernels (freeswim's --gpu-kernels: auto, the default, hopper or
// portable), each timing every kind in turn on the same model (e.g. hopper,portable). Prints a
// markdown table: seconds per forward, tensor memory at its peak during the forward, and device
// memory in use at the end (cudaMemGetInfo); then the CFG steps these forwards make up. With
// FREESWIM_PROFILE=1 each forward is followed by its per-op GPU times.
#include <cuda_runtime_api.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "core/environment.h"
#include "core/error.h"
#include "models/wan_dit.h"
#include "ops/cuda/cuda_backend.h"
#include "ops/cuda/gemm.h"

using namespace freeswim;

namespace {

double gib(size_t b) {
  return static_cast<double>(b) / (1024.0 * 1024.0 * 1024.0);
}

Tensor random_tensor(const Shape& s, uint64_t seed) {
  // A cheap deterministic fill (the values only need a realistic spread).
  Tensor t = Tensor::empty(s);
  uint64_t x = seed * 0x9E3779B97F4A7C15ull + 1;
  float* d = t.data<float>();
  for (int64_t i = 0; i < t.numel(); ++i) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    d[i] = static_cast<float>(static_cast<double>(x >> 11) * (2.0 / 9007199254740992.0) - 1.0);
  }
  return t;
}

void sync() {
  const cudaError_t e = cudaDeviceSynchronize();
  FS_CHECK(e == cudaSuccess, "cuda: {}", cudaGetErrorString(e));
}

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

// Times each step kind of `kinds` with the attention kernels set to `kernels`; returns seconds per
// kind.
std::map<std::string, double> time_kinds(const models::WanDit& model, const models::DitInput& in,
                                         const FreeSwimParams& fsp, const std::string& kinds,
                                         CrossAttentionCache& cache, int T, int Hg, int Wg) {
  std::printf(
      "\n| step kind | grid | forward (s) | peak tensors (GiB) | device used after (GiB) |\n");
  std::printf("| --- | --- | --- | --- | --- |\n");
  std::map<std::string, double> seconds;
  std::stringstream list(kinds);
  std::string name;
  while (std::getline(list, name, ',')) {
    StepKind kind;
    if (name == "stock")
      kind = StepKind::Stock;
    else if (name == "dual")
      kind = StepKind::Dual;
    else if (name == "guide")
      kind = StepKind::Guide;
    else if (name == "reuse")
      kind = StepKind::Reuse;
    else if (name == "uncond")
      kind = StepKind::Uncond;
    else
      fail("unknown step kind '{}' (stock, dual, guide, reuse, uncond)", name);
    sync();
    ops::cuda::reset_peak_memory();
    if (ops::cuda::op_profile_enabled()) ops::cuda::reset_op_profile();
    const auto t0 = std::chrono::steady_clock::now();
    Tensor out = model.forward(in, kind, kind == StepKind::Stock ? nullptr : &fsp, &cache);
    sync();
    const double s = seconds_since(t0);
    size_t free_b = 0, total_b = 0;
    cudaMemGetInfo(&free_b, &total_b);
    std::printf("| %s | %dx%dx%d | %.2f | %.2f | %.2f |\n", name.c_str(), T, Hg, Wg, s,
                gib(ops::cuda::memory_stats().peak_in_use), gib(total_b - free_b));
    std::fflush(stdout);
    seconds[name] = s;
    // FREESWIM_PROFILE=1: where this forward's GPU time went, per op (slows the forward a little).
    if (ops::cuda::op_profile_enabled())
      std::printf("\n%s forward:\n%s\n", name.c_str(), ops::cuda::op_profile_report().c_str());
  }
  return seconds;
}

// One CFG step = conditional + unconditional prediction. Cache every k: one guide step (dual
// path, cache written) then k - 1 reuse steps, each with a window-only unconditional forward.
// Without cache both predictions run the dual path.
void print_cfg_steps(std::map<std::string, double>& seconds, const char* kernels) {
  auto has = [&](const char* k) { return seconds.count(k) > 0; };
  if (has("guide") && has("reuse") && has("uncond")) {
    for (int k : {2, 5}) {
      const double step = (seconds["guide"] + (k - 1) * seconds["reuse"]) / k + seconds["uncond"];
      std::printf("CFG step, cache every %d, %s kernels: %.2f s (mean over %d steps)\n", k, kernels,
                  step, k);
    }
  }
  if (has("dual"))
    std::printf("CFG step, no cache, %s kernels: %.2f s (2 x dual)\n", kernels,
                2 * seconds["dual"]);
}

int run(int argc, char** argv) {
  const Environment env = read_environment();  // FREESWIM_GPU_MEMORY_LIMIT, FREESWIM_PROFILE
  ops::cuda::register_cuda_backend({env.gpu_memory_limit, env.profile});
  int T = 21, Hg = 68, Wg = 120;
  std::string kinds = "stock,dual,guide,reuse,uncond";
  if (argc >= 4) {
    T = std::atoi(argv[1]);
    Hg = std::atoi(argv[2]);
    Wg = std::atoi(argv[3]);
  }
  if (argc >= 5) kinds = argv[4];
  const CachePlacement placement =
      parse_cache_placement(argc >= 6 ? argv[5] : std::string("device"));
  std::vector<ops::cuda::GpuKernels> kernel_list;
  {
    std::stringstream list(argc >= 7 ? argv[6] : "auto");
    std::string k;
    while (std::getline(list, k, ',')) kernel_list.push_back(ops::cuda::parse_gpu_kernels(k));
  }
  FS_CHECK(T > 0 && Hg > 0 && Wg > 0, "bad grid {}x{}x{}", T, Hg, Wg);

  const models::WanDitConfig cfg = models::WanDitConfig::preset("1.3B");
  auto t0 = std::chrono::steady_clock::now();
  const auto model = models::WanDit::random(cfg, Device::CUDA, 42);
  sync();
  std::printf("model %s built in %.1f s; weights %.2f GiB on the GPU\n", cfg.describe().c_str(),
              seconds_since(t0), gib(ops::cuda::memory_stats().in_use));

  const FreeSwimParams fsp = freeswim_params_for_base_grid(30, 52, cfg.head_dim);
  models::DitInput in;
  in.latents =
      random_tensor({cfg.in_channels, T * cfg.patch_t, Hg * cfg.patch_h, Wg * cfg.patch_w}, 1);
  in.timestep = 900.f;
  in.context = random_tensor({512, cfg.text_dim}, 2);

  CrossAttentionCache cache(placement);
  for (const ops::cuda::GpuKernels kernels : kernel_list) {
    ops::cuda::set_gpu_kernels(kernels);
    const ops::cuda::CudaDeviceInfo gpu = ops::cuda::cuda_device_info();
    std::printf("\n%s, --gpu-kernels %s: attention on the %s\n", gpu.name.c_str(),
                ops::cuda::gpu_kernels_name(kernels), gpu.kernels.c_str());
    // Warm-up at a small grid: cuBLASLt and cuDNN set-up is not part of a step.
    {
      models::DitInput small = in;
      small.latents = random_tensor({cfg.in_channels, 2, 32, 32}, 3);
      model->forward(small, StepKind::Stock);
      model->forward(small, StepKind::Dual, &fsp);
      sync();
    }
    std::map<std::string, double> seconds = time_kinds(*model, in, fsp, kinds, cache, T, Hg, Wg);
    print_cfg_steps(seconds, ops::cuda::gpu_kernels_name(kernels));
  }
  cache.sync();
  std::printf("\ncache placement: %s (asked: %s), %.2f GiB\n",
              cache_placement_name(cache.placement()).c_str(),
              cache_placement_name(cache.requested()).c_str(), gib(cache.bytes()));
  const ops::cuda::GemmFusionCounts fc = ops::cuda::gemm_fusion_counts();
  std::printf(
      "fused epilogues: GELU %lld (unfused %lld), gated residual %lld (refused %lld), bias %lld "
      "(unfused %lld)\n",
      static_cast<long long>(fc.gelu_fused), static_cast<long long>(fc.gelu_unfused),
      static_cast<long long>(fc.accumulate_fused), static_cast<long long>(fc.accumulate_refused),
      static_cast<long long>(fc.bias_fused), static_cast<long long>(fc.bias_unfused));
  std::printf("fusion probes: %s\n", ops::cuda::fusion_probe_report().c_str());
  const auto st = ops::cuda::memory_stats();
  std::printf("\nallocator high-water mark: %.2f GiB reserved from the driver (%.2f GB)\n",
              gib(st.peak_reserved), static_cast<double>(st.peak_reserved) / 1e9);
  if (ops::cuda::memory_limit() != 0)
    std::printf("memory cap (FREESWIM_GPU_MEMORY_LIMIT): %.2f GiB\n",
                gib(ops::cuda::memory_limit()));
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    return run(argc, argv);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_step: error: %s\n", e.what());
    return 1;
  }
}
