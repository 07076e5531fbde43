// The row-run tiling of the window kernels (window_plan.h: patch_keys, choose_row_plan), checked
// on the CPU: a patch's key rectangles cover exactly the union of its queries' windows, each key
// once, and the core rectangle (the one the kernel does not mask) is seen by every query.
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
