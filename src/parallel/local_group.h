// A group of ranks that are threads of this process, exchanging CPU tensors through shared host
// memory (communicator.h). Used by the CPU tests of everything written against Communicator and
// as the CPU stand-in for NcclGroup: the same calls, the same results, no GPU.
//
// Each collective is two rendezvous of all ranks: at the first every rank has published its
// buffer and the ranks check that they called the same collective with equal shapes and dtypes
// (Error naming both ranks otherwise, thrown on every rank alike); between the two every rank
// copies what it receives straight out of the others' buffers; at the second every rank has
// finished reading, so the buffers may go.
#pragma once

#include <functional>
#include <memory>

#include "parallel/communicator.h"

namespace freeswim::parallel {

class LocalGroup {
 public:
  // size >= 1 ranks (Error otherwise).
  explicit LocalGroup(int size);
  // A group whose ranks are some of the threads of `parent`'s run (the sub-groups of a layout:
  // the CFG pairs and the sequence-parallel groups of docs/multi_gpu.md). It has no run of its
  // own: its comm(r) is used from the parent's threads. It is aborted and reset with the parent,
  // so a failure anywhere releases ranks waiting in it. `parent` must outlive it.
  LocalGroup(int size, LocalGroup& parent);
  ~LocalGroup();
  LocalGroup(const LocalGroup&) = delete;
  LocalGroup& operator=(const LocalGroup&) = delete;

  int size() const;
  Communicator& comm(int rank);

  // Runs fn(comm(r)) for every rank r on a thread of its own and returns when all have finished.
  // When a rank throws, the group is aborted: ranks waiting in (or later entering) a collective
  // throw too instead of waiting forever. The first error is then rethrown, prefixed with the
  // rank it came from ("rank 1 of 2: ..."). Each run starts from a fresh, unaborted group.
  void run(const std::function<void(Communicator&)>& fn);

 private:
  struct Shared;
  class Rank;
  std::shared_ptr<Shared> shared_;
  std::vector<std::unique_ptr<Rank>> ranks_;
};

}  // namespace freeswim::parallel
