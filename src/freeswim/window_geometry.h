// Geometry of FreeSwim's inward sliding window (FREESWIM.md, "Inward sliding-window attention").
//
// A query at grid position (t, h, w) sees every key of every frame whose row lies in a box of
// 2*dh+1 rows and whose column lies in a box of 2*dw+1 columns. Near a border the box is not
// clipped but pushed inward so it keeps its full size; where the grid is smaller than the box,
// the whole dimension is visible. This is neighborhood attention with kernel (T, 2dh+1, 2dw+1).
// Header-only so that CPU code, CUDA kernels and tests share one definition.
#pragma once

#include <cstdint>

namespace freeswim {

struct WindowGeometry {
  int T = 1, H = 1, W = 1;  // token grid (frames, rows, columns)
  int dh = 0, dw = 0;       // half window in rows and columns

  int64_t tokens() const { return int64_t{T} * H * W; }
};

// First visible index along one dimension of size n for query index i, half window d;
// the visible range is [start, start + extent) with extent = min(n, 2d + 1).
//
// Derivation from the reference's formula: lo = i - d - max(0, d + i - n + 1),
// hi = i + d + max(0, d - i). When n >= 2d + 1 this is the box [i-d, i+d] shifted to lie in
// [0, n), i.e. start = clamp(i - d, 0, n - (2d+1)). When n < 2d + 1 both shifts overshoot
// the grid and the clipped range is the whole dimension.
inline constexpr int window_start(int i, int n, int d) {
  const int box = 2 * d + 1;
  if (n <= box) return 0;
  int s = i - d;
  if (s < 0) s = 0;
  if (s > n - box) s = n - box;
  return s;
}

inline constexpr int window_extent(int n, int d) {
  const int box = 2 * d + 1;
  return n < box ? n : box;
}

// Keys seen by every query (all queries see the same count).
inline constexpr int64_t window_keys_per_query(const WindowGeometry& g) {
  return int64_t{g.T} * window_extent(g.H, g.dh) * window_extent(g.W, g.dw);
}

// True when the query token q may attend the key token k (tokens ordered t, h, w row-major).
inline constexpr bool window_visible(const WindowGeometry& g, int64_t q, int64_t k) {
  const int qh = static_cast<int>((q / g.W) % g.H), qw = static_cast<int>(q % g.W);
  const int kh = static_cast<int>((k / g.W) % g.H), kw = static_cast<int>(k % g.W);
  const int hs = window_start(qh, g.H, g.dh), ws = window_start(qw, g.W, g.dw);
  return kh >= hs && kh < hs + window_extent(g.H, g.dh) && kw >= ws &&
         kw < ws + window_extent(g.W, g.dw);
}

}  // namespace freeswim
