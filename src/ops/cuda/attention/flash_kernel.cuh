// Attention forward kernel shared by the window and the dense entry points: FlashAttention-2
// structure (online softmax in registers, fp32 statistics) on mma.sync m16n8k16 bf16 tensor-core
// instructions, K/V tiles gathered token by token with cp.async into a double buffer.
//
// The two uses differ only in which tokens a block's query rows and key tiles are:
//  - dense:  query rows m0.., key tiles over 0..n_kv-1;
//  - window: query rows are (frame, patch position) pairs of one spatial patch, key tiles run
//            over the patch's five key rectangles (window_plan.h); only the fringe rectangles
//            and each rectangle's last, partial tile need a mask.
// Layout of q, k, v, out: [tokens, heads, D] bf16, so token i of head h starts at
// (i * heads + h) * D; offsets are 64-bit (4K grids with 40 heads exceed 2^31 elements).
#pragma once

#include <cuda_bf16.h>

#include <cstdint>

#include "freeswim/window_geometry.h"
#include "ops/cuda/attention/params.h"
#include "ops/cuda/attention/window_plan.h"

namespace freeswim::attention::detail {

// Visibility data of one key in shared memory: its row and column, or a far-away position for
// padding keys so that every range test fails.
struct KeyPos {
  int r, c;
};
inline constexpr int kFar = -(1 << 28);
// The same in 16 bits, for the wide kernels whose shared memory is full to the byte: grids are
// limited to 16383 rows and columns there (attention.cpp checks), and the far value keeps every
// range test failing (its distance to any box start exceeds every extent).
struct KeyPos16 {
  int16_t r, c;
};
inline constexpr int kFar16 = -16384;
template <typename KP>
__device__ __forceinline__ KP make_key_pos(bool valid, int r, int c) {
  if constexpr (sizeof(KP) == sizeof(KeyPos16)) {
    return valid ? KP{static_cast<int16_t>(r), static_cast<int16_t>(c)}
                 : KP{static_cast<int16_t>(kFar16), static_cast<int16_t>(kFar16)};
  } else {
    return valid ? KP{r, c} : KP{kFar, kFar};
  }
}

// Where the block's key tiles come from: tile j lies in rectangle rect_of(j).
struct KeyTiles {
  PatchKeys keys;  // window only
  int first[6];    // first tile of each rectangle; first[5] = total tiles
  __device__ int rect_of(int j) const {
    int r = 0;
#pragma unroll
    for (int i = 1; i < 5; ++i) r += (j >= first[i]) ? 1 : 0;
    return r;
  }
};

// K/V tiles in flight: tile j is computed while j+1 and j+2 load; two tiles of prefetch hide the
// latency of gathers that miss L2 with one block per SM.
inline constexpr int kStages = 3;

template <int D>
struct Smem {
  __nv_bfloat16 q[kBlockQ * D];
  __nv_bfloat16 k[kStages][kBlockK * D];
  __nv_bfloat16 v[kStages][kBlockK * D];
  KeyPos key[kStages][kBlockK];
  KeyTiles kt;  // in shared memory: indexed by run-time rectangle, so not in registers
};

// Rows of D bf16 are stored in 16-byte chunks XOR-swizzled by the row's low 3 bits, so that the
// 8 rows one ldmatrix reads fall in 8 different bank groups.
template <int D>
__device__ __forceinline__ int swz(int row, int chunk) {
  return row * D + ((chunk ^ (row & 7)) << 3);
}

__device__ __forceinline__ uint32_t smem_u32(const void* p) {
  return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}

// 16-byte async copy; src_bytes = 0 writes zeros (padding rows must be finite: P * V with P = 0).
__device__ __forceinline__ void cp_async16(void* dst, const void* src, bool valid) {
  const int n = valid ? 16 : 0;
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(smem_u32(dst)), "l"(src),
               "r"(n));
}
__device__ __forceinline__ void cp_async_commit() {
  asm volatile("cp.async.commit_group;\n");
}
__device__ __forceinline__ void cp_async_wait_all() {
  asm volatile("cp.async.wait_group 0;\n");
}
__device__ __forceinline__ void cp_async_wait_one() {
  asm volatile("cp.async.wait_group 1;\n");
}

__device__ __forceinline__ void ldmatrix_x4(uint32_t (&r)[4], const void* p) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(smem_u32(p)));
}
__device__ __forceinline__ void ldmatrix_x4_trans(uint32_t (&r)[4], const void* p) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(smem_u32(p)));
}

