// How the window attention kernel tiles the inward window (docs/attention.md has the numbers).
//
// A query tile is a small spatial patch (ph x pw positions) taken in every frame: all its
// queries see keys from every frame, and the patch's positions see boxes that differ only by
// small shifts, so the tile's keys are one dense union box per frame. The union is split into
// a core rectangle seen by every position of the patch (no mask needed) and up to four fringe
// bands (masked). Shared by the host launcher, the kernel, the benchmark and the tests so that
// the counted work is the work the kernel does.
#pragma once

#include <cstdint>

#include "core/host_device.h"
#include "freeswim/window_geometry.h"

namespace freeswim::attention {

inline constexpr int kBlockQ = 128;      // queries per thread block (8 warps x 16 rows)
inline constexpr int kBlockK = 64;       // keys per tile of the 64-key kernels
inline constexpr int kBlockKWide = 128;  // keys per tile of the wide (m64n128 S) kernels

// One rectangle of key positions [r0, r1) x [c0, c1), taken in all T frames.
struct KeyRect {
  int r0 = 0, r1 = 0, c0 = 0, c1 = 0;
  FS_HOST_DEVICE int64_t keys(int T) const { return int64_t{T} * (r1 - r0) * (c1 - c0); }
};

// A tile of `nk` keys starting at key `k0` of a key rectangle `cols` columns wide, as row
// segments of consecutive tokens (the window kernel fed by TMA copies each segment as boxes):
// segment 0 runs from k0 to the end of its rectangle row (or of the tile), the others are whole
// rows, the last one possibly cut by the tile's end. Rows of the rectangle are counted over frames
// (rect_row = t * rows + r).
struct TileSegments {
  int cols, nk, rr0, coff0, len0, count;
  FS_HOST_DEVICE TileSegments(int k0, int nk_, int cols_) : cols(cols_), nk(nk_) {
    rr0 = k0 / cols;
    coff0 = k0 - rr0 * cols;
    len0 = cols - coff0 < nk ? cols - coff0 : nk;
    count = 1 + (nk - len0 + cols - 1) / cols;
  }
  FS_HOST_DEVICE int row(int i) const {
    return i == 0 ? 0 : len0 + (i - 1) * cols;
  }  // first tile row
  FS_HOST_DEVICE int len(int i) const {
    return i == 0 ? len0 : (cols < nk - row(i) ? cols : nk - row(i));
  }
  FS_HOST_DEVICE int first_col(int i) const {
    return i == 0 ? coff0 : 0;
  }  // inside the rectangle row
  FS_HOST_DEVICE int rect_row(int i) const { return rr0 + i; }
};

// A key position inside a rectangle (T frames x rows x cols, in that order) moved kStep keys at a
// time by adds only: the quotient and remainder of kStep by the width are taken once per
// rectangle, and a step crosses at most kStep / rows + 1 frame boundaries. (The window producer
// of ws_kernel.cuh's pairs variant; positions past the last key are not meaningful, idx says so.)
template <int kStep>
struct KeyStepper {
  int idx = 0, n_keys = 0, t = 0, kr = 0, kc = 0;
  int r0 = 0, r1 = 0, c0 = 0, c1 = 0, cols = 1, rows = 1, dq = 0, dr = 0;

