#include "parallel/nccl_group.h"

#include <cuda_runtime_api.h>
#include <nccl.h>

#include <atomic>
#include <cstdlib>
#include <exception>
#include <mutex>
#include <thread>

#include "core/error.h"
#include "ops/cuda/stream.h"

// ncclCommSplit (the sub-groups of NcclWorld) came with NCCL 2.18.
#if !defined(NCCL_VERSION_CODE) || !defined(NCCL_VERSION) || \
    NCCL_VERSION_CODE < NCCL_VERSION(2, 18, 0)
#error "freeswim's NcclGroup needs NCCL 2.18 or newer (ncclCommSplit); this nccl.h is older"
#endif

namespace freeswim::parallel {

namespace {

void check_cuda_call(cudaError_t e, const std::string& who, const char* what) {
  FS_CHECK(e == cudaSuccess, "{}: {} failed: {}", who, what, cudaGetErrorString(e));
}

void check_nccl_call(ncclResult_t r, ncclComm_t comm, const std::string& who, const char* what) {
  if (r == ncclSuccess) return;
  const char* last = comm ? ncclGetLastError(comm) : ncclGetLastError(nullptr);
  fail("{}: NCCL {} failed: {}{}{}", who, what, ncclGetErrorString(r), last && *last ? ": " : "",
       last ? last : "");
}

// Every strided copy on the stream (device to device).
void device_copies(void* dst, const void* src, const std::vector<Copy2D>& copies,
                   const std::string& who) {
  for (const Copy2D& c : copies) {
    if (c.width == 0 || c.height == 0) continue;
    check_cuda_call(
        cudaMemcpy2DAsync(static_cast<char*>(dst) + c.dst_offset, c.dst_pitch,
                          static_cast<const char*>(src) + c.src_offset, c.src_pitch, c.width,
                          c.height, cudaMemcpyDeviceToDevice, ops::cuda::stream()),
        who, "cudaMemcpy2DAsync");
  }
}

}  // namespace

int cuda_device_count() {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    cudaGetLastError();
    return 0;
  }
  return n;
}

class NcclGroup::Rank final : public Communicator {
 public:
  Rank(ncclComm_t comm, int rank, int size, int device)
      : comm_(comm), rank_(rank), size_(size), device_(device) {}
  ~Rank() override {
    if (!aborted_.load()) ncclCommDestroy(comm_);
  }

  int rank() const override { return rank_; }
  int size() const override { return size_; }
  std::string describe() const override {
    return fmt::format("rank {} of {} (GPU {}, NCCL)", rank_, size_, device_);
  }
  int device() const { return device_; }
  ncclComm_t handle() const { return comm_; }
  // From any thread: makes the rank's pending and later operations fail instead of waiting.
  void abort() {
    if (!aborted_.exchange(true)) ncclCommAbort(comm_);
  }

  Tensor all_to_all(const Tensor& x, int split_dim, int concat_dim) override {
    check_here(x, "all_to_all");
    const size_t es = dtype_size(x.dtype());
    const Shape part = split_shape(x.shape(), split_dim, size_, describe() + ": all_to_all");
    normalise_dim(concat_dim, x.ndim(), describe() + ": all_to_all concat dimension");
    const size_t chunk = static_cast<size_t>(shape_numel(part)) * es;
    Tensor send = Tensor::empty(x.shape(), x.dtype(), Device::CUDA);
    device_copies(send.raw(), x.raw(), split_copies(x.shape(), es, split_dim, size_), describe());
    Tensor recv = Tensor::empty(x.shape(), x.dtype(), Device::CUDA);
    nccl(ncclGroupStart(), "ncclGroupStart");
    for (int j = 0; j < size_; ++j) {
      const auto* s = static_cast<const char*>(send.raw()) + static_cast<size_t>(j) * chunk;
      auto* r = static_cast<char*>(recv.raw()) + static_cast<size_t>(j) * chunk;
      nccl(ncclSend(s, chunk, ncclUint8, j, comm_, ops::cuda::stream()), "ncclSend");
      nccl(ncclRecv(r, chunk, ncclUint8, j, comm_, ops::cuda::stream()), "ncclRecv");
    }
    nccl(ncclGroupEnd(), "ncclGroupEnd (all_to_all)");
    Tensor out = Tensor::empty(join_shape(part, concat_dim, size_), x.dtype(), Device::CUDA);
    device_copies(out.raw(), recv.raw(), join_copies(part, es, concat_dim, size_), describe());
    return out;
  }

