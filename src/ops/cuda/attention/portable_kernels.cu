// The portable attention kernels: FlashAttention-2's design on instructions every GPU of compute
// capability 8.0 or later has (mma.sync, ldmatrix, cp.async; mma_sync.cuh), for the window over
// row runs and for dense attention, head_dim 64 and 128 (docs/attention.md, "The portable path").
//
// A block is 4 warps answering 128 queries (kBlockQ) of one head: dense, 128 consecutive ones as a
// Hopper block; the window, a group of positions of a zoned plan in every frame (window_plan.h:
// zones group the border positions, whose windows are clamped, by window start). Each warp owns 32
// query rows (two m16 tiles, so each K or V fragment it loads feeds two products). Shared memory
// holds Q and the keys and values of the steps in flight, in one of two shapes (row_steps.h):
//
//   wide (97.5 KB at D = 128; two blocks per SM where the SM has 228 KB: sm_90, sm_100): steps of
//   64 keys, K and V double-buffered together with cp.async:
//     step i:  wait for stage i % 2 -> barrier -> S = Q K^T on stage i % 2, issuing the copies of
//              step i + 1 into the other stage on the way (kIssueAfter) -> mask, online softmax,
//              O += P V
//
//   narrow (48.8 KB at D = 128; two blocks per SM where the SM has 100 KB: sm_86, sm_89, sm_120,
//   and sm_80's 164 KB): steps of 32 keys, one K and one V buffer, each filled while the other is
//   read (FlashAttention-2's sm8x layout, 128 x 32 tiles):
//     step i:  wait for K_i -> barrier -> copies of V_i -> S = Q K_i^T, mask -> wait for V_i ->
//              barrier -> copies of K_i+1 -> online softmax, O += P V_i
//
// A wide block on those SMs would run alone (4 warps, one per scheduler): measured on an H100
// with one block per SM, it lost 14-24% of its rate, narrow blocks at two per SM 0-13%
// (docs/attention.md, "Narrow blocks").
// All 128 threads load (no producer warps: mma.sync needs no register reallocation, and 4 warps
// per block leave room for two blocks per SM). The softmax is the Hopper consumer's: fp32, exp2 of
// pre-scaled scores, a lazy running maximum (consumer.cuh).
#include <type_traits>

#include "ops/cuda/attention/attention.h"
#include "ops/cuda/attention/mma_sync.cuh"
#include "ops/cuda/attention/params.h"
#include "ops/cuda/attention/row_steps.h"
#include "ops/cuda/attention/tile_ring.cuh"