  FS_HOST_DEVICE void start_rect(const WindowGeometry& g, const KeyRect& R, int first) {
    r0 = R.r0;
    r1 = R.r1;
    c0 = R.c0;
    c1 = R.c1;
    cols = c1 - c0;
    rows = r1 - r0;
    n_keys = static_cast<int>(R.keys(g.T));
    idx = first;
    const int rr = first / cols;  // row counted over frames
    kc = c0 + (first - rr * cols);
    t = rr / rows;
    kr = r0 + (rr - t * rows);
    dq = kStep / cols;
    dr = kStep - dq * cols;
  }
  FS_HOST_DEVICE int token(const WindowGeometry& g) const { return (t * g.H + kr) * g.W + kc; }
  FS_HOST_DEVICE void step() {
    idx += kStep;
    kc += dr;
    kr += dq;
    if (kc >= c1) {
      kc -= cols;
      ++kr;
    }
    while (kr >= r1) {
      kr -= rows;
      ++t;
    }
  }
};

// Boxes of 2^level keys (level < levels) that cover a segment of len keys (1 <= len <=
// 2^levels): one box when len is a power of two, else two of 2^floor(log2 len) overlapping in the
// middle, at offsets 0 and len - 2^level.
FS_HOST_DEVICE inline int segment_box_level(int len, int levels) {
  int b = 0;
  while (b + 1 < levels && (2 << b) <= len) ++b;
  return b;
}
FS_HOST_DEVICE inline int segment_boxes(int len, int levels) {
  return len == (1 << segment_box_level(len, levels)) ? 1 : 2;
}

// The five key rectangles of one patch: [0] the core, [1..4] the fringe bands.
struct PatchKeys {
  KeyRect rect[5];
};

struct WindowPlan {
  int ph = 1, pw = 1;  // patch size in rows and columns
  int patches_h = 1, patches_w = 1;
  int chunks = 1;  // query blocks per patch: ceil(T * ph * pw / kBlockQ)
  // 0: the key rectangles above in runs of tile_keys keys; > 0: box tiles (below) of box_w
  // columns x kBlockKWide / box_w rows.
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

// Key tiles of `tile_keys` keys a patch costs: each rectangle is padded to whole tiles on its
// own.
FS_HOST_DEVICE inline int64_t patch_key_tiles(const WindowGeometry& g, const PatchKeys& p,
                                              int tile_keys = kBlockK) {
  int64_t tiles = 0;
  for (const KeyRect& r : p.rect) tiles += (r.keys(g.T) + tile_keys - 1) / tile_keys;
  return tiles;
}

// ---- Box tiles (the window kernel of box_window.cuh) ----
//
// A box tile is one box of a 5-D tensor map over (head dim, heads, W, H, T): box_w consecutive
// columns x box_h = kBlockKWide / box_w consecutive rows of one frame, the tile's keys ordered
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
  const int box_h = kBlockKWide / box_w;
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
    const int box_h = kBlockKWide / box_w;
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
  constexpr int kN = kBlockKWide / 8;
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
  static constexpr int kBoxH = kBlockKWide / kBoxW;
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
static_assert(kBlockKWide / 4 <= 32, "box rows fit a 32-bit mask");

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

// Query-key pairs the kernel computes for one head under this plan (exact, all patches;
// tile_keys is kBlockKWide for box tiles).
inline int64_t computed_pairs(const WindowGeometry& g, const WindowPlan& plan,
                              int tile_keys = kBlockK) {
  int64_t tiles = 0;
  for (int bh = 0; bh < plan.patches_h; ++bh)
    for (int bw = 0; bw < plan.patches_w; ++bw)
      tiles +=
          plan.box_w > 0
              ? box_grid(g, plan.ph, plan.pw, bh * plan.ph, bw * plan.pw, plan.box_w).tiles(g.T)
              : patch_key_tiles(g, patch_keys(g, plan.ph, plan.pw, bh * plan.ph, bw * plan.pw),
                                tile_keys);
  return tiles * plan.chunks * int64_t{kBlockQ} * (plan.box_w > 0 ? kBlockKWide : tile_keys);
}

// Picks the patch with the least computed work, estimated from an interior patch (border
// patches have the same union size or a smaller one). Patches larger than the box would leave
// no core, so they are not considered.
inline WindowPlan choose_plan(const WindowGeometry& g, int tile_keys = kBlockK) {
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

// The box-tile plan with the fewest tiles (every box width built, every patch as above).
inline WindowPlan choose_box_plan(const WindowGeometry& g) {
  WindowPlan best;
  int64_t best_cost = -1;
  const int eh = window_extent(g.H, g.dh), ew = window_extent(g.W, g.dw);
  for (const int bw : kBoxWidths) {
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

// How many more tiles box tiles may cost than 128-key runs and still be taken: a box tile is
// one tensor-map copy per 64 head dims of K and of V (the TMA kernel's rate) where a run is a
// gather of ~128 row copies by the cp.async producer (docs/attention.md).
inline constexpr double kBoxTileAllowance = 1.12;

// The box plan when its tiles are within kBoxTileAllowance of the 128-key plan's, else the
// latter (box_w = 0).
inline WindowPlan choose_window_plan(const WindowGeometry& g, bool box_tiles, bool box_always) {
  const WindowPlan runs = choose_plan(g, kBlockKWide);
  if (!box_tiles) return runs;
  const WindowPlan box = choose_box_plan(g);
  const double box_tiles_n = static_cast<double>(computed_pairs(g, box, kBlockKWide));
  const double run_tiles_n = static_cast<double>(computed_pairs(g, runs, kBlockKWide));
  return box_always || box_tiles_n <= kBoxTileAllowance * run_tiles_n ? box : runs;
}

}  // namespace freeswim::attention
