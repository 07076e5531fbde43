// The row-run tiling of the window kernels (window_plan.h: patch_keys, choose_row_plan, zones),
// checked on the CPU: a patch's or a group's key rectangles cover exactly the union of its queries'
// windows, each key once, and the core rectangle (the one the kernel does not mask) is seen by
// every query.
#include <gtest/gtest.h>

#include <algorithm>
#include <vector>

#include "ops/cuda/attention/window_plan.h"

namespace freeswim::attention {
namespace {

TEST(RowRuns, RectanglesCoverEveryVisibleKeyOnce) {
  const WindowGeometry geos[] = {{2, 9, 30, 2, 3}, {1, 5, 7, 3, 4}, {3, 68, 120, 15, 26}};
  for (const WindowGeometry& g : geos) {
    const WindowPlan plan = choose_row_plan(g);
    for (int h0 = 0; h0 < g.H; h0 += plan.ph) {
      for (int w0 = 0; w0 < g.W; w0 += plan.pw) {
        const PatchKeys pk = patch_keys(g, plan.ph, plan.pw, h0, w0);
        std::vector<int> cover(static_cast<size_t>(g.H * g.W), 0);
        for (int i = 0; i < 5; ++i)
          for (int r = pk.rect[i].r0; r < pk.rect[i].r1; ++r)
            for (int c = pk.rect[i].c0; c < pk.rect[i].c1; ++c) cover[r * g.W + c] += 1;
        for (int r = 0; r < g.H; ++r) {
          for (int c = 0; c < g.W; ++c) {
            bool seen = false, seen_by_all = true;
            for (int h = h0; h < std::min(h0 + plan.ph, g.H); ++h) {
              for (int w = w0; w < std::min(w0 + plan.pw, g.W); ++w) {
                const bool s = window_visible(g, h * g.W + w, r * g.W + c);
                seen = seen || s;
                seen_by_all = seen_by_all && s;
              }
            }
            ASSERT_EQ(cover[r * g.W + c], seen ? 1 : 0) << r << "," << c;
            const KeyRect& core = pk.rect[0];
            const bool in_core = r >= core.r0 && r < core.r1 && c >= core.c0 && c < core.c1;
            if (in_core) {
              ASSERT_TRUE(seen_by_all) << r << "," << c;
            }
          }
        }
      }
    }
  }
}

// Zoned plans (window_plan.h, zones): every grid position in exactly one group, a group's key
// rectangles cover exactly the union of its positions' windows with a core seen by all of them,
// the query rows of a group fit its blocks, and the counted pairs are the groups' tiles.
TEST(RowRuns, ZonedPlansGroupEveryPositionOnceAndCoverTheirWindows) {
  const WindowGeometry geos[] = {{1, 1, 1, 0, 0},     {1, 5, 7, 3, 4},       {2, 9, 30, 2, 3},
                                 {3, 6, 8, 2, 3},     {1, 8, 8, 3, 3},       {1, 5, 13, 2, 6},
                                 {3, 1, 40, 0, 5},    {4, 37, 1, 6, 0},      {7, 19, 29, 4, 9},
                                 {2, 33, 50, 15, 26}, {21, 8, 12, 2, 3},     {2, 45, 80, 22, 40},
                                 {3, 40, 64, 7, 12},  {21, 68, 120, 15, 26}, {1, 20, 30, 0, 0},
                                 {5, 17, 23, 1, 2},   {130, 9, 9, 2, 2},     {2, 135, 240, 22, 40}};
  for (const WindowGeometry& g : geos) {
    const int eh = window_extent(g.H, g.dh), ew = window_extent(g.W, g.dw);
    const WindowPlan plan = choose_zoned_plan(g, kTileKeys);
    const WindowPlan z = zoned_plan(g, plan.ph, plan.pw, kTileKeys);
    ASSERT_LE(computed_pairs(g, plan), computed_pairs(g, z));
    for (const WindowPlan& pl : {plan, z}) {
      ASSERT_GE(pl.n_zones, 1);
      ASSERT_LE(pl.n_zones, kMaxZones);
      int groups = 0;
      for (int i = 0; i < pl.n_zones; ++i) {
        EXPECT_EQ(pl.zones[i].first_group, groups);
        groups += ZoneCounts(pl.zones[i]).groups();
      }
      ASSERT_EQ(groups, pl.groups);
      std::vector<int> owner(static_cast<size_t>(g.H * g.W), 0);
      int64_t tiles = 0;
      for (int gi = 0; gi < pl.groups; ++gi) {
        const PositionGroup grp = plan_group(pl, gi);
        ASSERT_GE(grp.count, 1);
        ASSERT_LE(grp.count, grp.stride);
        ASSERT_LE(int64_t{g.T} * grp.stride, int64_t{pl.chunks} * kBlockQ);
        int hmin, hmax, wmin, wmax;
        grp.bounds(hmin, hmax, wmin, wmax);
        std::vector<std::pair<int, int>> starts;  // of the positions' windows
        for (int k = 0; k < grp.count; ++k) {
          int h, w;
          grp.position(k, h, w);
          ASSERT_TRUE(h >= hmin && h <= hmax && w >= wmin && w <= wmax) << gi;
          ASSERT_TRUE(h >= 0 && h < g.H && w >= 0 && w < g.W) << gi;
          owner[static_cast<size_t>(h * g.W + w)] += 1;
          starts.emplace_back(window_start(h, g.H, g.dh), window_start(w, g.W, g.dw));
        }
        const PatchKeys pk = group_keys(g, grp);
        tiles += patch_key_tiles(g, pk);
        // Keys outside the union of the windows' boxes are seen by none: only the union is
        // scanned, and every rectangle must lie inside it.
        const int ur0 = window_start(hmin, g.H, g.dh), ur1 = window_start(hmax, g.H, g.dh) + eh;
        const int uc0 = window_start(wmin, g.W, g.dw), uc1 = window_start(wmax, g.W, g.dw) + ew;
        const int uw = uc1 - uc0;
        std::vector<int> cover(static_cast<size_t>((ur1 - ur0) * uw), 0);
        for (const KeyRect& r : pk.rect) {
          ASSERT_LE(r.r0, r.r1);
          ASSERT_LE(r.c0, r.c1);
          if (r.r0 == r.r1 || r.c0 == r.c1) continue;
          ASSERT_TRUE(r.r0 >= ur0 && r.r1 <= ur1 && r.c0 >= uc0 && r.c1 <= uc1) << gi;
          for (int kr = r.r0; kr < r.r1; ++kr)
            for (int kc = r.c0; kc < r.c1; ++kc)
              cover[static_cast<size_t>((kr - ur0) * uw + kc - uc0)] += 1;
        }
        ASSERT_GT(pk.rect[0].r1 - pk.rect[0].r0, 0) << "empty core, group " << gi;
        ASSERT_GT(pk.rect[0].c1 - pk.rect[0].c0, 0) << "empty core, group " << gi;
        for (int kr = ur0; kr < ur1; ++kr) {
          for (int kc = uc0; kc < uc1; ++kc) {
            bool seen = false, seen_by_all = true;
            for (const auto& [rs, cs] : starts) {
              const bool v = kr >= rs && kr < rs + eh && kc >= cs && kc < cs + ew;
              seen = seen || v;
              seen_by_all = seen_by_all && v;
            }
            ASSERT_EQ(cover[static_cast<size_t>((kr - ur0) * uw + kc - uc0)], seen ? 1 : 0)
                << g.H << "x" << g.W << " group " << gi << " key " << kr << "," << kc;
            const KeyRect& core = pk.rect[0];
            if (kr >= core.r0 && kr < core.r1 && kc >= core.c0 && kc < core.c1) {
              ASSERT_TRUE(seen_by_all) << "group " << gi << " key " << kr << "," << kc;
            }
          }
        }
      }
      for (int i = 0; i < g.H * g.W; ++i) ASSERT_EQ(owner[static_cast<size_t>(i)], 1) << i;
      EXPECT_EQ(computed_pairs(g, pl), tiles * pl.chunks * kBlockQ * kTileKeys);
    }
  }
}

// A plain plan is one zone of the same patches, numbered as the Hopper kernels number them.
TEST(RowRuns, PlainPlanIsOneZoneOfPatches) {
  for (const WindowGeometry& g : {WindowGeometry{2, 9, 30, 2, 3}, WindowGeometry{3, 17, 23, 1, 2},
                                  WindowGeometry{21, 68, 120, 15, 26}}) {
    const WindowPlan plan = choose_row_plan(g);
    ASSERT_EQ(plan.n_zones, 1);
    ASSERT_EQ(plan.groups, plan.patches_h * plan.patches_w);
    for (int gi = 0; gi < plan.groups; ++gi) {
      const PositionGroup grp = plan_group(plan, gi);
      int hmin, hmax, wmin, wmax;
      grp.bounds(hmin, hmax, wmin, wmax);
      const int h0 = gi / plan.patches_w * plan.ph, w0 = gi % plan.patches_w * plan.pw;
      EXPECT_EQ(hmin, h0);
      EXPECT_EQ(wmin, w0);
      EXPECT_EQ(hmax, std::min(h0 + plan.ph, g.H) - 1);
      EXPECT_EQ(wmax, std::min(w0 + plan.pw, g.W) - 1);
      EXPECT_EQ(grp.count, (hmax - hmin + 1) * (wmax - wmin + 1));
    }
  }
}

// The row-run plans at the benchmark shapes: 2x3 patches (126 of 128 query rows used at 21
// frames), about 0.94 of the computed pairs useful.
TEST(RowRuns, PlanAtTheBenchmarkShapes) {
  for (const WindowGeometry& g :
       {WindowGeometry{21, 68, 120, 15, 26}, WindowGeometry{21, 135, 240, 22, 40}}) {
    const WindowPlan plan = choose_row_plan(g);
    EXPECT_EQ(plan.ph, 2);
    EXPECT_EQ(plan.pw, 3);
    EXPECT_EQ(plan.box_w, 0);
    const double useful =
        static_cast<double>(g.tokens()) * static_cast<double>(window_keys_per_query(g));
    const double density = useful / static_cast<double>(computed_pairs(g, plan));
    EXPECT_GT(density, 0.93);
    EXPECT_LT(density, 0.95);
  }
}

}  // namespace
}  // namespace freeswim::attention
