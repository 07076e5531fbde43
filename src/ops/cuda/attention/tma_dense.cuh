// Dense attention with a TMA producer (sm_90a): the consumers of ws_kernel.cuh (two warpgroups of
// 64 query rows, 128-key tiles, fast softmax, intra-warpgroup overlap), fed by the Tensor Memory
// Accelerator instead of a warpgroup of cp.async gathers.
//
// Why: in the warp-specialised kernel the 128 producer threads issue about as many instructions
// per tile as the consumers (ncu, docs/attention.md: 401 against 300 per warp at 64 keys), one
// producer warp beside two consumer warps on each SM sub-partition's scheduler, and they hold 72
// registers each. Dense keys are consecutive tokens, so a tile is one box of a tensor map: one
// thread issues a copy per 64-column block of K and of V, the hardware writes the tile in the
// 128-byte swizzle the wgmma descriptors read (16-byte chunk c of row r at c ^ (r % 8), atoms of
// 8 rows = 1024 bytes: the layout of sw128), fills rows past the last token with zeros and
// completes the stage's "full" barrier by its byte count. The producer warpgroup keeps 24
// registers, the consumers get 240 (FlashAttention-3's split), which leaves room for Q in
// registers at 128-key tiles (spilling at 216 registers, docs/attention.md "wide_rq").
// kSched: ping-pong turns between the two consumer warpgroups (ws_kernel.cuh's Turns).
#pragma once

#include <cuda.h>  // CUtensorMap (a type only: the maps are encoded through the runtime's entry point)

#include "ops/cuda/attention/ws_kernel.cuh"

namespace freeswim::attention::detail {

// Q, K and V as 3-D tensors (head dim, heads, tokens), boxes of 64 head dims x 1 head x 128
// (Q) or BK (K, V) tokens, 128-byte swizzle.
struct DenseMaps {
  CUtensorMap q, k, v;
};

inline constexpr int kTmaProducerRegs = 24;
inline constexpr int kTmaConsumerRegs = 240;  // 128 * 24 + 256 * 240 <= 65536

__device__ __forceinline__ void mbar_arrive_expect_tx(uint64_t* b, uint32_t bytes) {
  asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;\n" ::"r"(smem_u32(b)),
               "r"(bytes)
               : "memory");
}

// One box of `map` at (c0, c1, c2) into shared memory; its bytes count on barrier `b`.
__device__ __forceinline__ void tma_load_3d(void* dst, const CUtensorMap* map, int c0, int c1,
                                            int c2, uint64_t* b) {
  asm volatile(
      "cp.async.bulk.tensor.3d.shared::cluster.global.tile.mbarrier::complete_tx::bytes"
      " [%0], [%1, {%2, %3, %4}], [%5];\n" ::"r"(smem_u32(dst)),
      "l"(reinterpret_cast<uint64_t>(map)), "r"(c0), "r"(c1), "r"(c2), "r"(smem_u32(b))
      : "memory");
}

__device__ __forceinline__ void tma_prefetch_map(const CUtensorMap* map) {
  asm volatile("prefetch.tensormap [%0];\n" ::"l"(reinterpret_cast<uint64_t>(map)) : "memory");
}

// Thread 0 of a block fed by one producer thread: the ring's barriers (full: the producer's one
// arrive.expect_tx, the bytes do the rest; empty: one arrival per consumer warp), made visible to
// the TMA unit (async proxy), and the tensor maps q, k, v prefetched.
template <int ST, class Smem, class Maps>
__device__ __forceinline__ void init_tma_ring(Smem& s, const Maps& maps) {
  for (int i = 0; i < ST; ++i) {
    mbar_init(&s.full[i], 1);
    mbar_init(&s.empty[i], 8);
  }
  asm volatile("fence.mbarrier_init.release.cluster;\n" ::: "memory");
  tma_prefetch_map(&maps.q);
  tma_prefetch_map(&maps.k);
  tma_prefetch_map(&maps.v);
}

