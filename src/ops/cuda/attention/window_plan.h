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

// ---- Zones (row runs of the portable kernels) ----
//
// The inward window is clamped at the borders: the first dh + 1 rows all see rows 0 .. eh - 1,
// the last dh + 1 rows the last eh rows, and likewise for columns (window_geometry.h). Positions
// with one window start see one key set, so a block of them computes no pair that none of its
// queries sees, where a patch of the interior computes its fringe bands for all of its rows. A
// zoned plan cuts the grid by those bands into up to 3 x 3 zones and groups each zone's positions
// on its own:
//   - the interior zone (neither start clamped) in ph x pw patches, as a plain plan;
//   - a band of clamped rows (one row start) in runs of ph * pw positions taken column by column
//     (a run spans one or two columns where the band is taller than the run), and a band of
//     clamped columns alike row by row.
// Positions are numbered within a zone by strips: a zone is cut into strips of `strip` rows (of
// columns when `across`), and a strip's positions are numbered column by column (row by row when
// across), the row (column) fastest. A group is `group` consecutive positions of one strip; a
// shorter last strip of s rows has groups of max(1, group * s / strip) positions, so that
// patches stay patches there. Zone z's groups are the plan's groups first_group .. of the next.
struct Zone {
  int r0 = 0, r1 = 0, c0 = 0, c1 = 0;  // positions [r0, r1) x [c0, c1)
  int strip = 1;                       // rows (columns when across) per strip
  int group = 1;                       // positions per group in a full strip
  int across = 0;                      // 1: strips of columns, numbered row by row
  int first_group = 0;                 // the plan's index of the zone's first group
};
inline constexpr int kMaxZones = 9;

// One group of a zone: where its strip starts, how deep the strip is, and which of its positions
// the group holds. Query row i of the group's blocks is frame (chunk * kBlockQ + i) / stride,
// position (chunk * kBlockQ + i) % stride of the group (padding from `count` on).
struct PositionGroup {
  int h0 = 0, w0 = 0;  // the strip's first row and column
  int depth = 1;       // the strip's rows (columns when across)
  int m0 = 0;          // the group's first position in the strip's numbering
  int count = 1;       // positions in the group
  int stride = 1;      // positions per frame in the query rows (the strip's group size)
  int across = 0;
  // Grid position of the group's position k (< count).
  FS_HOST_DEVICE void position(int k, int& h, int& w) const {
    const int m = m0 + k, a = m % depth, b = m / depth;
    h = across ? h0 + b : h0 + a;
    w = across ? w0 + a : w0 + b;
  }
  // The smallest box of positions holding the group: rows hmin .. hmax, columns wmin .. wmax.
  FS_HOST_DEVICE void bounds(int& hmin, int& hmax, int& wmin, int& wmax) const {
    const int first = m0, last = m0 + count - 1;
    const int b0 = first / depth, b1 = last / depth;
    const int a0 = b0 == b1 ? first % depth : 0, a1 = b0 == b1 ? last % depth : depth - 1;
    hmin = across ? h0 + b0 : h0 + a0;
    hmax = across ? h0 + b1 : h0 + a1;
    wmin = across ? w0 + a0 : w0 + b0;
    wmax = across ? w0 + a1 : w0 + b1;
  }
};

// A zone's groups: full strips of `full_groups` groups each, then a shorter last strip.
struct ZoneCounts {
  int run = 0;          // positions per strip line: the zone's columns (rows when across)
  int full_strips = 0;  // strips of `strip` lines
  int rest = 0;         // lines of the last, shorter strip (0: none)
  int full_groups = 0, rest_group = 1, rest_groups = 0;
  FS_HOST_DEVICE explicit ZoneCounts(const Zone& z) {
    const int lines = z.across ? z.c1 - z.c0 : z.r1 - z.r0;
    run = z.across ? z.r1 - z.r0 : z.c1 - z.c0;
    full_strips = lines / z.strip;
    rest = lines % z.strip;
    full_groups = (z.strip * run + z.group - 1) / z.group;
    if (rest > 0) {
      rest_group = z.group * rest / z.strip;
      rest_group = rest_group < 1 ? 1 : rest_group;
      rest_groups = (rest * run + rest_group - 1) / rest_group;
    }
  }
  FS_HOST_DEVICE int groups() const { return full_strips * full_groups + rest_groups; }
};