  Tensor all_gather(const Tensor& x, int dim) override {
    check_here(x, "all_gather");
    normalise_dim(dim, x.ndim(), describe() + ": all_gather dimension");
    // ncclAllGather lays the ranks' buffers one after another: the join along dimension 0.
    Tensor stacked = Tensor::empty(join_shape(x.shape(), 0, size_), x.dtype(), Device::CUDA);
    nccl(ncclAllGather(x.raw(), stacked.raw(), x.nbytes(), ncclUint8, comm_, ops::cuda::stream()),
         "ncclAllGather");
    if (dim_view(x.shape(), dim, 1, "all_gather").outer == 1) {
      return stacked.reshape(join_shape(x.shape(), dim, size_));
    }
    Tensor out = Tensor::empty(join_shape(x.shape(), dim, size_), x.dtype(), Device::CUDA);
    device_copies(out.raw(), stacked.raw(),
                  join_copies(x.shape(), dtype_size(x.dtype()), dim, size_), describe());
    return out;
  }

  Tensor all_reduce_sum(const Tensor& x) override {
    check_here(x, "all_reduce_sum");
    FS_CHECK(x.dtype() == DType::F32, "{}: all_reduce_sum needs f32, got {}", describe(),
             x.describe());
    Tensor out = Tensor::empty(x.shape(), DType::F32, Device::CUDA);
    nccl(ncclAllReduce(x.raw(), out.raw(), static_cast<size_t>(x.numel()), ncclFloat32, ncclSum,
                       comm_, ops::cuda::stream()),
         "ncclAllReduce");
    return out;
  }

  void broadcast(Tensor& x, int root) override {
    check_here(x, "broadcast");
    FS_CHECK(root >= 0 && root < size_, "{}: broadcast root {} is not a rank", describe(), root);
    nccl(ncclBroadcast(x.raw(), x.raw(), x.nbytes(), ncclUint8, root, comm_, ops::cuda::stream()),
         "ncclBroadcast");
  }

  void barrier() override {
    FS_CHECK(!aborted_.load(), "{}: barrier after the group was aborted", describe());
    Tensor one = Tensor::zeros({1}, DType::F32, Device::CUDA);
    nccl(ncclAllReduce(one.raw(), one.raw(), 1, ncclFloat32, ncclSum, comm_, ops::cuda::stream()),
         "ncclAllReduce (barrier)");
    check_cuda_call(cudaStreamSynchronize(ops::cuda::stream()), describe(),
                    "cudaStreamSynchronize (barrier)");
  }

 private:
  void check_here(const Tensor& x, const char* op) const {
    FS_CHECK(!aborted_.load(), "{}: {} after the group was aborted", describe(), op);
    FS_CHECK(x.defined() && x.device() == Device::CUDA, "{}: {} needs a CUDA tensor, got {}",
             describe(), op, x.defined() ? x.describe() : "nothing");
    int current = -1;
    check_cuda_call(cudaGetDevice(&current), describe(), "cudaGetDevice");
    FS_CHECK(current == device_, "{}: {} called on a thread whose current device is GPU {}",
             describe(), op, current);
  }
  void nccl(ncclResult_t r, const char* what) const { check_nccl_call(r, comm_, describe(), what); }

  const ncclComm_t comm_;
  std::atomic<bool> aborted_{false};
  int rank_, size_, device_;
};

NcclGroup::NcclGroup(const std::vector<int>& devices) : devices_(devices) {
  const int n = static_cast<int>(devices.size());
  FS_CHECK(n >= 1, "NCCL group: no GPUs listed");
  const int visible = cuda_device_count();
  for (int i = 0; i < n; ++i) {
    const int d = devices[static_cast<size_t>(i)];
    FS_CHECK(d >= 0 && d < visible,
             "NCCL group: rank {} needs GPU {} but this process sees {} GPU(s) "
             "(CUDA_VISIBLE_DEVICES?)",
             i, d, visible);
    for (int j = 0; j < i; ++j) {
      FS_CHECK(devices[static_cast<size_t>(j)] != d, "NCCL group: GPU {} listed twice", d);
    }
  }
  // NVLS off unless the user chose otherwise (overwrite = 0 keeps a value already set).
  setenv("NCCL_NVLS_ENABLE", "0", 0);
  std::vector<ncclComm_t> comms(static_cast<size_t>(n), nullptr);
  check_nccl_call(ncclCommInitAll(comms.data(), n, devices.data()), nullptr,
                  fmt::format("NCCL group of {} GPU(s)", n), "ncclCommInitAll");
  for (int i = 0; i < n; ++i) {
    ranks_.push_back(std::make_unique<Rank>(comms[static_cast<size_t>(i)], i, n,
                                            devices[static_cast<size_t>(i)]));
  }
}

NcclGroup::~NcclGroup() = default;

void NcclGroup::abort_all() {
  std::lock_guard<std::mutex> lock(mutex_);
  aborted_ = true;
  for (auto& c : children_) c->abort();
  for (auto& r : ranks_) r->abort();
}

