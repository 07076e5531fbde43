// The portable kernels' walk over a block's keys (row_steps.h: StepWalk, RowCursor, RectTiles),
// replayed on the CPU for the copying threads exactly as portable_kernels.cu's Loader runs it, and
// checked against brute force: the steps hold each key of each row-run rectangle once, in order,
// and nothing else (rows past a rectangle's keys are padding); a step without the mask holds only
// keys every query of the block sees; the steps number ceil(keys / 64) per rectangle. Dense walks
// alike over 0 .. n_kv - 1.
#include "ops/cuda/attention/row_steps.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <vector>

namespace freeswim::attention {
namespace {

struct Row {
  bool valid = false;
  int token = -1, kr = 0, kc = 0;
};
struct Step {
  std::vector<Row> rows = std::vector<Row>(kStepKeys);
  bool masked = false, partial = false;
  int rect = 0;
};

// The walk of a window block over its RectTiles, as portable_kernels.cu's Loader runs it.
struct WindowKeys {
  const WindowGeometry& g;
  const RectTiles& rt;
  bool start(StepWalk& w, RowCursor& cur, int first_row) const {
    if (!w.start(rt)) return false;
    cur.start(rt.keys.rect[w.rect], g, first_row);
    return true;
  }
  int n_keys(const StepWalk& w) const { return static_cast<int>(rt.keys.rect[w.rect].keys(g.T)); }
  void step(const StepWalk& w, RowCursor& cur, int k) const {
    cur.step(rt.keys.rect[w.rect], g, k);
  }
  int advance(StepWalk& w) const { return w.advance(w.keys_from_tile(rt, g.T), rt.first); }
  void restart(const StepWalk& w, RowCursor& cur, int first_row) const {
    cur.start(rt.keys.rect[w.rect], g, first_row);
  }
  bool masked(const StepWalk& w) const { return w.masked(rt); }
  bool partial(const StepWalk& w) const { return w.partial(rt, g.T); }
};

// The same for dense attention over n_kv keys.
struct DenseKeys {
  int n_kv;
  bool start(StepWalk& w, RowCursor& cur, int first_row) const {
    if (!w.start(n_kv)) return false;
    cur.idx = cur.token = first_row;
    return true;
  }
  int n_keys(const StepWalk&) const { return n_kv; }
  void step(const StepWalk&, RowCursor& cur, int k) const {
    cur.idx += k;
    cur.token += k;
  }
  int advance(StepWalk& w) const { return w.advance(w.keys_from_tile(n_kv), nullptr); }
  void restart(const StepWalk&, RowCursor&, int) const {}
  bool masked(const StepWalk& w) const { return w.masked(n_kv); }
  bool partial(const StepWalk& w) const { return w.masked(n_kv); }
};

// The steps of one block as the kernel's 128 threads load them (rows_per_pass: 128 /
// copy_threads_per_row), merged; checks that the threads walk the same steps. A thread's keys
// depend on its row group alone (its chunks only pick bytes of the row), so one thread per row
// group stands for the others.
template <class Keys>
std::vector<Step> replay(int rows_per_pass, const Keys& keys) {
  std::vector<Step> steps;
  for (int group = 0; group < rows_per_pass; ++group) {
    StepWalk walk;
    RowCursor cur;
    size_t s = 0;
    if (keys.start(walk, cur, group)) {
      for (;; ++s) {
        if (group == 0) steps.emplace_back();
        if (s >= steps.size()) {
          ADD_FAILURE() << "row group " << group << " walks more steps than group 0";
          return {};
        }
        Step& st = steps[s];
        if (group == 0) {
          st.rect = walk.rect;
          st.masked = keys.masked(walk);
          st.partial = keys.partial(walk);
        } else {
          EXPECT_EQ(st.rect, walk.rect);
          EXPECT_EQ(st.masked, keys.masked(walk));
        }
        const int n_keys = keys.n_keys(walk);
        for (int i = 0; i < kStepKeys / rows_per_pass; ++i) {
          Row& r = st.rows[static_cast<size_t>(group + i * rows_per_pass)];
          r.valid = cur.idx < n_keys;
          r.token = r.valid ? cur.token : -1;
          r.kr = cur.kr;
          r.kc = cur.kc;
          keys.step(walk, cur, rows_per_pass);
        }
        const int moved = keys.advance(walk);
        if (moved == 0) break;
        if (moved == 2) keys.restart(walk, cur, group);
      }
      ++s;
    }
    EXPECT_EQ(s, steps.size()) << "row group " << group;
  }
  return steps;
}

TEST(RowSteps, WindowStepsHoldEachKeyOfEachRectangleOnceInOrder) {
  const WindowGeometry geos[] = {{1, 1, 1, 0, 0},     {1, 5, 7, 3, 4},     {2, 9, 30, 2, 3},
                                 {3, 6, 8, 2, 3},     {1, 8, 8, 3, 3},     {2, 8, 8, 3, 3},
                                 {1, 5, 13, 2, 6},    {3, 1, 40, 0, 5},    {4, 37, 1, 6, 0},
                                 {7, 19, 29, 4, 9},   {2, 33, 50, 15, 26}, {21, 8, 12, 2, 3},
                                 {2, 45, 80, 22, 40}, {3, 40, 64, 7, 12}};
  for (const WindowGeometry& g : geos) {
    const WindowPlan plan = choose_row_plan(g, kStepKeys);
    for (int h0 = 0; h0 < g.H; h0 += plan.ph) {
      for (int w0 = 0; w0 < g.W; w0 += plan.pw) {
        RectTiles rt;
        rt.init(g, plan, h0, w0);
        for (const int head_dim : {64, 128}) {
          const std::vector<Step> steps =
              replay(kCopyThreads / copy_threads_per_row(true, head_dim), WindowKeys{g, rt});
          ASSERT_FALSE(steps.empty());
          // Expected: each rectangle's keys in (frame, row, column) order, ceil(n / 64) steps each.
          size_t s = 0;
          for (int i = 0; i < 5; ++i) {
            const KeyRect& R = rt.keys.rect[i];
            std::vector<int> want;
            for (int t = 0; t < g.T; ++t)
              for (int r = R.r0; r < R.r1; ++r)
                for (int c = R.c0; c < R.c1; ++c) want.push_back((t * g.H + r) * g.W + c);
            const size_t n_steps = (want.size() + kStepKeys - 1) / kStepKeys;
            std::vector<int> got;
            for (size_t k = 0; k < n_steps; ++k, ++s) {
              ASSERT_LT(s, steps.size()) << "rect " << i;
              EXPECT_EQ(steps[s].rect, i);
              for (int row = 0; row < kStepKeys; ++row) {
                const Row& rw = steps[s].rows[static_cast<size_t>(row)];
                const size_t idx = k * kStepKeys + static_cast<size_t>(row);
                ASSERT_EQ(rw.valid, idx < want.size()) << "rect " << i << " step " << k;
                if (rw.valid) {
                  got.push_back(rw.token);
                  EXPECT_EQ(rw.token, (rw.token / (g.H * g.W) * g.H + rw.kr) * g.W + rw.kc);
                }
              }
            }
            ASSERT_EQ(got, want) << "rect " << i << " of patch " << h0 << "," << w0;
          }
          EXPECT_EQ(s, steps.size());
          EXPECT_EQ(static_cast<int64_t>(steps.size()), patch_key_tiles(g, rt.keys, kStepKeys));
          // Partial steps (masked in every warp) are those with padding rows, and take the mask.
          for (const Step& st : steps) {
            const bool padded = std::any_of(st.rows.begin(), st.rows.end(),
                                            [](const Row& rw) { return !rw.valid; });
            EXPECT_EQ(st.partial, padded);
            if (padded) {
              EXPECT_TRUE(st.masked);
            }
          }
          // Unmasked steps: full, and seen by every query of the patch.
          for (const Step& st : steps) {
            if (st.masked) continue;
            for (const Row& rw : st.rows) {
              ASSERT_TRUE(rw.valid);
              for (int h = h0; h < std::min(h0 + plan.ph, g.H); ++h)
                for (int w = w0; w < std::min(w0 + plan.pw, g.W); ++w)
                  ASSERT_TRUE(window_visible(g, h * g.W + w, rw.token))
                      << "query " << h << "," << w << " key " << rw.token;
            }
          }
        }
      }
    }
  }
}

TEST(RowSteps, DenseStepsHoldEachKeyOnceInOrder) {
  for (const int n_kv : {1, 63, 64, 65, 127, 128, 129, 192, 193, 1000, 4097}) {
    for (const int head_dim : {64, 128}) {
      const std::vector<Step> steps =
          replay(kCopyThreads / copy_threads_per_row(false, head_dim), DenseKeys{n_kv});
      ASSERT_EQ(steps.size(), static_cast<size_t>((n_kv + kStepKeys - 1) / kStepKeys)) << n_kv;
      for (size_t s = 0; s < steps.size(); ++s) {
        bool all_valid = true;
        for (int row = 0; row < kStepKeys; ++row) {
          const int key = static_cast<int>(s) * kStepKeys + row;
          const Row& rw = steps[s].rows[static_cast<size_t>(row)];
          ASSERT_EQ(rw.valid, key < n_kv);
          if (rw.valid) {
            EXPECT_EQ(rw.token, key);
          }
          all_valid = all_valid && rw.valid;
        }
        EXPECT_EQ(steps[s].masked, !all_valid) << n_kv << " step " << s;
      }
    }
  }
}

// Every order of a patch's positions the planner may pick is a permutation of them.
TEST(RowSteps, PatchOrdersArePermutations) {
  for (int ph = 1; ph <= 5; ++ph)
    for (int pw = 1; pw <= 5; ++pw)
      for (int code = 0; code < 16; ++code)
        for (int shift = 0; shift < ph * pw; ++shift) {
          const PatchOrder o{code & 1, (code >> 1) & 1, (code >> 2) & 1, (code >> 3) & 1, shift};
          std::vector<int> hits(static_cast<size_t>(ph * pw), 0);
          for (int k = 0; k < ph * pw; ++k) {
            int r = -1, c = -1;
            patch_position(o, ph, pw, k, r, c);
            ASSERT_TRUE(r >= 0 && r < ph && c >= 0 && c < pw) << ph << "x" << pw << " k " << k;
            ++hits[static_cast<size_t>(r * pw + c)];
          }
          for (const int h : hits) ASSERT_EQ(h, 1) << ph << "x" << pw << " code " << code;
        }
}

// The warps' skips, against brute force on every patch: a warp skips (warp_rects bit i clear) only
// rectangles none of its rows sees a key of, and leaves the mask off (bit 8 + i) only where every
// row sees every key; the rows of a patch's chunks hold each of its queries once.
TEST(RowSteps, WarpsSkipOnlyRectanglesNoneOfTheirRowsSees) {
  const WindowGeometry geos[] = {{1, 5, 7, 3, 4},    {2, 9, 30, 2, 3},    {3, 6, 8, 2, 3},
                                 {1, 8, 8, 3, 3},    {1, 5, 13, 2, 6},    {3, 1, 40, 0, 5},
                                 {4, 37, 1, 6, 0},   {7, 19, 29, 4, 9},   {21, 8, 12, 2, 3},
                                 {21, 20, 30, 5, 8}, {5, 33, 50, 15, 26}, {2, 45, 80, 22, 40}};
  int64_t skipped = 0, unmasked = 0;
  for (const WindowGeometry& g : geos) {
    WindowPlan plan = choose_row_plan(g, kStepKeys);
    for (const PatchOrder& order :
         {PatchOrder{}, PatchOrder{1, 1, 1, 0, 1}, choose_patch_order(g, plan)}) {
      plan.order = order;
      for (int h0 = 0; h0 < g.H; h0 += plan.ph) {
        for (int w0 = 0; w0 < g.W; w0 += plan.pw) {
          const PatchKeys keys = patch_keys(g, plan.ph, plan.pw, h0, w0);
          std::vector<int> seen(static_cast<size_t>(g.tokens()), 0);
          for (int q0 = 0; q0 < plan.chunks * kBlockQ; q0 += kWarpRows) {
            const unsigned bits = warp_rects(g, plan, keys, h0, w0, q0);
            std::vector<int> rows;  // the warp's queries' positions h * W + w
            for (int i = 0; i < kWarpRows; ++i) {
              int t, h, w;
              if (!patch_query(g, plan, h0, w0, q0 + i, t, h, w)) continue;
              ASSERT_TRUE(h >= h0 && h < h0 + plan.ph && w >= w0 && w < w0 + plan.pw);
              ++seen[static_cast<size_t>((int64_t{t} * g.H + h) * g.W + w)];
              rows.push_back(h * g.W + w);
            }
            for (int i = 0; i < 5; ++i) {
              const KeyRect& R = keys.rect[i];
              bool any = false, all = true;
              for (int r = R.r0; r < R.r1; ++r)
                for (int c = R.c0; c < R.c1; ++c)
                  for (const int q : rows) {
                    const bool vis = window_visible(g, q, r * g.W + c);
                    any = any || vis;
                    all = all && vis;
                  }
              if (!((bits >> i) & 1u)) {
                EXPECT_FALSE(any) << "patch " << h0 << "," << w0 << " warp " << q0 / kWarpRows
                                  << " skips rect " << i << " that a row sees";
                if (!rows.empty()) skipped += R.keys(g.T);
              }
              if ((bits >> (8 + i)) & 1u) {
                EXPECT_TRUE(all && !rows.empty())
                    << "patch " << h0 << "," << w0 << " warp " << q0 / kWarpRows << " leaves rect "
                    << i << " unmasked, but a row misses a key";
                unmasked += R.keys(g.T);
              }
            }
          }
          for (int t = 0; t < g.T; ++t)
            for (int h = h0; h < std::min(h0 + plan.ph, g.H); ++h)
              for (int w = w0; w < std::min(w0 + plan.pw, g.W); ++w)
                ASSERT_EQ(seen[static_cast<size_t>((int64_t{t} * g.H + h) * g.W + w)], 1)
                    << "query " << t << "," << h << "," << w;
        }
      }
    }
  }
  // Not vacuous: some warps skip fringe keys, and some see whole fringe bands.
  EXPECT_GT(skipped, 0);
  EXPECT_GT(unmasked, 0);
}

// The portable plans at the benchmark shapes compute at least as few pairs as the Hopper row-run
// plan would in the same 64-key steps.
TEST(RowSteps, PlansAtTheBenchmarkShapes) {
  for (const WindowGeometry& g :
       {WindowGeometry{21, 68, 120, 15, 26}, WindowGeometry{21, 135, 240, 22, 40}}) {
    const WindowPlan plan = choose_row_plan(g, kStepKeys);
    const double useful =
        static_cast<double>(g.tokens()) * static_cast<double>(window_keys_per_query(g));
    const double density = useful / static_cast<double>(computed_pairs(g, plan, kStepKeys));
    const double hopper_plan_density =
        useful / static_cast<double>(computed_pairs(g, choose_row_plan(g), kStepKeys));
    EXPECT_GE(density, hopper_plan_density);
    EXPECT_GT(density, 0.93);
    // The position order makes every warp of a patch in the middle skip a fringe band, and the
    // warps skip more than in row-major order over the whole grid.
    WindowPlan ordered = plan;
    ordered.order = choose_patch_order(g, plan);
    const int hm = (g.H - plan.ph) / 2, wm = (g.W - plan.pw) / 2;
    const PatchKeys keys = patch_keys(g, plan.ph, plan.pw, hm, wm);
    for (int q0 = 0; q0 < kBlockQ; q0 += kWarpRows)
      EXPECT_NE(warp_rects(g, ordered, keys, hm, wm, q0) & 0x1fu, 0x1fu) << "warp " << q0 / 32;
    const double after_skips = useful / static_cast<double>(portable_computed_pairs(g, ordered));
    EXPECT_GT(after_skips, useful / static_cast<double>(portable_computed_pairs(g, plan)));
    std::printf(
        "%dx%dx%d window %dx%d: portable plan %dx%d patches, density %.4f, %.4f after the warps' "
        "skips\n",
        g.T, g.H, g.W, g.dh, g.dw, plan.ph, plan.pw, density, after_skips);
  }
}

}  // namespace
}  // namespace freeswim::attention