// Group j of zone z (0 <= j < ZoneCounts(z).groups()).
FS_HOST_DEVICE inline PositionGroup zone_group(const Zone& z, int j) {
  const ZoneCounts n(z);
  int strip = 0, depth = z.strip, size = z.group;
  if (j < n.full_strips * n.full_groups) {
    strip = j / n.full_groups;
    j -= strip * n.full_groups;
  } else {
    j -= n.full_strips * n.full_groups;
    strip = n.full_strips;
    depth = n.rest;
    size = n.rest_group;
  }
  PositionGroup grp;
  grp.across = z.across;
  grp.h0 = z.across ? z.r0 : z.r0 + strip * z.strip;
  grp.w0 = z.across ? z.c0 + strip * z.strip : z.c0;
  grp.depth = depth;
  grp.m0 = j * size;
  const int len = depth * n.run;
  grp.count = len - grp.m0 < size ? len - grp.m0 : size;
  grp.stride = size;
  return grp;
}

struct WindowPlan {
  int ph = 1, pw = 1;  // patch size in rows and columns
  int patches_h = 1, patches_w = 1;
  int chunks = 1;  // query blocks per group: ceil(T * ph * pw / kBlockQ)
  // 0: row runs over the key rectangles of patch_keys(); > 0: box tiles (below) of box_w
  // columns x kTileKeys / box_w rows.
  int box_w = 0;
  // The groups of positions the blocks answer, zone by zone (zones above): one zone of ph x pw
  // patches for a plain plan (make_plan), up to nine for a zoned one (zoned_plan).
  int n_zones = 0, groups = 0;
  Zone zones[kMaxZones];
  FS_HOST_DEVICE int64_t blocks() const { return int64_t{groups} * chunks; }
};

// Group `index` of a zoned plan (0 <= index < plan.groups).
FS_HOST_DEVICE inline PositionGroup plan_group(const WindowPlan& plan, int index) {
  int z = 0;
  while (z + 1 < plan.n_zones && plan.zones[z + 1].first_group <= index) ++z;
  return zone_group(plan.zones[z], index - plan.zones[z].first_group);
}

// Key rectangles of the positions [h0, h1] x [w0, w1] (inclusive, inside the grid), whose window
// starts must differ by less than the window in each dimension (else there is no core).
FS_HOST_DEVICE inline PatchKeys box_keys(const WindowGeometry& g, int h0, int h1, int w0, int w1) {
  const int eh = window_extent(g.H, g.dh), ew = window_extent(g.W, g.dw);
  // Box starts grow with the query index, so the union runs from the first query's start to
  // the last query's end and the intersection from the last query's start to the first's end.
  const int ur0 = window_start(h0, g.H, g.dh), ur1 = window_start(h1, g.H, g.dh) + eh;
  const int uc0 = window_start(w0, g.W, g.dw), uc1 = window_start(w1, g.W, g.dw) + ew;
  const int ir0 = window_start(h1, g.H, g.dh), ir1 = ur0 + eh;
  const int ic0 = window_start(w1, g.W, g.dw), ic1 = uc0 + ew;
  PatchKeys p;
  p.rect[0] = {ir0, ir1, ic0, ic1};  // seen by all positions (non-empty, as said above)
  p.rect[1] = {ur0, ir0, uc0, uc1};  // rows above the core
  p.rect[2] = {ir1, ur1, uc0, uc1};  // rows below
  p.rect[3] = {ir0, ir1, uc0, ic0};  // left of the core
  p.rect[4] = {ir0, ir1, ic1, uc1};  // right of the core
  return p;
}

// Key rectangles of the patch whose first position is (h0, w0) (patch clipped to the grid).
FS_HOST_DEVICE inline PatchKeys patch_keys(const WindowGeometry& g, int ph, int pw, int h0,
                                           int w0) {
  return box_keys(g, h0, (h0 + ph < g.H ? h0 + ph : g.H) - 1, w0,
                  (w0 + pw < g.W ? w0 + pw : g.W) - 1);
}

// Key rectangles of a group of a zoned plan.
FS_HOST_DEVICE inline PatchKeys group_keys(const WindowGeometry& g, const PositionGroup& grp) {
  int h0, h1, w0, w1;
  grp.bounds(h0, h1, w0, w1);
  return box_keys(g, h0, h1, w0, w1);
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
  // The same patches as one zone (patches_h strips of patches_w groups; the Hopper kernels number
  // them row-major from patches_w, which gives the same blocks).
  plan.n_zones = 1;
  plan.zones[0] = Zone{0, g.H, 0, g.W, ph, ph * pw, 0, 0};
  plan.groups = plan.patches_h * plan.patches_w;
  return plan;
}

