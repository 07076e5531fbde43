// Attention forward kernel on Hopper's warpgroup MMA (wgmma, sm_90a): the FlashAttention-2
// structure and the window tiling of flash_kernel.cuh, with the two inner products issued per
// warpgroup of 4 warps (64 query rows each) instead of per warp:
//   S = Q K^T: wgmma m64n64k16, Q and K both read from shared memory through descriptors;
//   O += P V:  wgmma m64n{D}k16, P from registers, V from shared memory transposed by the
//              descriptor (MN-major).
// Tiles are stored in the 128-byte-swizzled layout the descriptors expect: each row of D bf16
// is split into column blocks of 64 values (128 bytes); a column block of R rows is R x 128
// bytes with the 16-byte chunks of row r XOR-ed by r % 8 (atoms of 8 rows = 1024 bytes).
#pragma once

#include "ops/cuda/attention/flash_kernel.cuh"
#include "ops/cuda/attention/wgmma_ops.cuh"

namespace freeswim::attention::detail {

template <int D>
struct WSmem {
  __nv_bfloat16 q[kBlockQ * D];
  __nv_bfloat16 k[kStages][kBlockK * D];
  __nv_bfloat16 v[kStages][kBlockK * D];
  KeyPos key[kStages][kBlockK];
  KeyTiles kt;
};

// Element offset of 16-byte chunk `chunk` of row `row` in a swizzled tile of R rows.
template <int R>
__device__ __forceinline__ int sw128(int row, int chunk) {
  return (chunk >> 3) * (R * 64) + row * 64 + (((chunk & 7) ^ (row & 7)) << 3);
}

// wgmma shared-memory descriptor, 128-byte swizzle; byte offsets LBO and SBO.
__device__ __forceinline__ uint64_t smem_desc_sw128(const void* p, uint32_t lbo, uint32_t sbo) {
  const uint64_t a = smem_u32(p);
  return ((a & 0x3FFFF) >> 4) | (uint64_t{(lbo >> 4) & 0x3FFF} << 16) |
         (uint64_t{(sbo >> 4) & 0x3FFF} << 32) | (uint64_t{1} << 62);
}

__device__ __forceinline__ void fence_proxy_async() {
  asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory");
}
__device__ __forceinline__ void wgmma_fence() {
  asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory");
}
__device__ __forceinline__ void wgmma_commit() {
  asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory");
}
__device__ __forceinline__ void wgmma_wait0() {
  asm volatile("wgmma.wait_group.sync.aligned 0;\n" ::: "memory");
}
__device__ __forceinline__ void wgmma_wait1() {
  asm volatile("wgmma.wait_group.sync.aligned 1;\n" ::: "memory");
}
// Keeps the compiler from moving reads or writes of accumulators across wgmma fences and waits.
template <int N>
__device__ __forceinline__ void fence_regs(float (&r)[N][4]) {
#pragma unroll
  for (int i = 0; i < N; ++i)
#pragma unroll
    for (int e = 0; e < 4; ++e) asm volatile("" : "+f"(r[i][e])::"memory");
}

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

// One key position into the tile's table. The tables are arrays of a shared-memory struct, so each
// entry is aligned to its size: a 16-bit pair goes as one 32-bit store (through the pointer the
// compiler would only assume 2-byte alignment and split it).
template <typename KP>
__device__ __forceinline__ void store_key_pos(KP* dst, const KP& v) {
  if constexpr (sizeof(KP) == sizeof(uint32_t)) {
    uint32_t bits;
    memcpy(&bits, &v, sizeof(bits));
    *reinterpret_cast<uint32_t*>(dst) = bits;
  } else {
    *dst = v;
  }
}

// Issues the copies of one K/V tile's rows and writes their key positions, `kLoaders` threads
// (`tid` in 0 .. kLoaders - 1) each taking rows tid / (D / 8) + i * kRowsPerPass from `cur`, and
// leaves `cur` at the thread's first key of the next tile. Token counts fit in int (checked by
// the launcher); only the element offset is 64-bit.
template <int D, bool kWindow, int kLoaders, int BK, typename KP>
__device__ __forceinline__ void load_tile_rows(const Params& p, KeyCursor& cur, int head,
                                               __nv_bfloat16* ks, __nv_bfloat16* vs, KP* key,
                                               int tid) {
  constexpr int kChunks = D / 8;  // 16-byte chunks per row
  constexpr int kRowsPerPass = kLoaders / kChunks;
  const int chunk = tid % kChunks;
  const int64_t token_stride = int64_t{p.heads} * D;  // elements between consecutive tokens
  const __nv_bfloat16* kbase = p.k + int64_t{head} * D + chunk * 8;
  const __nv_bfloat16* vbase = p.v + int64_t{head} * D + chunk * 8;
  // Fully unrolled for 64-key tiles; for 128-key tiles a full unroll makes the warp-specialised
  // producer spill at its 72 registers (ptxas: 8 bytes; ncu showed the stalls on local memory).
  constexpr int kUnroll = BK > 64 ? 4 : BK / kRowsPerPass;
#pragma unroll kUnroll
  for (int i = 0; i < BK / kRowsPerPass; ++i) {
    const int row = tid / kChunks + i * kRowsPerPass;
    const bool valid = cur.idx < cur.n_keys;
    const int64_t off = valid ? cur.token * token_stride : 0;
    cp_async16(&ks[sw128<BK>(row, chunk)], kbase + off, valid);
    cp_async16(&vs[sw128<BK>(row, chunk)], vbase + off, valid);
    if (chunk == 0)
      store_key_pos(&key[row], make_key_pos<KP>(valid, kWindow ? cur.kr : 0, kWindow ? cur.kc : 0));
    cur.step<kWindow, kRowsPerPass>();
  }
}

// Gathers K/V tile j (and its key positions) into swizzled shared memory from a cursor decoded
// at the tile's first key (the plain wgmma kernel, whose threads take every tile afresh).
template <int D, bool kWindow, int kLoaders, int BK = kBlockK, typename KP = KeyPos>
__device__ __forceinline__ void load_kv_tile_sw(const Params& p, const KeyTiles& kt, int head,
                                                int j, __nv_bfloat16* ks, __nv_bfloat16* vs,
                                                KP* key, int tid) {
  const int first_row = tid / (D / 8);
  KeyCursor cur;
  if constexpr (kWindow) {
    const int rect = kt.rect_of(j);
    cur.start_rect(p, kt.keys.rect[rect], (j - kt.first[rect]) * BK + first_row);
  } else {
    cur.n_keys = p.n_kv;
    cur.idx = cur.token = j * BK + first_row;
  }
  load_tile_rows<D, kWindow, kLoaders, BK>(p, cur, head, ks, vs, key, tid);
}

// One block: kBlockQ query rows of one head against all its key tiles.
template <int D, bool kWindow>
__global__ void __launch_bounds__(kThreads, 1)
    attention_wgmma_kernel(const __grid_constant__ Params p) {
  extern __shared__ __align__(128) unsigned char smem_raw[];
  // 128-byte swizzle atoms must start on 1024-byte boundaries (the launch adds the slack).
  WSmem<D>& s = *reinterpret_cast<WSmem<D>*>((reinterpret_cast<uintptr_t>(smem_raw) + 1023) &
                                             ~uintptr_t{1023});
  const int wg = threadIdx.x / 128;  // consumer warpgroup: query rows wg * 64 .. wg * 64 + 63
  const int head = blockIdx.y;
  const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32;
  const int g4 = lane / 4, c4 = lane % 4;
  constexpr int kChunks = D / 8;

  // ---- which queries and keys this block has ----
  KeyTiles& kt = s.kt;
  int h0 = 0, w0 = 0, chunk_q = 0;
  int eh = 1, ew = 1;
  if constexpr (kWindow) {
    const int patch = blockIdx.x / p.plan.chunks;
    chunk_q = blockIdx.x % p.plan.chunks;
    h0 = (patch / p.plan.patches_w) * p.plan.ph;
    w0 = (patch % p.plan.patches_w) * p.plan.pw;
    if (tid == 0) {
      kt.keys = patch_keys(p.g, p.plan.ph, p.plan.pw, h0, w0);
      kt.first[0] = 0;
      for (int i = 0; i < 5; ++i)
        kt.first[i + 1] =
            kt.first[i] + static_cast<int>((kt.keys.rect[i].keys(p.g.T) + kBlockK - 1) / kBlockK);
    }
    eh = window_extent(p.g.H, p.g.dh);
    ew = window_extent(p.g.W, p.g.dw);
  } else if (tid == 0) {
    kt.first[0] = 0;
    kt.first[5] = (p.n_kv + kBlockK - 1) / kBlockK;
  }
  __syncthreads();
  const int n_tiles = kt.first[5];

  // Token of query row i of the block, or -1 when the row is padding.
  auto query_token = [&](int i, int& box_r, int& box_c) -> int64_t {
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
  };

  // ---- prologue: Q and the first K/V tile ----
  for (int row = tid / kChunks; row < kBlockQ; row += kThreads / kChunks) {
    int br, bc;
    const int64_t token = query_token(row, br, bc);
    const int chunk = tid % kChunks;
    const int64_t off = (token * p.heads + head) * D + chunk * 8;
    cp_async16(&s.q[sw128<kBlockQ>(row, chunk)], p.q + (token >= 0 ? off : 0), token >= 0);
  }
  if (n_tiles > 0)
    load_kv_tile_sw<D, kWindow, kThreads>(p, kt, head, 0, s.k[0], s.v[0], s.key[0], tid);
  cp_async_commit();
  if (n_tiles > 1)
    load_kv_tile_sw<D, kWindow, kThreads>(p, kt, head, 1, s.k[1], s.v[1], s.key[1], tid);
  cp_async_commit();

  // Each thread owns query rows r0 = warp*16 + g4 and r0 + 8; their box starts drive the mask.
  int box_r[2], box_c[2];
  query_token(warp * 16 + g4, box_r[0], box_c[0]);
  query_token(warp * 16 + g4 + 8, box_r[1], box_c[1]);

  float o[D / 8][4];
#pragma unroll
  for (int n = 0; n < D / 8; ++n) o[n][0] = o[n][1] = o[n][2] = o[n][3] = 0.f;
  float row_max[2] = {-INFINITY, -INFINITY};
  float row_sum[2] = {0.f, 0.f};

  for (int j = 0; j < n_tiles; ++j) {
    const int buf = j % kStages;
    cp_async_wait_one();  // tile j has landed (j + 1 may still be in flight)
    fence_proxy_async();  // cp.async wrote through the generic proxy; wgmma reads through the async
                          // one
    __syncthreads();      // ... for every thread; and all are done with tile j - 1's buffer
    if (j + 2 < n_tiles) {
      const int b2 = (j + 2) % kStages;
      load_kv_tile_sw<D, kWindow, kThreads>(p, kt, head, j + 2, s.k[b2], s.v[b2], s.key[b2], tid);
    }
    cp_async_commit();  // possibly empty: keeps one group per tile for the wait above

    // S = Q K^T for the warpgroup's 64 rows and the tile's 64 keys (both operands K-major in
    // shared memory; a 16-wide k step is a 32-byte move inside the swizzle atom).
    float sc[kBlockK / 8][4];
    wgmma_fence();
#pragma unroll
    for (int kk = 0; kk < D / 16; ++kk) {
      const uint64_t da = smem_desc_sw128(&s.q[sw128<kBlockQ>(wg * 64, 2 * kk)], 16, 1024);
      const uint64_t db = smem_desc_sw128(&s.k[buf][sw128<kBlockK>(0, 2 * kk)], 16, 1024);
      wgmma_ss_m64n64(sc, da, db, kk > 0 ? 1 : 0);
    }
    wgmma_commit();
    wgmma_wait0();
    fence_regs(sc);

    // Mask: fringe rectangles and every rectangle's last (partial) tile.
    bool masked;
    if constexpr (kWindow) {
      const int rect = kt.rect_of(j);
      masked = rect != 0 || j == kt.first[1] - 1;
    } else {
      masked = j == n_tiles - 1;
    }
    if (masked) {
#pragma unroll
      for (int n = 0; n < kBlockK / 8; ++n) {
#pragma unroll
        for (int e = 0; e < 2; ++e) {
          const KeyPos kp = s.key[buf][n * 8 + 2 * c4 + e];
#pragma unroll
          for (int r = 0; r < 2; ++r) {
            const bool vis = static_cast<unsigned>(kp.r - box_r[r]) < static_cast<unsigned>(eh) &&
                             static_cast<unsigned>(kp.c - box_c[r]) < static_cast<unsigned>(ew);
            if (!vis) sc[n][2 * r + e] = -INFINITY;
          }
        }
      }
    }

    // Online softmax: rows g4 (entries 0,1) and g4 + 8 (entries 2,3); a row's 64 values are
    // spread over the 4 threads of a quad.
    float scale_max[2];
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      float mx = -INFINITY;
#pragma unroll
      for (int n = 0; n < kBlockK / 8; ++n) mx = fmaxf(mx, fmaxf(sc[n][2 * r], sc[n][2 * r + 1]));
      mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
      mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
      const float new_max = fmaxf(row_max[r], mx * p.scale_log2);
      // A row that has seen only masked keys keeps max -inf; use 0 so exp2 gives 0, not NaN.
      const float use = new_max == -INFINITY ? 0.f : new_max;
      const float alpha = exp2f(row_max[r] - use);
      row_max[r] = new_max;
      scale_max[r] = use;
      row_sum[r] *= alpha;
#pragma unroll
      for (int n = 0; n < D / 8; ++n) {
        o[n][2 * r] *= alpha;
        o[n][2 * r + 1] *= alpha;
      }
    }
    uint32_t pf[kBlockK / 16][4];
#pragma unroll
    for (int n = 0; n < kBlockK / 8; ++n) {
      const float p0 = exp2f(sc[n][0] * p.scale_log2 - scale_max[0]);
      const float p1 = exp2f(sc[n][1] * p.scale_log2 - scale_max[0]);
      const float p2 = exp2f(sc[n][2] * p.scale_log2 - scale_max[1]);
      const float p3 = exp2f(sc[n][3] * p.scale_log2 - scale_max[1]);
      row_sum[0] += p0 + p1;
      row_sum[1] += p2 + p3;
      // C fragment of n-tiles 2k and 2k+1 is the A fragment of the k-th 16-key slice.
      pf[n / 2][(n & 1) * 2 + 0] = pack_bf16(p0, p1);
      pf[n / 2][(n & 1) * 2 + 1] = pack_bf16(p2, p3);
    }

    // O += P V: P from registers (the C layout of S is the A layout of P), V MN-major in shared
    // memory: 8 keys per 1024-byte group (SBO), 64 head dims per column block (LBO).
    fence_regs(o);
    wgmma_fence();
#pragma unroll
    for (int kk = 0; kk < kBlockK / 16; ++kk) {
      const uint64_t db =
          smem_desc_sw128(&s.v[buf][sw128<kBlockK>(kk * 16, 0)], kBlockK * 128, 1024);
      if constexpr (D == 128)
        wgmma_rs_m64n128_tb(o, pf[kk], db);
      else
        wgmma_rs_m64n64_tb(o, pf[kk], db);
    }
    wgmma_commit();
    wgmma_wait0();
    fence_regs(o);
  }
  cp_async_wait_all();

  // ---- epilogue: normalise and store ----
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    float sum = row_sum[r];
    sum += __shfl_xor_sync(0xffffffffu, sum, 1);
    sum += __shfl_xor_sync(0xffffffffu, sum, 2);
    const float inv = sum > 0.f ? 1.f / sum : 0.f;
    int br, bc;
    const int64_t token = query_token(warp * 16 + g4 + 8 * r, br, bc);
    if (token < 0) continue;
    __nv_bfloat16* dst = p.out + (token * p.heads + head) * D;
#pragma unroll
    for (int n = 0; n < D / 8; ++n) {
      *reinterpret_cast<uint32_t*>(dst + n * 8 + 2 * c4) =
          pack_bf16(o[n][2 * r] * inv, o[n][2 * r + 1] * inv);
    }
  }
}

}  // namespace freeswim::attention::detail