// One thread: Q with tile 0, then every K/V tile into the ring; stage j % ST is refilled once
// the consumers have released its previous use.
template <int D, int BK, int ST>
__device__ __forceinline__ void tma_producer(const DenseMaps& m, WsSmem<D, BK, ST>& s, int head,
                                             int n_tiles) {
  constexpr uint32_t kTileBytes = 2u * BK * D * sizeof(__nv_bfloat16);
  constexpr uint32_t kQBytes = uint32_t{kBlockQ} * D * sizeof(__nv_bfloat16);
  for (int j = 0; j < n_tiles; ++j) {
    const int buf = j % ST;
    if (j >= ST) mbar_wait(&s.empty[buf], ((j / ST) - 1) & 1);
    mbar_arrive_expect_tx(&s.full[buf], kTileBytes + (j == 0 ? kQBytes : 0u));
    if (j == 0) {
#pragma unroll
      for (int cb = 0; cb < D / 64; ++cb)
        tma_load_3d(&s.q[cb * kBlockQ * 64], &m.q, cb * 64, head,
                    static_cast<int>(blockIdx.x) * kBlockQ, &s.full[0]);
    }
#pragma unroll
    for (int cb = 0; cb < D / 64; ++cb) {
      tma_load_3d(&s.k[buf][cb * BK * 64], &m.k, cb * 64, head, j * BK, &s.full[buf]);
      tma_load_3d(&s.v[buf][cb * BK * 64], &m.v, cb * 64, head, j * BK, &s.full[buf]);
    }
  }
}

// The kernels' preambles (shared-memory alignment, block queries, tile table) are written out in
// each kernel rather than in helpers: behind helper functions the compiled kernels came out
// different (compared section by section in the cubin), and the code measured on the GPU is
// this code.
template <int D, bool kQRegs, bool kSched, int BK, int ST, int kFast = 1>
__global__ void __launch_bounds__(kWsThreads, 1)
    attention_tma_dense_kernel(const __grid_constant__ Params p,
                               const __grid_constant__ DenseMaps maps) {
  extern __shared__ __align__(128) unsigned char smem_raw[];
  using Smem = WsSmem<D, BK, ST>;
  using Consumer = WsConsumer<D, false, kQRegs, BK, ST, kFast>;
  // Swizzle atoms (and TMA's 128-byte swizzle) need 1024-byte alignment.
  Smem& s = *reinterpret_cast<Smem*>(smem_raw + ((1024u - (smem_u32(smem_raw) & 1023u)) & 1023u));
  const int head = blockIdx.y;
  const int tid = threadIdx.x;
  const int n_tiles = (p.n_kv + BK - 1) / BK;
  if (tid == 0) {
    s.kt.first[0] = 0;
    s.kt.first[5] = n_tiles;
    init_tma_ring<ST>(s, maps);
  }
  if constexpr (kFast == 2) init_ones(s, tid);
  __syncthreads();

  if (tid < 128) {
    setmaxnreg_dec<kTmaProducerRegs>();
    if (tid == 0) tma_producer<D, BK, ST>(maps, s, head, n_tiles);
  } else {
    setmaxnreg_inc<kTmaConsumerRegs>();
    run_consumer<Consumer, kSched, true, false>(p, s, BlockQueries<false>{}, tid, n_tiles, head);
  }
}

// ---- Window attention with a TMA producer ----
//
// A window tile is a run of BK keys through one key rectangle (T frames x rows x cols, in that
// order), i.e. a partial first row, whole rows of `cols` keys and a partial last one: row
// segments of consecutive tokens at varying lengths. A tensor map has one box shape, so the
// producer holds maps with boxes of 1, 2, 4, ..., 64 tokens and covers a segment of L keys by
// one box of B = 2^floor(log2 L) keys (L = B) or by two such boxes overlapping in the middle (they
// write the same bytes to the same rows, and both count on the barrier). A box lands at the
// segment's row of the tile; the 128-byte swizzle is a function of the shared-memory address
// (chunk bits 4-6 XOR row bits 7-9), so a box written at any 128-byte row of a 1024-byte-aligned
// tile lands in the sw128 layout. The 32 lanes of the producer warp take the tile's segments in
// turn (a core tile has ~3 segments of 51 keys, a left/right band tile 64 of 2) and write the key
// positions of the tiles the consumers mask; each lane arrives once per tile with the bytes it
// issued (expect-tx), so a stage is complete when all lanes have arrived and all bytes landed.
// Rows past a rectangle's last key keep what an earlier tile left there (masked by position); V
// is zeroed once at the start so that those rows are finite (P is 0 there, and 0 x NaN is not).
inline constexpr int kBoxLevels = 7;  // boxes of 2^0 .. 2^6 tokens
// The window producer keeps a rectangle's state and segment arithmetic: it spills at 24 and 32.
inline constexpr int kTmaWinProducerRegs = 40;
inline constexpr int kTmaWinConsumerRegs = 232;  // 128 * 40 + 256 * 232 <= 65536