Communicator& NcclGroup::split(Communicator& self, int color, int key) {
  Rank* parent = nullptr;
  for (auto& r : ranks_)
    if (r.get() == &self) parent = r.get();
  FS_CHECK(parent, "NCCL group: split needs a rank of this group, got {}", self.describe());
  const std::string who = parent->describe();
  {
    std::lock_guard<std::mutex> lock(mutex_);
    FS_CHECK(!aborted_, "{}: split after the group was aborted", who);
  }
  int current = -1;
  check_cuda_call(cudaGetDevice(&current), who, "cudaGetDevice");
  FS_CHECK(current == parent->device(),
           "{}: split called on a thread whose current device is GPU {}", who, current);
  FS_CHECK(color >= 0, "{}: split color {} must not be negative", who, color);
  ncclComm_t comm = nullptr;
  // A null config: the sub-group inherits the world communicator's (blocking) configuration.
  // Aborting the world communicator also stops a split in progress (NCCL's child abort flag).
  check_nccl_call(ncclCommSplit(parent->handle(), color, key, &comm, nullptr), parent->handle(),
                  who, "ncclCommSplit");
  FS_CHECK(comm != nullptr, "{}: ncclCommSplit with color {} made no communicator", who, color);
  int rank = -1, size = 0;
  ncclResult_t r = ncclCommUserRank(comm, &rank);
  if (r == ncclSuccess) r = ncclCommCount(comm, &size);
  auto child = std::make_unique<Rank>(comm, rank, size, parent->device());
  std::lock_guard<std::mutex> lock(mutex_);
  children_.push_back(std::move(child));
  Rank& made = *children_.back();
  // Another rank failed while this one was splitting: its sweep did not see this communicator.
  if (aborted_) made.abort();
  FS_CHECK(!aborted_, "{}: stopped because another rank failed (during split)", who);
  check_nccl_call(r, comm, who, "ncclCommUserRank / ncclCommCount");
  return made;
}

int NcclGroup::size() const {
  return static_cast<int>(ranks_.size());
}

Communicator& NcclGroup::comm(int rank) {
  FS_CHECK(rank >= 0 && rank < size(), "NCCL group: rank {} out of range [0, {})", rank, size());
  return *ranks_[static_cast<size_t>(rank)];
}

int NcclGroup::device_of(int rank) const {
  FS_CHECK(rank >= 0 && rank < size(), "NCCL group: rank {} out of range [0, {})", rank, size());
  return devices_[static_cast<size_t>(rank)];
}

void NcclGroup::run(const std::function<void(Communicator&)>& fn) {
  const int P = size();
  std::vector<std::exception_ptr> errors(static_cast<size_t>(P));
  std::mutex mutex;
  int first = -1;
  std::vector<std::thread> threads;
  for (int r = 0; r < P; ++r) {
    threads.emplace_back([&, r] {
      try {
        Rank& rank = *ranks_[static_cast<size_t>(r)];
        check_cuda_call(cudaSetDevice(rank.device()), rank.describe(), "cudaSetDevice");
        fn(rank);
        check_cuda_call(cudaStreamSynchronize(ops::cuda::stream()), rank.describe(),
                        "cudaStreamSynchronize");
      } catch (...) {
        errors[static_cast<size_t>(r)] = std::current_exception();
        std::lock_guard<std::mutex> lock(mutex);
        if (first < 0) {
          first = r;
          // The other ranks may be blocked in a collective that waits for this one.
          abort_all();
        }
      }
    });
  }
  for (auto& t : threads) t.join();
  if (first < 0) return;
  try {
    std::rethrow_exception(errors[static_cast<size_t>(first)]);
  } catch (const std::exception& e) {
    const std::string what = e.what();
    const std::string prefix = fmt::format("rank {} of {}", first, P);
    if (what.rfind(prefix, 0) == 0) throw Error(what);
    throw Error(fmt::format("{} (GPU {}): {}", prefix, device_of(first), what));
  }
}

NcclWorld::NcclWorld(const std::vector<int>& devices, bool with_uncond)
    : layout_(world_layout(static_cast<int>(devices.size()), with_uncond)),
      group_(devices),
      groups_(devices.size()) {
  group_.run([&](Communicator& w) {
    const int c = layout_.cfg_rank(w.rank()), s = layout_.seq_rank(w.rank());
    RankGroups g;
    g.world = &w;
    if (layout_.cfg > 1) g.cfg = &group_.split(w, s, c);
    if (layout_.seq > 1) g.sequence = &group_.split(w, c, s);
    groups_[static_cast<size_t>(w.rank())] = g;
  });
}

void NcclWorld::run(const std::function<void(const RankGroups&)>& fn) {
  group_.run([&](Communicator& w) { fn(groups_[static_cast<size_t>(w.rank())]); });
}

}  // namespace freeswim::parallel
