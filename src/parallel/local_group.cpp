#include "parallel/local_group.h"

#include <condition_variable>
#include <exception>
#include <mutex>
#include <thread>

#include "core/error.h"

namespace freeswim::parallel {

// What one rank published for the collective in progress.
struct Posted {
  std::string op;
  Shape shape;
  DType dtype = DType::F32;
  int root = -1;
  const void* data = nullptr;
};

struct LocalGroup::Shared {
  int size = 0;
  std::mutex mutex;
  std::condition_variable cv;
  int arrived = 0;
  uint64_t generation = 0;
  bool aborted = false;
  std::vector<Posted> posted;
  std::vector<std::weak_ptr<Shared>> children;  // sub-groups, aborted and reset with this one

  // Blocks until every rank has arrived (or the group is aborted: Error).
  void rendezvous(int rank) {
    std::unique_lock<std::mutex> lock(mutex);
    if (aborted) fail("rank {} of {}: stopped because another rank failed", rank, size);
    const uint64_t gen = generation;
    if (++arrived == size) {
      arrived = 0;
      ++generation;
      cv.notify_all();
      return;
    }
    cv.wait(lock, [&] { return generation != gen || aborted; });
    if (generation == gen) fail("rank {} of {}: stopped because another rank failed", rank, size);
  }

  void abort() {
    std::vector<std::weak_ptr<Shared>> subs;
    {
      std::lock_guard<std::mutex> lock(mutex);
      aborted = true;
      cv.notify_all();
      subs = children;
    }
    for (auto& c : subs)
      if (auto p = c.lock()) p->abort();
  }

  void reset() {
    std::vector<std::weak_ptr<Shared>> subs;
    {
      std::lock_guard<std::mutex> lock(mutex);
      arrived = 0;
      aborted = false;
      posted.assign(static_cast<size_t>(size), Posted{});
      subs = children;
    }
    for (auto& c : subs)
      if (auto p = c.lock()) p->reset();
  }
};

class LocalGroup::Rank final : public Communicator {
 public:
  Rank(std::shared_ptr<Shared> shared, int rank) : s_(std::move(shared)), rank_(rank) {}

  int rank() const override { return rank_; }
  int size() const override { return s_->size; }
  std::string describe() const override {
    return fmt::format("rank {} of {} (local threads)", rank_, s_->size);
  }

  Tensor all_to_all(const Tensor& x, int split_dim, int concat_dim) override {
    check_cpu(x, "all_to_all");
    const int P = size();
    const size_t es = dtype_size(x.dtype());
    const Shape part = split_shape(x.shape(), split_dim, P, describe() + ": all_to_all");
    normalise_dim(concat_dim, x.ndim(), describe() + ": all_to_all concat dimension");
    // Chunk j of this rank's x, laid out contiguously, for rank j to read.
    Tensor send = Tensor::empty(x.shape(), x.dtype());
    const std::vector<Copy2D> cut = split_copies(x.shape(), es, split_dim, P);
    for (const Copy2D& c : cut) host_copy(send.raw(), x.raw(), c);
    publish("all_to_all", x, send.raw(), -1);
    // From every rank i: its chunk number rank_, placed as part i of the joined result.
    Tensor out = Tensor::empty(join_shape(part, concat_dim, P), x.dtype());
    const size_t chunk = static_cast<size_t>(shape_numel(part)) * es;
    const std::vector<Copy2D> join = join_copies(part, es, concat_dim, P);
    for (int i = 0; i < P; ++i) {
      Copy2D c = join[static_cast<size_t>(i)];
      c.src_offset = static_cast<size_t>(rank_) * chunk;
      host_copy(out.raw(), s_->posted[static_cast<size_t>(i)].data, c);
    }
    s_->rendezvous(rank_);
    return out;
  }

  Tensor all_gather(const Tensor& x, int dim) override {
    check_cpu(x, "all_gather");
    const int P = size();
    normalise_dim(dim, x.ndim(), describe() + ": all_gather dimension");
    publish("all_gather", x, x.raw(), -1);
    Tensor out = Tensor::empty(join_shape(x.shape(), dim, P), x.dtype());
    const std::vector<Copy2D> join = join_copies(x.shape(), dtype_size(x.dtype()), dim, P);
    for (int i = 0; i < P; ++i) {
      Copy2D c = join[static_cast<size_t>(i)];
      c.src_offset = 0;
      host_copy(out.raw(), s_->posted[static_cast<size_t>(i)].data, c);
    }
    s_->rendezvous(rank_);
    return out;
  }

