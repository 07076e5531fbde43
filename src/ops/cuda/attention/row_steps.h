// How the portable kernels (portable_kernels.cu) walk a block's keys: in steps of kStepKeys = 64
// keys, half a plan tile of window_plan.h, whose tiling they use unchanged. Host and device code,
// so that tests replay the walk on the CPU (tests/cuda_attention/row_steps_test.cpp).
//
// Window blocks take the row-run rectangles of their patch (patch_keys: the core, then four fringe
// bands), each cut into plan tiles of kTileKeys keys in (frame, row, column) order; each tile is
// two steps, but a second half that lies wholly past its rectangle's keys is skipped, so a
// rectangle of n keys costs ceil(n / 64) steps. Dense blocks walk all n_kv keys the same way.
//
// The 128 copying threads share each key row of a step between n = copy_threads_per_row(window,
// D) of them, so they cover 128 / n rows per pass: thread tid takes rows tid / n + i * (128 / n)
// of every step, and within one rectangle its keys are every (128 / n)-th key (RowCursor). The
// window's loader has 4 threads per row (32 rows a pass, two passes a step: its cursor moves
// twice a step); dense has D / 8 (one 16-byte chunk each: a warp's copy instruction reads whole
// rows, and dense's cursor is two adds).
#pragma once

#include <algorithm>
#include <climits>
#include <cstdint>

#include "core/host_device.h"
#include "freeswim/window_geometry.h"
#include "ops/cuda/attention/window_plan.h"

namespace freeswim::attention {

inline constexpr int kStepKeys = 64;  // keys per step of the portable kernels
static_assert(kTileKeys == 2 * kStepKeys, "a plan tile is two steps");
inline constexpr int kCopyThreads = 128;  // a block's threads, all of which copy
// Threads that share one key row of a step (see the top of this file).
FS_HOST_DEVICE constexpr int copy_threads_per_row(bool window, int head_dim) {
  return window ? 4 : head_dim / 8;
}

// A window block's key rectangles and the first plan tile of each (first[5]: the block's tiles).
struct RectTiles {
  PatchKeys keys;
  int first[6];
  FS_HOST_DEVICE void init(const WindowGeometry& g, const WindowPlan& plan, int h0, int w0) {
    keys = patch_keys(g, plan.ph, plan.pw, h0, w0);
    first[0] = 0;
    for (int i = 0; i < 5; ++i)
      first[i + 1] =
          first[i] + static_cast<int>((keys.rect[i].keys(g.T) + kTileKeys - 1) / kTileKeys);
  }
};

// The block's current step: plan tile `tile`, half `half`, and (window) the tile's rectangle. Every
// thread walks it alike.
struct StepWalk {
  int tile = 0, half = 0, rect = 0, n_tiles = 0;

  // Window: the first step (false when the block has none). Empty rectangles have no tiles.
  FS_HOST_DEVICE bool start(const RectTiles& rt) {
    n_tiles = rt.first[5];
    tile = half = rect = 0;
    while (rect < 4 && rt.first[rect + 1] <= 0) ++rect;
    return n_tiles > 0;
  }
  // Dense.
  FS_HOST_DEVICE bool start(int n_kv) {
    n_tiles = (n_kv + kTileKeys - 1) / kTileKeys;
    tile = half = rect = 0;
    return n_tiles > 0;
  }

  // Keys from the current tile's first on: of its rectangle (window) or of all (dense).
  FS_HOST_DEVICE int keys_from_tile(const RectTiles& rt, int T) const {
    return static_cast<int>(rt.keys.rect[rect].keys(T)) - (tile - rt.first[rect]) * kTileKeys;
  }
  FS_HOST_DEVICE int keys_from_tile(int n_kv) const { return n_kv - tile * kTileKeys; }

