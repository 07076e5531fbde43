// The ranks of a multi-GPU job on the CPU stand-in: `world` LocalGroup ranks laid out as
// parallel::world_layout lays them out (CFG pairs of sequence-parallel groups), each running
// fn(world communicator, its ParallelGroups) on its own thread. A sequence group of one rank is
// left out (nullptr), as the CLI would leave it.
#pragma once

#include <functional>
#include <memory>
#include <vector>

#include "parallel/local_group.h"
#include "pipeline/denoise.h"

namespace freeswim::pipeline {

inline void run_local_world(
    int world, bool with_uncond,
    const std::function<void(parallel::Communicator&, const ParallelGroups&)>& fn) {
  const parallel::WorldLayout l = parallel::world_layout(world, with_uncond);
  parallel::LocalGroup group(world);
  std::vector<std::unique_ptr<parallel::LocalGroup>> cfgs, seqs;
  for (int s = 0; s < l.seq; ++s)
    cfgs.push_back(std::make_unique<parallel::LocalGroup>(l.cfg, group));
  for (int c = 0; c < l.cfg; ++c)
    seqs.push_back(std::make_unique<parallel::LocalGroup>(l.seq, group));
  group.run([&](parallel::Communicator& w) {
    const int c = l.cfg_rank(w.rank()), s = l.seq_rank(w.rank());
    ParallelGroups g;
    g.cfg = &cfgs[static_cast<size_t>(s)]->comm(c);
    g.sequence = l.seq > 1 ? &seqs[static_cast<size_t>(c)]->comm(s) : nullptr;
    fn(w, g);
  });
}

}  // namespace freeswim::pipeline
