#include "models/wan_rope.h"

#include <cmath>
#include <vector>

#include "core/error.h"

namespace freeswim::models {

namespace {

enum Axis { kFrame = 0, kRow = 1, kCol = 2 };

// Column c of the concatenated frequency tables: its frequency (float64, as the reference's
// freqs_dtype) and the axis whose position it is evaluated at.
struct Column {
  double freq;
  Axis axis;
};

Column column(int c, int d) {
  const int hw_dim = 2 * (d / 6), t_dim = d - 2 * hw_dim;
  int first = 0, n = t_dim;  // the built table holding column c
  if (c >= t_dim + hw_dim) {
    first = t_dim + hw_dim;
    n = hw_dim;
  } else if (c >= t_dim) {
    first = t_dim;
    n = hw_dim;
  }
  const int pair = (c - first) / 2;
  const double freq = 1.0 / std::pow(10000.0, static_cast<double>(2 * pair) / n);
  const int cut_t = d - 2 * (d / 3), cut_h = d / 3;  // the run-time cut
  const Axis axis = c < cut_t ? kFrame : c < cut_t + cut_h ? kRow : kCol;
  return {freq, axis};
}

}  // namespace

ops::Rope3D wan_rope_tables(int T, int H, int W, int head_dim) {
  const int d = head_dim;
  FS_CHECK(d >= 2 && d % 2 == 0, "rotary embedding needs an even head_dim, got {}", d);
  FS_CHECK(T > 0 && H > 0 && W > 0, "rotary embedding needs a non-empty grid, got {}x{}x{}", T, H,
           W);
  const int pairs = d / 2;
  const int positions[3] = {T, H, W};
  std::vector<float> v[3];
  for (int a = 0; a < 3; ++a) v[a].assign(static_cast<size_t>(positions[a]) * pairs * 2, 1.f);
  for (int j = 0; j < pairs; ++j) {
    const Column cc = column(2 * j, d), cs = column(2 * j + 1, d);
    for (int p = 0; p < positions[cc.axis]; ++p)
      v[cc.axis][(static_cast<size_t>(p) * pairs + j) * 2] =
          static_cast<float>(std::cos(p * cc.freq));
    for (int p = 0; p < positions[cs.axis]; ++p)
      v[cs.axis][(static_cast<size_t>(p) * pairs + j) * 2 + 1] =
          static_cast<float>(std::sin(p * cs.freq));
  }
  ops::Rope3D r;
  r.T = T;
  r.H = H;
  r.W = W;
  r.frame = Tensor::from_vector({T, pairs, 2}, v[kFrame]);
  r.row = Tensor::from_vector({H, pairs, 2}, v[kRow]);
  r.col = Tensor::from_vector({W, pairs, 2}, v[kCol]);
  return r;
}

}  // namespace freeswim::models
