// One rank of a group of ranks that exchange tensors (docs/multi_gpu.md). The multi-GPU code
// (Ulysses attention, CFG-parallel denoising) is written against this interface only; what
// moves the bytes is an implementation:
//
//   LocalGroup (local_group.h)  ranks are threads of this process with CPU tensors, exchanging
//                               through shared host memory: the CPU tests and the CPU stand-in
//   NcclGroup  (nccl_group.h)   ranks are GPUs of this host (one thread each) with CUDA tensors,
//                               exchanging over NCCL; built with the CUDA backend
//
// Every collective must be called by every rank of the group, in the same order, with tensors
// of equal shape and dtype (LocalGroup checks this and throws Error naming the ranks; NcclGroup
// cannot check it without an extra exchange and would hang). Results are exact copies, but for
// all_reduce_sum.
#pragma once

#include <string>

#include "core/tensor.h"

namespace freeswim::parallel {

class Communicator {
 public:
  virtual ~Communicator() = default;
  virtual int rank() const = 0;
  virtual int size() const = 0;
  // "rank 1 of 4 (GPU 1, NCCL)": for error messages.
  virtual std::string describe() const = 0;

  // x is cut into size() equal chunks along `split_dim`; chunk j goes to rank j. Returns the
  // chunks received from ranks 0, 1, ... joined along `concat_dim` in rank order. The extent of
  // `split_dim` must be a multiple of size() (else Error naming it). Ulysses attention is
  // all_to_all(x, 1, 0) (token slab of all heads -> all tokens of a head group) and
  // all_to_all(y, 0, 1) back.
  virtual Tensor all_to_all(const Tensor& x, int split_dim, int concat_dim) = 0;
  // Every rank's x joined along `dim` in rank order.
  virtual Tensor all_gather(const Tensor& x, int dim) = 0;
  // The elementwise sum of every rank's x (f32), the same bits on every rank. The only
  // collective that computes: LocalGroup adds in rank order; NCCL in its own order.
  virtual Tensor all_reduce_sum(const Tensor& x) = 0;
  // In place: every rank's x becomes rank `root`'s x.
  virtual void broadcast(Tensor& x, int root) = 0;
  // Returns when every rank has called it.
  virtual void barrier() = 0;
};

// How the ranks of a multi-GPU run of `world` ranks are arranged (docs/multi_gpu.md): when the
// step has an unconditional forward and world is even, CFG-parallel pairs (cfg = 2) of
// sequence-parallel groups of world / 2 ranks; otherwise one sequence-parallel group of all.
// World rank w is cfg rank w / seq and sequence rank w % seq, so a sequence group is a block of
// consecutive ranks (GPUs next to each other carry the all-to-all traffic).
struct WorldLayout {
  int cfg = 1, seq = 1;
  int cfg_rank(int world_rank) const { return world_rank / seq; }
  int seq_rank(int world_rank) const { return world_rank % seq; }
};
WorldLayout world_layout(int world, bool with_uncond);

// The geometry of cutting a contiguous row-major tensor along one dimension, shared by the
// implementations: shape viewed as [outer, extent, inner].
struct DimView {
  int64_t outer = 1, extent = 1, inner = 1;
  size_t element_bytes = 0;
};
// `what` names the operation in errors ("all_to_all split dimension"); dim may be negative.
DimView dim_view(const Shape& shape, int dim, size_t element_bytes, const std::string& what);
// Normalises a possibly negative dimension index of a tensor of `ndim` dimensions.
int normalise_dim(int dim, int ndim, const std::string& what);

// One strided copy: `height` rows of `width` bytes, rows `src_pitch` / `dst_pitch` bytes apart,
// from byte src_offset of the source to byte dst_offset of the destination (a cudaMemcpy2D).
struct Copy2D {
  size_t dst_offset = 0, dst_pitch = 0, src_offset = 0, src_pitch = 0, width = 0, height = 0;
};
// The copies that cut a tensor of `shape` into `parts` equal chunks along `dim` and lay them
// one after another (chunk j at byte j * chunk_bytes) in a buffer: copies[j] fills chunk j.
std::vector<Copy2D> split_copies(const Shape& shape, size_t element_bytes, int dim, int parts);
// The copies that join `parts` chunks of shape `part`, laid one after another in a buffer,
// along `dim`: copies[i] moves chunk i to its place in the joined tensor.
std::vector<Copy2D> join_copies(const Shape& part, size_t element_bytes, int dim, int parts);
// `shape` with dimension `dim` divided (split) or multiplied (join) by `parts`; split throws
// Error naming `what` when the extent is not a multiple of parts.
Shape split_shape(const Shape& shape, int dim, int parts, const std::string& what);
Shape join_shape(const Shape& shape, int dim, int parts);
// Runs copies between host buffers.
void host_copy(void* dst, const void* src, const Copy2D& c);

}  // namespace freeswim::parallel
