// A group of ranks that are GPUs of this host, one thread each, exchanging CUDA tensors over
// NCCL (communicator.h); built only with the CUDA backend and NCCL (FREESWIM_HAVE_NCCL).
//
// The communicators are made in this process with ncclCommInitAll over the listed devices. Each
// rank's collectives run on the CUDA backend's compute stream of its device (ops/cuda/stream.h,
// the legacy default stream), so they are ordered after the kernels that made their inputs and
// before those that read their outputs without extra synchronisation; all_to_all is a group of
// ncclSend / ncclRecv pairs, all_gather is ncclAllGather, all_reduce_sum is ncclAllReduce,
// broadcast is ncclBroadcast. Chunks
// that are not contiguous are gathered and scattered with cudaMemcpy2DAsync on the same stream.
//
// NVLink SHARP / multicast (NVLS) is kept off: before ncclCommInitAll the constructor sets
// NCCL_NVLS_ENABLE=0 in this process's environment unless the user has set that variable
// (docs/multi_gpu.md says why). That is NCCL's own variable; no engine path reads it.
//
// Sub-groups (the CFG pairs and sequence groups of a layout) are split from the group's
// communicators with ncclCommSplit (NCCL 2.18 or newer), each rank on its own thread; the group
// owns them and aborts them with its own communicators. NcclWorld puts the two together.
#pragma once

#include <functional>
#include <memory>
#include <mutex>
#include <vector>

#include "parallel/communicator.h"
#include "parallel/world.h"

namespace freeswim::parallel {

class NcclGroup {
 public:
  // One rank per entry of `devices` (CUDA ordinals, distinct). Throws Error when a device is not
  // present (naming it and how many are visible) or NCCL fails to initialise.
  explicit NcclGroup(const std::vector<int>& devices);
  ~NcclGroup();
  NcclGroup(const NcclGroup&) = delete;
  NcclGroup& operator=(const NcclGroup&) = delete;

  int size() const;
  Communicator& comm(int rank);
  int device_of(int rank) const;

  // Runs fn(comm(r)) for every rank r on a thread of its own whose current CUDA device is
  // device_of(r), and returns when all have finished; the first error is rethrown prefixed with
  // its rank and GPU. A failed rank aborts every communicator of the group, sub-groups included
  // (ncclCommAbort), so that the others do not wait for it forever; an aborted group cannot be
  // used again.
  void run(const std::function<void(Communicator&)>& fn);

  // Called inside run() by every rank of the group, on its own thread, with its comm(r) as
  // `self` (ncclCommSplit is a collective of all ranks): returns this rank's communicator of
  // the ranks that passed the same `color`, ranked by `key` (ties by rank). The group owns it
  // (destroyed with the group, aborted with it); it is used from the same rank's thread, in this
  // run or later ones. Throws Error naming the rank on an NCCL failure, or when the group has
  // been aborted.
  Communicator& split(Communicator& self, int color, int key);

 private:
  class Rank;
  void abort_all();
  std::vector<int> devices_;
  std::vector<std::unique_ptr<Rank>> ranks_;
  std::mutex mutex_;  // guards children_ and aborted_
  bool aborted_ = false;
  // The sub-groups' communicators; declared after ranks_, so destroyed before them.
  std::vector<std::unique_ptr<Rank>> children_;
};

// The ranks of `devices` (GPU ordinals; rank r on devices[r]) laid out by
// world_layout(devices.size(), with_uncond). The constructor makes the NcclGroup
// (ncclCommInitAll) and then, in one run of it in which nothing else happens, splits every
// rank's CFG pair (color: its sequence rank, key: its CFG rank) and sequence group (color: its
// CFG rank, key: its sequence rank) from the world communicator; groups of one rank are not
// made (RankGroups leaves them null). No other code runs between the splits, so a rank cannot
// fail elsewhere while the others wait in ncclCommSplit.
class NcclWorld final : public World {
 public:
  NcclWorld(const std::vector<int>& devices, bool with_uncond);
  int size() const override { return group_.size(); }
  WorldLayout layout() const override { return layout_; }
  // NcclGroup::run with every rank's RankGroups (its thread's device set to its GPU).
  void run(const std::function<void(const RankGroups&)>& fn) override;

 private:
  WorldLayout layout_;
  NcclGroup group_;
  std::vector<RankGroups> groups_;  // by world rank
};

// CUDA devices visible to this process (0 when there is no driver or device).
int cuda_device_count();

}  // namespace freeswim::parallel
