// What the host passes to the attention kernels, and the launch functions kernels.cu defines.
// Plain data and C++ declarations only, so that host C++ (attention.cpp, which checks arguments,
// plans and encodes the tensor maps) and CUDA code share one definition.
#pragma once

#include <cuda.h>  // CUtensorMap
#include <cuda_bf16.h>
#include <cuda_runtime_api.h>

#include "freeswim/window_geometry.h"
#include "ops/cuda/attention/window_plan.h"

namespace freeswim::attention::detail {

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

// Tensor maps of the TMA-fed kernels (attention.cpp encodes them). Dense: Q, K and V as 3-D
// tensors (head dim, heads, tokens), boxes of 64 head dims x 1 head x 128 tokens. Box tiles: Q as
// the same 3-D tensor with 1-token boxes, K and V as 5-D tensors (head dim, heads, W, H, T), boxes
// of 64 x 1 x box_w x 128 / box_w x 1. All in the 128-byte swizzle, zero outside the tensor.
struct TensorMaps {
  CUtensorMap q, k, v;
};

// The Hopper kernels (kernels.cu, sm_90a; defined where FREESWIM_HAVE_HOPPER_KERNELS), for
// head_dim 64 or 128; each returns the launch's error.
// Window over box tiles of p.plan.box_w columns, fed by TMA.
cudaError_t launch_box_tiles(const Params& p, const TensorMaps& maps, int head_dim, dim3 grid,
                             cudaStream_t stream);
// Dense attention fed by TMA.
cudaError_t launch_dense_tma(const Params& p, const TensorMaps& maps, int head_dim, dim3 grid,
                             cudaStream_t stream);
// Window over row runs (window = true; p.plan has box_w = 0) or dense attention, both with K/V
// rows gathered by cp.async.
cudaError_t launch_row_runs(const Params& p, bool window, int head_dim, dim3 grid,
                            cudaStream_t stream);

// The portable kernels (portable_kernels.cu, every target): the window over row runs (window =
// true; p.plan has box_w = 0) or dense attention; blocks_per_sm as AttentionOptions'
// portable_blocks_per_sm (0 or 1); narrow 1 for narrow blocks, 0 for wide ones, -1 for the
// device's choice (AttentionOptions::portable_block).
cudaError_t launch_portable(const Params& p, bool window, int head_dim, dim3 grid,
                            cudaStream_t stream, int blocks_per_sm, int narrow);
// Whether portable blocks are narrow on the current device when the options leave it open.
cudaError_t portable_narrow_blocks(int head_dim, bool& narrow);

}  // namespace freeswim::attention::detail
