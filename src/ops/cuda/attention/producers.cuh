// The producer warpgroups: how Q and the K/V tiles reach the ring (tile_ring.cuh).
//
//   - dense by TMA: dense keys are consecutive tokens, so a K or V tile is one box of a 3-D tensor
//     map per 64 head dims, issued by one thread;
//   - box tiles by TMA: a window tile is a rectangle of the token grid, one box of a 5-D tensor
//     map per 64 head dims, issued by one thread (Q by the 32 lanes of the first warp);
//   - row runs by cp.async: a window tile is a run of 128 keys through a key rectangle, i.e. row
//     segments of varying length at varying offsets; 128 threads gather it row by row. Also the
//     dense path where tensor maps cannot be made.
//
// A stage is refilled once the consumers have released its previous use (`empty`); it is handed
// over through its `full` barrier, which completes by itself when the data has landed: TMA counts
// the bytes (mbarrier::complete_tx), cp.async copies arrive through cp.async.mbarrier.arrive. So
// the producer never waits for its own loads and a tile is ready as soon as its data is. (An
// earlier producer waited for its copies one or two tiles later and then arrived; that tied the
// publication of tile j to the release of tile j - kStages + lag, and the consumers waited on it.)
#pragma once

#include "ops/cuda/attention/tile_ring.cuh"
#include "ops/cuda/attention/wgmma.cuh"

