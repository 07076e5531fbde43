// What every attention kernel's block holds in shared memory and which queries it answers.
//
// A block is 3 warpgroups (384 threads): a producer warpgroup that brings Q and the K/V tiles
// into a ring of kStages stages, and two consumer warpgroups of 64 query rows each that compute
// on them (consumer.cuh). They meet only in mbarriers: a stage's `full` barrier completes when its
// tile has landed, its `empty` barrier when all 8 consumer warps are done reading it.
#pragma once

#include <cuda_bf16.h>

#include <cstdint>

#include "ops/cuda/attention/params.h"
#include "ops/cuda/attention/window_plan.h"

namespace freeswim::attention::detail {

inline constexpr int kStages = 3;          // K/V ring depth (with Q: 224 of 227 KB at D = 128)
inline constexpr int kBlockThreads = 384;  // producer warpgroup + 2 consumer warpgroups

// Key position of one ring row for the row-run mask: 16 bits each, so that the ring fits the
// shared memory at D = 128 (grids are limited to 16383 rows and columns, attention.cpp checks).
// Padding rows get a far position that fails every range test.
struct KeyPos {
  int16_t r, c;
};
inline constexpr int kFarPos = -16384;
__device__ __forceinline__ KeyPos make_key_pos(bool valid, int r, int c) {
  return valid ? KeyPos{static_cast<int16_t>(r), static_cast<int16_t>(c)}
               : KeyPos{static_cast<int16_t>(kFarPos), static_cast<int16_t>(kFarPos)};
}
// The entries are aligned to their size in the shared-memory struct, so a 16-bit pair goes as one
// 32-bit store (through the pointer the compiler would only assume 2-byte alignment and split it).
__device__ __forceinline__ void store_key_pos(KeyPos* dst, const KeyPos& v) {
  uint32_t bits;
  memcpy(&bits, &v, sizeof(bits));
  *reinterpret_cast<uint32_t*>(dst) = bits;
}

// Row runs: a window block's five key rectangles (window_plan.h) and the first tile of each;
// first[5] is the block's tile count.
struct KeyTiles {
  PatchKeys keys;
  int first[6];
};

template <int D>
struct Ring {
  __nv_bfloat16 q[kBlockQ * D];
  __nv_bfloat16 k[kStages][kTileKeys * D];
  __nv_bfloat16 v[kStages][kTileKeys * D];
  // 256 bytes unused: the members below keep the shared-memory offsets of the build whose speed
  // docs/ reports, so that the kernels' machine code is that build's (bench/attention/
  // compare_kernels.sh checks it); dropping this changes every barrier address in the code.
  alignas(256) unsigned char reserved[256];
  KeyPos key[kStages][kTileKeys];  // row runs: key positions of the masked tiles
  KeyTiles kt;                     // row runs
  uint64_t full[kStages];          // producer -> consumers: stage loaded
  uint64_t empty[kStages];         // consumers -> producer: stage read (Consumer::kEmptyArrivals)
};
// Dynamic shared memory of a block: the ring and the slack that aligns it to 1024 bytes.
template <int D>
inline constexpr int kRingBytes = sizeof(Ring<D>) + 1024;
static_assert(kRingBytes<128> <= 227 * 1024, "more shared memory than a Hopper block may have");

// The ring inside the block's dynamic shared memory, aligned for the 128-byte swizzle. The offset
// is added to the `extern __shared__` pointer itself (not through an integer round trip) so that
// the compiler keeps knowing the accesses are to shared memory (ld/st.shared, not generic).
#define FS_ALIGNED_RING(D, smem_raw) \
  (*reinterpret_cast<Ring<D>*>(smem_raw + ((1024u - (smem_u32(smem_raw) & 1023u)) & 1023u)))

// Which queries a block has: a spatial patch in all frames (window) or 128 consecutive rows.
template <bool kWindow>
struct BlockQueries {
  int h0 = 0, w0 = 0, chunk_q = 0;
  // Token of query row i of the block, or -1 when the row is padding; box start of its window.
  __device__ __forceinline__ int64_t token(const Params& p, int i, int& box_r, int& box_c) const {
    if constexpr (kWindow) {
      const int P = p.plan.ph * p.plan.pw;
      const int qi = chunk_q * kBlockQ + i;
      const int t = qi / P, pos = qi % P;
      const int h = h0 + pos / p.plan.pw, w = w0 + pos % p.plan.pw;
      box_r = window_start(h < p.g.H ? h : p.g.H - 1, p.g.H, p.g.dh);
      box_c = window_start(w < p.g.W ? w : p.g.W - 1, p.g.W, p.g.dw);
      if (t >= p.g.T || h >= p.g.H || w >= p.g.W) return -1;
      return (int64_t{t} * p.g.H + h) * p.g.W + w;
    } else {
      box_r = 0;
      box_c = 0;
      const int64_t qi = int64_t{blockIdx.x} * kBlockQ + i;
      return qi < p.n_q ? qi : -1;
    }
  }
};

// The window patch of this block (blocks are numbered patch-major, query chunks within a patch).
__device__ __forceinline__ BlockQueries<true> window_block(const Params& p) {
  BlockQueries<true> bq;
  const int patch = blockIdx.x / p.plan.chunks;
  bq.chunk_q = blockIdx.x % p.plan.chunks;
  bq.h0 = (patch / p.plan.patches_w) * p.plan.ph;
  bq.w0 = (patch % p.plan.patches_w) * p.plan.pw;
  return bq;
}

}  // namespace freeswim::attention::detail