// Query-key pairs the kernel computes for one head under this plan (exact, all patches); row runs
// in tiles of tile_keys keys (64: the portable kernels' steps).
inline int64_t computed_pairs(const WindowGeometry& g, const WindowPlan& plan,
                              int tile_keys = kTileKeys) {
  int64_t tiles = 0;
  if (plan.box_w > 0) {
    tile_keys = kTileKeys;
    for (int bh = 0; bh < plan.patches_h; ++bh)
      for (int bw = 0; bw < plan.patches_w; ++bw)
        tiles += box_grid(g, plan.ph, plan.pw, bh * plan.ph, bw * plan.pw, plan.box_w).tiles(g.T);
  } else {
    for (int i = 0; i < plan.groups; ++i)
      tiles += patch_key_tiles(g, group_keys(g, plan_group(plan, i)), tile_keys);
  }
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

// Row-run tiles of tile_keys keys of zone z's groups, or -1 when a group's window starts differ
// by the window or more in a dimension (no core: the zone cannot be grouped so).
inline int64_t zone_tiles(const WindowGeometry& g, const Zone& z, int tile_keys) {
  const int eh = window_extent(g.H, g.dh), ew = window_extent(g.W, g.dw);
  int64_t tiles = 0;
  for (int j = 0, n = ZoneCounts(z).groups(); j < n; ++j) {
    const PositionGroup grp = zone_group(z, j);
    int h0, h1, w0, w1;
    grp.bounds(h0, h1, w0, w1);
    if (window_start(h1, g.H, g.dh) - window_start(h0, g.H, g.dh) >= eh ||
        window_start(w1, g.W, g.dw) - window_start(w0, g.W, g.dw) >= ew)
      return -1;
    tiles += patch_key_tiles(g, box_keys(g, h0, h1, w0, w1), tile_keys);
  }
  return tiles;
}

// Where a grid dimension of n positions (half window d) is cut into the bands of zones: [0, lo)
// share the first window start, [hi, n) the last, [lo, hi) are the interior, grown (from the
// bands, while they have positions) to a multiple of `patch` so that its patches are whole.
// A dimension no larger than the window has one start: all of it is the first band.
inline void zone_bands(int n, int d, int patch, int& lo, int& hi) {
  if (n <= 2 * d + 1) {
    lo = hi = n;
    return;
  }
  lo = d + 1;
  hi = n - d - 1;
  int need = (patch - (hi - lo) % patch) % patch;
  const int from_lo = need < lo ? need : lo;
  lo -= from_lo;
  need -= from_lo;
  hi += need < n - hi ? need : n - hi;
}

// The zoned plan of ph x pw interior patches (zones above). Each band zone takes runs of ph * pw
// positions (across for the bands of clamped columns) where they cost fewer tiles than patches.
inline WindowPlan zoned_plan(const WindowGeometry& g, int ph, int pw, int tile_keys = kTileKeys) {
  WindowPlan plan = make_plan(g, ph, pw);
  int rb[4], cb[4];
  rb[0] = cb[0] = 0;
  rb[3] = g.H;
  cb[3] = g.W;
  zone_bands(g.H, g.dh, ph, rb[1], rb[2]);
  zone_bands(g.W, g.dw, pw, cb[1], cb[2]);
  plan.n_zones = 0;
  plan.groups = 0;
  for (int i = 0; i < 3; ++i) {
    for (int j = 0; j < 3; ++j) {
      if (rb[i + 1] <= rb[i] || cb[j + 1] <= cb[j]) continue;
      Zone z;
      z.r0 = rb[i];
      z.r1 = rb[i + 1];
      z.c0 = cb[j];
      z.c1 = cb[j + 1];
      z.strip = ph;  // patches
      z.group = ph * pw;
      int64_t best = zone_tiles(g, z, tile_keys);
      if (i != 1 || j != 1) {
        Zone r = z;  // runs along the band: one strip as deep as the band
        r.across = i == 1 ? 1 : 0;
        r.strip = r.across ? z.c1 - z.c0 : z.r1 - z.r0;
        const int64_t runs = zone_tiles(g, r, tile_keys);
        if (runs >= 0 && (best < 0 || runs < best)) {
          z = r;
          best = runs;
        }
      }
      z.first_group = plan.groups;
      plan.groups += ZoneCounts(z).groups();
      plan.zones[plan.n_zones++] = z;
    }
  }
  return plan;
}

// The row-run plan of the portable kernels: the zoned plan of the plain plan's patch size, or the
// plain plan where zones would compute more pairs.
inline WindowPlan choose_zoned_plan(const WindowGeometry& g, int tile_keys = kTileKeys) {
  const WindowPlan plain = choose_row_plan(g, tile_keys);
  const WindowPlan zoned = zoned_plan(g, plain.ph, plain.pw, tile_keys);
  return computed_pairs(g, zoned, tile_keys) <= computed_pairs(g, plain, tile_keys) ? zoned : plain;
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