struct WindowMaps {
  CUtensorMap q;                             // Q, 1-token boxes
  CUtensorMap k[kBoxLevels], v[kBoxLevels];  // K, V: boxes of 2^b tokens
};

// Bytes the boxes of a segment of `len` keys bring (K and V, every 64-column block).
template <int D>
__device__ __forceinline__ uint32_t segment_bytes(int len) {
  const int box = 1 << segment_box_level(len, kBoxLevels);
  return static_cast<uint32_t>(segment_boxes(len, kBoxLevels) * box) * 2u * D *
         sizeof(__nv_bfloat16);
}
// Copies a segment of `len` keys, first token `token`, to tile row `row` of K and V.
template <int D, int BK>
__device__ __forceinline__ void segment_copy(const WindowMaps& m, __nv_bfloat16* ks,
                                             __nv_bfloat16* vs, int row, int token, int len,
                                             int head, uint64_t* bar) {
  const int b = segment_box_level(len, kBoxLevels);
  const int box = 1 << b;
  for (int part = 0; part < segment_boxes(len, kBoxLevels); ++part) {
    const int off = part == 0 ? 0 : len - box;
#pragma unroll
    for (int cb = 0; cb < D / 64; ++cb) {
      tma_load_3d(&ks[cb * BK * 64 + (row + off) * 64], &m.k[b], cb * 64, head, token + off, bar);
      tma_load_3d(&vs[cb * BK * 64 + (row + off) * 64], &m.v[b], cb * 64, head, token + off, bar);
    }
  }
}

// The producer warp of the window kernel (lane 0..31).
template <int D, int BK, int ST>
__device__ __forceinline__ void tma_window_producer(const Params& p, const WindowMaps& m,
                                                    WsSmem<D, BK, ST>& s,
                                                    const BlockQueries<true>& bq, int head,
                                                    int n_tiles, int mask_from, int lane) {
  const KeyTiles& kt = s.kt;
  int rect = -1, next_rect_tile = 0;
  int cols = 1, nrows = 1, r0 = 0, c0 = 0, n_keys = 0;
  for (int j = 0; j < n_tiles; ++j) {
    const int buf = j % ST;
    if (j == next_rect_tile) {  // a new rectangle (empty ones have no tiles: skipped)
      do {
        ++rect;
      } while (kt.first[rect + 1] <= j);
      next_rect_tile = kt.first[rect + 1];
      const KeyRect& R = kt.keys.rect[rect];
      cols = R.c1 - R.c0;
      nrows = R.r1 - R.r0;
      r0 = R.r0;
      c0 = R.c0;
      n_keys = static_cast<int>(R.keys(p.g.T));
    }
    if (j >= ST) mbar_wait(&s.empty[buf], ((j / ST) - 1) & 1);
    const int k0 = (j - kt.first[rect]) * BK;  // first key of the tile in the rectangle
    const int nk = min(BK, n_keys - k0);
    if (j >= mask_from) {  // key positions for the consumers' mask
#pragma unroll
      for (int i = 0; i < BK / 32; ++i) {
        const int row = lane + 32 * i;
        const int key = k0 + row;
        const int rr = key / cols;
        s.key[buf][row] = make_key_pos<KeyPos16>(row < nk, r0 + rr % nrows, c0 + (key - rr * cols));
      }
    }
    const TileSegments seg(k0, nk, cols);
    uint32_t bytes = 0;
    if (j == 0) {  // Q: rows lane, lane + 32, ... (one token each)
      for (int row = lane; row < kBlockQ; row += 32) {
        int br, bc;
        if (bq.token(p, row, br, bc) >= 0) bytes += D * sizeof(__nv_bfloat16);
      }
    }
    for (int i = lane; i < seg.count; i += 32) bytes += segment_bytes<D>(seg.len(i));
    mbar_arrive_expect_tx(&s.full[buf], bytes);  // release: the key positions above
    if (j == 0) {
      for (int row = lane; row < kBlockQ; row += 32) {
        int br, bc;
        const int64_t token = bq.token(p, row, br, bc);
        if (token < 0) continue;
#pragma unroll
        for (int cb = 0; cb < D / 64; ++cb)
          tma_load_3d(&s.q[cb * kBlockQ * 64 + row * 64], &m.q, cb * 64, head,
                      static_cast<int>(token), &s.full[0]);
      }
    }
    for (int i = lane; i < seg.count; i += 32) {
      const int rr = seg.rect_row(i);
      const int t = rr / nrows, r = r0 + (rr - t * nrows);
      segment_copy<D, BK>(m, s.k[buf], s.v[buf], seg.row(i),
                          (t * p.g.H + r) * p.g.W + c0 + seg.first_col(i), seg.len(i), head,
                          &s.full[buf]);
    }
  }
}

