// The portable kernels' walk over a block's keys (row_steps.h: StepWalk, RowCursor, RectTiles),
// replayed on the CPU for the copying threads exactly as portable_kernels.cu's Loader runs it, and
// checked against brute force: the steps hold each key of each row-run rectangle once, in order,
// and nothing else (rows past a rectangle's keys are padding); a step without the mask holds only
// keys every query of the block sees; the steps number ceil(keys / step) per rectangle. Dense walks
// alike over 0 .. n_kv - 1. Both step sizes: 64 keys (wide blocks) and 32 (narrow ones).
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
  std::vector<Row> rows;
  bool masked = false;
  int rect = 0, first_key = 0;
};

// The walk of a window block over its RectTiles, as portable_kernels.cu's Loader runs it.
struct WindowKeys {
  const WindowGeometry& g;
  const RectTiles& rt;
  template <class Walk>
  bool start(Walk& w, RowCursor& cur, int first_row) const {
    if (!w.start(rt)) return false;
    cur.start(rt.keys.rect[w.rect], g, first_row);
    return true;
  }
  template <class Walk>
  int n_keys(const Walk& w) const {
    return static_cast<int>(rt.keys.rect[w.rect].keys(g.T));
  }
  template <class Walk>
  void step(const Walk& w, RowCursor& cur, int k) const {
    cur.step(rt.keys.rect[w.rect], g, k);
  }
  template <class Walk>
  int advance(Walk& w) const {
    return w.advance(w.keys_from_tile(rt, g.T), rt.first);
  }
  template <class Walk>
  void restart(const Walk& w, RowCursor& cur, int first_row) const {
    cur.start(rt.keys.rect[w.rect], g, first_row);
  }
  template <class Walk>
  bool masked(const Walk& w) const {
    return w.masked(rt);
  }
};

// The same for dense attention over n_kv keys.
struct DenseKeys {
  int n_kv;
  template <class Walk>
  bool start(Walk& w, RowCursor& cur, int first_row) const {
    if (!w.start(n_kv)) return false;
    cur.idx = cur.token = first_row;
    return true;
  }
  template <class Walk>
  int n_keys(const Walk&) const {
    return n_kv;
  }
  template <class Walk>
  void step(const Walk&, RowCursor& cur, int k) const {
    cur.idx += k;
    cur.token += k;
  }
  template <class Walk>
  int advance(Walk& w) const {
    return w.advance(w.keys_from_tile(n_kv), nullptr);
  }
  template <class Walk>
  void restart(const Walk&, RowCursor&, int) const {}
  template <class Walk>
  bool masked(const Walk& w) const {
    return w.masked(n_kv);
  }
};

