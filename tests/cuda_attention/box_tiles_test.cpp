// The box tiles of the box-tile window kernel (window_plan.h: box_grid, BoxRowMask, box_first_row,
// box_last_row, choose_box_plan), checked on the CPU by replaying the kernel's decisions: for
// every query row of every block and every key of every tile, the consumer's mask (its fast path
// where BoxRowMask says it may take it, its bit masks otherwise) must keep exactly the keys in
// the query's window, and the kept keys must be the whole window (each once).
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>

#include "ops/cuda/attention/window_plan.h"

namespace freeswim::attention {
namespace {

bool first_row(int box_w, int n, int x) {
  switch (box_w) {
    case 4:
      return box_first_row<4>(n, x);
    case 8:
      return box_first_row<8>(n, x);
    default:
      return box_first_row<16>(n, x);
  }
}
bool last_row(int box_w, int n, int x) {
  switch (box_w) {
    case 4:
      return box_last_row<4>(n, x);
    case 8:
      return box_last_row<8>(n, x);
    default:
      return box_last_row<16>(n, x);
  }
}

TEST(BoxTiles, FirstAndLastRowHelpersMatchTheKeyIndex) {
  for (const int bw : kBoxWidths) {
    const int bh = kTileKeys / bw;
    for (int k = 0; k < kTileKeys; ++k) {
      EXPECT_EQ(first_row(bw, k / 8, k % 8), k / bw == 0) << "box_w " << bw << " key " << k;
      EXPECT_EQ(last_row(bw, k / 8, k % 8), k / bw == bh - 1) << "box_w " << bw << " key " << k;
    }
  }
}

// The kernel's exact path (bit masks per thread) equals the key-by-key test, for every thread
// column (c4), element and window placement around a tile.
template <int kBoxW>
void expect_bits_match() {
  const int eh_ew[][2] = {{31, 53}, {5, 7}, {1, 1}, {45, 81}, {3, 2}};
  for (const auto& ex : eh_ew)
    for (int lo = -50; lo <= 40; ++lo)
      for (int clo = -90; clo <= 20; clo += 3) {
        const BoxRowMask m(lo, clo, ex[0], ex[1], kBoxW);
        for (int c4 = 0; c4 < 4; ++c4) {
          const BoxBits<kBoxW> b(m, ex[0], ex[1], c4);
          for (int n = 0; n < kTileKeys / 8; ++n)
            for (int e = 0; e < 2; ++e)
              ASSERT_EQ(b.visible(n, e), m.visible(8 * n + 2 * c4 + e, ex[0], ex[1], kBoxW))
                  << "box_w " << kBoxW << " lo " << lo << " clo " << clo << " c4 " << c4 << " n "
                  << n << " e " << e;
        }
      }
}

TEST(BoxTiles, BitMasksMatchTheKeyTest) {
  expect_bits_match<4>();
  expect_bits_match<8>();
  expect_bits_match<16>();
}

bool bits_visible(int box_w, const BoxRowMask& m, int eh, int ew, int k) {
  const int n = k / 8, c4 = (k % 8) / 2, e = k % 2;
  switch (box_w) {
    case 4:
      return BoxBits<4>(m, eh, ew, c4).visible(n, e);
    case 8:
      return BoxBits<8>(m, eh, ew, c4).visible(n, e);
    default:
      return BoxBits<16>(m, eh, ew, c4).visible(n, e);
  }
}

struct Replay {
  int64_t masked_wrongly = 0, kept_wrongly = 0, rows_short = 0, fast_tiles = 0, tiles = 0;
};

// Replays one plan over every block (all chunks of every patch); only_valid skips padding rows.
Replay replay(const WindowGeometry& g, const WindowPlan& plan) {
  Replay out;
  const int eh = window_extent(g.H, g.dh), ew = window_extent(g.W, g.dw);
  const int bw = plan.box_w, bh = kTileKeys / bw;
  const int P = plan.ph * plan.pw;
  for (int ph_i = 0; ph_i < plan.patches_h; ++ph_i) {
    for (int pw_i = 0; pw_i < plan.patches_w; ++pw_i) {
      const int h0 = ph_i * plan.ph, w0 = pw_i * plan.pw;
      const BoxGrid bg = box_grid(g, plan.ph, plan.pw, h0, w0, bw);
      for (int chunk = 0; chunk < plan.chunks; ++chunk) {
        for (int i = 0; i < kBlockQ; ++i) {
          const int qi = chunk * kBlockQ + i, t = qi / P, pos = qi % P;
          const int h = h0 + pos / plan.pw, w = w0 + pos % plan.pw;
          if (t >= g.T || h >= g.H || w >= g.W) continue;  // padding rows are not stored
          const int64_t qtok = (int64_t{t} * g.H + h) * g.W + w;
          const int box_r = window_start(h, g.H, g.dh), box_c = window_start(w, g.W, g.dw);
          int64_t kept = 0;
          for (int kt = 0; kt < g.T; ++kt) {
            for (int br = 0; br < bg.nrb; ++br) {
              for (int bc = 0; bc < bg.ncb; ++bc) {
                const int kr0 = bg.r0 + br * bh, kc0 = bg.c0 + bc * bw;
                const BoxRowMask m(box_r - kr0, box_c - kc0, eh, ew, bw);
                ++out.tiles;
                out.fast_tiles += m.fast ? 1 : 0;
                for (int k = 0; k < kTileKeys; ++k) {
                  const bool masked = m.fast ? (first_row(bw, k / 8, k % 8) && m.mask_first) ||
                                                   (last_row(bw, k / 8, k % 8) && m.mask_last)
                                             : !bits_visible(bw, m, eh, ew, k);
                  const int kr = kr0 + k / bw, kc = kc0 + k % bw;
                  const bool in_grid = kr >= 0 && kr < g.H && kc >= 0 && kc < g.W;
                  const bool vis =
                      in_grid && window_visible(g, qtok, (int64_t{kt} * g.H + kr) * g.W + kc);
                  if (vis && masked) ++out.masked_wrongly;
                  if (!vis && !masked) ++out.kept_wrongly;
                  kept += masked ? 0 : 1;
                }
              }
            }
          }
          if (kept != window_keys_per_query(g)) ++out.rows_short;
        }
      }
    }
  }
  return out;
}

void expect_exact(const WindowGeometry& g, const WindowPlan& plan) {
  const Replay r = replay(g, plan);
  EXPECT_EQ(r.masked_wrongly, 0) << g.T << "x" << g.H << "x" << g.W << " patch " << plan.ph << "x"
                                 << plan.pw << " box_w " << plan.box_w;
  EXPECT_EQ(r.kept_wrongly, 0) << g.T << "x" << g.H << "x" << g.W << " patch " << plan.ph << "x"
                               << plan.pw << " box_w " << plan.box_w;
  EXPECT_EQ(r.rows_short, 0) << g.T << "x" << g.H << "x" << g.W << " patch " << plan.ph << "x"
                             << plan.pw << " box_w " << plan.box_w;
}

TEST(BoxTiles, MaskKeepsExactlyEachWindowSmallGeometries) {
  // Windows larger than the grid, border-heavy grids, several frames (chunks > 1 for big patches).
  const WindowGeometry geos[] = {{2, 9, 30, 2, 3}, {1, 5, 7, 3, 4},   {3, 20, 33, 4, 6},
                                 {2, 3, 3, 5, 5},  {21, 8, 12, 1, 2}, {1, 40, 17, 15, 3}};
  for (const WindowGeometry& g : geos) {
    expect_exact(g, choose_box_plan(g));
    for (const int bw : kBoxWidths)
      for (int ph = 1; ph <= 3; ++ph)
        for (int pw = 1; pw <= 3; ++pw) {
          WindowPlan plan = make_plan(g, ph, pw);
          plan.box_w = bw;
          expect_exact(g, plan);
        }
  }
}

// The plans the GPU tests force (cuda_attention_test: one box width at a time).
TEST(BoxTiles, MaskKeepsExactlyEachWindowForcedWidths) {
  const WindowGeometry geos[] = {
      {1, 5, 7, 3, 4}, {3, 40, 64, 7, 12}, {2, 33, 50, 15, 26}, {21, 8, 12, 2, 3}};
  for (const WindowGeometry& g : geos)
    for (const int bw : kBoxWidths) {
      const WindowPlan plan = choose_box_plan(g, bw);
      EXPECT_EQ(plan.box_w, bw);
      expect_exact(g, plan);
    }
}

// The FreeSwim shapes: the plan chosen for 21 frames, replayed over one frame (the mask does not
// depend on the frame; the rows of later frames are then padding), is exact, and most tiles take
// the fast path.
TEST(BoxTiles, MaskKeepsExactlyEachWindowFreeSwimShapes) {
  const WindowPlan p1080 = choose_box_plan({21, 68, 120, 15, 26});
  EXPECT_EQ(p1080.ph, 2);
  EXPECT_EQ(p1080.pw, 3);
  EXPECT_EQ(p1080.box_w, 4);
  const Replay r = replay({1, 68, 120, 15, 26}, p1080);
  EXPECT_EQ(r.masked_wrongly + r.kept_wrongly + r.rows_short, 0);
  EXPECT_GT(static_cast<double>(r.fast_tiles), 0.8 * static_cast<double>(r.tiles));
  expect_exact({1, 135, 240, 22, 40}, choose_box_plan({21, 135, 240, 22, 40}));
}

// Densities at the two benchmark shapes (21 frames): the box plan at 1080p costs about as many
// tiles as the 128-key runs, so choose_window_plan takes it.
TEST(BoxTiles, PlanDensityAtTheBenchmarkShapes) {
  const WindowGeometry g1080{21, 68, 120, 15, 26};
  const double useful =
      static_cast<double>(g1080.tokens()) * static_cast<double>(window_keys_per_query(g1080));
  const WindowPlan box = choose_box_plan(g1080);
  const double box_density = useful / static_cast<double>(computed_pairs(g1080, box));
  EXPECT_GT(box_density, 0.88);
  EXPECT_LT(box_density, 1.0);
  const WindowPlan chosen = choose_window_plan(g1080);
  EXPECT_EQ(chosen.box_w, 4);
  EXPECT_EQ(choose_window_plan(g1080, WindowTiling::row_runs).box_w, 0);
  // At 14B-4K too the box plan is within the allowance (0.85 against 0.95 density).
  EXPECT_GT(choose_window_plan({21, 135, 240, 22, 40}).box_w, 0);
  // An interior patch: 14 boxes of 4 columns across the 55-column union, one of 32 rows down.
  const BoxGrid bg = box_grid(g1080, 2, 3, 30, 60, 4);
  EXPECT_EQ(bg.nrb, 1);
  EXPECT_EQ(bg.ncb, 14);
}

}  // namespace
}  // namespace freeswim::attention
