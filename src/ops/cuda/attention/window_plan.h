// How the window attention kernels tile FreeSwim's inward window. Shared by the host launcher, the
// kernels, the benchmark and the tests, so that the counted work is the work the kernels do.
//
// A block answers a small spatial patch (ph x pw positions) in every frame: all its queries see
// keys of every frame, and the patch's positions see boxes that differ only by small shifts, so
// the block's keys are one dense union box per frame. Two ways to cut that union into tiles of
// kTileKeys keys, each with its own kernel:
//   - row runs: the union split into a core rectangle seen by every position of the patch (no
//     mask) and up to four fringe bands (masked); each rectangle read in runs of 128 keys in
//     (frame, row, column) order, gathered row by row by cp.async;
//   - box tiles: the union covered by boxes of box_w columns x 128 / box_w rows of one frame, each
//     one TMA copy; more masked pairs, but no gather.
// choose_window_plan() picks between them.
#pragma once

#include <cstdint>

#include "core/host_device.h"
#include "freeswim/window_geometry.h"

namespace freeswim::attention {

inline constexpr int kBlockQ = 128;    // queries per block (2 consumer warpgroups x 64 rows)
inline constexpr int kTileKeys = 128;  // keys per K/V tile (S of a warpgroup is m64n128)

// One rectangle of key positions [r0, r1) x [c0, c1), taken in all T frames.
struct KeyRect {
  int r0 = 0, r1 = 0, c0 = 0, c1 = 0;
  FS_HOST_DEVICE int64_t keys(int T) const { return int64_t{T} * (r1 - r0) * (c1 - c0); }
};

// The five key rectangles of one patch: [0] the core, [1..4] the fringe bands.
struct PatchKeys {
  KeyRect rect[5];
};

struct WindowPlan {
  int ph = 1, pw = 1;  // patch size in rows and columns
  int patches_h = 1, patches_w = 1;
  int chunks = 1;  // query blocks per patch: ceil(T * ph * pw / kBlockQ)
  // 0: row runs over the key rectangles of patch_keys(); > 0: box tiles (below) of box_w
  // columns x kTileKeys / box_w rows.
  int box_w = 0;
  int64_t blocks() const { return int64_t{patches_h} * patches_w * chunks; }
};

// Key rectangles of the patch whose first position is (h0, w0) (patch clipped to the grid).
FS_HOST_DEVICE inline PatchKeys patch_keys(const WindowGeometry& g, int ph, int pw, int h0,
                                           int w0) {
  const int h1 = (h0 + ph < g.H ? h0 + ph : g.H) - 1;  // last row of the patch
  const int w1 = (w0 + pw < g.W ? w0 + pw : g.W) - 1;
  const int eh = window_extent(g.H, g.dh), ew = window_extent(g.W, g.dw);
  // Box starts grow with the query index, so the union runs from the first query's start to
  // the last query's end and the intersection from the last query's start to the first's end.
  const int ur0 = window_start(h0, g.H, g.dh), ur1 = window_start(h1, g.H, g.dh) + eh;
  const int uc0 = window_start(w0, g.W, g.dw), uc1 = window_start(w1, g.W, g.dw) + ew;
  const int ir0 = window_start(h1, g.H, g.dh), ir1 = ur0 + eh;
  const int ic0 = window_start(w1, g.W, g.dw), ic1 = uc0 + ew;
  PatchKeys p;
  p.rect[0] = {ir0, ir1, ic0, ic1};  // seen by all positions (non-empty: ph <= eh, pw <= ew)
  p.rect[1] = {ur0, ir0, uc0, uc1};  // rows above the core
  p.rect[2] = {ir1, ur1, uc0, uc1};  // rows below
  p.rect[3] = {ir0, ir1, uc0, ic0};  // left of the core
  p.rect[4] = {ir0, ir1, ic1, uc1};  // right of the core
  return p;
}

// Row-run tiles of tile_keys keys a patch costs: each rectangle is padded to whole tiles on its
// own (the portable kernels compute in steps of 64 keys, row_steps.h).
inline int64_t patch_key_tiles(const WindowGeometry& g, const PatchKeys& p,
                               int tile_keys = kTileKeys) {
  int64_t tiles = 0;
  for (const KeyRect& r : p.rect) tiles += (r.keys(g.T) + tile_keys - 1) / tile_keys;
  return tiles;
}

// ---- Box tiles ----
//
// A box tile is one box of a 5-D tensor map over (head dim, heads, W, H, T): box_w consecutive
// columns x box_h = kTileKeys / box_w consecutive rows of one frame, the tile's keys ordered
// column fastest (key k: box row k / box_w, box column k % box_w). The union of the patch's
// boxes (every key one of its queries sees, the same in each frame) is covered by nrb x ncb such
// boxes from its top-left corner, in each frame; boxes reaching past the union hold keys no query
// of the patch sees and boxes reaching past the grid hold TMA's zero fill, both masked. Tiles are
// ordered frame, box row, box column (column fastest).
inline constexpr int kBoxWidths[] = {4, 8, 16};  // box_w the kernels are built for

struct BoxGrid {
  int r0 = 0, c0 = 0;    // top-left key position of box (0, 0)
  int nrb = 0, ncb = 0;  // boxes down and across
  FS_HOST_DEVICE int tiles(int T) const { return T * nrb * ncb; }
};

FS_HOST_DEVICE inline BoxGrid box_grid(const WindowGeometry& g, int ph, int pw, int h0, int w0,
                                       int box_w) {
  const PatchKeys pk = patch_keys(g, ph, pw, h0, w0);
  const int box_h = kTileKeys / box_w;
  BoxGrid b;
  b.r0 = pk.rect[1].r0;  // the union: rows rect[1].r0 .. rect[2].r1, columns rect[1].c0 .. c1
  b.c0 = pk.rect[1].c0;
  b.nrb = (pk.rect[2].r1 - b.r0 + box_h - 1) / box_h;
  b.ncb = (pk.rect[1].c1 - b.c0 + box_w - 1) / box_w;
  return b;
}

// The mask of one query row over one box tile: the query's window (extents eh x ew) starts at
// box row lo and box column clo of the tile (its start minus the tile's top-left key position),
// so box rows lo .. lo + eh - 1 and box columns clo .. clo + ew - 1 are visible. `fast`: every box
// column is visible and at most the first and the last box row are not (mask_first, mask_last),
// which holds for most tiles of the FreeSwim shapes (a union one or two rows taller than the
// window); the kernel then masks those rows' elements only, and tests every element otherwise.
struct BoxRowMask {
  int lo = 0, clo = 0;
  bool fast = false, mask_first = false, mask_last = false;
  FS_HOST_DEVICE BoxRowMask(int lo_, int clo_, int eh, int ew, int box_w) : lo(lo_), clo(clo_) {
    const int box_h = kTileKeys / box_w;
    fast = lo <= 1 && lo + eh >= box_h - 1 && clo <= 0 && clo + ew >= box_w;
    mask_first = lo > 0;
    mask_last = lo + eh < box_h;
  }
  // Whether key k of the tile (box row k / box_w, column k % box_w) is visible (the exact test).
  FS_HOST_DEVICE bool visible(int k, int eh, int ew, int box_w) const {
    return static_cast<unsigned>(k / box_w - lo) < static_cast<unsigned>(eh) &&
           static_cast<unsigned>(k % box_w - clo) < static_cast<unsigned>(ew);
  }
};

// Element (n, x) of a consumer thread's S fragment of a 128-key tile is key 8 n + x (x = 2 c4 + e
// < 8): whether it lies in the first / the last box row, written so that the n part folds at
// compile time (n is an unrolled loop index in the kernel).
template <int kBoxW>
FS_HOST_DEVICE constexpr bool box_first_row(int n, int x) {
  if constexpr (kBoxW >= 8) {
    return n < kBoxW / 8;
  } else {
    return n == 0 && x < kBoxW;
  }
}
template <int kBoxW>
FS_HOST_DEVICE constexpr bool box_last_row(int n, int x) {
  constexpr int kN = kTileKeys / 8;
  if constexpr (kBoxW >= 8) {
    return n >= kN - kBoxW / 8;
  } else {
    return n == kN - 1 && x >= 8 - kBoxW;
  }
}

// Bits lo .. hi - 1 of [0, n) (n <= 32), as a mask.
FS_HOST_DEVICE inline uint32_t range_bits(int lo, int hi, int n) {
  lo = lo < 0 ? 0 : lo;
  hi = hi > n ? n : hi;
  if (hi <= lo) return 0u;
  return static_cast<uint32_t>(((uint64_t{1} << hi) - 1) & ~((uint64_t{1} << lo) - 1));
}

// The exact mask of BoxRowMask as bits, for the elements of one consumer thread (c4 = lane % 4):
// its visible box rows and columns, shifted so that element (n, e) (key 8 n + 2 c4 + e) tests
// bit row_bit(n) of `rows` and bit col_bit(n, e) of `cols`, both compile-time positions in the
// kernel's unrolled loops (two bit tests and a select per element, few live registers).
template <int kBoxW>
struct BoxBits {
  static constexpr int kBoxH = kTileKeys / kBoxW;
  uint32_t rows = 0, cols = 0;
  FS_HOST_DEVICE BoxBits(const BoxRowMask& m, int eh, int ew, int c4) {
    // key 8 n + 2 c4 + e: kBoxW >= 8: row 8 n / kBoxW, column 8 n % kBoxW + 2 c4 + e; kBoxW = 4:
    // row 2 n + c4 / 2, column 2 (c4 % 2) + e.
    rows = range_bits(m.lo, m.lo + eh, kBoxH) >> (kBoxW >= 8 ? 0 : c4 / 2);
    cols = range_bits(m.clo, m.clo + ew, kBoxW) >> (kBoxW >= 8 ? 2 * c4 : 2 * (c4 % 2));
  }
  static FS_HOST_DEVICE constexpr int row_bit(int n) { return kBoxW >= 8 ? 8 * n / kBoxW : 2 * n; }
  static FS_HOST_DEVICE constexpr int col_bit(int n, int e) {
    return kBoxW >= 8 ? 8 * n % kBoxW + e : e;
  }
  FS_HOST_DEVICE bool visible(int n, int e) const {
    return ((rows >> row_bit(n)) & (cols >> col_bit(n, e)) & 1u) != 0u;
  }
};
static_assert(kTileKeys / 4 <= 32, "box rows fit a 32-bit mask");

// Box tiles of an interior patch (border patches have the same union or a smaller one).
inline int64_t box_cost(const WindowGeometry& g, const WindowPlan& plan) {
  const int hm = (g.H - plan.ph) / 2, wm = (g.W - plan.pw) / 2;
  return int64_t{box_grid(g, plan.ph, plan.pw, hm, wm, plan.box_w).tiles(g.T)} * plan.blocks();
}

inline WindowPlan make_plan(const WindowGeometry& g, int ph, int pw) {
  WindowPlan plan;
  plan.ph = ph;
  plan.pw = pw;
  plan.patches_h = (g.H + ph - 1) / ph;
  plan.patches_w = (g.W + pw - 1) / pw;
  plan.chunks = static_cast<int>((int64_t{g.T} * ph * pw + kBlockQ - 1) / kBlockQ);
  return plan;
}

// Query-key pairs the kernel computes for one head under this plan (exact, all patches); row runs
// in tiles of tile_keys keys (64: the portable kernels' steps).
inline int64_t computed_pairs(const WindowGeometry& g, const WindowPlan& plan,
                              int tile_keys = kTileKeys) {
  if (plan.box_w > 0) tile_keys = kTileKeys;
  int64_t tiles = 0;
  for (int bh = 0; bh < plan.patches_h; ++bh)
    for (int bw = 0; bw < plan.patches_w; ++bw)
      tiles +=
          plan.box_w > 0
              ? box_grid(g, plan.ph, plan.pw, bh * plan.ph, bw * plan.pw, plan.box_w).tiles(g.T)
              : patch_key_tiles(g, patch_keys(g, plan.ph, plan.pw, bh * plan.ph, bw * plan.pw),
                                tile_keys);
  return tiles * plan.chunks * int64_t{kBlockQ} * tile_keys;
}

// The row-run plan with the least computed work in tiles of tile_keys keys, estimated from an
// interior patch (border patches have the same union size or a smaller one). Patches larger than
// the window would leave no core, so they are not considered.
inline WindowPlan choose_row_plan(const WindowGeometry& g, int tile_keys = kTileKeys) {
  const int eh = window_extent(g.H, g.dh), ew = window_extent(g.W, g.dw);
  WindowPlan best = make_plan(g, 1, 1);
  double best_cost = -1;
  for (int ph = 1; ph <= eh && ph <= 16; ++ph) {
    for (int pw = 1; pw <= ew && pw <= 16; ++pw) {
      const WindowPlan plan = make_plan(g, ph, pw);
      const int hm = (g.H - ph) / 2, wm = (g.W - pw) / 2;  // a patch in the middle
      const double tiles =
          static_cast<double>(patch_key_tiles(g, patch_keys(g, ph, pw, hm, wm), tile_keys));
      const double cost = tiles * static_cast<double>(plan.blocks());
      if (best_cost < 0 || cost < best_cost) {
        best_cost = cost;
        best = plan;
      }
    }
  }
  return best;
}

// The box-tile plan with the fewest tiles over every patch and the given box width (0: every
// width the kernels are built for).
inline WindowPlan choose_box_plan(const WindowGeometry& g, int box_width = 0) {
  WindowPlan best;
  int64_t best_cost = -1;
  const int eh = window_extent(g.H, g.dh), ew = window_extent(g.W, g.dw);
  for (const int bw : kBoxWidths) {
    if (box_width != 0 && bw != box_width) continue;
    for (int ph = 1; ph <= eh && ph <= 16; ++ph) {
      for (int pw = 1; pw <= ew && pw <= 16; ++pw) {
        WindowPlan plan = make_plan(g, ph, pw);
        plan.box_w = bw;
        const int64_t cost = box_cost(g, plan);
        if (best_cost < 0 || cost < best_cost) {
          best_cost = cost;
          best = plan;
        }
      }
    }
  }
  return best;
}

// How many more pairs box tiles may compute than row runs and still be taken: a box tile is one
// tensor-map copy per 64 head dims of K and of V, where a row run is a gather of ~128 row copies
// by a warpgroup of cp.async threads (measured: 580 against 494 useful TFLOP/s at 1.3B-1080p with
// 0.903 against 0.942 density; docs/attention.md).
inline constexpr double kBoxTileAllowance = 1.12;

// Which tiling the window kernels run. automatic: box tiles when they compute at most
// kBoxTileAllowance times the pairs of row runs (every FreeSwim shape measured so far), else row
// runs. The others force one (tests and benchmarks).
enum class WindowTiling { automatic, box_tiles, row_runs };

// The plan the window attention runs. box_width (4, 8 or 16) restricts box tiles to one width,
// 0 lets the plan choose.
inline WindowPlan choose_window_plan(const WindowGeometry& g,
                                     WindowTiling tiling = WindowTiling::automatic,
                                     int box_width = 0) {
  if (tiling == WindowTiling::row_runs) return choose_row_plan(g);
  const WindowPlan box = choose_box_plan(g, box_width);
  if (tiling == WindowTiling::box_tiles) return box;
  const WindowPlan runs = choose_row_plan(g);
  const double box_pairs = static_cast<double>(computed_pairs(g, box));
  const double run_pairs = static_cast<double>(computed_pairs(g, runs));
  return box_pairs <= kBoxTileAllowance * run_pairs ? box : runs;
}

}  // namespace freeswim::attention