namespace freeswim::attention::portable {
namespace {

using detail::BlockQueries;
using detail::KeyPos;
using detail::Params;

inline constexpr int kThreads = 128;    // 4 warps
inline constexpr int kWarpRows = 32;    // query rows per warp: two m16 tiles
inline constexpr float kLazyMax = 8.f;  // as consumer.cuh: probabilities stay <= 2^8
// After which 16-dim slice of S = Q K^T a step issues the next step's copies (-1: before the
// first). The window issues them after the first quarter of the slices: its loader is integer
// code with branches (row cursor, rectangle changes) that the compiler does not interleave with
// the products, so there its latency overlaps the mma.sync already in flight, and the copies still
// have most of a step to land. Together with the rows' window starts read from shared memory at
// the mask (8 registers freed for the products) this measured 2.4-3.0% more window rate on an
// H100 (docs/attention.md); neither change alone measured clearly better, and issuing after all
// the slices measured 1.4-1.8% worse in an earlier build. Dense's branch-free loader is
// interleaved with the first products by the compiler.
template <int D, bool kWindow>
inline constexpr int kIssueAfter = kWindow ? D / 64 - 1 : -1;
static_assert(kThreads / 32 * kWarpRows == kBlockQ, "the warps cover the block's queries");

// The two block shapes (see the top of this file).
template <bool kNarrow>
struct Shape {
  static constexpr int kStep = kNarrow ? kNarrowStepKeys : kStepKeys;  // keys per step
  static constexpr int kStages = kNarrow ? 1 : 2;                      // K/V buffers
};

// Q and the K/V buffers.
template <int D, bool kNarrow>
struct Tiles {
  static constexpr int kStep = Shape<kNarrow>::kStep, kStages = Shape<kNarrow>::kStages;
  alignas(256) __nv_bfloat16 q[kBlockQ * D];
  alignas(256) __nv_bfloat16 k[kStages][kStep * D];
  alignas(256) __nv_bfloat16 v[kStages][kStep * D];
};
// The rest of a block's shared memory.
template <bool kNarrow>
struct Extras {
  static constexpr int kStep = Shape<kNarrow>::kStep, kStages = Shape<kNarrow>::kStages;
  KeyPos key[kStages][kStep];  // window: key positions of the stage (for the mask)
  KeyPos box[kBlockQ];         // window: each query row's window start (for the mask)
  RectTiles rt;                // window: the block's key rectangles and their tiles
  PositionGroup group;         // window: the block's positions
};
// A wide block's shared memory, all of it dynamic (96 KB of tiles exceed the 48 KB a kernel may
// declare statically).
template <int D>
struct WideSmem : Tiles<D, false>, Extras<false> {};

// The window block's queries: its group of positions (window_plan.h, zones) in every frame, read
// from shared memory (a pointer and the chunk are all a thread keeps).
struct GroupQueries {
  const PositionGroup* group;
  int chunk_q;
  // Token of query row i of the block, or -1 when the row is padding; box start of its window.
  __device__ __forceinline__ int64_t token(const Params& p, int i, int& box_r, int& box_c) const {
    const PositionGroup& grp = *group;
    const int qi = chunk_q * kBlockQ + i;
    const int t = qi / grp.stride, k = qi - t * grp.stride;
    int h, w;
    grp.position(k < grp.count ? k : grp.count - 1, h, w);
    box_r = window_start(h, p.g.H, p.g.dh);
    box_c = window_start(w, p.g.W, p.g.dw);
    if (t >= p.g.T || k >= grp.count) return -1;
    return (int64_t{t} * p.g.H + h) * p.g.W + w;
  }
};
template <bool kWindow>
using Queries = std::conditional_t<kWindow, GroupQueries, BlockQueries<false>>;
// Dynamic shared memory of a block. Wide: WideSmem and the slack that aligns it to 256 bytes at run
// time. Narrow: the Extras alone; its Tiles (48 KB at D = 128) are declared statically, aligned by
// the compiler, so that no slack is needed: two blocks, each with the 1 KB the system keeps, fit
// an SM of 100 KB.
template <int D, bool kNarrow>
inline constexpr int kDynamicSmemBytes = kNarrow ? static_cast<int>(sizeof(Extras<true>))
                                                 : static_cast<int>(sizeof(WideSmem<D>)) + 256;
template <int D, bool kNarrow>
inline constexpr int kStaticSmemBytes = kNarrow ? static_cast<int>(sizeof(Tiles<D, true>)) : 0;
template <int D, bool kNarrow>
inline constexpr int kBlockSmemBytes = kStaticSmemBytes<D, kNarrow> + kDynamicSmemBytes<D, kNarrow>;
// Every target's limit per block (sm_86, sm_89 and sm_120 allow 99 KB; the 1 KB the system keeps
// per block is outside it), so one build serves them all; a kernel may declare 48 KB statically.
static_assert(kBlockSmemBytes<128, false> <= kPortableSmemLimit, "wide D = 128 exceeds 99 KB");
static_assert(kBlockSmemBytes<64, false> <= kPortableSmemLimit, "wide D = 64 exceeds 99 KB");
static_assert(2 * (kBlockSmemBytes<128, true> + kSystemSmemPerBlock) <= kSmallSmSmem,
              "two narrow D = 128 blocks do not fit an SM of 100 KB");
static_assert(kStaticSmemBytes<128, true> <= 48 * 1024, "static shared memory above 48 KB");

// The copies of a block's steps (row_steps.h: which keys each step holds and which thread copies
// which rows). kPerRow threads share a key row: thread tid copies rows tid / kPerRow + i *
// kRowsPerPass of every step, in the 16-byte chunks q + kPerRow j of the row (q = tid % kPerRow).
// The window has 4 threads per row: a warp's copy instruction reads 8 rows x 64 contiguous bytes
// (whole 32-byte sectors) and a thread's cursor moves twice a step, against eight times with one
// chunk per thread (measured on an H200: 2.3-2.8% more window rate). Dense keeps one chunk per
// thread (16 per row at D = 128): its cursor costs nothing, and whole 256-byte rows per instruction
// read 2.6-5% faster than the window's pattern. Only the cursor is kept per thread; the rectangles
// are read from shared memory when needed (the registers go to the warps' accumulators).
template <int D, bool kWindow, bool kNarrow>
struct Loader {
  static constexpr int kStep = Shape<kNarrow>::kStep;
  static constexpr int kPerRow = copy_threads_per_row(kWindow, D);
  static constexpr int kRowsPerPass = kCopyThreads / kPerRow;
  static constexpr int kPasses = kStep / kRowsPerPass;
  static constexpr int kChunksPerThread = D / 8 / kPerRow;
  static_assert(kCopyThreads == kThreads, "every thread copies");
  static_assert(D / 8 % kPerRow == 0 && kStep % kRowsPerPass == 0, "whole chunks and passes");

  const Params& p;
  Tiles<D, kNarrow>& t;
  Extras<kNarrow>& e;
  int tid;
  StepWalkOf<kStep> walk;
  RowCursor cur;  // window; dense keeps the thread's next token in cur.token, its index in cur.idx
  int tok[kPasses];  // narrow: the current step's token of each of the thread's rows (-1: none)