__device__ __forceinline__ void mma_bf16(float (&c)[4], const uint32_t (&a)[4], uint32_t b0,
                                         uint32_t b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, "
      "{%8,%9}, {%0,%1,%2,%3};\n"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

__device__ __forceinline__ uint32_t pack_bf16(float lo, float hi) {
  __nv_bfloat162 h = __floats2bfloat162_rn(lo, hi);
  return *reinterpret_cast<uint32_t*>(&h);
}

template <int D, bool kWindow>
__device__ __forceinline__ void load_kv_tile(const Params& p, const KeyTiles& kt, int head, int j,
                                             Smem<D>& s, int buf) {
  constexpr int kChunks = D / 8;  // 16-byte chunks per row
  constexpr int kRowsPerPass = kThreads / kChunks;
  const int tid = threadIdx.x;
  const int chunk = tid % kChunks;
  // Token counts fit in int (checked by the launcher), so the index arithmetic is 32-bit.
  int rect = 0;
  int local0;
  if constexpr (kWindow) {
    rect = kt.rect_of(j);
    local0 = (j - kt.first[rect]) * kBlockK;
  } else {
    local0 = j * kBlockK;
  }
  // Window keys: decode (frame, row, column) of the thread's first key once, then step by
  // kRowsPerPass without dividing (the loop below visits keys row0, row0 + kRowsPerPass, ...).
  int t = 0, kr = 0, kc = 0;
  const KeyRect R = kWindow ? kt.keys.rect[rect] : KeyRect{};
  const int cols = R.c1 - R.c0;
  int n_keys = p.n_kv;
  if constexpr (kWindow) {
    n_keys = static_cast<int>(R.keys(p.g.T));
    const int idx = local0 + tid / kChunks;
    if (idx < n_keys) {
      const int per_frame = (R.r1 - R.r0) * cols;
      t = idx / per_frame;
      const int rem = idx - t * per_frame;
      kr = R.r0 + rem / cols;
      kc = R.c0 + rem % cols;
    }
  }
#pragma unroll
  for (int i = 0; i < kBlockK / kRowsPerPass; ++i) {
    const int row = tid / kChunks + i * kRowsPerPass;
    const int idx = local0 + row;
    const bool valid = idx < n_keys;
    int64_t token = idx;
    if constexpr (kWindow) {
      if (i > 0) {
        kc += kRowsPerPass;
        while (kc >= R.c1) {
          kc -= cols;
          if (++kr == R.r1) {
            kr = R.r0;
            ++t;
          }
        }
      }
      token = (int64_t{t} * p.g.H + kr) * p.g.W + kc;
    }
    const int64_t off = (token * p.heads + head) * D + chunk * 8;
    cp_async16(&s.k[buf][swz<D>(row, chunk)], p.k + (valid ? off : 0), valid);
    cp_async16(&s.v[buf][swz<D>(row, chunk)], p.v + (valid ? off : 0), valid);
    if (chunk == 0)
      s.key[buf][row] = valid ? KeyPos{kWindow ? kr : 0, kWindow ? kc : 0} : KeyPos{kFar, kFar};
  }
}

// One block: kBlockQ query rows of one head against all its key tiles.
template <int D, bool kWindow>
__global__ void __launch_bounds__(kThreads, 1) attention_kernel(const __grid_constant__ Params p) {
  extern __shared__ __align__(128) unsigned char smem_raw[];
  Smem<D>& s = *reinterpret_cast<Smem<D>*>(smem_raw);
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
    cp_async16(&s.q[swz<D>(row, chunk)], p.q + (token >= 0 ? off : 0), token >= 0);
  }
  if (n_tiles > 0) load_kv_tile<D, kWindow>(p, kt, head, 0, s, 0);
  cp_async_commit();
  if (n_tiles > 1) load_kv_tile<D, kWindow>(p, kt, head, 1, s, 1);
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
  uint32_t qf[D / 16][4];

  for (int j = 0; j < n_tiles; ++j) {
    const int buf = j % kStages;
    cp_async_wait_one();  // tile j has landed (j + 1 may still be in flight)
    __syncthreads();      // ... for every thread; and all are done with tile j - 1's buffer
    if (j + 2 < n_tiles) load_kv_tile<D, kWindow>(p, kt, head, j + 2, s, (j + 2) % kStages);
    cp_async_commit();  // possibly empty: keeps one group per tile for the wait above
    if (j == 0) {
#pragma unroll
      for (int kk = 0; kk < D / 16; ++kk)
        ldmatrix_x4(qf[kk], &s.q[swz<D>(warp * 16 + (lane & 15), kk * 2 + (lane >> 4))]);
    }

    // S = Q K^T for this warp's 16 rows and the tile's 64 keys.
    float sc[kBlockK / 8][4];
#pragma unroll
    for (int n = 0; n < kBlockK / 8; ++n) sc[n][0] = sc[n][1] = sc[n][2] = sc[n][3] = 0.f;
#pragma unroll
    for (int kk = 0; kk < D / 16; ++kk) {
#pragma unroll
      for (int n2 = 0; n2 < kBlockK / 16; ++n2) {
        uint32_t b[4];
        const int key = n2 * 16 + (lane & 7) + ((lane >> 4) << 3);
        ldmatrix_x4(b, &s.k[buf][swz<D>(key, kk * 2 + ((lane >> 3) & 1))]);
        mma_bf16(sc[2 * n2], qf[kk], b[0], b[1]);
        mma_bf16(sc[2 * n2 + 1], qf[kk], b[2], b[3]);
      }
    }

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

    // O += P V
#pragma unroll
    for (int kk = 0; kk < kBlockK / 16; ++kk) {
#pragma unroll
      for (int n2 = 0; n2 < D / 16; ++n2) {
        uint32_t b[4];
        const int key = kk * 16 + (lane & 7) + (((lane >> 3) & 1) << 3);
        ldmatrix_x4_trans(b, &s.v[buf][swz<D>(key, n2 * 2 + (lane >> 4))]);
        mma_bf16(o[2 * n2], pf[kk], b[0], b[1]);
        mma_bf16(o[2 * n2 + 1], pf[kk], b[2], b[3]);
      }
    }
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
