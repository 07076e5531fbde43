// How the portable kernels (portable_kernels.cu) walk a block's keys: in steps of 64 keys (half a
// plan tile of window_plan.h, whose tiling they use unchanged; the wide blocks) or 32 keys (a
// quarter; the narrow blocks). Host and device code, so that tests replay the walk on the CPU
// (tests/cuda_attention/row_steps_test.cpp).
//
// Window blocks take the row-run rectangles of their group of positions (group_keys: the core,
// then four fringe bands), each cut into plan tiles of kTileKeys keys in (frame, row, column)
// order; each tile is kTileKeys / step steps, but the steps that lie wholly past their
// rectangle's keys are skipped, so a rectangle of n keys costs ceil(n / step) steps. Dense blocks
// walk all n_kv keys the same way.
//
// The 128 copying threads share each key row of a step between n = copy_threads_per_row(window,
// D) of them, so they cover 128 / n rows per pass: thread tid takes rows tid / n + i * (128 / n)
// of every step, and within one rectangle its keys are every (128 / n)-th key (RowCursor). The
// window's loader has 4 threads per row (32 rows a pass, one or two passes a step); dense has
// D / 8 (one 16-byte chunk each: a warp's copy instruction reads whole rows, and dense's cursor is
// two adds).
#pragma once

#include <cstdint>

#include "core/host_device.h"
#include "freeswim/window_geometry.h"
#include "ops/cuda/attention/window_plan.h"

namespace freeswim::attention {

inline constexpr int kStepKeys = 64;        // keys per step of the wide portable blocks
inline constexpr int kNarrowStepKeys = 32;  // and of the narrow ones
static_assert(kTileKeys == 2 * kStepKeys && kTileKeys == 4 * kNarrowStepKeys,
              "a plan tile is whole steps");
inline constexpr int kCopyThreads = 128;  // a block's threads, all of which copy
// Threads that share one key row of a step (see the top of this file).
FS_HOST_DEVICE constexpr int copy_threads_per_row(bool window, int head_dim) {
  return window ? 4 : head_dim / 8;
}

// A window block's key rectangles and the first plan tile of each (first[5]: the block's tiles).
struct RectTiles {
  PatchKeys keys;
  int first[6];
  FS_HOST_DEVICE void init(const WindowGeometry& g, const PatchKeys& k) {
    keys = k;
    first[0] = 0;
    for (int i = 0; i < 5; ++i)
      first[i + 1] =
          first[i] + static_cast<int>((keys.rect[i].keys(g.T) + kTileKeys - 1) / kTileKeys);
  }
};

// The block's current step, of kStep keys: plan tile `tile`, its part `part` (kStep keys each),
// and (window) the tile's rectangle. Every thread walks it alike.
template <int kStep>
struct StepWalkOf {
  static_assert(kTileKeys % kStep == 0, "a plan tile is whole steps");
  static constexpr int kParts = kTileKeys / kStep;
  int tile = 0, part = 0, rect = 0, n_tiles = 0;

  // Window: the first step (false when the block has none). Empty rectangles have no tiles.
  FS_HOST_DEVICE bool start(const RectTiles& rt) {
    n_tiles = rt.first[5];
    tile = part = rect = 0;
    while (rect < 4 && rt.first[rect + 1] <= 0) ++rect;
    return n_tiles > 0;
  }
  // Dense.
  FS_HOST_DEVICE bool start(int n_kv) {
    n_tiles = (n_kv + kTileKeys - 1) / kTileKeys;
    tile = part = rect = 0;
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
    if (part + 1 < kParts && keys_from_this_tile > (part + 1) * kStep) {
      ++part;
      return 1;
    }
    part = 0;
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
  FS_HOST_DEVICE bool masked(int n_kv) const { return keys_from_tile(n_kv) - part * kStep < kStep; }
  // Dense: the step's first key.
  FS_HOST_DEVICE int first_key() const { return tile * kTileKeys + part * kStep; }
};
using StepWalk = StepWalkOf<kStepKeys>;

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

}  // namespace freeswim::attention
