// The DiT's rotary tables against a literal replay of the reference's procedure (diffusers 0.35.2
// WanRotaryPosEmbed + apply_rotary_emb): build three interleaved (cos, cos, ...) tables,
// concatenate them, cut the columns again as [d - 2*(d/3), d/3, d/3], evaluate each part at the
// token's frame, row and column, and rotate pair j by column 2j's cos and column 2j+1's sin.
#include "models/wan_rope.h"

#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "ops/cpu/cpu_backend.h"

namespace freeswim {
namespace {

// [positions, d] cos or sin table of one built part (repeat_interleave of each frequency).
std::vector<std::vector<double>> built_part(int positions, int dim, bool sine) {
  std::vector<std::vector<double>> t(static_cast<size_t>(positions));
  for (int p = 0; p < positions; ++p)
    for (int i = 0; i < dim / 2; ++i) {
      const double f = 1.0 / std::pow(10000.0, static_cast<double>(2 * i) / dim);
      const double v = sine ? std::sin(p * f) : std::cos(p * f);
      t[static_cast<size_t>(p)].push_back(v);
      t[static_cast<size_t>(p)].push_back(v);
    }
  return t;
}

// The reference's per-token [d] cos (or sin) vector at (t, h, w).
std::vector<double> reference_vector(int d, int t, int h, int w, int positions, bool sine) {
  const int hw = 2 * (d / 6), td = d - 2 * hw;
  const auto pt = built_part(positions, td, sine), ph = built_part(positions, hw, sine),
             pw = built_part(positions, hw, sine);
  auto concat_row = [&](int p) {  // row p of the concatenated [positions, d] table
    std::vector<double> r = pt[static_cast<size_t>(p)];
    r.insert(r.end(), ph[static_cast<size_t>(p)].begin(), ph[static_cast<size_t>(p)].end());
    r.insert(r.end(), pw[static_cast<size_t>(p)].begin(), pw[static_cast<size_t>(p)].end());
    return r;
  };
  const int cut_t = d - 2 * (d / 3), cut_h = d / 3;
  const std::vector<double> rt = concat_row(t), rh = concat_row(h), rw = concat_row(w);
  std::vector<double> out;
  for (int c = 0; c < d; ++c)
    out.push_back(c < cut_t           ? rt[static_cast<size_t>(c)]
                  : c < cut_t + cut_h ? rh[static_cast<size_t>(c)]
                                      : rw[static_cast<size_t>(c)]);
  return out;
}

TEST(WanRope, MatchesTheReferenceProcedure) {
  const int T = 3, H = 4, W = 6;
  for (int d : {2, 4, 8, 16, 20, 22, 32, 40, 64, 96, 128}) {
    SCOPED_TRACE(d);
    const ops::Rope3D r = models::wan_rope_tables(T, H, W, d);
    const int pairs = d / 2;
    ASSERT_EQ(r.frame.shape(), (Shape{T, pairs, 2}));
    ASSERT_EQ(r.row.shape(), (Shape{H, pairs, 2}));
    ASSERT_EQ(r.col.shape(), (Shape{W, pairs, 2}));
    for (int t = 0; t < T; ++t)
      for (int h = 0; h < H; ++h)
        for (int w = 0; w < W; ++w) {
          const auto cosv = reference_vector(d, t, h, w, 8, false);
          const auto sinv = reference_vector(d, t, h, w, 8, true);
          for (int j = 0; j < pairs; ++j) {
            auto at = [&](const Tensor& tab, int p, int k) {
              return tab.data<float>()[(p * pairs + j) * 2 + k];
            };
            const float c = at(r.frame, t, 0) * at(r.row, h, 0) * at(r.col, w, 0);
            const float s = at(r.frame, t, 1) * at(r.row, h, 1) * at(r.col, w, 1);
            // The reference rounds each float64 value to fp32 once; so do the tables.
            EXPECT_EQ(c, static_cast<float>(cosv[static_cast<size_t>(2 * j)])) << t << h << w << j;
            EXPECT_EQ(s, static_cast<float>(sinv[static_cast<size_t>(2 * j + 1)]))
                << t << h << w << j;
          }
        }
  }
}

// For d % 6 != 4 every pair is fed by one axis alone (entries of the other two exactly 1), in
// the order frames, rows, columns with 2*(d/6) row and column dimensions: d = 128 gives 22 frame,
// 21 row and 21 column pairs, as the original Wan code splits them.
TEST(WanRope, OrdinaryHeadSizesRotateByOneAxisPerPair) {
  for (int d : {128, 32, 20, 96}) {
    SCOPED_TRACE(d);
    const ops::Rope3D r = models::wan_rope_tables(2, 3, 4, d);
    const int pairs = d / 2, hw_pairs = d / 6, t_pairs = pairs - 2 * hw_pairs;
    for (int j = 0; j < pairs; ++j) {
      const int axis = j < t_pairs ? 0 : j < t_pairs + hw_pairs ? 1 : 2;
      const Tensor* tabs[3] = {&r.frame, &r.row, &r.col};
      for (int a = 0; a < 3; ++a) {
        if (a == axis) continue;
        for (int p = 0; p < tabs[a]->dim(0); ++p)
          for (int k = 0; k < 2; ++k)
            EXPECT_EQ(tabs[a]->data<float>()[(p * pairs + j) * 2 + k], 1.f) << a << " " << j;
      }
    }
  }
  // d = 16: one pair takes cos from the row and sin from the column (wan_rope.h).
  const ops::Rope3D r = models::wan_rope_tables(2, 3, 4, 16);
  const int j = 5;  // columns 10 (row part) and 11 (column part)
  EXPECT_NE(r.row.data<float>()[(2 * 8 + j) * 2 + 0], 1.f);
  EXPECT_EQ(r.row.data<float>()[(2 * 8 + j) * 2 + 1], 1.f);
  EXPECT_EQ(r.col.data<float>()[(2 * 8 + j) * 2 + 0], 1.f);
  EXPECT_NE(r.col.data<float>()[(2 * 8 + j) * 2 + 1], 1.f);
}

TEST(WanRope, RejectsOddHeadSizesAndEmptyGrids) {
  EXPECT_THROW(models::wan_rope_tables(1, 1, 1, 15), std::exception);
  EXPECT_THROW(models::wan_rope_tables(0, 1, 1, 16), std::exception);
}

}  // namespace
}  // namespace freeswim