  __device__ __forceinline__ Loader(const Params& p_, Tiles<D, kNarrow>& t_, Extras<kNarrow>& e_,
                                    int tid_)
      : p(p_), t(t_), e(e_), tid(tid_) {}

  __device__ __forceinline__ int keys_from_tile() const {
    if constexpr (kWindow) {
      return walk.keys_from_tile(e.rt, p.g.T);
    } else {
      return walk.keys_from_tile(p.n_kv);
    }
  }

  // The first step (false when the block has none).
  __device__ __forceinline__ bool first() {
    if constexpr (kWindow) {
      if (!walk.start(e.rt)) return false;
      cur.start(e.rt.keys.rect[walk.rect], p.g, tid / kPerRow);
    } else {
      if (!walk.start(p.n_kv)) return false;
      cur.idx = cur.token = tid / kPerRow;
    }
    return true;
  }

  // On to the next step; false after the last.
  __device__ __forceinline__ bool advance() {
    const int moved = walk.advance(keys_from_tile(), kWindow ? e.rt.first : nullptr);
    if (moved == 2) cur.start(e.rt.keys.rect[walk.rect], p.g, tid / kPerRow);
    return moved != 0;
  }

  // Whether the current step needs the mask (every thread walks the steps, so none is stored).
  __device__ __forceinline__ bool masked() const {
    if constexpr (kWindow) {
      return walk.masked(e.rt);
    } else {
      return walk.masked(p.n_kv);
    }
  }

  // Chunk q + kPerRow j of row r sits at chunk (q + kPerRow j) ^ (r % 8), r % 8 the same in every
  // pass (kRowsPerPass is a multiple of 8). In a 256-byte-aligned tile with rows of D * 2 >= 128
  // bytes that is the address of chunk q XOR 16 kPerRow j bytes: with kPerRow = 4 the XOR carries
  // the swizzle's bit 2 over to j, and with kPerRow = D / 8 there is no j > 0.
  __device__ __forceinline__ uint32_t row_at(int pass) const {
    return swizzled<D>(tid / kPerRow, tid % kPerRow) +
           static_cast<uint32_t>(pass * kRowsPerPass * D * 2);
  }
  __device__ __forceinline__ const __nv_bfloat16* head_base(const __nv_bfloat16* x) const {
    return x + int64_t{blockIdx.y} * D + (tid % kPerRow) * 8;
  }
  // The keys of the current step this thread copies, pass i's in rows row_at(i): whether there is
  // one, and its token; the window's key positions for the mask into `stage`; the cursor moves on.
  template <class Row>
  __device__ __forceinline__ void rows(int stage, Row&& row) {
    int n_keys = p.n_kv;
    KeyRect R;
    // Window: whether this thread stores its keys' positions. Only the mask reads them, so wide
    // blocks store them on masked steps only: on an H100 at the power cap that ran the wide window
    // 2.5-3.0% faster (its spills fell from 16 / 28 to 8 / 8 bytes). Narrow blocks store them on
    // every step: there the same test ran 1.3-1.6% slower (docs/attention.md, "The copies").
    bool store_pos = false;
    if constexpr (kWindow) {
      R = e.rt.keys.rect[walk.rect];
      n_keys = static_cast<int>(R.keys(p.g.T));
      store_pos = tid % kPerRow == 0 && (kNarrow || masked());
    }
#pragma unroll
    for (int i = 0; i < kPasses; ++i) {
      const bool valid = cur.idx < n_keys;
      row(i, valid, cur.token);
      if constexpr (kWindow) {
        if (store_pos)
          detail::store_key_pos(&e.key[stage][tid / kPerRow + i * kRowsPerPass],
                                detail::make_key_pos(valid, cur.kr, cur.kc));
        cur.step(R, p.g, kRowsPerPass);
      } else {
        cur.idx += kRowsPerPass;
        cur.token += kRowsPerPass;
      }
    }
  }
  // The thread's chunks of one key row (zeros when !valid).
  __device__ __forceinline__ void copy_row(uint32_t dst, const __nv_bfloat16* base, int64_t off,
                                           bool valid) const {
#pragma unroll
    for (int j = 0; j < kChunksPerThread; ++j)
      cp_async16(dst ^ (j * kPerRow * 16), base + off + j * kPerRow * 8, valid);
  }

  // Wide: the copies of the current step's K and V into `stage`, and the key positions of the
  // window's mask.
  __device__ __forceinline__ void issue(int stage) {
    const int64_t token_stride = int64_t{p.heads} * D;  // elements between consecutive tokens
    const __nv_bfloat16* kbase = head_base(p.k);
    const __nv_bfloat16* vbase = head_base(p.v);
    const uint32_t kdst = smem_u32(t.k[stage]), vdst = smem_u32(t.v[stage]);
    rows(stage, [&](int i, bool valid, int token) {
      const int64_t off = valid ? token * token_stride : 0;
      copy_row(kdst + row_at(i), kbase, off, valid);
      copy_row(vdst + row_at(i), vbase, off, valid);
    });
  }

