// Warp-specialised variant of the wgmma attention kernel (wgmma_kernel.cuh): same tiling, masks,
// swizzled layout and online softmax, but
//   - a producer warpgroup (threads 0..127) gathers Q and the K/V tiles with cp.async into a
//     ST-deep ring and hands each stage over through an mbarrier ("full"); the consumers
//     give it back through a second mbarrier ("empty"), so the consumers never issue loads and
//     never meet in a block-wide barrier;
//   - `setmaxnreg` moves registers from the producer (which needs few) to the two consumer
//     warpgroups (64 query rows each, as before);
//   - kSched: the consumer warpgroups take turns issuing their wgmma through two named barriers
//     (ping-pong), so one warpgroup's softmax runs while the other's products use the tensor
//     cores;
//   - kQRegs: Q is held in registers (A fragments) for S = Q K^T. With both operands in shared
//     memory an m64n64k16 step reads 4 KB for 131 kFLOP, more than shared memory delivers at
//     the tensor cores' rate; from registers only K is read;
//   - BK: keys per tile. 64 (the first variants: S is m64n64) or 128 ("wide": S is m64n128, so
//     the per-tile costs (barrier waits, row reductions, the mask test, the O rescale) are
//     spread over twice the work, as FlashAttention-3 does with its 128- and 176-key tiles; the
//     window plan pads each key rectangle to whole 128-key tiles, which costs little because
//     the rectangles hold hundreds to tens of thousands of keys);
//   - kOverlap: inside a warpgroup, S of tile j is issued together with O += P V of tile j - 1,
//     and the softmax of tile j runs while that product is in flight (O's rescale is deferred
//     to just before the next product, which is when O is not being accumulated).
//   - kFast: the consumers' per-tile non-tensor work is cut down (see WsConsumer::softmax):
//     exponentials by `ex2.approx.ftz` alone (without fast-math, exp2f is `ex2.approx.f32`,
//     whose denormal-preserving form costs extra instructions around MUFU.EX2; the values
//     exponentiated are <= kLazyMax and results below 2^-126 do not matter next to the row's
//     maximum term, which is >= 1),
//     a lazy running maximum (it moves only when a tile's maximum exceeds it by more than
//     kLazyMax, so O's rescale — 64 multiplies per thread — is skipped by the whole warp on
//     almost every tile), and the wgmma descriptors of a stage computed once per tile.
#pragma once

#include "ops/cuda/attention/wgmma_kernel.cuh"

