// The row segments and TMA boxes of the window kernel fed by TMA (window_plan.h: TileSegments,
// segment_box_level, segment_boxes) and the pairs producer's KeyStepper, checked on the CPU
// against a key-by-key walk of the rectangle: every tile of every rectangle of every patch of
// several geometries must be covered exactly, in order, by segments that stay inside one rectangle
// row, and every segment exactly by its boxes.
#include <gtest/gtest.h>

#include <vector>

#include "ops/cuda/attention/window_plan.h"

namespace freeswim::attention {
namespace {

constexpr int kLevels = 7;  // boxes of 1 .. 64 keys, as the kernel's maps

// Rows [row, row + len) of a tile covered by the boxes of one segment: each row exactly once or,
// where two boxes overlap, with the same key (the boxes start at the same token offsets as rows).
void expect_boxes_cover(int len) {
  const int b = segment_box_level(len, kLevels);
  const int box = 1 << b;
  ASSERT_LT(b, kLevels);
  ASSERT_LE(box, len);
  const int n = segment_boxes(len, kLevels);
  std::vector<int> hits(static_cast<size_t>(len), 0);
  for (int part = 0; part < n; ++part) {
    const int off = part == 0 ? 0 : len - box;
    ASSERT_GE(off, 0);
    for (int i = 0; i < box; ++i) ++hits[static_cast<size_t>(off + i)];
  }
  for (int i = 0; i < len; ++i) EXPECT_GE(hits[static_cast<size_t>(i)], 1) << "len " << len;
  EXPECT_EQ(n == 1, len == box) << "len " << len;
}

TEST(TileSegments, BoxesCoverEverySegmentLength) {
  for (int len = 1; len <= 128; ++len) expect_boxes_cover(len);
}

// Walks every tile of every rectangle and compares the segments with the keys one by one.
void check_geometry(const WindowGeometry& g, int tile_keys) {
  const WindowPlan plan = choose_plan(g, tile_keys);
  for (int ph = 0; ph < plan.patches_h; ++ph)
    for (int pw = 0; pw < plan.patches_w; ++pw) {
      const PatchKeys pk = patch_keys(g, plan.ph, plan.pw, ph * plan.ph, pw * plan.pw);
      for (const KeyRect& R : pk.rect) {
        const int cols = R.c1 - R.c0, rows = R.r1 - R.r0;
        const auto n_keys = static_cast<int>(R.keys(g.T));
        for (int k0 = 0; k0 < n_keys; k0 += tile_keys) {
          const int nk = n_keys - k0 < tile_keys ? n_keys - k0 : tile_keys;
          const TileSegments seg(k0, nk, cols);
          int next = 0;  // next tile row to be covered
          for (int i = 0; i < seg.count; ++i) {
            ASSERT_EQ(seg.row(i), next) << "segment " << i;
            ASSERT_GE(seg.len(i), 1);
            ASSERT_LE(seg.first_col(i) + seg.len(i), cols) << "segment leaves its row";
            for (int e = 0; e < seg.len(i); ++e) {
              const int key = k0 + seg.row(i) + e;  // the key this tile row must hold
              const int rr = key / cols;
              ASSERT_EQ(seg.rect_row(i), rr);
              ASSERT_EQ(seg.first_col(i) + e, key % cols);
              ASSERT_LT(rr, g.T * rows);
            }
            next += seg.len(i);
          }
          ASSERT_EQ(next, nk) << "tile at key " << k0 << " of " << n_keys;
        }
      }
    }
}

TEST(TileSegments, CoverEveryTileOfEveryRectangle) {
  const WindowGeometry shapes[] = {
      {21, 68, 120, 15, 26},  // 1.3B at 1088x1920 (the benchmark shape)
      {3, 40, 41, 5, 7},      // small grid, odd sizes
      {1, 5, 9, 2, 3},        // one frame
      {2, 7, 300, 1, 90},     // rows wider than a tile
      {4, 6, 6, 10, 10},      // window larger than the grid
  };
  for (const WindowGeometry& g : shapes)
    for (int tile_keys : {kBlockK, kBlockKWide}) check_geometry(g, tile_keys);
}

// The stepper of the pairs producer: from every first key a thread can start at (0..63), each
// step lands where decoding the key index directly says, up to the rectangle's end.
TEST(KeyStepper, StepsMatchDirectDecodeOnEveryRectangle) {
  const WindowGeometry shapes[] = {{21, 68, 120, 15, 26},
                                   {3, 40, 41, 5, 7},
                                   {1, 5, 9, 2, 3},
                                   {2, 7, 300, 1, 90},
                                   {4, 6, 6, 10, 10}};
  for (const WindowGeometry& g : shapes) {
    const WindowPlan plan = choose_plan(g, kBlockKWide);
    for (int ph = 0; ph < plan.patches_h; ph += 3)
      for (int pw = 0; pw < plan.patches_w; pw += 5) {
        const PatchKeys pk = patch_keys(g, plan.ph, plan.pw, ph * plan.ph, pw * plan.pw);
        for (const KeyRect& R : pk.rect) {
          if (R.keys(g.T) == 0) continue;
          const int cols = R.c1 - R.c0, rows = R.r1 - R.r0;
          for (int first = 0; first < 64; ++first) {
            KeyStepper<64> st;
            st.start_rect(g, R, first);
            for (; st.idx < st.n_keys; st.step()) {
              const int rr = st.idx / cols;
              ASSERT_EQ(st.kc, R.c0 + st.idx % cols);
              ASSERT_EQ(st.kr, R.r0 + rr % rows);
              ASSERT_EQ(st.t, rr / rows);
              ASSERT_EQ(st.token(g), (st.t * g.H + st.kr) * g.W + st.kc);
            }
          }
        }
      }
  }
}

}  // namespace
}  // namespace freeswim::attention
