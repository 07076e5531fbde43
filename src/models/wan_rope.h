// Rotary position tables of the Wan DiT, laid out as the reference computes them.
#pragma once

#include "ops/ops.h"

namespace freeswim::models {

// The (cos, sin) tables (ops::Rope3D, f32 on the CPU) for a T x H x W token grid and one head
// size, as diffusers 0.35.2's WanRotaryPosEmbed makes them:
//
// * Three frequency tables are built and concatenated along the head: frames get
//   t = d - 4*(d/6) columns, rows and columns 2*(d/6) each; column c of a table of n columns
//   has frequency 10000^(-2*floor(c/2)/n) (each frequency twice, for a pair's cos and sin).
// * At run time the concatenated columns are cut again as [d - 2*(d/3), d/3, d/3] and the three
//   parts are evaluated at the token's frame, row and column position.
// * Pair j is rotated with cos from column 2j and sin from column 2j + 1.
//
// For d % 6 != 4 both cuts agree (d = 128: 44/42/42) and every pair is an ordinary rotation by
// one axis. For d % 6 == 4 (16, 40, 64, ...) d/3 is odd: the last frame frequency is evaluated at
// the row position, and one pair takes its cos from the row position and its sin from the column
// position (with the same frequency). The original Wan code (rope_apply, which cuts complex pairs
// as [c - 2*(c/3), c/3, c/3] with c = d/2) does not do this; the engine follows diffusers, which
// made the reference data. Every released Wan2.1 model has d = 128, where the two agree.
ops::Rope3D wan_rope_tables(int T, int H, int W, int head_dim);

}  // namespace freeswim::models
