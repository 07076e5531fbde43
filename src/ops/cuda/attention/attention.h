// Attention kernels of the CUDA backend: the Hopper kernels (wgmma, TMA; sm_90a) and the portable
// ones (mma.sync, cp.async; compute capability 8.0 and later); docs/attention.md explains them.
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
#include <vector>

#include "freeswim/window_geometry.h"
#include "ops/cuda/attention/window_plan.h"

namespace freeswim::attention {

// Which kernels run. automatic: the Hopper kernels on a GPU of compute capability 9.0 when this
// build has them (FREESWIM_HOPPER_KERNELS), the portable kernels everywhere else; hopper and
// portable force one (hopper: an Error where they cannot run). The portable kernels run the window
// over row runs only (box tiles are TMA copies).
enum class AttentionPath { automatic, hopper, portable };

// How dense keys reach the kernel. automatic: by TMA (one tensor-map box per tile), or where the
// tensor maps cannot be made (the driver lacks the encoder) rows gathered by cp.async; tma and
// cp_async force one (tma: an Error where the maps cannot be made). Measured on an H200: 660
// against 561 TFLOP/s at the 1.3B-1080p shape (docs/history/attention-experiments-2026-12.md).
enum class DenseFeed { automatic, tma, cp_async };

// The choices that remain between the shipped kernels. The defaults are the engine's: choices
// made from the window plan and the tensors. Tests and benchmarks set them to run one kernel on
// purpose; a forced TMA-fed kernel whose tensor maps cannot be made is an Error, not a fallback.
enum class PortableBlock { automatic, wide, narrow };

struct AttentionOptions {
  AttentionPath path = AttentionPath::automatic;
  WindowTiling window_tiling = WindowTiling::automatic;  // window_plan.h
  int box_width = 0;  // box tiles: 4, 8 or 16 columns, or 0 for the width the plan prefers
  DenseFeed dense_feed = DenseFeed::automatic;
  // Portable kernels: blocks resident per SM. 0, the engine's: as many as fit (two at D = 128 on
  // an H100 or H200). 1: each block's dynamic shared memory is padded past half of the SM's, so
  // one block runs per SM, as a D = 128 block (97.5 KB) does on sm_86, sm_89 and sm_120 (100 KB per
  // SM): benchmarks measure that occupancy on the GPUs we have. Other values are an Error.
  int portable_blocks_per_sm = 0;
  // Portable kernels: the block's shape (portable_kernels.cu). automatic, the engine's: wide
  // blocks (64-key steps, K/V double-buffered, 97.5 KB at D = 128) where two fit in an SM's shared
  // memory, else narrow ones (32-key steps, one K and one V buffer, 48.8 KB), so that an SM holds
  // two blocks either way (portable_narrow_blocks).
  PortableBlock portable_block = PortableBlock::automatic;
};

// The path `requested` resolves to on the current device (never automatic); an Error when hopper
// is asked for and cannot run (not in this build, or not a compute capability 9.0 GPU).
AttentionPath resolve_attention_path(AttentionPath requested);
// Whether this build has the Hopper kernels.
bool hopper_kernels_built();

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

// Shared memory a portable kernel's block may use on every target: 99 KB, the most a block may have
// on compute capability 8.6, 8.9 and 12.0 (the 1 KB the system keeps per block is outside it).
inline constexpr int kPortableSmemLimit = 99 * 1024;
// Shared memory the system keeps per resident block on compute capability 8.0 and later.
inline constexpr int kSystemSmemPerBlock = 1024;
// Shared memory of an SM on compute capability 8.6, 8.9 and 12.0 (sm_80: 164 KB; sm_90: 228 KB).
inline constexpr int kSmallSmSmem = 100 * 1024;

// Whether the portable kernels run narrow blocks on the current device when AttentionOptions
// leave the shape open (portable_block automatic): where two wide blocks do not fit an SM.
bool portable_narrow_blocks(int head_dim);

// A portable kernel's launch attributes on the current device, launched with blocks_per_sm as
// AttentionOptions::portable_blocks_per_sm (tests check that they would launch on every target,
// and that blocks_per_sm 1 leaves one block per SM): the wide kernels, then the narrow ones
// (names beginning narrow_).
struct PortableKernel {
  const char* name = "";
  int threads = 0;       // per block
  int dynamic_smem = 0;  // bytes per block the launch gives
  cudaFuncAttributes attributes{};
  int blocks_per_sm = 0;             // resident blocks per SM on this GPU
  cudaError_t status = cudaSuccess;  // of cudaFuncGetAttributes (no image for this GPU, ...)
};
std::vector<PortableKernel> portable_kernels(int blocks_per_sm = 0);

}  // namespace freeswim::attention
