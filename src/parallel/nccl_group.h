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
#pragma once

#include <functional>
#include <memory>
#include <vector>

#include "parallel/communicator.h"

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
  // its rank and GPU. A failed rank aborts the communicators (ncclCommAbort) so that the others
  // do not wait for it forever; an aborted group
  // cannot be used again.
  void run(const std::function<void(Communicator&)>& fn);

 private:
  class Rank;
  std::vector<int> devices_;
  std::vector<std::unique_ptr<Rank>> ranks_;
};

// CUDA devices visible to this process (0 when there is no driver or device).
int cuda_device_count();

}  // namespace freeswim::parallel
