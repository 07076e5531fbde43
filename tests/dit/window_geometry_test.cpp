// The inward window against the reference's literal formula, on many grids: interior, every
// border, grids smaller than the box in one or both dimensions, T = 1.
#include "freeswim/window_geometry.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>

#include "core/error.h"
#include "freeswim/policy.h"

namespace freeswim {
namespace {

// FREESWIM.md's formula, written as the reference states it, clipped to the grid.
bool reference_visible(int H, int W, int dh, int dw, int qh, int qw, int kh, int kw) {
  const int d_b = std::max(0, dh - qh), d_u = std::max(0, dh + qh - H + 1);
  const int d_r = std::max(0, dw - qw), d_l = std::max(0, dw + qw - W + 1);
  return qh - dh - d_u <= kh && kh <= qh + dh + d_b && qw - dw - d_l <= kw && kw <= qw + dw + d_r;
}

TEST(WindowGeometry, MatchesReferenceFormulaOnManyGrids) {
  for (int H : {1, 2, 3, 5, 6, 7, 12})
    for (int W : {1, 4, 8, 9, 16})
      for (int dh : {0, 1, 2, 3})
        for (int dw : {0, 1, 3, 4}) {
          const WindowGeometry g{2, H, W, dh, dw};
          for (int64_t q = 0; q < g.tokens(); ++q)
            for (int64_t k = 0; k < g.tokens(); ++k) {
              const int qh = static_cast<int>((q / W) % H), qw = static_cast<int>(q % W);
              const int kh = static_cast<int>((k / W) % H), kw = static_cast<int>(k % W);
              ASSERT_EQ(window_visible(g, q, k), reference_visible(H, W, dh, dw, qh, qw, kh, kw))
                  << "H=" << H << " W=" << W << " dh=" << dh << " dw=" << dw << " q=" << q
                  << " k=" << k;
            }
        }
}

TEST(WindowGeometry, EveryQuerySeesAFullBoxShiftedInward) {
  const WindowGeometry g{3, 10, 20, 2, 5};
  EXPECT_EQ(window_keys_per_query(g), 3 * 5 * 11);
  // Top-left corner: box starts at 0 and extends 2*dh+1 rows, not clipped to dh+1.
  EXPECT_EQ(window_start(0, 10, 2), 0);
  EXPECT_EQ(window_start(1, 10, 2), 0);
  EXPECT_EQ(window_start(2, 10, 2), 0);
  EXPECT_EQ(window_start(3, 10, 2), 1);
  // Bottom border: pushed up so it ends at the last row.
  EXPECT_EQ(window_start(9, 10, 2), 5);
  EXPECT_EQ(window_start(8, 10, 2), 5);
  EXPECT_EQ(window_start(7, 10, 2), 5);
  EXPECT_EQ(window_start(6, 10, 2), 4);
  for (int i = 0; i < 10; ++i) {
    EXPECT_GE(window_start(i, 10, 2), 0);
    EXPECT_LE(window_start(i, 10, 2) + window_extent(10, 2), 10);
    EXPECT_LE(window_start(i, 10, 2), i);
    EXPECT_GT(window_start(i, 10, 2) + window_extent(10, 2), i);  // a query sees itself
  }
}

TEST(WindowGeometry, GridSmallerThanBoxSeesWholeDimension) {
  // 6 rows, box of 2*4+1 = 9 rows: every query sees all 6 rows; columns still windowed.
  const WindowGeometry g{1, 6, 30, 4, 3};
  EXPECT_EQ(window_extent(6, 4), 6);
  for (int h = 0; h < 6; ++h) EXPECT_EQ(window_start(h, 6, 4), 0);
  EXPECT_EQ(window_keys_per_query(g), 1 * 6 * 7);
  // Exactly the box size: also the whole dimension, for every query.
  for (int h = 0; h < 9; ++h) EXPECT_EQ(window_start(h, 9, 4), 0);
}

TEST(WindowGeometry, SingleFrameAndAllFramesShareKeys) {
  const WindowGeometry one{1, 7, 9, 1, 2};
  EXPECT_EQ(window_keys_per_query(one), 3 * 5);
  const WindowGeometry many{4, 7, 9, 1, 2};
  // A query sees the same spatial box in every frame, including frames other than its own.
  for (int64_t q = 0; q < many.tokens(); ++q)
    for (int64_t k = 0; k < many.tokens(); ++k) {
      const int64_t plane = 7 * 9;
      EXPECT_EQ(window_visible(many, q, k), window_visible(many, q % plane, k % plane));
    }
}

TEST(AttentionScale, FollowsTheRuleOfTheBaseGrid) {
  // 1.3B at 480x832: N = 30*52, head_dim 128.
  const double n = 30.0 * 52.0;
  EXPECT_NEAR(freeswim_attention_scale(30 * 52, 128),
              std::sqrt(std::log(2 * n) / std::log(n) / 128.0), 1e-15);
  const FreeSwimParams p = freeswim_params_for_base_grid(30, 52, 128);
  EXPECT_EQ(p.dh, 15);
  EXPECT_EQ(p.dw, 26);
  const FreeSwimParams p14 = freeswim_params_for_base_grid(45, 80, 128);
  EXPECT_EQ(p14.dh, 22);
  EXPECT_EQ(p14.dw, 40);
  EXPECT_THROW(freeswim_attention_scale(1, 128), Error);
  EXPECT_THROW(freeswim_attention_scale(24, 0), Error);
  EXPECT_THROW(freeswim_params_for_base_grid(0, 52, 128), Error);
}

}  // namespace
}  // namespace freeswim