  // On to the next step, given keys_from_tile() of the current one: 0 after the last step, 1 for
  // a step in the same rectangle (its keys continue the previous step's), 2 for the first step of
  // another rectangle (window; `first` of its RectTiles, nullptr for dense).
  FS_HOST_DEVICE int advance(int keys_from_this_tile, const int* first) {
    if (half == 0 && keys_from_this_tile > kStepKeys) {
      half = 1;
      return 1;
    }
    half = 0;
    if (++tile >= n_tiles) return 0;
    if (first != nullptr && tile >= first[rect + 1]) {
      do {
        ++rect;
      } while (first[rect + 1] <= tile);
      return 2;
    }
    return 1;
  }

  // Whether the step needs the mask. Window: every tile from the core's last (partial) one on; the
  // core's other tiles hold keys every query of the block sees. Dense: a step reaching past n_kv.
  FS_HOST_DEVICE bool masked(const RectTiles& rt) const { return tile >= rt.first[1] - 1; }
  // Window: whether the step holds padding rows past its rectangle's keys (its last, partial
  // step), which every warp masks.
  FS_HOST_DEVICE bool partial(const RectTiles& rt, int T) const {
    return keys_from_tile(rt, T) - half * kStepKeys < kStepKeys;
  }
  FS_HOST_DEVICE bool masked(int n_kv) const {
    return keys_from_tile(n_kv) - half * kStepKeys < kStepKeys;
  }
};

// Where one copying thread's next key is inside a key rectangle: its index in the rectangle, row,
// column and token. Decoded once per rectangle (two divisions), then stepped by adds.
struct RowCursor {
  int idx = 0, kr = 0, kc = 0, token = 0;