  // Narrow: the copies of the current step's K (and the key positions of the window's mask); the
  // step's rows are kept for issue_v.
  __device__ __forceinline__ void issue_k() {
    const int64_t token_stride = int64_t{p.heads} * D;
    const __nv_bfloat16* kbase = head_base(p.k);
    const uint32_t kdst = smem_u32(t.k[0]);
    rows(0, [&](int i, bool valid, int token) {
      tok[i] = valid ? token : -1;
      copy_row(kdst + row_at(i), kbase, valid ? token * token_stride : 0, valid);
    });
  }
  // Narrow: the copies of V for the step issue_k copied K of.
  __device__ __forceinline__ void issue_v() {
    const int64_t token_stride = int64_t{p.heads} * D;
    const __nv_bfloat16* vbase = head_base(p.v);
    const uint32_t vdst = smem_u32(t.v[0]);
#pragma unroll
    for (int i = 0; i < kPasses; ++i)
      copy_row(vdst + row_at(i), vbase, tok[i] >= 0 ? tok[i] * token_stride : 0, tok[i] >= 0);
  }

  // Q: the block's 128 query rows (padding rows zero).
  __device__ __forceinline__ void issue_q(const Queries<kWindow>& bq, int head) {
    const int q = tid % kPerRow;
    const uint32_t qdst = smem_u32(t.q);
    for (int row = tid / kPerRow; row < kBlockQ; row += kRowsPerPass) {
      int br, bc;
      const int64_t token_q = bq.token(p, row, br, bc);
      if constexpr (kWindow)
        if (q == 0) detail::store_key_pos(&e.box[row], detail::make_key_pos(true, br, bc));
      const int64_t off = token_q >= 0 ? (token_q * p.heads + head) * D + q * 8 : 0;
      copy_row(qdst + swizzled<D>(row, q), p.q, off, token_q >= 0);
    }
  }
};

// One warp's 32 query rows: thread (g = lane / 4, c4 = lane % 4) holds rows
// warp * 32 + mi * 16 + g + 8 r for mi, r in {0, 1}; o[mi][n] are columns 8 n + 2 c4 (+1) of
// those rows (the mma accumulator layout), S alike over the step's kStep keys.
template <int D, bool kWindow, bool kNarrow>
struct WarpRows {
  static constexpr int kStep = Shape<kNarrow>::kStep;
  using Scores = float[2][kStep / 8][4];
  const Params& p;
  int lane, c4, row0;  // row0: the lane's first query row (warp * 32 + lane / 4)
  float o[2][D / 8][4];
  float row_max[2][2], row_sum[2][2];
  // ldmatrix addresses (bytes in shared memory) of the lane's row and chunk parity, per operand.
  uint32_t q_addr, k_addr, v_addr;

  __device__ __forceinline__ WarpRows(const Params& p_, const Tiles<D, kNarrow>& s, int warp,
                                      int lane_)
      : p(p_), lane(lane_), c4(lane_ % 4), row0(warp * kWarpRows + lane_ / 4) {
    const int l7 = lane & 7;
    // A fragments of Q (rows warp * 32 + mi * 16 + lane % 16, chunk 2 kk + lane / 16), B
    // fragments of K (keys n2 * 16 + lane % 8 + 8 (lane / 16), chunk 2 kk + (lane / 8) % 2) and of
    // V through .trans (keys kk * 16 + lane % 8 + 8 ((lane / 8) % 2), chunk 2 n2 + lane / 16).
    // Every row index is lane % 8 modulo 8, so the swizzled chunk is (2 x + bit) ^ (lane % 8) =
    // 2 x ^ (bit ^ lane % 8) (2 x has bit 0 clear). The tiles are 256-byte aligned and their rows
    // D * 2 >= 128 bytes, so the chunk's bits of an address are those of the chunk alone and the
    // address of chunk 2 x is the lane's address of chunk 0 XOR (2 x) * 16: one instruction with
    // an immediate, no register per x.
    q_addr = smem_u32(s.q) + (warp * kWarpRows + (lane & 15)) * (D * 2) + (((lane >> 4) ^ l7) << 4);
    k_addr = smem_u32(s.k[0]) + ((lane & 7) + ((lane >> 4) << 3)) * (D * 2) +
             ((((lane >> 3) & 1) ^ l7) << 4);
    v_addr = smem_u32(s.v[0]) + ((lane & 7) + (((lane >> 3) & 1) << 3)) * (D * 2) +
             (((lane >> 4) ^ l7) << 4);
#pragma unroll
    for (int mi = 0; mi < 2; ++mi)
#pragma unroll
      for (int r = 0; r < 2; ++r) {
        row_max[mi][r] = -INFINITY;
        row_sum[mi][r] = 0.f;
      }
#pragma unroll
    for (int mi = 0; mi < 2; ++mi)
#pragma unroll
      for (int n = 0; n < D / 8; ++n) o[mi][n][0] = o[mi][n][1] = o[mi][n][2] = o[mi][n][3] = 0.f;
  }

