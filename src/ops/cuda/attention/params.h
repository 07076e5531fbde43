// What the host passes to the attention kernel; plain data so that host C++ (which builds it)
// and CUDA code (which reads it) share one definition.
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime_api.h>

#include <string>

#include "freeswim/window_geometry.h"
#include "ops/cuda/attention/window_plan.h"

namespace freeswim::attention::detail {

inline constexpr int kWarps = kBlockQ / 16;
inline constexpr int kThreads = kWarps * 32;

struct Params {
  const __nv_bfloat16* q;
  const __nv_bfloat16* k;
  const __nv_bfloat16* v;
  __nv_bfloat16* out;
  int heads;
  float scale_log2;  // softmax scale times log2(e): exponentials are exp2
  // dense
  int n_q, n_kv;
  // window
  WindowGeometry g;
  WindowPlan plan;
};

// Enqueues the kernel for head_dim 64 or 128 (window or dense); returns the CUDA error, or
// cudaErrorInvalidValue for another head_dim. Defined in kernels.cu.
cudaError_t launch_attention(const Params& p, int head_dim, bool window, dim3 grid,
                             cudaStream_t stream);

// Name of the kernel variant FREESWIM_ATTENTION_KERNEL selects (the default when unset), or
// nullptr when the variable names none. Defined in kernels.cu.
const char* attention_kernel_variant();
// Every variant name, comma-separated (for error messages).
std::string attention_kernel_variants();

// Whether that variant's dense kernel is the TMA-fed one (tma_dense.cuh), which outruns cuDNN's
// SDPA (docs/attention.md), so that `automatic` takes it.
bool attention_kernel_dense_tma();

// The window plan that variant's kernel runs (choose_plan with its tile keys, or box tiles).
WindowPlan attention_kernel_window_plan(const WindowGeometry& g);

// Keys per tile of that variant (the window plan pads each key rectangle to whole tiles of it).
int attention_kernel_tile_keys();

}  // namespace freeswim::attention::detail
