// Window attention over box tiles (sm_90a, variant boxw): the consumers of ws_kernel.cuh (two
// warpgroups of 64 query rows, 128-key tiles, the fast softmax, Q in registers) fed by the Tensor
// Memory Accelerator with ONE box per 64 head dims of K and of V per tile, as the dense TMA kernel
// is (tma_dense.cuh).
//
// Why: the 128-key runs of the other window kernels cross the rows of a key rectangle (51 keys
// wide at the 1.3B shape), so a run is a gather: 128 row copies by a warpgroup of cp.async threads
// (488 TFLOP/s), or ~28 small tensor-map boxes per tile when fed by TMA (tmaw, 437-450). Here the
// tile itself is a rectangle of the token grid: box_w columns x 128 / box_w rows of one frame, a
// box of a 5-D tensor map over (head dim, heads, W, H, T). The patch's union box (31 + ph - 1 rows
// x 53 + pw - 1 columns at 1080p) is covered by such boxes from its corner; at the FreeSwim shapes
// with a 2 x 3 patch and 4 x 32 boxes that is 14 boxes per frame, 0.90 of the computed pairs
// useful (the 128-key runs: 0.94), and every key of a tile is one the hardware copies whole. Boxes
// past the grid are zero-filled by TMA; keys outside a query's window are masked from the tile's
// place in the grid (WsConsumer::box_mask): for most tiles only the first or the last box row of
// a query row is outside its window (the union is one row taller than a window), which costs a
// handful of selects per tile.
//
// One producer thread issues everything but Q (which the producer warp's 32 lanes bring in 1-token
// boxes with tile 0); every stage's "full" barrier completes by its byte count.
#pragma once

#include "ops/cuda/attention/tma_dense.cuh"

namespace freeswim::attention::detail {

// K and V as 5-D tensors (head dim, heads, W, H, T), boxes of 64 x 1 x box_w x 128 / box_w x 1;
// Q as the 3-D token tensor of tma_dense.cuh with 1-token boxes.
struct BoxMaps {
  CUtensorMap q, k, v;
};

__device__ __forceinline__ void tma_load_5d(void* dst, const CUtensorMap* map, int c0, int c1,
                                            int c2, int c3, int c4, uint64_t* b) {
  asm volatile(
      "cp.async.bulk.tensor.5d.shared::cluster.global.tile.mbarrier::complete_tx::bytes"
      " [%0], [%1, {%2, %3, %4, %5, %6}], [%7];\n" ::"r"(smem_u32(dst)),
      "l"(reinterpret_cast<uint64_t>(map)), "r"(c0), "r"(c1), "r"(c2), "r"(c3), "r"(c4),
      "r"(smem_u32(b))
      : "memory");
}

// The producer warp (lane 0..31): Q by all lanes with tile 0, then lane 0 alone issues two boxes
// per 64 head dims of every tile into the ring.
template <int D, int kBoxW, int BK, int ST>
__device__ __forceinline__ void box_window_producer(const Params& p, const BoxMaps& m,
                                                    WsSmem<D, BK, ST>& s,
                                                    const BlockQueries<true>& bq, const BoxGrid& bg,
                                                    int head, int n_tiles, int lane) {
  constexpr int kBoxH = BK / kBoxW;
  constexpr uint32_t kTileBytes = 2u * BK * D * sizeof(__nv_bfloat16);
  constexpr uint32_t kRowBytes = D * sizeof(__nv_bfloat16);
  if (n_tiles <= 0) return;
  // Q: rows lane + 32 i; lane 0 announces their bytes with tile 0's before any copy is issued.
  uint32_t q_rows = 0;
  int br, bc;
#pragma unroll
  for (int i = 0; i < kBlockQ / 32; ++i)
    q_rows += __popc(__ballot_sync(0xffffffffu, bq.token(p, lane + 32 * i, br, bc) >= 0));
  if (lane == 0) mbar_arrive_expect_tx(&s.full[0], kTileBytes + q_rows * kRowBytes);
  __syncwarp();
  for (int row = lane; row < kBlockQ; row += 32) {
    const int64_t token = bq.token(p, row, br, bc);
    if (token < 0) continue;
#pragma unroll
    for (int cb = 0; cb < D / 64; ++cb)
      tma_load_3d(&s.q[cb * kBlockQ * 64 + row * 64], &m.q, cb * 64, head, static_cast<int>(token),
                  &s.full[0]);
  }
  if (lane != 0) return;
  int t = 0, brow = 0, bcol = 0;
  for (int j = 0; j < n_tiles; ++j) {
    const int buf = j % ST;
    if (j >= ST) mbar_wait(&s.empty[buf], ((j / ST) - 1) & 1);
    if (j > 0) mbar_arrive_expect_tx(&s.full[buf], kTileBytes);
    const int kr = bg.r0 + brow * kBoxH, kc = bg.c0 + bcol * kBoxW;
#pragma unroll
    for (int cb = 0; cb < D / 64; ++cb) {
      tma_load_5d(&s.k[buf][cb * BK * 64], &m.k, cb * 64, head, kc, kr, t, &s.full[buf]);
      tma_load_5d(&s.v[buf][cb * BK * 64], &m.v, cb * 64, head, kc, kr, t, &s.full[buf]);
    }
    if (++bcol == bg.ncb) {
      bcol = 0;
      if (++brow == bg.nrb) {
        brow = 0;
        ++t;
      }
    }
  }
}

// (The preamble is written out as in the other kernels: see tma_dense.cuh.)
template <int D, int kBoxW, int BK, int ST>
__global__ void __launch_bounds__(kWsThreads, 1)
    attention_box_window_kernel(const __grid_constant__ Params p,
                                const __grid_constant__ BoxMaps maps) {
  extern __shared__ __align__(128) unsigned char smem_raw[];
  using Smem = WsSmem<D, BK, ST>;
  using Consumer = WsConsumer<D, true, true, BK, ST, 1, kBoxW>;
  Smem& s = *reinterpret_cast<Smem*>(smem_raw + ((1024u - (smem_u32(smem_raw) & 1023u)) & 1023u));
  const int head = blockIdx.y;
  const int tid = threadIdx.x;
  BlockQueries<true> bq;
  const int patch = blockIdx.x / p.plan.chunks;
  bq.chunk_q = blockIdx.x % p.plan.chunks;
  bq.h0 = (patch / p.plan.patches_w) * p.plan.ph;
  bq.w0 = (patch % p.plan.patches_w) * p.plan.pw;
  const BoxGrid bg = box_grid(p.g, p.plan.ph, p.plan.pw, bq.h0, bq.w0, kBoxW);
  const int n_tiles = bg.tiles(p.g.T);
  if (tid == 0) init_tma_ring<ST>(s, maps);
  if (tid < 128) {  // Q's padding rows (no copy lands there) must be finite: zero them once
    const uint4 zero{0u, 0u, 0u, 0u};
    for (int i = tid; i < kBlockQ * D / 8; i += 128) reinterpret_cast<uint4*>(s.q)[i] = zero;
    fence_proxy_async();  // the TMA writes (async proxy) come after these generic stores
  }
  __syncthreads();

  if (tid < 128) {
    setmaxnreg_dec<kTmaProducerRegs>();
    if (tid < 32) box_window_producer<D, kBoxW, BK, ST>(p, maps, s, bq, bg, head, n_tiles, tid);
  } else {
    setmaxnreg_inc<kTmaConsumerRegs>();
    run_consumer<Consumer, false, true, false>(p, s, bq, tid, n_tiles, head);
  }
}

}  // namespace freeswim::attention::detail