  static constexpr int kStageBytes = kStep * D * 2;

  // One wide step on `stage`: key_base is the step's first key (dense mask), masked whether it
  // needs the mask. issue_next() is called once, after Q K^T's 16-dim slice kIssueAfter (-1:
  // before the first).
  template <int kIssueAfter, class IssueNext>
  __device__ __forceinline__ void step(const Extras<kNarrow>& e, int stage, bool masked,
                                       int key_base, IssueNext&& issue_next) {
    Scores sc;
    scores<kIssueAfter>(stage, sc, issue_next);
    if (masked) mask(e, stage, key_base, sc);
    accumulate(stage, sc);
  }

  // S = Q K^T of the step in `stage`; issue_next() is called once, after the 16-dim slice
  // kIssueAfter (-1: before the first).
  template <int kIssueAfter, class IssueNext>
  __device__ __forceinline__ void scores(int stage, Scores& sc, IssueNext&& issue_next) const {
    if constexpr (kIssueAfter < 0) issue_next();
#pragma unroll
    for (int mi = 0; mi < 2; ++mi)
#pragma unroll
      for (int n = 0; n < kStep / 8; ++n)
        sc[mi][n][0] = sc[mi][n][1] = sc[mi][n][2] = sc[mi][n][3] = 0.f;
    // Per 16 head dims, the warp's two Q fragments against the step's keys.
    const uint32_t kst = k_addr + stage * kStageBytes;
#pragma unroll
    for (int kk = 0; kk < D / 16; ++kk) {
      uint32_t qa[2][4];
#pragma unroll
      for (int mi = 0; mi < 2; ++mi) ldmatrix_x4(qa[mi], (q_addr + mi * 16 * (D * 2)) ^ (kk << 5));
#pragma unroll
      for (int n2 = 0; n2 < kStep / 16; ++n2) {
        uint32_t kb[4];
        ldmatrix_x4(kb, (kst + n2 * 16 * (D * 2)) ^ (kk << 5));
#pragma unroll
        for (int mi = 0; mi < 2; ++mi) {
          mma_16816(sc[mi][2 * n2], qa[mi], kb[0], kb[1]);
          mma_16816(sc[mi][2 * n2 + 1], qa[mi], kb[2], kb[3]);
        }
      }
      if constexpr (kIssueAfter >= 0)
        if (kk == kIssueAfter) issue_next();
    }
  }

  // The online softmax of the step's scores and O += P V on `stage`.
  __device__ __forceinline__ void accumulate(int stage, Scores& sc) {
    // Online softmax with the lazy maximum of consumer.cuh: the maximum moves only when the step's
    // exceeds it by more than kLazyMax (always on the first step with a visible key), so O's
    // rescale is skipped by the whole warp on almost every step.
    float alpha[2][2], use_max[2][2];
    bool rescale = false;
#pragma unroll
    for (int mi = 0; mi < 2; ++mi)
#pragma unroll
      for (int r = 0; r < 2; ++r) {
        float mx = -INFINITY;
#pragma unroll
        for (int n = 0; n < kStep / 8; ++n)
          mx = fmaxf(mx, fmaxf(sc[mi][n][2 * r], sc[mi][n][2 * r + 1]));
        mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
        mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
        const float cand = mx * p.scale_log2;
        if (cand > row_max[mi][r] + kLazyMax) {
          alpha[mi][r] = exp2_ftz(row_max[mi][r] - cand);  // 0 when the old maximum is -inf
          row_max[mi][r] = cand;
          row_sum[mi][r] *= alpha[mi][r];
          rescale = true;
        } else {
          alpha[mi][r] = 1.f;
        }
        // A row that has seen only masked keys keeps max -inf; 0 makes exp2 give 0, not NaN.
        use_max[mi][r] = row_max[mi][r] == -INFINITY ? 0.f : row_max[mi][r];
      }
    if (__any_sync(0xffffffffu, rescale)) {
#pragma unroll
      for (int mi = 0; mi < 2; ++mi)
#pragma unroll
        for (int n = 0; n < D / 8; ++n)
#pragma unroll
          for (int e = 0; e < 4; ++e) o[mi][n][e] *= alpha[mi][e / 2];
    }
    // P in bf16 as A fragments: S's n-tiles 2 kk and 2 kk + 1 are the kk-th 16-key slice.
    uint32_t pf[2][kStep / 16][4];
#pragma unroll
    for (int mi = 0; mi < 2; ++mi)
#pragma unroll
      for (int n = 0; n < kStep / 8; ++n) {
        float e4[4];
#pragma unroll
        for (int e = 0; e < 4; ++e) {
          e4[e] = exp2_ftz(fmaf(sc[mi][n][e], p.scale_log2, -use_max[mi][e / 2]));
          row_sum[mi][e / 2] += e4[e];
        }
        pf[mi][n / 2][(n & 1) * 2 + 0] = pack_bf16(e4[0], e4[1]);
        pf[mi][n / 2][(n & 1) * 2 + 1] = pack_bf16(e4[2], e4[3]);
      }

    // O += P V: per 16 keys, V's fragments of 16 head dims against both row tiles.
    const uint32_t vst = v_addr + stage * kStageBytes;
#pragma unroll
    for (int kk = 0; kk < kStep / 16; ++kk)
#pragma unroll
      for (int n2 = 0; n2 < D / 16; ++n2) {
        uint32_t vb[4];
        ldmatrix_x4_trans(vb, (vst + kk * 16 * (D * 2)) ^ (n2 << 5));
#pragma unroll
        for (int mi = 0; mi < 2; ++mi) {
          mma_16816(o[mi][2 * n2], pf[mi][kk], vb[0], vb[1]);
          mma_16816(o[mi][2 * n2 + 1], pf[mi][kk], vb[2], vb[3]);
        }
      }
  }

