// Attention kernels of the CUDA backend (Hopper, sm_90a build); docs/attention.md explains them.
//
// q, k, v, out are bf16 device tensors laid out [tokens, heads, head_dim] row-major, tokens
// ordered (frame, row, column); softmax statistics are kept in fp32. head_dim 64 or 128 (the CUDA
// backend sends other head sizes to a plain kernel). Errors the caller can cause (bad sizes,
// unsupported head_dim) and CUDA launch errors throw freeswim::Error. The functions only enqueue
// work on `stream`. The CPU oracle they are tested against is the CPU backend's attention
// (ops/cpu/cpu_backend.h).
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

#include "freeswim/window_geometry.h"
#include "ops/cuda/attention/window_plan.h"

namespace freeswim::attention {

// How dense keys reach the kernel. automatic: by TMA (one tensor-map box per tile), or where the
// tensor maps cannot be made (the driver lacks the encoder) rows gathered by cp.async; tma and
// cp_async force one (tma: an Error where the maps cannot be made). Measured on an H200: 660
// against 561 TFLOP/s at the 1.3B-1080p shape (docs/history/attention-experiments-2026-12.md).
enum class DenseFeed { automatic, tma, cp_async };

// The choices that remain between the shipped kernels. The defaults are the engine's: choices
// made from the window plan and the tensors. Tests and benchmarks set them to run one kernel on
// purpose; a forced TMA-fed kernel whose tensor maps cannot be made is an Error, not a fallback.
struct AttentionOptions {
  WindowTiling window_tiling = WindowTiling::automatic;  // window_plan.h
  int box_width = 0;  // box tiles: 4, 8 or 16 columns, or 0 for the width the plan prefers
  DenseFeed dense_feed = DenseFeed::automatic;
};

// The tiling the window kernels run for this geometry (computed_pairs(g, plan) counts its work;
// box_w > 0: box tiles).
WindowPlan window_attention_plan(const WindowGeometry& geometry,
                                 const AttentionOptions& options = {});

// FreeSwim's inward sliding window: every query of grid position (t, h, w) attends to the keys
// of all frames inside its (2dh+1) x (2dw+1) box, pushed inward at the borders
// (window_geometry.h). q, k, v, out all hold geometry.tokens() tokens.
void window_attention_forward(const void* q, const void* k, const void* v, void* out, int heads,
                              int head_dim, const WindowGeometry& geometry, float scale,
                              cudaStream_t stream, const AttentionOptions& options = {});

// Full attention of n_q queries over n_kv keys (n_q != n_kv for cross-attention).
void dense_attention_forward(const void* q, const void* k, const void* v, void* out, int64_t n_q,
                             int64_t n_kv, int heads, int head_dim, float scale,
                             cudaStream_t stream, const AttentionOptions& options = {});

}  // namespace freeswim::attention