  Tensor all_reduce_sum(const Tensor& x) override {
    check_cpu(x, "all_reduce_sum");
    FS_CHECK(x.dtype() == DType::F32, "{}: all_reduce_sum needs f32, got {}", describe(),
             x.describe());
    publish("all_reduce_sum", x, x.raw(), -1);
    Tensor out = Tensor::zeros(x.shape(), DType::F32);
    float* o = out.data<float>();
    for (int i = 0; i < size(); ++i) {
      const auto* src = static_cast<const float*>(s_->posted[static_cast<size_t>(i)].data);
      for (int64_t e = 0; e < x.numel(); ++e) o[e] += src[e];
    }
    s_->rendezvous(rank_);
    return out;
  }

  void broadcast(Tensor& x, int root) override {
    check_cpu(x, "broadcast");
    FS_CHECK(root >= 0 && root < size(), "{}: broadcast root {} is not a rank", describe(), root);
    publish("broadcast", x, x.raw(), root);
    if (rank_ != root && x.nbytes() > 0) {
      std::memcpy(x.raw(), s_->posted[static_cast<size_t>(root)].data, x.nbytes());
    }
    s_->rendezvous(rank_);
  }

  void barrier() override {
    publish("barrier", Tensor(), nullptr, -1);
    s_->rendezvous(rank_);
  }

 private:
  void check_cpu(const Tensor& x, const char* op) const {
    FS_CHECK(x.defined() && x.device() == Device::CPU, "{}: {} needs a CPU tensor, got {}",
             describe(), op, x.defined() ? x.describe() : "nothing");
  }

  // Publishes this rank's buffer, waits for every rank, and checks that all called the same
  // collective with the same shape and dtype (every rank sees the same table, so all throw).
  void publish(const char* op, const Tensor& x, const void* data, int root) {
    Posted& p = s_->posted[static_cast<size_t>(rank_)];
    p.op = op;
    p.shape = x.defined() ? x.shape() : Shape{};
    p.dtype = x.defined() ? x.dtype() : DType::F32;
    p.root = root;
    p.data = data;
    s_->rendezvous(rank_);
    for (int i = 0; i < size(); ++i) {
      const Posted& q = s_->posted[static_cast<size_t>(i)];
      FS_CHECK(q.op == p.op && q.shape == p.shape && q.dtype == p.dtype && q.root == p.root,
               "local group: rank {} called {} with {} {} (root {}) but rank {} called {} with {} "
               "{} (root {})",
               rank_, p.op, dtype_name(p.dtype), shape_str(p.shape), p.root, i, q.op,
               dtype_name(q.dtype), shape_str(q.shape), q.root);
    }
  }

  std::shared_ptr<Shared> s_;
  int rank_;
};

LocalGroup::LocalGroup(int size) : shared_(std::make_shared<Shared>()) {
  FS_CHECK(size >= 1, "local group: size must be at least 1, got {}", size);
  shared_->size = size;
  shared_->reset();
  for (int r = 0; r < size; ++r) ranks_.push_back(std::make_unique<Rank>(shared_, r));
}

LocalGroup::LocalGroup(int size, LocalGroup& parent) : LocalGroup(size) {
  FS_CHECK(size <= parent.size(), "local group: a sub-group of {} ranks in a group of {}", size,
           parent.size());
  std::lock_guard<std::mutex> lock(parent.shared_->mutex);
  parent.shared_->children.push_back(shared_);
}

LocalGroup::~LocalGroup() = default;

int LocalGroup::size() const {
  return shared_->size;
}

Communicator& LocalGroup::comm(int rank) {
  FS_CHECK(rank >= 0 && rank < size(), "local group: rank {} out of range [0, {})", rank, size());
  return *ranks_[static_cast<size_t>(rank)];
}

void LocalGroup::run(const std::function<void(Communicator&)>& fn) {
  shared_->reset();
  const int P = size();
  std::vector<std::exception_ptr> errors(static_cast<size_t>(P));
  std::mutex order_mutex;
  std::vector<int> order;  // ranks in the order they failed
  std::vector<std::thread> threads;
  for (int r = 0; r < P; ++r) {
    threads.emplace_back([&, r] {
      try {
        fn(*ranks_[static_cast<size_t>(r)]);
      } catch (...) {
        errors[static_cast<size_t>(r)] = std::current_exception();
        {
          std::lock_guard<std::mutex> lock(order_mutex);
          order.push_back(r);
        }
        shared_->abort();
      }
    });
  }
  for (auto& t : threads) t.join();
  if (order.empty()) return;
  const int first = order.front();
  try {
    std::rethrow_exception(errors[static_cast<size_t>(first)]);
  } catch (const std::exception& e) {
    const std::string what = e.what();
    const std::string prefix = fmt::format("rank {} of {}", first, P);
    // Errors raised by a collective already name the rank.
    if (what.rfind(prefix, 0) == 0 || what.rfind("local group", 0) == 0) throw Error(what);
    throw Error(fmt::format("{}: {}", prefix, what));
  }
}

}  // namespace freeswim::parallel