namespace freeswim::attention::detail {

inline constexpr int kWsStages = 4;                // K/V ring depth of the 64-key variants
inline constexpr int kWsThreads = kThreads + 128;  // producer + 2 consumer warpgroups
inline constexpr int kProducerRegs = 72;           // the window loader spills at 56
inline constexpr int kConsumerRegs = 216;          // 128 * 72 + 256 * 216 <= 65536
inline constexpr int kSchedBarrier0 = 1;           // named barriers 1, 2 (0 = __syncthreads)
// kFast: the running maximum (log2 units) may lag a row's true maximum by up to this much, so
// the probabilities are <= 2^8 = 256: exact enough in bf16 (relative precision) and far from
// overflow in the fp32 sums (256 x the key count). FlashAttention-4 uses the same bound.
inline constexpr float kLazyMax = 8.f;
// Arrivals that complete a "full" phase: one asynchronous arrival per producer thread (when its
// copies of the tile have landed) and one release arrival per thread that wrote key positions.
template <int D>
inline constexpr int kFullArrivals = 128 + 128 / (D / 8);

// Makes the mbarrier track this thread's earlier cp.async copies: one arrival when they have all
// completed (noinc: the arrival is counted in the barrier's expected count, not added to it).
__device__ __forceinline__ void cp_async_mbar_arrive_noinc(uint64_t* b) {
  asm volatile("cp.async.mbarrier.arrive.noinc.shared::cta.b64 [%0];\n" ::"r"(smem_u32(b))
               : "memory");
}

__device__ __forceinline__ float exp2_ftz(float x) {
  float y;
  asm("ex2.approx.ftz.f32 %0, %1;\n" : "=f"(y) : "f"(x));
  return y;
}

// A descriptor moved by `bytes` inside shared memory: the start address is the low 14-bit field
// in 16-byte units, and shared addresses stay below 2^18 bytes, so the add cannot carry out of it.
__device__ __forceinline__ uint64_t desc_advance(uint64_t d, uint32_t bytes) {
  const uint32_t lo = static_cast<uint32_t>(d) + (bytes >> 4);
  return (d & 0xFFFFFFFF00000000ull) | lo;
}

// BK keys per tile, ST stages in the ring. Key positions are kept in 16 bits: at D = 128 three
// stages of 128-key K and V tiles (or six of 64 keys) plus Q fill 224 of the 227 KB a block may
// have.
template <int D, int BK, int ST>
struct WsSmem {
  __nv_bfloat16 q[kBlockQ * D];
  __nv_bfloat16 k[ST][BK * D];
  __nv_bfloat16 v[ST][BK * D];
  // kFast == 2: the B operand of the row sums' product, all ones (two 8 x 8 core matrices).
  alignas(256) __nv_bfloat16 ones[128];
  KeyPos16 key[ST][BK];
  KeyTiles kt;
  uint64_t full[ST];   // producer -> consumers: stage loaded (count: 128 producer threads)
  uint64_t empty[ST];  // consumers -> producer: stage read (count: 8 consumer warps)
};

// Fills s.ones (threads 0..127 of the block, before its barrier) and makes the stores visible to
// wgmma, which reads through the async proxy.
template <class Smem>
__device__ __forceinline__ void init_ones(Smem& s, int tid) {
  if (tid < 128) {
    s.ones[tid] = __float2bfloat16(1.f);
    asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory");
  }
}

__device__ __forceinline__ void mbar_init(uint64_t* b, int count) {
  asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;\n" ::"r"(smem_u32(b)), "r"(count)
               : "memory");
}
// Arrive with release semantics: the thread's earlier shared-memory writes are visible to a
// thread that then completes a wait on this phase.
__device__ __forceinline__ void mbar_arrive(uint64_t* b) {
  asm volatile("{\n.reg .b64 st;\nmbarrier.arrive.shared::cta.b64 st, [%0];\n}\n" ::"r"(smem_u32(b))
               : "memory");
}
// Waits (acquire) until the phase with the given parity has completed.
__device__ __forceinline__ void mbar_wait(uint64_t* b, uint32_t parity) {
  const uint32_t a = smem_u32(b);
  uint32_t done = 0;
  do {
    asm volatile(
        "{\n.reg .pred p;\nmbarrier.try_wait.parity.shared::cta.b64 p, [%1], %2;\n"
        "selp.u32 %0, 1, 0, p;\n}\n"
        : "=r"(done)
        : "r"(a), "r"(parity)
        : "memory");
  } while (!done);
}
__device__ __forceinline__ void named_sync(int id, int count) {
  asm volatile("bar.sync %0, %1;\n" ::"r"(id), "r"(count) : "memory");
}
__device__ __forceinline__ void named_arrive(int id, int count) {
  asm volatile("bar.arrive %0, %1;\n" ::"r"(id), "r"(count) : "memory");
}
template <int N>
__device__ __forceinline__ void setmaxnreg_dec() {
  asm volatile("setmaxnreg.dec.sync.aligned.u32 %0;\n" ::"n"(N));
}
template <int N>
__device__ __forceinline__ void setmaxnreg_inc() {
  asm volatile("setmaxnreg.inc.sync.aligned.u32 %0;\n" ::"n"(N));
}

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