namespace freeswim::attention::detail {

// ---- TMA producers ----

// Registers per thread after setmaxnreg: the TMA producer warpgroup needs few, so the consumers
// get 240 (128 * 24 + 256 * 240 <= 65536), which makes room for Q in registers.
inline constexpr int kTmaProducerRegs = 24;
inline constexpr int kTmaConsumerRegs = 240;

// Thread 0 of a block fed by TMA: the ring's barriers (full: the producer's one arrive.expect_tx,
// the bytes do the rest; empty: one arrival per consumer warp), made visible to the TMA unit, and
// the tensor maps prefetched.
template <int D>
__device__ __forceinline__ void init_tma_ring(Ring<D>& s, const TensorMaps& maps) {
  for (int i = 0; i < kStages; ++i) {
    mbar_init(&s.full[i], 1);
    mbar_init(&s.empty[i], 8);
  }
  mbar_init_fence();
  tma_prefetch_map(&maps.q);
  tma_prefetch_map(&maps.k);
  tma_prefetch_map(&maps.v);
}

// Dense, one thread: Q with tile 0, then every K/V tile.
template <int D>
__device__ __forceinline__ void dense_tma_producer(const TensorMaps& m, Ring<D>& s, int head,
                                                   int n_tiles) {
  constexpr int BK = kTileKeys;
  constexpr uint32_t kTileBytes = 2u * BK * D * sizeof(__nv_bfloat16);
  constexpr uint32_t kQBytes = uint32_t{kBlockQ} * D * sizeof(__nv_bfloat16);
  for (int j = 0; j < n_tiles; ++j) {
    const int buf = j % kStages;
    if (j >= kStages) mbar_wait(&s.empty[buf], ((j / kStages) - 1) & 1);
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

// Box tiles, the first warp (lane 0..31): Q by all lanes in 1-token boxes with tile 0 (lane 0
// counts their bytes into tile 0's expect_tx with a ballot, so every stage completes by bytes
// alone), then lane 0 alone issues two boxes per 64 head dims of every tile, in the order the
// consumers' box_mask walks them: box column, box row, frame.
template <int D, int kBoxW>
__device__ __forceinline__ void box_tile_producer(const Params& p, const TensorMaps& m, Ring<D>& s,
                                                  const BlockQueries<true>& bq, const BoxGrid& bg,
                                                  int head, int n_tiles, int lane) {
  constexpr int BK = kTileKeys;
  constexpr int kBoxH = BK / kBoxW;
  constexpr uint32_t kTileBytes = 2u * BK * D * sizeof(__nv_bfloat16);
  constexpr uint32_t kRowBytes = D * sizeof(__nv_bfloat16);
  if (n_tiles <= 0) return;
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
    const int buf = j % kStages;
    if (j >= kStages) mbar_wait(&s.empty[buf], ((j / kStages) - 1) & 1);
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

// ---- The cp.async producer of row runs ----

// Registers per thread: the row loader spills below 72 (ptxas caps the producer branch at the
// value); 128 * 72 + 256 * 216 <= 65536.
inline constexpr int kRowProducerRegs = 72;
inline constexpr int kRowConsumerRegs = 216;
// Arrivals that complete a `full` phase: one asynchronous arrival per producer thread (when its
// copies of the tile have landed) and one release arrival per thread that wrote key positions.
template <int D>
inline constexpr int kRowFullArrivals = 128 + 128 / (D / 8);

// Where one loading thread's next key is. A thread loads rows tid / (D / 8) + i * kRowsPerPass of
// every tile, so within one key rectangle its keys are every kRowsPerPass-th key: the position is
// decoded (two divisions) once per rectangle and then stepped, across tiles too, by adds only; the
// token index moves with it.
struct KeyCursor {
  int rect = -1;   // rectangle of the current tile (window)
  int idx = 0;     // index of the thread's next key inside the rectangle (or among all keys)
  int n_keys = 0;  // keys in the rectangle
  int t = 0, kr = 0, kc = 0, token = 0;
  int r0 = 0, r1 = 0, c0 = 0, c1 = 0, cols = 0, row_wrap = 0, frame_wrap = 0;

  __device__ __forceinline__ void start_rect(const Params& p, const KeyRect& R, int first_row) {
    r0 = R.r0;
    r1 = R.r1;
    c0 = R.c0;
    c1 = R.c1;
    cols = c1 - c0;
    n_keys = static_cast<int>(R.keys(p.g.T));
    idx = first_row;
    const int per_frame = (r1 - r0) * cols;
    t = idx / per_frame;
    const int rem = idx - t * per_frame;
    kr = r0 + rem / cols;
    kc = c0 + rem % cols;
    token = (t * p.g.H + kr) * p.g.W + kc;
    row_wrap = p.g.W - cols;
    frame_wrap = (p.g.H - (r1 - r0)) * p.g.W;
  }
  template <bool kWindow, int kStep>
  __device__ __forceinline__ void step() {
    idx += kStep;
    token += kStep;
    if constexpr (kWindow) {
      kc += kStep;
      while (kc >= c1) {
        kc -= cols;
        token += row_wrap;
        if (++kr == r1) {
          kr = r0;
          ++t;
          token += frame_wrap;
        }
      }
    }
  }
};

// Issues the copies of one K/V tile's rows and writes their key positions, 128 threads each taking
// rows tid / (D / 8) + i * kRowsPerPass from `cur`, and leaves `cur` at the thread's first key of
// the next tile. Token counts fit in int (checked by the launcher); only the element offset is
// 64-bit.
template <int D, bool kWindow>
__device__ __forceinline__ void load_tile_rows(const Params& p, KeyCursor& cur, int head,
                                               __nv_bfloat16* ks, __nv_bfloat16* vs, KeyPos* key,
                                               int tid) {
  constexpr int BK = kTileKeys;
  constexpr int kChunks = D / 8;  // 16-byte chunks per row
  constexpr int kRowsPerPass = 128 / kChunks;
  const int chunk = tid % kChunks;
  const int64_t token_stride = int64_t{p.heads} * D;  // elements between consecutive tokens
  const __nv_bfloat16* kbase = p.k + int64_t{head} * D + chunk * 8;
  const __nv_bfloat16* vbase = p.v + int64_t{head} * D + chunk * 8;
  // Unrolled by 4: unrolled fully, the loop makes the producer spill at its 72 registers (ptxas:
  // 8 bytes; Nsight Compute showed the stalls on local memory).
#pragma unroll 4
  for (int i = 0; i < BK / kRowsPerPass; ++i) {
    const int row = tid / kChunks + i * kRowsPerPass;
    const bool valid = cur.idx < cur.n_keys;
    const int64_t off = valid ? cur.token * token_stride : 0;
    cp_async16(&ks[sw128<BK>(row, chunk)], kbase + off, valid);
    cp_async16(&vs[sw128<BK>(row, chunk)], vbase + off, valid);
    if (chunk == 0)
      store_key_pos(&key[row], make_key_pos(valid, kWindow ? cur.kr : 0, kWindow ? cur.kc : 0));
    cur.step<kWindow, kRowsPerPass>();
  }
}

// The producer warpgroup (threads 0..127): Q with tile 0, then every K/V tile. After issuing a
// tile's copies a thread makes the stage's `full` barrier track their completion; the threads that
// wrote key positions also arrive normally (release) for those stores. The consumers fence the
// stage into the async proxy after their wait (wgmma reads through it, cp.async writes through the
// generic proxy).
template <int D, bool kWindow>
__device__ __forceinline__ void row_run_producer(const Params& p, Ring<D>& s,
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
    const int buf = j % kStages;
    if constexpr (kWindow) {
      if (j == next_rect_tile) {  // a new rectangle (empty ones have no tiles: skipped)
        do {
          ++cur.rect;
        } while (s.kt.first[cur.rect + 1] <= j);
        next_rect_tile = s.kt.first[cur.rect + 1];
        cur.start_rect(p, s.kt.keys.rect[cur.rect], tid / kChunks);
      }
    }
    if (j >= kStages) mbar_wait(&s.empty[buf], ((j / kStages) - 1) & 1);
    load_tile_rows<D, kWindow>(p, cur, head, s.k[buf], s.v[buf], s.key[buf], tid);
    cp_async_mbar_arrive_noinc(&s.full[buf]);
    if (chunk == 0) mbar_arrive(&s.full[buf]);
  }
  cp_async_wait_all();  // do not leave copies in flight behind an exited thread
}

}  // namespace freeswim::attention::detail