  // Element (mi, n, e) is key 8 n + 2 c4 + (e % 2) of the step for row (mi, e / 2).
  __device__ __forceinline__ void mask(const Extras<kNarrow>& s, int stage, int key_base,
                                       Scores& sc) const {
    if constexpr (kWindow) {
      const int eh = window_extent(p.g.H, p.g.dh), ew = window_extent(p.g.W, p.g.dw);
      // The rows' window starts are read here, not kept in registers through the products.
      int box_r[2][2], box_c[2][2];
#pragma unroll
      for (int mi = 0; mi < 2; ++mi)
#pragma unroll
        for (int r = 0; r < 2; ++r) {
          const KeyPos b = s.box[row0 + mi * 16 + 8 * r];
          box_r[mi][r] = b.r;
          box_c[mi][r] = b.c;
        }
#pragma unroll
      for (int n = 0; n < kStep / 8; ++n)
#pragma unroll
        for (int e = 0; e < 2; ++e) {
          const KeyPos kp = s.key[stage][n * 8 + 2 * c4 + e];
          const int kr = kp.r, kc = kp.c;
#pragma unroll
          for (int mi = 0; mi < 2; ++mi)
#pragma unroll
            for (int r = 0; r < 2; ++r) {
              const bool vis =
                  static_cast<unsigned>(kr - box_r[mi][r]) < static_cast<unsigned>(eh) &&
                  static_cast<unsigned>(kc - box_c[mi][r]) < static_cast<unsigned>(ew);
              if (!vis) sc[mi][n][2 * r + e] = -INFINITY;
            }
        }
    } else {
      const int k0 = key_base + 2 * c4 - p.n_kv;
#pragma unroll
      for (int n = 0; n < kStep / 8; ++n)
#pragma unroll
        for (int e = 0; e < 4; ++e)
          if (k0 + n * 8 + (e & 1) >= 0) sc[0][n][e] = sc[1][n][e] = -INFINITY;
    }
  }

