// The FreeSwim attention settings of a job. In its own file so that programs that run the stages
// without writing video (bench/generate) do not link the video writer (FFmpeg) through
// generate.cpp.
#include "pipeline/generate.h"

namespace freeswim::pipeline {

FreeSwimParams freeswim_params(const models::WanDitConfig& dit, int base_w, int base_h,
                               const JobOptions& opt) {
  // Pixels per token side: the VAE's 8x spatial reduction times the DiT's 2x2 patches.
  constexpr int kPixelsPerToken = 8 * 2;
  const int grid_h = base_h / kPixelsPerToken, grid_w = base_w / kPixelsPerToken;
  FreeSwimParams p = freeswim_params_for_base_grid(grid_h, grid_w, dit.head_dim);
  if (opt.window_h > 0 || opt.window_w > 0) {
    p.dh = opt.window_h;
    p.dw = opt.window_w;
  }
  if (opt.attn_scale > 0) p.attn_scale = opt.attn_scale;
  return p;
}

}  // namespace freeswim::pipeline
