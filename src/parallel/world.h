// The ranks of one multi-GPU run with their groups (docs/multi_gpu.md): a World holds `size`
// ranks laid out by world_layout (CFG pairs of sequence-parallel groups) and runs a function on
// every rank's thread, handing it the rank's communicators. The launcher (pipeline/launch.h) is
// written against this interface only; what the ranks are is an implementation:
//
//   LocalWorld (this file)      ranks are threads of this process over LocalGroup and its
//                               sub-groups: the CPU tests and the CPU stand-in
//   NcclWorld  (nccl_group.h)   ranks are GPUs of this host over NcclGroup and the sub-groups
//                               split from it (ncclCommSplit); built with the CUDA backend
#pragma once

#include <functional>
#include <memory>
#include <vector>

#include "parallel/communicator.h"
#include "parallel/local_group.h"

namespace freeswim::parallel {

// One rank's communicators. `cfg` is the rank's CFG pair and `sequence` its sequence-parallel
// group; either is null when the layout makes it a group of one rank (nothing to exchange).
struct RankGroups {
  Communicator* world = nullptr;
  Communicator* cfg = nullptr;
  Communicator* sequence = nullptr;
};

class World {
 public:
  virtual ~World() = default;
  virtual int size() const = 0;
  virtual WorldLayout layout() const = 0;
  // Runs fn(groups of rank r) for every rank r on a thread of its own and returns when all have
  // finished. When a rank throws, every group is aborted, so that ranks waiting in a collective
  // throw instead of waiting forever, and the first error is rethrown as an Error naming its
  // rank ("rank 1 of 4...").
  virtual void run(const std::function<void(const RankGroups&)>& fn) = 0;
};

// `size` ranks as threads of this process (LocalGroup), laid out by world_layout(size,
// with_uncond): one LocalGroup sub-group per CFG pair and per sequence group, aborted and reset
// with the world group.
class LocalWorld final : public World {
 public:
  LocalWorld(int size, bool with_uncond);
  int size() const override { return group_.size(); }
  WorldLayout layout() const override { return layout_; }
  void run(const std::function<void(const RankGroups&)>& fn) override;

 private:
  WorldLayout layout_;
  LocalGroup group_;
  std::vector<std::unique_ptr<LocalGroup>> cfgs_;  // one per sequence rank: its CFG pair
  std::vector<std::unique_ptr<LocalGroup>> seqs_;  // one per CFG rank: its sequence group
};

}  // namespace freeswim::parallel
