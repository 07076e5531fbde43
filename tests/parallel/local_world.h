// The ranks of a multi-GPU job on the CPU stand-in: a parallel::LocalWorld of `world` ranks laid
// out as parallel::world_layout lays them out (CFG pairs of sequence-parallel groups), each
// running fn(world communicator, its ParallelGroups) on its own thread. A CFG pair or sequence
// group of one rank is left out (nullptr), as the launcher (pipeline/launch.h) leaves it.
#pragma once

#include <functional>
#include <string>

#include "parallel/world.h"
#include "pipeline/denoise.h"
#include "pipeline/generate.h"

namespace freeswim::pipeline {

inline void run_local_world(
    int world, bool with_uncond,
    const std::function<void(parallel::Communicator&, const ParallelGroups&)>& fn) {
  parallel::LocalWorld w(world, with_uncond);
  w.run([&](const parallel::RankGroups& g) { fn(*g.world, ParallelGroups{g.cfg, g.sequence}); });
}

// The tiny `generate` the multi-rank job tests run: both stages, a guide and a reuse step of the
// cache, and an encode and a decode of two tiles at 192x128 (split over the ranks; on 4 ranks two
// of them have no tile) beside the base decode of one tile (rank 0's, broadcast). Tiles of 128
// pixels halve the VAE's work against tiles of 64, which is most of these tests' time.
inline JobOptions tiny_ranks_job(const std::string& output) {
  JobOptions o;
  o.prompt = "a red fox in the snow";
  o.size = plan_size(192, 128);
  o.frames = 5;
  o.base_steps = 1;
  o.steps = 3;  // int(3 x 0.75) = 2 FreeSwim steps: a guide and a reuse step
  o.strength = 0.75;
  o.cache_every = 2;
  o.output = output;
  o.device.tiling.tile = 128;
  o.device.tiling.overlap = 32;
  return o;
}

}  // namespace freeswim::pipeline