// Producer warpgroup: Q with tile 0, then every K/V tile. Stage j % ST is refilled once the
// consumers have released its previous use. Tile j is published by the copies themselves: after
// issuing them a thread makes the stage's "full" barrier track their completion
// (cp.async.mbarrier.arrive.noinc), so the producer never waits for its own loads and every tile
// is ready as soon as its data has landed. Earlier versions waited for their copies with a lag of
// one or two tiles and then arrived; that tied the publication of tile j to the release of tile
// j - ST + lag, and the consumers waited on it (ncu: a fifth of their stall samples on "full").
// The threads that write key positions also arrive normally (release) for those stores. The
// consumers fence the stage into the async proxy after their wait (wgmma reads through it).
template <int D, bool kWindow, int BK, int ST>
__device__ __forceinline__ void ws_producer(const Params& p, WsSmem<D, BK, ST>& s,
                                            const BlockQueries<kWindow>& bq, int head,
                                            int n_tiles) {
  constexpr int kChunks = D / 8;
  constexpr int kRowsPerPass = 128 / kChunks;
  const int tid = threadIdx.x;  // 0..127
  const int chunk = tid % kChunks;
  if (n_tiles > 0) {
    for (int row = tid / kChunks; row < kBlockQ; row += kRowsPerPass) {
      int br, bc;
      const int64_t token = bq.token(p, row, br, bc);
      const int64_t off = (token * p.heads + head) * D + chunk * 8;
      cp_async16(&s.q[sw128<kBlockQ>(row, chunk)], p.q + (token >= 0 ? off : 0), token >= 0);
    }
  }
  KeyCursor cur;
  int next_rect_tile = 0;  // first tile of the rectangle after the current one
  if constexpr (!kWindow) {
    cur.n_keys = p.n_kv;
    cur.idx = cur.token = tid / kChunks;
    next_rect_tile = n_tiles;
  }
  for (int j = 0; j < n_tiles; ++j) {
    const int buf = j % ST;
    if constexpr (kWindow) {
      if (j == next_rect_tile) {  // a new rectangle (empty ones have no tiles: skipped)
        do {
          ++cur.rect;
        } while (s.kt.first[cur.rect + 1] <= j);
        next_rect_tile = s.kt.first[cur.rect + 1];
        cur.start_rect(p, s.kt.keys.rect[cur.rect], tid / kChunks);
      }
    }
    if (j >= ST) mbar_wait(&s.empty[buf], ((j / ST) - 1) & 1);
    load_tile_rows<D, kWindow, 128, BK>(p, cur, head, s.k[buf], s.v[buf], s.key[buf], tid);
    cp_async_mbar_arrive_noinc(&s.full[buf]);
    if (chunk == 0) mbar_arrive(&s.full[buf]);
  }
  cp_async_wait_all();  // do not leave copies in flight behind an exited thread
}

// ---- The "pairs" window producer (variant wide_lean; written after the last GPU call of its
// session, not measured yet) ----
//
// The default producer gives each thread one 16-byte chunk of every eighth key row (16 threads per
// row of D = 128), so each thread steps its key cursor, forms a 64-bit offset and tests validity
// once per 16 bytes it copies: 16 times per 128-key tile. Here two threads share a row (chunks 2i
// and 2i + 1: each warp-wide copy still covers whole 32-byte sectors, 16 rows x 32 bytes) and each
// thread copies half the row, so the per-row work is paid twice per tile instead of 16 times for
// the same 32 copies, and the cursor steps 64 keys at once (quotient and remainder of the step by
// the rectangle's width are computed once per rectangle). Key positions are written only for the
// tiles the consumers mask.
inline constexpr int kPairRows = 64;                       // key rows per pass of 128 threads
inline constexpr int kPairFullArrivals = 128 + kPairRows;  // noinc per thread + position writers
using PairCursor = KeyStepper<kPairRows>;                  // window_plan.h

