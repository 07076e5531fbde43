// The ranks of a multi-GPU job on the CPU stand-in: a parallel::LocalWorld of `world` ranks laid
// out as parallel::world_layout lays them out (CFG pairs of sequence-parallel groups), each
// running fn(world communicator, its ParallelGroups) on its own thread. A CFG pair or sequence
// group of one rank is left out (nullptr), as the launcher (pipeline/launch.h) leaves it.
#pragma once

#include <functional>

#include "parallel/world.h"
#include "pipeline/denoise.h"

namespace freeswim::pipeline {

inline void run_local_world(
    int world, bool with_uncond,
    const std::function<void(parallel::Communicator&, const ParallelGroups&)>& fn) {
  parallel::LocalWorld w(world, with_uncond);
  w.run([&](const parallel::RankGroups& g) { fn(*g.world, ParallelGroups{g.cfg, g.sequence}); });
}

}  // namespace freeswim::pipeline
