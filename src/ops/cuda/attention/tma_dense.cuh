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

template <int D, bool kQRegs, bool kSched, int BK, int ST>
__global__ void __launch_bounds__(kWsThreads, 1)
    attention_tma_dense_kernel(const __grid_constant__ Params p,
                               const __grid_constant__ DenseMaps maps) {
  extern __shared__ __align__(128) unsigned char smem_raw[];
  using Smem = WsSmem<D, BK, ST>;
  using Consumer = WsConsumer<D, false, kQRegs, BK, ST, 1>;
  // Swizzle atoms (and TMA's 128-byte swizzle) need 1024-byte alignment.
  Smem& s = *reinterpret_cast<Smem*>(smem_raw + ((1024u - (smem_u32(smem_raw) & 1023u)) & 1023u));
  const int head = blockIdx.y;
  const int tid = threadIdx.x;
  const int n_tiles = (p.n_kv + BK - 1) / BK;
  if (tid == 0) {
    s.kt.first[0] = 0;
    s.kt.first[5] = n_tiles;
    for (int i = 0; i < ST; ++i) {
      mbar_init(&s.full[i], 1);  // the producer's arrive.expect_tx; the bytes do the rest
      mbar_init(&s.empty[i], 8);
    }
    // Make the initialised barriers visible to the TMA unit (async proxy).
    asm volatile("fence.mbarrier_init.release.cluster;\n" ::: "memory");
    tma_prefetch_map(&maps.q);
    tma_prefetch_map(&maps.k);
    tma_prefetch_map(&maps.v);
  }
  __syncthreads();

  if (tid < 128) {
    setmaxnreg_dec<kTmaProducerRegs>();
    if (tid == 0) tma_producer<D, BK, ST>(maps, s, head, n_tiles);
  } else {
    setmaxnreg_inc<kTmaConsumerRegs>();
    const int ct = tid - 128;
    const int cw = ct / 32;
    const int lane = ct % 32, g4 = lane / 4;
    const BlockQueries<false> bq;
    Consumer c{p, s, cw / 4, lane, lane % 4, 1, 1, 0, {}, {}, {}, {}, {}, true, {}};
    c.start(s.kt, bq, cw * 16 + g4, n_tiles);
    consume_tiles<kSched, true, kQRegs, false>(c, n_tiles, cw * 16 + g4);
    store_rows(c, bq, cw * 16 + g4, head);
  }
}

}  // namespace freeswim::attention::detail
