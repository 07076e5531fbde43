// The consumer warpgroups, shared by every attention kernel: for each K/V tile of the ring,
// S = Q K^T, the mask, the online softmax and O += P V, then the normalised rows stored.
//
// Two warpgroups per block, 64 query rows each, never meeting each other. Inside a warpgroup S of
// tile j is issued together with O += P V of tile j - 1, and the softmax of tile j runs while
// that product is in flight (O's rescale is deferred to just before the next product, when O is
// not being accumulated). The softmax keeps its non-tensor work small, since the consumers are
// bound by instruction issue (Nsight Compute, docs/attention.md):
//   - a lazy running maximum: it moves only when a tile's maximum exceeds it by more than
//     kLazyMax, so O's rescale (64 multiplies per thread) is skipped by the whole warp on almost
//     every tile;
//   - exponentials by `ex2.approx.ftz` alone (hopper.cuh);
//   - the wgmma descriptors of a stage computed once per tile and advanced by adds.
//
// Masks, by what the producer feeds:
//   - dense: the keys past n_kv in the last tile;
//   - row runs: the tiles from the core's last one on, by the key positions the producer wrote;
//   - box tiles: from the tile's place in the box grid (box_mask).
#pragma once

#include "ops/cuda/attention/tile_ring.cuh"
#include "ops/cuda/attention/wgmma.cuh"

namespace freeswim::attention::detail {

// The running maximum (log2 units) may lag a row's true maximum by up to this much, so the
// probabilities are <= 2^8 = 256: exact enough in bf16 (relative precision) and far from overflow
// in the fp32 sums (256 x the key count). FlashAttention-4 uses the same bound.
inline constexpr float kLazyMax = 8.f;

// One consumer warpgroup's rows: accumulators, statistics and the per-tile steps.
// kQInRegs: Q is held in registers (A fragments) for S = Q K^T, so that only K is read from shared
// memory; it needs the registers of a TMA-fed block (240 per consumer thread).
// kBoxW > 0 (window): the tiles are box tiles of kBoxW columns (window_plan.h).
template <int D, bool kWindow, bool kQInRegs, int kBoxW = 0>
struct Consumer {
  static_assert(kBoxW == 0 || kWindow, "box tiles are window tiles");
  static constexpr int kHeadDim = D;
  static constexpr int BK = kTileKeys;
  static constexpr bool kQRegs = kQInRegs;
  const Params& p;
  Ring<D>& s;
  int wg;  // 0 or 1: query rows wg * 64 .. wg * 64 + 63
  int lane, c4;
  int eh, ew;     // window extents (mask)
  int mask_from;  // first tile that needs the mask
  int box_r[2], box_c[2];
  float o[D / 8][4];
  float row_max[2], row_sum[2];
  bool rescale;            // some row of this thread moved its maximum in the last softmax
  uint32_t qf[D / 16][4];  // kQInRegs: the A fragments of the warp's 16 query rows
  // kBoxW: boxes across and down the block's grid, the next tile's box column and row; box_r and
  // box_c then hold the thread's windows' starts relative to that tile's corner.
  int box_cols = 1, box_rows = 1, box_col = 0, box_row = 0;

  // Rows r0 and r0 + 8 of Q (r0 = the warp's first row + g4), from the swizzled tile: fragment
  // kk holds columns 16 kk + 2 c4 (+1) in [0], [1] and 8 columns further in [2], [3] (the
  // m16n8k16 A layout, as P's fragments below).
  __device__ __forceinline__ void load_q(int r0) {
#pragma unroll
    for (int kk = 0; kk < D / 16; ++kk)
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int row = r0 + (e & 1) * 8, chunk = 2 * kk + (e >> 1);
        qf[kk][e] = *reinterpret_cast<const uint32_t*>(&s.q[sw128<kBlockQ>(row, chunk) + 2 * c4]);
      }
  }