template <int D, int BK, int ST>
__device__ __forceinline__ void ws_producer_pairs(const Params& p, WsSmem<D, BK, ST>& s,
                                                  const BlockQueries<true>& bq, int head,
                                                  int n_tiles) {
  static_assert(BK % kPairRows == 0, "tiles of whole passes");
  constexpr int kChunks = D / 8;
  const int tid = threadIdx.x;  // 0..127
  const int h = tid & 1;        // which chunk of each pair
  if (n_tiles > 0) {            // Q as in ws_producer
    const int chunk = tid % kChunks;
    for (int row = tid / kChunks; row < kBlockQ; row += 128 / kChunks) {
      int br, bc;
      const int64_t token = bq.token(p, row, br, bc);
      const int64_t off = (token * p.heads + head) * D + chunk * 8;
      cp_async16(&s.q[sw128<kBlockQ>(row, chunk)], p.q + (token >= 0 ? off : 0), token >= 0);
    }
  }
  const int64_t token_stride = int64_t{p.heads} * D;
  const __nv_bfloat16* kbase = p.k + int64_t{head} * D + h * 8;
  const __nv_bfloat16* vbase = p.v + int64_t{head} * D + h * 8;
  const int mask_from = s.kt.first[1] - 1;
  PairCursor cur;
  int rect = -1, next_rect_tile = 0;
  for (int j = 0; j < n_tiles; ++j) {
    const int buf = j % ST;
    if (j == next_rect_tile) {  // a new rectangle (empty ones have no tiles: skipped)
      do {
        ++rect;
      } while (s.kt.first[rect + 1] <= j);
      next_rect_tile = s.kt.first[rect + 1];
      cur.start_rect(p.g, s.kt.keys.rect[rect], tid / 2);
    }
    if (j >= ST) mbar_wait(&s.empty[buf], ((j / ST) - 1) & 1);
    const bool write_pos = j >= mask_from;
#pragma unroll
    for (int pass = 0; pass < BK / kPairRows; ++pass) {
      const int row = tid / 2 + pass * kPairRows;
      const bool valid = cur.idx < cur.n_keys;
      const int64_t off = valid ? int64_t{cur.token(p.g)} * token_stride : 0;
#pragma unroll
      for (int i = 0; i < kChunks / 2; ++i) {
        const int chunk = 2 * i + h;
        cp_async16(&s.k[buf][sw128<BK>(row, chunk)], kbase + off + 16 * i, valid);
        cp_async16(&s.v[buf][sw128<BK>(row, chunk)], vbase + off + 16 * i, valid);
      }
      if (h == 0 && write_pos)
        store_key_pos(&s.key[buf][row], make_key_pos<KeyPos16>(valid, cur.kr, cur.kc));
      cur.step();
    }
    cp_async_mbar_arrive_noinc(&s.full[buf]);
    if (h == 0) mbar_arrive(&s.full[buf]);
  }
  cp_async_wait_all();  // do not leave copies in flight behind an exited thread
}