  // Normalises the rows and stores them (bf16) where their tokens go.
  __device__ __forceinline__ void store(const Queries<kWindow>& bq, int warp, int head) {
    const int g = lane / 4;
#pragma unroll
    for (int mi = 0; mi < 2; ++mi)
#pragma unroll
      for (int r = 0; r < 2; ++r) {
        float sum = row_sum[mi][r];
        sum += __shfl_xor_sync(0xffffffffu, sum, 1);
        sum += __shfl_xor_sync(0xffffffffu, sum, 2);
        const float inv = sum > 0.f ? 1.f / sum : 0.f;
        int br, bc;
        const int64_t token = bq.token(p, warp * kWarpRows + mi * 16 + g + 8 * r, br, bc);
        if (token < 0) continue;
        __nv_bfloat16* dst = p.out + (token * p.heads + head) * D + 2 * c4;
#pragma unroll
        for (int n = 0; n < D / 8; ++n) {
          const uint32_t v = pack_bf16(o[mi][n][2 * r] * inv, o[mi][n][2 * r + 1] * inv);
          *reinterpret_cast<uint32_t*>(dst + n * 8) = v;
        }
      }
  }
};

// The window block's group (its positions and key rectangles) into shared memory.
template <bool kWindow, bool kNarrow>
__device__ __forceinline__ Queries<kWindow> block_queries(const Params& p, Extras<kNarrow>& e,
                                                          int tid) {
  Queries<kWindow> bq;
  if constexpr (kWindow) {
    bq.group = &e.group;
    bq.chunk_q = static_cast<int>(blockIdx.x % p.plan.chunks);
    if (tid == 0) {
      const PositionGroup grp = plan_group(p.plan, static_cast<int>(blockIdx.x / p.plan.chunks));
      e.group = grp;
      e.rt.init(p.g, group_keys(p.g, grp));
    }
    __syncthreads();
  }
  return bq;
}

// kWindow: the window over row runs (p.plan, box_w = 0, zones as choose_zoned_plan makes them);
// else dense attention. A wide block.
template <int D, bool kWindow>
__global__ void __launch_bounds__(kThreads, 2) attention_kernel(const __grid_constant__ Params p) {
  extern __shared__ __align__(16) unsigned char smem_raw[];
  // Aligned by adding to the extern pointer itself, so the compiler keeps knowing it is shared.
  WideSmem<D>& s =
      *reinterpret_cast<WideSmem<D>*>(smem_raw + ((256u - (smem_u32(smem_raw) & 255u)) & 255u));
  const int head = blockIdx.y;
  const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32;
  const Queries<kWindow> bq = block_queries<kWindow>(p, s, tid);

  Loader<D, kWindow, false> ld(p, s, s, tid);
  WarpRows<D, kWindow, false> rows(p, s, warp, lane);
  ld.issue_q(bq, head);
  bool more = ld.first();
  if (more) ld.issue(0);
  cp_async_commit();
  for (int i = 0; more; ++i) {
    const int stage = i & 1;
    // The walk is at this step until issue_next() moves it on, inside step().
    const int key_base = ld.walk.first_key();  // dense
    const bool masked = ld.masked();
    cp_async_wait<0>();  // this step's copies (and Q) have landed, for this thread's copies
    __syncthreads();     // ... and everyone's; every warp is done with the other stage
    rows.template step<kIssueAfter<D, kWindow>>(s, stage, masked, key_base, [&] {
      more = ld.advance();
      if (more) ld.issue(stage ^ 1);
      cp_async_commit();
    });
  }
  cp_async_wait<0>();  // nothing in flight behind an exiting thread (a block without steps)
  rows.store(bq, warp, head);
}

// The same with a narrow block: Q and one K and one V buffer in static shared memory, the rest
// dynamic.
template <int D, bool kWindow>
__global__ void __launch_bounds__(kThreads, 2)
    narrow_attention_kernel(const __grid_constant__ Params p) {
  __shared__ Tiles<D, true> t;
  extern __shared__ __align__(16) unsigned char smem_raw[];
  Extras<true>& e = *reinterpret_cast<Extras<true>*>(smem_raw);
  const int head = blockIdx.y;
  const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32;
  const Queries<kWindow> bq = block_queries<kWindow>(p, e, tid);

  Loader<D, kWindow, true> ld(p, t, e, tid);
  WarpRows<D, kWindow, true> rows(p, t, warp, lane);
  ld.issue_q(bq, head);
  bool more = ld.first();
  if (more) ld.issue_k();
  cp_async_commit();
  while (more) {
    cp_async_wait<0>();  // K (and Q) of this step have landed, for this thread's copies
    __syncthreads();     // ... and everyone's; every warp is done with the last step's V
    ld.issue_v();
    cp_async_commit();
    typename WarpRows<D, kWindow, true>::Scores sc;
    rows.template scores<-1>(0, sc, [] {});
    if (ld.masked()) rows.mask(e, 0, ld.walk.first_key(), sc);
    cp_async_wait<0>();  // this step's V has landed, for this thread's copies
    __syncthreads();     // ... and everyone's; every warp is done with K and the key positions
    more = ld.advance();
    if (more) ld.issue_k();
    cp_async_commit();
    rows.accumulate(0, sc);
  }
  cp_async_wait<0>();
  rows.store(bq, warp, head);
}

// Dynamic shared memory a launch gives each block: what the block needs (blocks_per_sm 0), or
// (blocks_per_sm 1) just over half of the SM's, so that two blocks, each with the 1 KB the system
// keeps per block, exceed it and one block only is resident per SM.
inline cudaError_t launch_smem_bytes(int needed, int static_bytes, int blocks_per_sm, int& bytes) {
  bytes = needed;
  if (blocks_per_sm != 1) return cudaSuccess;
  int dev = 0, per_sm = 0;
  cudaError_t e = cudaGetDevice(&dev);
  if (e == cudaSuccess)
    e = cudaDeviceGetAttribute(&per_sm, cudaDevAttrMaxSharedMemoryPerMultiprocessor, dev);
  if (e != cudaSuccess) return e;
  const int pad = per_sm / 2 + 1 - static_bytes;
  bytes = needed > pad ? needed : pad;
  return cudaSuccess;
}

// Whether blocks are narrow where the caller leaves it to the kernels (narrow < 0): narrow where
// two wide blocks do not fit in an SM's shared memory (sm_80 at D = 128, sm_86, sm_89, sm_120),
// wide where they do (sm_90, sm_100: 228 KB).
template <int D>
cudaError_t block_shape(int requested, bool& narrow) {
  if (requested >= 0) {
    narrow = requested != 0;
    return cudaSuccess;
  }
  int dev = 0, per_sm = 0;
  cudaError_t e = cudaGetDevice(&dev);
  if (e == cudaSuccess)
    e = cudaDeviceGetAttribute(&per_sm, cudaDevAttrMaxSharedMemoryPerMultiprocessor, dev);
  if (e != cudaSuccess) return e;
  narrow = 2 * (kBlockSmemBytes<D, false> + kSystemSmemPerBlock) > per_sm;
  return cudaSuccess;
}

template <class Kernel>
cudaError_t launch(Kernel kernel, int smem_bytes, int static_bytes, dim3 grid, cudaStream_t stream,
                   const Params& p, int blocks_per_sm) {
  cudaError_t e = launch_smem_bytes(smem_bytes, static_bytes, blocks_per_sm, smem_bytes);
  if (e != cudaSuccess) return e;
  // The opt-in above 48 KB is per kernel and per device; setting it again is cheap.
  e = cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, smem_bytes);
  if (e != cudaSuccess) return e;
  e = cudaFuncSetAttribute(kernel, cudaFuncAttributePreferredSharedMemoryCarveout,
                           cudaSharedmemCarveoutMaxShared);
  if (e != cudaSuccess) return e;
  kernel<<<grid, kThreads, smem_bytes, stream>>>(p);
  return cudaGetLastError();
}

template <int D, bool kWindow, bool kNarrow>
auto kernel_of() {
  if constexpr (kNarrow) {
    return narrow_attention_kernel<D, kWindow>;
  } else {
    return attention_kernel<D, kWindow>;
  }
}

template <int D, bool kNarrow>
cudaError_t launch_shape(const Params& p, bool window, dim3 grid, cudaStream_t stream,
                         int blocks_per_sm) {
  constexpr int dyn = kDynamicSmemBytes<D, kNarrow>, st = kStaticSmemBytes<D, kNarrow>;
  return window ? launch(kernel_of<D, true, kNarrow>(), dyn, st, grid, stream, p, blocks_per_sm)
                : launch(kernel_of<D, false, kNarrow>(), dyn, st, grid, stream, p, blocks_per_sm);
}

template <int D>
cudaError_t launch_d(const Params& p, bool window, dim3 grid, cudaStream_t stream,
                     int blocks_per_sm, int narrow) {
  bool n = false;
  const cudaError_t e = block_shape<D>(narrow, n);
  if (e != cudaSuccess) return e;
  return n ? launch_shape<D, true>(p, window, grid, stream, blocks_per_sm)
           : launch_shape<D, false>(p, window, grid, stream, blocks_per_sm);
}

template <int D, bool kWindow, bool kNarrow>
PortableKernel report(const char* name, int blocks_per_sm) {
  const auto kernel = kernel_of<D, kWindow, kNarrow>();
  PortableKernel k;
  k.name = name;
  k.threads = kThreads;
  int smem_bytes = kDynamicSmemBytes<D, kNarrow>;
  k.status = launch_smem_bytes(smem_bytes, kStaticSmemBytes<D, kNarrow>, blocks_per_sm, smem_bytes);
  k.dynamic_smem = smem_bytes;
  if (k.status == cudaSuccess) k.status = cudaFuncGetAttributes(&k.attributes, kernel);
  if (k.status == cudaSuccess)
    k.status =
        cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, smem_bytes);
  if (k.status == cudaSuccess)
    k.status = cudaOccupancyMaxActiveBlocksPerMultiprocessor(&k.blocks_per_sm, kernel, kThreads,
                                                             static_cast<size_t>(smem_bytes));
  if (k.status != cudaSuccess) cudaGetLastError();
  return k;
}

}  // namespace
}  // namespace freeswim::attention::portable