  // Mask data of the thread's rows (q_row and q_row + 8), zero accumulators and statistics.
  __device__ __forceinline__ void start(const KeyTiles& kt, const BlockQueries<kWindow>& bq,
                                        int q_row, int n_tiles) {
    // (Box tiles have no key rectangles: kt is not filled in and box_mask masks instead.)
    mask_from = kBoxW > 0 ? 0
                : kWindow ? kt.first[1] - 1
                          : (p.n_kv % BK == 0 ? n_tiles : n_tiles - 1);
    if constexpr (kWindow) {
      eh = window_extent(p.g.H, p.g.dh);
      ew = window_extent(p.g.W, p.g.dw);
    }
    bq.token(p, q_row, box_r[0], box_c[0]);
    bq.token(p, q_row + 8, box_r[1], box_c[1]);
    if constexpr (kBoxW > 0) {
      const BoxGrid bg = box_grid(p.g, p.plan.ph, p.plan.pw, bq.h0, bq.w0, kBoxW);
      box_cols = bg.ncb;
      box_rows = bg.nrb;
      for (int r = 0; r < 2; ++r) {
        box_r[r] -= bg.r0;
        box_c[r] -= bg.c0;
      }
    }
#pragma unroll
    for (int n = 0; n < D / 8; ++n) o[n][0] = o[n][1] = o[n][2] = o[n][3] = 0.f;
    row_max[0] = row_max[1] = -INFINITY;
    row_sum[0] = row_sum[1] = 0.f;
  }

  __device__ __forceinline__ void issue_s(float (&sc)[BK / 8][4], int buf) {
    wgmma_fence();
    const uint64_t db0 = smem_desc_sw128(&s.k[buf][0], 16, 1024);
#pragma unroll
    for (int kk = 0; kk < D / 16; ++kk) {
      // K-major B of BK rows: 8-row atoms 1024 bytes apart.
      const uint64_t db = desc_advance(db0, 2 * sw128<BK>(0, 2 * kk));
      if constexpr (kQInRegs) {
        wgmma_s_qregs(sc, qf[kk], db, kk > 0 ? 1 : 0);
      } else {
        const uint64_t da = smem_desc_sw128(&s.q[sw128<kBlockQ>(wg * 64, 2 * kk)], 16, 1024);
        wgmma_s_qsmem(sc, da, db, kk > 0 ? 1 : 0);
      }
    }
    wgmma_commit();
  }

  __device__ __forceinline__ void issue_pv(const uint32_t (&pf)[BK / 16][4], int buf) {
    fence_regs(o);
    wgmma_fence();
    const uint64_t db0 = smem_desc_sw128(&s.v[buf][0], BK * 128, 1024);
#pragma unroll
    for (int kk = 0; kk < BK / 16; ++kk) {
      // MN-major V: column blocks of 64 head dims BK * 128 bytes apart (LBO), 8 keys per
      // 1024-byte group (SBO).
      wgmma_pv(o, pf[kk], desc_advance(db0, 2 * sw128<BK>(kk * 16, 0)));
    }
    wgmma_commit();
  }

  __device__ __forceinline__ void rescale_o(const float (&alpha)[2]) {
    // alpha is 1 for a row whose maximum did not move; skip when that holds for the whole warp
    // (a uniform branch).
    if (!__any_sync(0xffffffffu, rescale)) return;
#pragma unroll
    for (int r = 0; r < 2; ++r)
#pragma unroll
      for (int n = 0; n < D / 8; ++n) {
        o[n][2 * r] *= alpha[r];
        o[n][2 * r + 1] *= alpha[r];
      }
  }

  // kBoxW: masks the next box tile (tiles come in order: column, then row, then frame). Most
  // tiles take the fast path of BoxRowMask (the first or last box row of some query rows); the
  // others test every element.
  __device__ __forceinline__ void box_mask(float (&sc)[BK / 8][4]) {
    constexpr int kBoxH = BK / kBoxW;
    const BoxRowMask m0(box_r[0], box_c[0], eh, ew, kBoxW);
    const BoxRowMask m1(box_r[1], box_c[1], eh, ew, kBoxW);
    // On to the next tile's corner: one box right, or back to the first column one box down, or
    // back to the top (the next frame).
    int dr = 0, dc = -kBoxW;
    if (++box_col == box_cols) {
      box_col = 0;
      dc += box_cols * kBoxW;
      dr = -kBoxH;
      if (++box_row == box_rows) {
        box_row = 0;
        dr += box_rows * kBoxH;
      }
    }
    for (int r = 0; r < 2; ++r) {
      box_r[r] += dr;
      box_c[r] += dc;
    }
    if (m0.fast && m1.fast) {
#pragma unroll
      for (int n = 0; n < BK / 8; ++n)
#pragma unroll
        for (int e = 0; e < 2; ++e) {
          const int x = 2 * c4 + e;
          const bool first = box_first_row<kBoxW>(n, x), last = box_last_row<kBoxW>(n, x);
          if ((first && m0.mask_first) || (last && m0.mask_last)) sc[n][e] = -INFINITY;
          if ((first && m1.mask_first) || (last && m1.mask_last)) sc[n][2 + e] = -INFINITY;
        }
    } else {
      const BoxBits<kBoxW> b0(m0, eh, ew, c4), b1(m1, eh, ew, c4);
#pragma unroll
      for (int n = 0; n < BK / 8; ++n)
#pragma unroll
        for (int e = 0; e < 2; ++e) {
          if (!b0.visible(n, e)) sc[n][e] = -INFINITY;
          if (!b1.visible(n, e)) sc[n][2 + e] = -INFINITY;
        }
    }
  }

