// Attention kernels for the CUDA backend (Hopper, sm_90a build).
//
// q, k, v, out are bf16 device tensors laid out [tokens, heads, head_dim] row-major, tokens
// ordered (frame, row, column); softmax statistics are kept in fp32. head_dim 64 or 128.
// Errors the caller can cause (bad sizes, unsupported head_dim) and CUDA launch errors throw
// freeswim::Error. The functions only enqueue work on `stream`.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

#include "freeswim/window_geometry.h"
#include "ops/cuda/attention/window_plan.h"

namespace freeswim::attention {

// FreeSwim's inward sliding window: every query of grid position (t, h, w) attends to the keys
// of all frames inside its (2dh+1) x (2dw+1) box, pushed inward at the borders
// (window_geometry.h). q, k, v, out all hold geometry.tokens() tokens.
void window_attention_forward(const void* q, const void* k, const void* v, void* out, int heads,
                              int head_dim, const WindowGeometry& geometry, float scale,
                              cudaStream_t stream);

// Which implementation dense attention runs. automatic: the own kernel when the selected variant
// feeds it by TMA (the default; 660 against cuDNN's 563 TFLOP/s on an H200 at the 1.3B shape,
// docs/attention.md), otherwise cuDNN's fused SDPA when the build has cuDNN and cuDNN has an engine
// for the shape, else the own kernel. cudnn: cuDNN or an Error naming the reason. own: the own
// kernel.
enum class DenseImpl { automatic, cudnn, own };

// Full attention of n_q queries over n_kv keys (n_q != n_kv for cross-attention).
void dense_attention_forward(const void* q, const void* k, const void* v, void* out, int64_t n_q,
                             int64_t n_kv, int heads, int head_dim, float scale,
                             cudaStream_t stream, DenseImpl impl = DenseImpl::automatic);

// The kernel variant in use (FREESWIM_ATTENTION_KERNEL, or the default when unset; nullptr for
// an unknown name) and its keys per tile, which the window plan pads each key rectangle to
// (benchmarks count the computed work with it).
const char* attention_kernel_name();
int window_attention_tile_keys();
// The tiling the window kernel runs for this geometry (computed_pairs(g, plan,
// window_attention_tile_keys()) counts its work).
WindowPlan window_attention_plan(const WindowGeometry& geometry);

// CPU fp32 twins, the oracle of the GPU tests: same layout, fp32 values.
void window_attention_reference(const float* q, const float* k, const float* v, float* out,
                                int heads, int head_dim, const WindowGeometry& geometry,
                                float scale);
void dense_attention_reference(const float* q, const float* k, const float* v, float* out,
                               int64_t n_q, int64_t n_kv, int heads, int head_dim, float scale);

}  // namespace freeswim::attention