// The steps of one block as the kernel's 128 threads load them (rows_per_pass: 128 /
// copy_threads_per_row), merged; checks that the threads walk the same steps. A thread's keys
// depend on its row group alone (its chunks only pick bytes of the row), so one thread per row
// group stands for the others.
template <int kStep, class Keys>
std::vector<Step> replay(int rows_per_pass, const Keys& keys) {
  std::vector<Step> steps;
  for (int group = 0; group < rows_per_pass; ++group) {
    StepWalkOf<kStep> walk;
    RowCursor cur;
    size_t s = 0;
    if (keys.start(walk, cur, group)) {
      for (;; ++s) {
        if (group == 0) steps.push_back(Step{std::vector<Row>(kStep)});
        if (s >= steps.size()) {
          ADD_FAILURE() << "row group " << group << " walks more steps than group 0";
          return {};
        }
        Step& st = steps[s];
        if (group == 0) {
          st.rect = walk.rect;
          st.masked = keys.masked(walk);
          st.first_key = walk.first_key();
        } else {
          EXPECT_EQ(st.rect, walk.rect);
          EXPECT_EQ(st.masked, keys.masked(walk));
        }
        const int n_keys = keys.n_keys(walk);
        for (int i = 0; i < kStep / rows_per_pass; ++i) {
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

template <int kStep>
void check_window_steps() {
  const WindowGeometry geos[] = {{1, 1, 1, 0, 0},     {1, 5, 7, 3, 4},     {2, 9, 30, 2, 3},
                                 {3, 6, 8, 2, 3},     {1, 8, 8, 3, 3},     {2, 8, 8, 3, 3},
                                 {1, 5, 13, 2, 6},    {3, 1, 40, 0, 5},    {4, 37, 1, 6, 0},
                                 {7, 19, 29, 4, 9},   {2, 33, 50, 15, 26}, {21, 8, 12, 2, 3},
                                 {2, 45, 80, 22, 40}, {3, 40, 64, 7, 12}};
  for (const WindowGeometry& g : geos) {
    const WindowPlan plan = choose_zoned_plan(g, kStepKeys);
    for (int gi = 0; gi < plan.groups; ++gi) {
      const PositionGroup grp = plan_group(plan, gi);
      {
        RectTiles rt;
        rt.init(g, group_keys(g, grp));
        for (const int head_dim : {64, 128}) {
          const std::vector<Step> steps =
              replay<kStep>(kCopyThreads / copy_threads_per_row(true, head_dim), WindowKeys{g, rt});
          ASSERT_FALSE(steps.empty());
          // Expected: each rectangle's keys in (frame, row, column) order, ceil(n / kStep) steps
          // each.
          size_t s = 0;
          for (int i = 0; i < 5; ++i) {
            const KeyRect& R = rt.keys.rect[i];
            std::vector<int> want;
            for (int t = 0; t < g.T; ++t)
              for (int r = R.r0; r < R.r1; ++r)
                for (int c = R.c0; c < R.c1; ++c) want.push_back((t * g.H + r) * g.W + c);
            const size_t n_steps = (want.size() + kStep - 1) / kStep;
            std::vector<int> got;
            for (size_t k = 0; k < n_steps; ++k, ++s) {
              ASSERT_LT(s, steps.size()) << "rect " << i;
              EXPECT_EQ(steps[s].rect, i);
              for (int row = 0; row < kStep; ++row) {
                const Row& rw = steps[s].rows[static_cast<size_t>(row)];
                const size_t idx = k * kStep + static_cast<size_t>(row);
                ASSERT_EQ(rw.valid, idx < want.size()) << "rect " << i << " step " << k;
                if (rw.valid) {
                  got.push_back(rw.token);
                  EXPECT_EQ(rw.token, (rw.token / (g.H * g.W) * g.H + rw.kr) * g.W + rw.kc);
                }
              }
            }
            ASSERT_EQ(got, want) << "rect " << i << " of group " << gi;
          }
          EXPECT_EQ(s, steps.size());
          EXPECT_EQ(static_cast<int64_t>(steps.size()), patch_key_tiles(g, rt.keys, kStep));
          // Unmasked steps: full, and seen by every query of the group.
          for (const Step& st : steps) {
            if (st.masked) continue;
            for (const Row& rw : st.rows) {
              ASSERT_TRUE(rw.valid);
              for (int k = 0; k < grp.count; ++k) {
                int h, w;
                grp.position(k, h, w);
                ASSERT_TRUE(window_visible(g, h * g.W + w, rw.token))
                    << "query " << h << "," << w << " key " << rw.token;
              }
            }
          }
        }
      }
    }
  }
}

TEST(RowSteps, WindowStepsHoldEachKeyOfEachRectangleOnceInOrder) {
  check_window_steps<kStepKeys>();
  check_window_steps<kNarrowStepKeys>();
}

template <int kStep>
void check_dense_steps() {
  for (const int n_kv : {1, 31, 32, 33, 63, 64, 65, 96, 97, 127, 128, 129, 192, 193, 1000, 4097}) {
    for (const int head_dim : {64, 128}) {
      const std::vector<Step> steps =
          replay<kStep>(kCopyThreads / copy_threads_per_row(false, head_dim), DenseKeys{n_kv});
      ASSERT_EQ(steps.size(), static_cast<size_t>((n_kv + kStep - 1) / kStep)) << n_kv;
      for (size_t s = 0; s < steps.size(); ++s) {
        EXPECT_EQ(steps[s].first_key, static_cast<int>(s) * kStep) << n_kv;
        bool all_valid = true;
        for (int row = 0; row < kStep; ++row) {
          const int key = static_cast<int>(s) * kStep + row;
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

TEST(RowSteps, DenseStepsHoldEachKeyOnceInOrder) {
  check_dense_steps<kStepKeys>();
  check_dense_steps<kNarrowStepKeys>();
}

// The portable (zoned) plans at the benchmark shapes compute fewer pairs than the plain plan of
// the same patches would in the same 64-key steps: 0.959 / 0.961 of them useful, against 0.945 /
// 0.946.
TEST(RowSteps, PlansAtTheBenchmarkShapes) {
  for (const WindowGeometry& g :
       {WindowGeometry{21, 68, 120, 15, 26}, WindowGeometry{21, 135, 240, 22, 40}}) {
    const WindowPlan plan = choose_zoned_plan(g, kStepKeys);
    const double useful =
        static_cast<double>(g.tokens()) * static_cast<double>(window_keys_per_query(g));
    const double density = useful / static_cast<double>(computed_pairs(g, plan, kStepKeys));
    const double hopper_plan_density =
        useful / static_cast<double>(computed_pairs(g, choose_row_plan(g), kStepKeys));
    EXPECT_GT(density, hopper_plan_density + 0.01);
    EXPECT_GT(density, 0.955);
    EXPECT_EQ(plan.n_zones, 9);
    std::printf(
        "%dx%dx%d window %dx%d: portable plan %dx%d patches in %d zones, density %.4f "
        "(plain plan %.4f)\n",
        g.T, g.H, g.W, g.dh, g.dw, plan.ph, plan.pw, plan.n_zones, density, hopper_plan_density);
  }
}

}  // namespace
}  // namespace freeswim::attention