  // Masks tile j, updates the row statistics and turns sc into the (unnormalised) probabilities;
  // alpha is the factor O must be multiplied by before P V of this tile is added.
  __device__ __forceinline__ void softmax(float (&sc)[BK / 8][4], int j, int buf,
                                          float (&alpha)[2]) {
    if constexpr (kBoxW > 0) {
      box_mask(sc);
    } else if (!kWindow && j >= mask_from) {
      // Dense: the keys past n_kv in the last tile (zeros from either producer).
      const int k0 = j * BK + 2 * c4 - p.n_kv;
#pragma unroll
      for (int n = 0; n < BK / 8; ++n)
#pragma unroll
        for (int e = 0; e < 4; ++e)
          if (k0 + n * 8 + (e & 1) >= 0) sc[n][e] = -INFINITY;
    } else if (j >= mask_from) {
      // Row runs: the core's tiles but its last (partial) one need no mask; every later tile
      // (fringe bands, padding) does.
#pragma unroll
      for (int n = 0; n < BK / 8; ++n) {
#pragma unroll
        for (int e = 0; e < 2; ++e) {
          const KeyPos kp = s.key[buf][n * 8 + 2 * c4 + e];
          const int kr = kp.r, kc = kp.c;
#pragma unroll
          for (int r = 0; r < 2; ++r) {
            const bool vis = static_cast<unsigned>(kr - box_r[r]) < static_cast<unsigned>(eh) &&
                             static_cast<unsigned>(kc - box_c[r]) < static_cast<unsigned>(ew);
            if (!vis) sc[n][2 * r + e] = -INFINITY;
          }
        }
      }
    }
    float use_max[2];
    rescale = false;
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      float mx = -INFINITY;
#pragma unroll
      for (int n = 0; n < BK / 8; ++n) mx = fmaxf(mx, fmaxf(sc[n][2 * r], sc[n][2 * r + 1]));
      mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
      mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
      // Lazy maximum: moves only when the tile's exceeds it by more than kLazyMax (always on the
      // first tile with a visible key: -inf + kLazyMax is -inf). All four threads of a row take
      // the same branch (mx is reduced over the quad).
      const float cand = mx * p.scale_log2;
      if (cand > row_max[r] + kLazyMax) {
        alpha[r] = exp2_ftz(row_max[r] - cand);  // 0 when the old maximum is -inf
        row_max[r] = cand;
        row_sum[r] *= alpha[r];
        rescale = true;
      } else {
        alpha[r] = 1.f;
      }
      // A row that has seen only masked keys keeps max -inf; use 0 so exp2 gives 0, not NaN.
      use_max[r] = row_max[r] == -INFINITY ? 0.f : row_max[r];
    }
#pragma unroll
    for (int n = 0; n < BK / 8; ++n) {
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        sc[n][e] = exp2_ftz(fmaf(sc[n][e], p.scale_log2, -use_max[e / 2]));
        row_sum[e / 2] += sc[n][e];
      }
    }
  }

  // C fragment of n-tiles 2k and 2k+1 of S is the A fragment of the k-th 16-key slice of P.
  __device__ __forceinline__ static void pack(const float (&sc)[BK / 8][4],
                                              uint32_t (&pf)[BK / 16][4]) {
#pragma unroll
    for (int n = 0; n < BK / 8; ++n) {
      pf[n / 2][(n & 1) * 2 + 0] = pack_bf16(sc[n][0], sc[n][1]);
      pf[n / 2][(n & 1) * 2 + 1] = pack_bf16(sc[n][2], sc[n][3]);
    }
  }

  // Whether the mask reads the key positions the producer wrote into the stage (row runs of the
  // window). Those are ordinary shared-memory reads by every thread, so every thread arrives on
  // `empty` itself: its arrive releases its own reads before the producer overwrites the stage.
  // (One arrive per warp after __syncwarp would order them too under PTX's cumulative release,
  // but compute-sanitizer's racecheck sees only the arriving thread's accesses and reports the
  // other lanes' reads.) The other kernels read the stage through wgmma alone: one arrive per warp.
  static constexpr bool kReadsKeyPos = kWindow && kBoxW == 0;
  static constexpr int kEmptyArrivals = kReadsKeyPos ? 8 * 32 : 8;

  // The warp is done with stage buf (its wgmma reads have completed, its key reads are used).
  __device__ __forceinline__ void release(int buf) {
    if constexpr (kReadsKeyPos) {
      mbar_arrive(&s.empty[buf]);
    } else {
      __syncwarp();
      if (lane == 0) mbar_arrive(&s.empty[buf]);
    }
  }
};