namespace freeswim::attention {

namespace detail {
cudaError_t launch_portable(const Params& p, bool window, int head_dim, dim3 grid,
                            cudaStream_t stream, int blocks_per_sm, int narrow) {
  if (head_dim == 64) return portable::launch_d<64>(p, window, grid, stream, blocks_per_sm, narrow);
  if (head_dim == 128)
    return portable::launch_d<128>(p, window, grid, stream, blocks_per_sm, narrow);
  return cudaErrorInvalidValue;
}

cudaError_t portable_narrow_blocks(int head_dim, bool& narrow) {
  narrow = false;
  if (head_dim == 64) return portable::block_shape<64>(-1, narrow);
  if (head_dim == 128) return portable::block_shape<128>(-1, narrow);
  return cudaErrorInvalidValue;
}
}  // namespace detail

std::vector<PortableKernel> portable_kernels(int blocks_per_sm) {
  using portable::report;
  const int b = blocks_per_sm;
  return {report<64, true, false>("window_d64", b),
          report<64, false, false>("dense_d64", b),
          report<128, true, false>("window_d128", b),
          report<128, false, false>("dense_d128", b),
          report<64, true, true>("narrow_window_d64", b),
          report<64, false, true>("narrow_dense_d64", b),
          report<128, true, true>("narrow_window_d128", b),
          report<128, false, true>("narrow_dense_d128", b)};
}

}  // namespace freeswim::attention