// One consumer warpgroup's rows: accumulators, statistics and the per-tile steps.
// kFast: 0 = exact softmax (exp2f), 1 = fast (see softmax), 2 = fast with the row sums taken by
// the tensor cores (P times a column of ones, see issue_pv).
// kBoxW > 0 (window, 128-key tiles): the tiles are box tiles of kBoxW columns (window_plan.h,
// box_window.cuh), masked from the tile's place in the box grid instead of from key positions.
template <int D, bool kWindow, bool kQRegs, int BK, int ST, int kFast = 0, int kBoxW = 0>
struct WsConsumer {
  static_assert(kBoxW == 0 || (kWindow && BK == kBlockKWide), "box tiles are 128-key windows");
  static constexpr int kHeadDim = D, kTileKeys = BK, kStages = ST;
  static constexpr bool kSumByMma = kFast == 2, kQInRegs = kQRegs;
  const Params& p;
  WsSmem<D, BK, ST>& s;
  int wg;  // 0 or 1: query rows wg * 64 .. wg * 64 + 63
  int lane, c4;
  int eh, ew;     // window extents (mask)
  int mask_from;  // first tile that needs the mask
  int box_r[2], box_c[2];
  float o[D / 8][4];
  float row_max[2], row_sum[2];
  float lsum[1][4];  // kFast == 2: row sums (rows g4, g4 + 8; every column holds the whole sum)
  bool rescale;      // kFast: some row of this thread moved its maximum in the last softmax
  uint32_t qf[D / 16][4];  // kQRegs: the A fragments of the warp's 16 query rows
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
    lsum[0][0] = lsum[0][1] = lsum[0][2] = lsum[0][3] = 0.f;
  }

  __device__ __forceinline__ void issue_s(float (&sc)[BK / 8][4], int buf) {
    wgmma_fence();
    const uint64_t db0 = smem_desc_sw128(&s.k[buf][0], 16, 1024);
#pragma unroll
    for (int kk = 0; kk < D / 16; ++kk) {
      // K-major B of BK rows: 8-row atoms 1024 bytes apart whatever BK is.
      const uint64_t db = kFast ? desc_advance(db0, 2 * sw128<BK>(0, 2 * kk))
                                : smem_desc_sw128(&s.k[buf][sw128<BK>(0, 2 * kk)], 16, 1024);
      if constexpr (kQRegs) {
        if constexpr (BK == 128)
          wgmma_rs_m64n128_kb(sc, qf[kk], db, kk > 0 ? 1 : 0);
        else
          wgmma_rs_m64n64_kb(sc, qf[kk], db, kk > 0 ? 1 : 0);
      } else {
        const uint64_t da = smem_desc_sw128(&s.q[sw128<kBlockQ>(wg * 64, 2 * kk)], 16, 1024);
        if constexpr (BK == 128)
          wgmma_ss_m64n128(sc, da, db, kk > 0 ? 1 : 0);
        else
          wgmma_ss_m64n64(sc, da, db, kk > 0 ? 1 : 0);
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
      const uint64_t db = kFast ? desc_advance(db0, 2 * sw128<BK>(kk * 16, 0))
                                : smem_desc_sw128(&s.v[buf][sw128<BK>(kk * 16, 0)], BK * 128, 1024);
      if constexpr (D == 128)
        wgmma_rs_m64n128_tb(o, pf[kk], db);
      else
        wgmma_rs_m64n64_tb(o, pf[kk], db);
    }
    if constexpr (kFast == 2) {
      // Row sums of the bf16 P (the values the product above uses) as P times ones: 1/16 of the
      // P V tensor work instead of one fp32 add per score on the issue-bound consumers. The
      // ones are two 8-row x 16-byte core matrices without swizzle (LBO = SBO = 128 bytes).
      fence_regs(lsum);
      const uint64_t d1 = (uint64_t{(smem_u32(s.ones) & 0x3FFFF) >> 4}) |
                          (uint64_t{128 >> 4} << 16) | (uint64_t{128 >> 4} << 32);
#pragma unroll
      for (int kk = 0; kk < BK / 16; ++kk) wgmma_rs_m64n8_kb(lsum[0], pf[kk], d1);
    }
    wgmma_commit();
  }

  __device__ __forceinline__ void rescale_o(const float (&alpha)[2]) {
    // kFast: alpha is 1 for a row whose maximum did not move; skip when that holds for the
    // whole warp (a uniform branch).
    if (kFast && !__any_sync(0xffffffffu, rescale)) return;
#pragma unroll
    for (int r = 0; r < 2; ++r)
#pragma unroll
      for (int n = 0; n < D / 8; ++n) {
        o[n][2 * r] *= alpha[r];
        o[n][2 * r + 1] *= alpha[r];
      }
    if constexpr (kFast == 2) {
      lsum[0][0] *= alpha[0];
      lsum[0][1] *= alpha[0];
      lsum[0][2] *= alpha[1];
      lsum[0][3] *= alpha[1];
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
    // The core's tiles but its last (partial) one need no mask; every later tile (fringe bands,
    // padding) does. Dense: the last tile when it is partial (mask_from = n_tiles - 1 or more).
    if constexpr (kBoxW > 0) {
      box_mask(sc);
    } else if (!kWindow && j >= mask_from) {
      // Dense: the keys past n_kv in the last tile (zeros from either loader).
      const int k0 = j * BK + 2 * c4 - p.n_kv;
#pragma unroll
      for (int n = 0; n < BK / 8; ++n)
#pragma unroll
        for (int e = 0; e < 4; ++e)
          if (k0 + n * 8 + (e & 1) >= 0) sc[n][e] = -INFINITY;
    } else if (j >= mask_from) {
#pragma unroll
      for (int n = 0; n < BK / 8; ++n) {
#pragma unroll
        for (int e = 0; e < 2; ++e) {
          const KeyPos16 kp = s.key[buf][n * 8 + 2 * c4 + e];
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
    if constexpr (kFast) rescale = false;
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      float mx = -INFINITY;
#pragma unroll
      for (int n = 0; n < BK / 8; ++n) mx = fmaxf(mx, fmaxf(sc[n][2 * r], sc[n][2 * r + 1]));
      mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
      mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
      if constexpr (kFast) {
        // Lazy maximum: moves only when the tile's exceeds it by more than kLazyMax (always on
        // the first tile with a visible key: -inf + kLazyMax is -inf). All four threads of a
        // row take the same branch (mx is reduced over the quad).
        const float cand = mx * p.scale_log2;
        if (cand > row_max[r] + kLazyMax) {
          alpha[r] = exp2_ftz(row_max[r] - cand);  // 0 when the old maximum is -inf
          row_max[r] = cand;
          if constexpr (kFast != 2) row_sum[r] *= alpha[r];
          rescale = true;
        } else {
          alpha[r] = 1.f;
        }
        use_max[r] = row_max[r] == -INFINITY ? 0.f : row_max[r];
        continue;
      }
      const float new_max = fmaxf(row_max[r], mx * p.scale_log2);
      // A row that has seen only masked keys keeps max -inf; use 0 so exp2 gives 0, not NaN.
      const float use = new_max == -INFINITY ? 0.f : new_max;
      alpha[r] = exp2f(row_max[r] - use);
      row_max[r] = new_max;
      use_max[r] = use;
      row_sum[r] *= alpha[r];
    }
#pragma unroll
    for (int n = 0; n < BK / 8; ++n) {
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        if constexpr (kFast != 0) {
          sc[n][e] = exp2_ftz(fmaf(sc[n][e], p.scale_log2, -use_max[e / 2]));
        } else {
          sc[n][e] = exp2f(sc[n][e] * p.scale_log2 - use_max[e / 2]);
        }
        if constexpr (kFast != 2) row_sum[e / 2] += sc[n][e];
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

  __device__ __forceinline__ void fence_acc() {
    fence_regs(o);
    if constexpr (kFast == 2) fence_regs(lsum);
  }

  // The warp is done with stage buf (its wgmma reads have completed, its key reads are used).
  __device__ __forceinline__ void release(int buf) {
    __syncwarp();
    if (lane == 0) mbar_arrive(&s.empty[buf]);
  }
};

// Ping-pong turns: warpgroup wg issues its products between sync(own barrier) and arrive(the
// other's). Each warpgroup takes the same number of turns; warpgroup 1 opens warpgroup 0's
// first turn and skips its arrive on its last turn, so every arrival is matched by a sync.
template <bool kSched>
struct Turns {
  int wg;
  __device__ __forceinline__ void begin() const {
    if constexpr (kSched) named_sync(kSchedBarrier0 + wg, 256);
  }
  __device__ __forceinline__ void end(bool last) const {
    if constexpr (kSched) {
      if (!(last && wg == 1)) named_arrive(kSchedBarrier0 + (1 - wg), 256);
    }
  }
};

// One consumer warpgroup over the block's n_tiles key tiles: S = Q K^T, softmax, O += P V, with
// the variant's overlap and turns. q_row: the thread's first query row (for Q in registers).
// kFenceAsync: the tiles were written by cp.async (generic proxy) and must be fenced into the
// async proxy wgmma reads through; TMA writes through the async proxy itself.
template <bool kSched, bool kOverlap, bool kQRegs, bool kFenceAsync, class C>
__device__ __forceinline__ void consume_tiles(C& c, int n_tiles, int q_row) {
  auto& s = c.s;
  const Turns<kSched> turn{c.wg};
  if (kSched && c.wg == 1 && n_tiles > 0) named_arrive(kSchedBarrier0, 256);

  float sc[C::kTileKeys / 8][4];
  uint32_t pf[C::kTileKeys / 16][4];
  float alpha[2];
  if constexpr (!kOverlap) {
    for (int j = 0; j < n_tiles; ++j) {
      const int buf = j % C::kStages;
      mbar_wait(&s.full[buf], (j / C::kStages) & 1);
      // cp.async copies write through the generic proxy; wgmma reads through the async one
      if constexpr (kFenceAsync) fence_proxy_async();
      if (kQRegs && j == 0) c.load_q(q_row);
      turn.begin();
      c.issue_s(sc, buf);
      turn.end(false);
      wgmma_wait0();
      fence_regs(sc);
      c.softmax(sc, j, buf, alpha);
      c.rescale_o(alpha);
      C::pack(sc, pf);
      turn.begin();
      c.issue_pv(pf, buf);
      turn.end(j == n_tiles - 1);
      wgmma_wait0();
      c.fence_acc();
      c.release(buf);
    }
  } else if (n_tiles > 0) {
    mbar_wait(&s.full[0], 0);  // Q arrives with tile 0
    if constexpr (kFenceAsync) fence_proxy_async();
    if constexpr (kQRegs) c.load_q(q_row);
    turn.begin();
    c.issue_s(sc, 0);
    turn.end(false);
    wgmma_wait0();
    fence_regs(sc);
    c.softmax(sc, 0, 0, alpha);  // O is zero: its rescale is a no-op
    C::pack(sc, pf);
    for (int j = 1; j < n_tiles; ++j) {
      const int buf = j % C::kStages, prev = (j - 1) % C::kStages;
      mbar_wait(&s.full[buf], (j / C::kStages) & 1);
      if constexpr (kFenceAsync) fence_proxy_async();
      turn.begin();
      c.issue_s(sc, buf);
      c.rescale_o(alpha);  // O is not being accumulated between the products
      c.issue_pv(pf, prev);
      turn.end(false);
      wgmma_wait1();  // S of tile j (P V of tile j - 1 may still run)
      fence_regs(sc);
      c.softmax(sc, j, buf, alpha);
      wgmma_wait0();  // pf and O are free again
      c.fence_acc();
      c.release(prev);
      C::pack(sc, pf);
    }
    turn.begin();
    c.rescale_o(alpha);
    c.issue_pv(pf, (n_tiles - 1) % C::kStages);
    turn.end(true);
    wgmma_wait0();
    c.fence_acc();
    c.release((n_tiles - 1) % C::kStages);
  }
}

// Normalises the thread's two rows of O and stores them (bf16) where their tokens go.
template <class C, class BQ>
__device__ __forceinline__ void store_rows(const C& c, const BQ& bq, int q_row, int head) {
  const Params& p = c.p;
  // ---- epilogue: normalise and store ----
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    float sum = c.row_sum[r];
    if constexpr (C::kSumByMma) {
      sum = c.lsum[0][2 * r];
    } else {
      sum += __shfl_xor_sync(0xffffffffu, sum, 1);
      sum += __shfl_xor_sync(0xffffffffu, sum, 2);
    }
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

// A consumer thread (tid 128..383) of any warp-specialised kernel: its rows' accumulators over
// the block's n_tiles tiles, then the normalised rows stored.
template <class Consumer, bool kSched, bool kOverlap, bool kFenceAsync, class Smem, class BQ>
__device__ __forceinline__ void run_consumer(const Params& p, Smem& s, const BQ& bq, int tid,
                                             int n_tiles, int head) {
  const int ct = tid - 128;  // 0..255
  const int cw = ct / 32;    // consumer warp: rows cw * 16 + g4 and + 8
  const int lane = ct % 32, g4 = lane / 4;
  Consumer c{p, s, cw / 4, lane, lane % 4, 1, 1, 0, {}, {}, {}, {}, {}, true, {}};
  c.start(s.kt, bq, cw * 16 + g4, n_tiles);
  consume_tiles<kSched, kOverlap, Consumer::kQInRegs, kFenceAsync>(c, n_tiles, cw * 16 + g4);
  store_rows(c, bq, cw * 16 + g4, head);
}

// kPairs (window only): the producer of ws_producer_pairs instead of ws_producer.
template <int D, bool kWindow, bool kSched, bool kOverlap, bool kQRegs, int BK = kBlockK,
          int ST = kWsStages, int kFast = 0, bool kPairs = false>
__global__ void __launch_bounds__(kWsThreads, 1)
    attention_ws_kernel(const __grid_constant__ Params p) {
  static_assert(!kPairs || kWindow, "the pairs producer is the window's");
  extern __shared__ __align__(128) unsigned char smem_raw[];
  using Smem = WsSmem<D, BK, ST>;
  using Consumer = WsConsumer<D, kWindow, kQRegs, BK, ST, kFast>;
  // Swizzle atoms need 1024-byte alignment. The offset is added to smem_raw itself (not via an
  // integer round trip) so that the compiler keeps knowing the accesses are to shared memory
  // (ld/st.shared rather than generic loads and stores). (Behind a helper function the kernels'
  // code came out different, so each kernel keeps this line.)
  Smem& s = *reinterpret_cast<Smem*>(smem_raw + ((1024u - (smem_u32(smem_raw) & 1023u)) & 1023u));
  const int head = blockIdx.y;
  const int tid = threadIdx.x;

  BlockQueries<kWindow> bq;
  KeyTiles& kt = s.kt;
  if constexpr (kWindow) {
    const int patch = blockIdx.x / p.plan.chunks;
    bq.chunk_q = blockIdx.x % p.plan.chunks;
    bq.h0 = (patch / p.plan.patches_w) * p.plan.ph;
    bq.w0 = (patch % p.plan.patches_w) * p.plan.pw;
  }
  if (tid == 0) {
    if constexpr (kWindow) {
      kt.keys = patch_keys(p.g, p.plan.ph, p.plan.pw, bq.h0, bq.w0);
      kt.first[0] = 0;
      for (int i = 0; i < 5; ++i)
        kt.first[i + 1] =
            kt.first[i] + static_cast<int>((kt.keys.rect[i].keys(p.g.T) + BK - 1) / BK);
    } else {
      kt.first[0] = 0;
      kt.first[5] = (p.n_kv + BK - 1) / BK;
    }
    for (int i = 0; i < ST; ++i) {
      mbar_init(&s.full[i], kPairs ? kPairFullArrivals : kFullArrivals<D>);
      mbar_init(&s.empty[i], 8);
    }
  }
  if constexpr (kFast == 2) init_ones(s, tid);
  __syncthreads();  // the last block-wide barrier: from here on the roles only meet in mbarriers
  const int n_tiles = kt.first[5];

  if (tid < 128) {
    setmaxnreg_dec<kProducerRegs>();
    if constexpr (kPairs)
      ws_producer_pairs<D, BK, ST>(p, s, bq, head, n_tiles);
    else
      ws_producer<D, kWindow, BK, ST>(p, s, bq, head, n_tiles);
  } else {
    setmaxnreg_inc<kConsumerRegs>();
    run_consumer<Consumer, kSched, kOverlap, true>(p, s, bq, tid, n_tiles, head);
  }
}

}  // namespace freeswim::attention::detail