// One consumer warpgroup over the block's n_tiles key tiles: S = Q K^T, softmax, O += P V, with
// S of tile j and P V of tile j - 1 in flight together. q_row: the thread's first query row (for Q
// in registers). kFenceAsync: the tiles were written by cp.async (generic proxy) and must be
// fenced into the async proxy wgmma reads through; TMA writes through the async proxy itself.
template <bool kFenceAsync, class C>
__device__ __forceinline__ void consume_tiles(C& c, int n_tiles, int q_row) {
  constexpr int BK = C::BK;
  auto& s = c.s;
  float sc[BK / 8][4];
  uint32_t pf[BK / 16][4];
  float alpha[2];
  if (n_tiles > 0) {
    mbar_wait(&s.full[0], 0);  // Q arrives with tile 0
    if constexpr (kFenceAsync) fence_proxy_async();
    if constexpr (C::kQRegs) c.load_q(q_row);
    c.issue_s(sc, 0);
    wgmma_wait0();
    fence_regs(sc);
    c.softmax(sc, 0, 0, alpha);  // O is zero: its rescale is a no-op
    C::pack(sc, pf);
    for (int j = 1; j < n_tiles; ++j) {
      const int buf = j % kStages, prev = (j - 1) % kStages;
      mbar_wait(&s.full[buf], (j / kStages) & 1);
      if constexpr (kFenceAsync) fence_proxy_async();
      c.issue_s(sc, buf);
      c.rescale_o(alpha);  // O is not being accumulated between the products
      c.issue_pv(pf, prev);
      wgmma_wait1();  // S of tile j (P V of tile j - 1 may still run)
      fence_regs(sc);
      c.softmax(sc, j, buf, alpha);
      wgmma_wait0();  // pf and O are free again
      fence_regs(c.o);
      c.release(prev);
      C::pack(sc, pf);
    }
    c.rescale_o(alpha);
    c.issue_pv(pf, (n_tiles - 1) % kStages);
    wgmma_wait0();
    fence_regs(c.o);
    c.release((n_tiles - 1) % kStages);
  }
}

// Normalises the thread's two rows of O and stores them (bf16) where their tokens go.
template <class C, class BQ>
__device__ __forceinline__ void store_rows(const C& c, const BQ& bq, int q_row, int head) {
  const Params& p = c.p;
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    float sum = c.row_sum[r];
    sum += __shfl_xor_sync(0xffffffffu, sum, 1);
    sum += __shfl_xor_sync(0xffffffffu, sum, 2);
    const float inv = sum > 0.f ? 1.f / sum : 0.f;
    int br, bc;
    const int64_t token = bq.token(p, q_row + 8 * r, br, bc);
    if (token < 0) continue;
    __nv_bfloat16* dst = p.out + (token * p.heads + head) * C::kHeadDim;
#pragma unroll
    for (int n = 0; n < C::kHeadDim / 8; ++n) {
      *reinterpret_cast<uint32_t*>(dst + n * 8 + 2 * c.c4) =
          pack_bf16(c.o[n][2 * r] * inv, c.o[n][2 * r + 1] * inv);
    }
  }
}

// A consumer thread (tid 128..383) of any kernel: its rows' accumulators over the block's n_tiles
// tiles, then the normalised rows stored.
template <class C, bool kFenceAsync, int D, class BQ>
__device__ __forceinline__ void run_consumer(const Params& p, Ring<D>& s, const BQ& bq, int tid,
                                             int n_tiles, int head) {
  const int ct = tid - 128;  // 0..255
  const int cw = ct / 32;    // consumer warp: rows cw * 16 + g4 and + 8
  const int lane = ct % 32, g4 = lane / 4;
  C c{p, s, cw / 4, lane, lane % 4, 1, 1, 0, {}, {}, {}, {}, {}, false, {}};
  c.start(s.kt, bq, cw * 16 + g4, n_tiles);
  consume_tiles<kFenceAsync>(c, n_tiles, cw * 16 + g4);
  store_rows(c, bq, cw * 16 + g4, head);
}

}  // namespace freeswim::attention::detail