template <int D, bool kQRegs, int BK, int ST, int kFast = 1>
__global__ void __launch_bounds__(kWsThreads, 1)
    attention_tma_window_kernel(const __grid_constant__ Params p,
                                const __grid_constant__ WindowMaps maps) {
  extern __shared__ __align__(128) unsigned char smem_raw[];
  using Smem = WsSmem<D, BK, ST>;
  using Consumer = WsConsumer<D, true, kQRegs, BK, ST, kFast>;
  Smem& s = *reinterpret_cast<Smem*>(smem_raw + ((1024u - (smem_u32(smem_raw) & 1023u)) & 1023u));
  const int head = blockIdx.y;
  const int tid = threadIdx.x;
  BlockQueries<true> bq;
  KeyTiles& kt = s.kt;
  const int patch = blockIdx.x / p.plan.chunks;
  bq.chunk_q = blockIdx.x % p.plan.chunks;
  bq.h0 = (patch / p.plan.patches_w) * p.plan.ph;
  bq.w0 = (patch % p.plan.patches_w) * p.plan.pw;
  if (tid == 0) {
    kt.keys = patch_keys(p.g, p.plan.ph, p.plan.pw, bq.h0, bq.w0);
    kt.first[0] = 0;
    for (int i = 0; i < 5; ++i)
      kt.first[i + 1] = kt.first[i] + static_cast<int>((kt.keys.rect[i].keys(p.g.T) + BK - 1) / BK);
    for (int i = 0; i < ST; ++i) {
      mbar_init(&s.full[i], 32);  // one expect-tx arrival per producer lane
      mbar_init(&s.empty[i], 8);
    }
    asm volatile("fence.mbarrier_init.release.cluster;\n" ::: "memory");
  }
  if (tid < 128) {  // zero V (see above) and Q (padding rows stay finite)
    const uint4 zero{0u, 0u, 0u, 0u};
    for (int i = tid; i < ST * BK * D / 8; i += 128) reinterpret_cast<uint4*>(&s.v[0][0])[i] = zero;
    for (int i = tid; i < kBlockQ * D / 8; i += 128) reinterpret_cast<uint4*>(s.q)[i] = zero;
    fence_proxy_async();  // the TMA writes (async proxy) come after these generic stores
  }
  if constexpr (kFast == 2) init_ones(s, tid);
  __syncthreads();
  const int n_tiles = kt.first[5];
  const int mask_from = kt.first[1] - 1;

  if (tid < 128) {
    setmaxnreg_dec<kTmaWinProducerRegs>();
    if (tid < 32) tma_window_producer<D, BK, ST>(p, maps, s, bq, head, n_tiles, mask_from, tid);
  } else {
    setmaxnreg_inc<kTmaWinConsumerRegs>();
    run_consumer<Consumer, false, true, false>(p, s, bq, tid, n_tiles, head);
  }
}

}  // namespace freeswim::attention::detail
