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

inline WindowPlan make_plan(const WindowGeometry& g, int ph, int pw) {
  WindowPlan plan;
  plan.ph = ph;
  plan.pw = pw;
  plan.patches_h = (g.H + ph - 1) / ph;
  plan.patches_w = (g.W + pw - 1) / pw;
  plan.chunks = static_cast<int>((int64_t{g.T} * ph * pw + kBlockQ - 1) / kBlockQ);
  return plan;
}

// Query-key pairs the kernel computes for one head under this plan (exact, all patches).
inline int64_t computed_pairs(const WindowGeometry& g, const WindowPlan& plan,
                              int tile_keys = kBlockK) {
  int64_t tiles = 0;
  for (int bh = 0; bh < plan.patches_h; ++bh)
    for (int bw = 0; bw < plan.patches_w; ++bw)
      tiles += patch_key_tiles(g, patch_keys(g, plan.ph, plan.pw, bh * plan.ph, bw * plan.pw),
                               tile_keys);
  return tiles * plan.chunks * int64_t{kBlockQ} * tile_keys;
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

}  // namespace freeswim::attention

#undef FS_HOST_DEVICE
