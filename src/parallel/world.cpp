#include "parallel/world.h"

namespace freeswim::parallel {

LocalWorld::LocalWorld(int size, bool with_uncond)
    : layout_(world_layout(size, with_uncond)), group_(size) {
  if (layout_.cfg > 1)
    for (int s = 0; s < layout_.seq; ++s)
      cfgs_.push_back(std::make_unique<LocalGroup>(layout_.cfg, group_));
  if (layout_.seq > 1)
    for (int c = 0; c < layout_.cfg; ++c)
      seqs_.push_back(std::make_unique<LocalGroup>(layout_.seq, group_));
}

void LocalWorld::run(const std::function<void(const RankGroups&)>& fn) {
  group_.run([&](Communicator& w) {
    const int c = layout_.cfg_rank(w.rank()), s = layout_.seq_rank(w.rank());
    RankGroups g;
    g.world = &w;
    if (!cfgs_.empty()) g.cfg = &cfgs_[static_cast<size_t>(s)]->comm(c);
    if (!seqs_.empty()) g.sequence = &seqs_[static_cast<size_t>(c)]->comm(s);
    fn(g);
  });
}

}  // namespace freeswim::parallel