  FS_HOST_DEVICE void start(const KeyRect& R, const WindowGeometry& g, int first_row) {
    const int cols = R.c1 - R.c0;
    const int per_frame = (R.r1 - R.r0) * cols;
    idx = first_row;
    const int t = idx / per_frame, rem = idx - t * per_frame;
    kr = R.r0 + rem / cols;
    kc = R.c0 + rem % cols;
    token = (t * g.H + kr) * g.W + kc;
  }
  // On by k keys (any k > 0; the position past the rectangle's last key is not used). Within a
  // row it is three adds; past the row's end by less than a row (the core rectangle, wider than a
  // pass) it wraps once; further (the narrow fringe bands) it decodes the index again.
  FS_HOST_DEVICE void step(const KeyRect& R, const WindowGeometry& g, int k) {
    const int cols = R.c1 - R.c0;
    idx += k;
    token += k;
    kc += k;
    if (kc < R.c1) return;
    if (kc - R.c1 >= cols) {
      start(R, g, idx);
      return;
    }
    kc -= cols;
    token += g.W - cols;
    if (++kr == R.r1) {
      kr = R.r0;
      token += (g.H - (R.r1 - R.r0)) * g.W;
    }
  }
};

// ---- Fringe bands a warp skips ----
//
// A block's 4 warps own 32 query rows each (portable_kernels.cu), taken position by position in
// plan.order (window_plan.h: patch_query). A warp whose rows' windows all miss a key rectangle
// (their bounding box does not meet it) skips that rectangle's steps: no product, no softmax.
// With the rows in position order a warp holds two or three of the patch's positions, so e.g. a
// warp with only the patch's top row of positions skips the band below the core.
inline constexpr int kWarpRows = 32;  // query rows per warp of the portable kernels

// The rectangles of `keys` the rows of the warp whose first row is q0 (of the patch at (h0, w0))
// see (rects_seen: bit i some row may see rectangle i, bit 8 + i every row sees all of it); 0 for
// a warp of padding rows. The kernel computes the same with warp reductions
// (portable_kernels.cu: WarpRows::seen_rects).
inline unsigned warp_rects(const WindowGeometry& g, const WindowPlan& plan, const PatchKeys& keys,
                           int h0, int w0, int q0) {
  int lo_r = INT_MAX, hi_r = INT_MIN, lo_c = INT_MAX, hi_c = INT_MIN;
  for (int i = 0; i < kWarpRows; ++i) {
    int t, h, w;
    if (!patch_query(g, plan, h0, w0, q0 + i, t, h, w)) continue;
    const int br = window_start(h, g.H, g.dh), bc = window_start(w, g.W, g.dw);
    lo_r = std::min(lo_r, br);
    hi_r = std::max(hi_r, br);
    lo_c = std::min(lo_c, bc);
    hi_c = std::max(hi_c, bc);
  }
  if (lo_r == INT_MAX) return 0;
  return rects_seen(keys, lo_r, hi_r, lo_c, hi_c, window_extent(g.H, g.dh),
                    window_extent(g.W, g.dw));
}

// Steps the warps of the patch at (h0, w0) skip, summed over its query chunks.
inline int64_t patch_skipped_warp_steps(const WindowGeometry& g, const WindowPlan& plan, int h0,
                                        int w0) {
  const PatchKeys keys = patch_keys(g, plan.ph, plan.pw, h0, w0);
  int64_t skipped = 0;
  for (int q0 = 0; q0 < plan.chunks * kBlockQ; q0 += kWarpRows) {
    const unsigned seen = warp_rects(g, plan, keys, h0, w0, q0);
    for (int i = 0; i < 5; ++i)
      if (((seen >> i) & 1u) == 0) skipped += (keys.rect[i].keys(g.T) + kStepKeys - 1) / kStepKeys;
  }
  return skipped;
}

// The order of the patch's positions whose warps skip the most steps in a patch in the middle of
// the grid (border patches have the same rectangles or smaller ones). Candidates: row or column
// lines, plain or snake, mirrored either way, and (up to 32 positions) every cyclic start. Ties
// keep the earlier candidate, row-major order first. At 1.3B-1080p (2 x 3 patches, 21 frames) the
// row snake started at the top-right position, (0,2) (1,2) (1,1) (1,0) (0,0) (0,1), gives every
// warp a band to skip.
inline PatchOrder choose_patch_order(const WindowGeometry& g, WindowPlan plan) {
  const int positions = plan.ph * plan.pw;
  const int hm = (g.H - plan.ph) / 2, wm = (g.W - plan.pw) / 2;
  PatchOrder best;
  int64_t best_skipped = -1;
  for (int columns = 0; columns < 2; ++columns)
    for (int snake = 0; snake < 2; ++snake)
      for (int flip_r = 0; flip_r < 2; ++flip_r)
        for (int flip_c = 0; flip_c < 2; ++flip_c)
          for (int shift = 0; shift < (positions <= 32 ? positions : 1); ++shift) {
            plan.order = PatchOrder{columns, snake, flip_r, flip_c, shift};
            const int64_t skipped = patch_skipped_warp_steps(g, plan, hm, wm);
            if (skipped > best_skipped) {
              best_skipped = skipped;
              best = plan.order;
            }
          }
  return best;
}

// Query-key pairs the portable window kernel computes for one head under this plan (all patches):
// its steps of 64 keys times 32 rows, per warp, less the steps the warps skip.
inline int64_t portable_computed_pairs(const WindowGeometry& g, const WindowPlan& plan) {
  int64_t warp_steps = 0;
  for (int bh = 0; bh < plan.patches_h; ++bh)
    for (int bw = 0; bw < plan.patches_w; ++bw) {
      const int h0 = bh * plan.ph, w0 = bw * plan.pw;
      const PatchKeys keys = patch_keys(g, plan.ph, plan.pw, h0, w0);
      warp_steps += patch_key_tiles(g, keys, kStepKeys) * plan.chunks * (kBlockQ / kWarpRows) -
                    patch_skipped_warp_steps(g, plan, h0, w0);
    }
  return warp_steps * kWarpRows * kStepKeys;
}

}  // namespace freeswim::attention
