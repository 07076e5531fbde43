// LocalGroup: every collective with 1, 2, 3 and 4 ranks against results computed by hand from
// the ranks' inputs (exact: collectives only copy), and the errors of misuse.
#include <gtest/gtest.h>

#include <atomic>
#include <cstring>

#include "core/error.h"
#include "parallel/local_group.h"

namespace freeswim::parallel {
namespace {

// Rank r's input: element i of a tensor of `shape` is 1000 * r + i.
Tensor input(const Shape& shape, int r) {
  std::vector<float> v(static_cast<size_t>(shape_numel(shape)));
  for (size_t i = 0; i < v.size(); ++i) v[i] = static_cast<float>(1000 * r + static_cast<int>(i));
  return Tensor::from_vector(shape, v);
}

// Element at multi-index `idx` of a row-major tensor.
float at(const Tensor& t, const std::vector<int64_t>& idx) {
  int64_t off = 0;
  for (size_t d = 0; d < idx.size(); ++d) off = off * t.shape()[d] + idx[d];
  return t.data<float>()[off];
}

// Every multi-index of `shape`.
std::vector<std::vector<int64_t>> indices(const Shape& shape) {
  std::vector<std::vector<int64_t>> out;
  std::vector<int64_t> idx(shape.size(), 0);
  for (int64_t n = 0; n < shape_numel(shape); ++n) {
    out.push_back(idx);
    for (int d = static_cast<int>(shape.size()) - 1; d >= 0; --d) {
      if (++idx[static_cast<size_t>(d)] < shape[static_cast<size_t>(d)]) break;
      idx[static_cast<size_t>(d)] = 0;
    }
  }
  return out;
}

TEST(LocalGroup, AllToAllEveryDimensionPair) {
  for (int P : {1, 2, 3, 4}) {
    const Shape shape{P * 2, P * 3, 5};
    for (int split = 0; split < 3; ++split) {
      for (int concat = 0; concat < 3; ++concat) {
        if (split == 2 && P > 1) continue;  // 5 is not a multiple of P
        LocalGroup g(P);
        std::vector<Tensor> out(static_cast<size_t>(P));
        g.run([&](Communicator& c) {
          out[static_cast<size_t>(c.rank())] = c.all_to_all(input(shape, c.rank()), split, concat);
        });
        for (int r = 0; r < P; ++r) {
          const Tensor& o = out[static_cast<size_t>(r)];
          Shape part = shape;
          part[static_cast<size_t>(split)] /= P;
          Shape expect = part;
          expect[static_cast<size_t>(concat)] *= P;
          ASSERT_EQ(o.shape(), expect) << "P " << P << " split " << split << " concat " << concat;
          // Output element at idx comes from rank i = idx[concat] / part[concat], chunk r of its
          // input, i.e. input index idx with concat coordinate reduced and split coordinate
          // shifted by r * part[split].
          for (const auto& idx : indices(expect)) {
            const int64_t pc = part[static_cast<size_t>(concat)];
            const int i = static_cast<int>(idx[static_cast<size_t>(concat)] / pc);
            std::vector<int64_t> src = idx;
            src[static_cast<size_t>(concat)] %= pc;
            src[static_cast<size_t>(split)] += r * part[static_cast<size_t>(split)];
            ASSERT_EQ(at(o, idx), at(input(shape, i), src))
                << "P " << P << " split " << split << " concat " << concat << " rank " << r;
          }
        }
      }
    }
  }
}

TEST(LocalGroup, AllGatherBroadcastBarrier) {
  for (int P : {1, 2, 3, 4}) {
    const Shape shape{2, 3, 4};
    for (int dim = 0; dim < 3; ++dim) {
      LocalGroup g(P);
      std::vector<Tensor> out(static_cast<size_t>(P)), bc(static_cast<size_t>(P));
      std::atomic<int> before{0};
      std::atomic<bool> barrier_ok{true};
      g.run([&](Communicator& c) {
        out[static_cast<size_t>(c.rank())] = c.all_gather(input(shape, c.rank()), dim);
        Tensor b = input(shape, c.rank());
        c.broadcast(b, P - 1);
        bc[static_cast<size_t>(c.rank())] = b;
        ++before;
        c.barrier();
        if (before.load() != P) barrier_ok = false;
      });
      EXPECT_TRUE(barrier_ok.load());
      for (int r = 0; r < P; ++r) {
        const Tensor& o = out[static_cast<size_t>(r)];
        Shape expect = shape;
        expect[static_cast<size_t>(dim)] *= P;
        ASSERT_EQ(o.shape(), expect);
        for (const auto& idx : indices(expect)) {
          std::vector<int64_t> src = idx;
          const int i =
              static_cast<int>(idx[static_cast<size_t>(dim)] / shape[static_cast<size_t>(dim)]);
          src[static_cast<size_t>(dim)] %= shape[static_cast<size_t>(dim)];
          ASSERT_EQ(at(o, idx), at(input(shape, i), src)) << "P " << P << " dim " << dim;
        }
        EXPECT_EQ(std::memcmp(bc[static_cast<size_t>(r)].raw(), input(shape, P - 1).raw(),
                              input(shape, 0).nbytes()),
                  0);
      }
    }
  }
}

TEST(LocalGroup, AllReduceSumAddsInRankOrder) {
  for (int P : {1, 2, 3, 4}) {
    LocalGroup g(P);
    std::vector<Tensor> out(static_cast<size_t>(P));
    g.run([&](Communicator& c) {
      out[static_cast<size_t>(c.rank())] = c.all_reduce_sum(input({2, 3}, c.rank()));
    });
    for (int r = 0; r < P; ++r) {
      for (int i = 0; i < 6; ++i) {
        float want = 0;
        for (int q = 0; q < P; ++q) want += static_cast<float>(1000 * q + i);
        EXPECT_EQ(out[static_cast<size_t>(r)].data<float>()[i], want) << P;
      }
    }
  }
  LocalGroup g(2);
  EXPECT_THROW(g.run([&](Communicator& c) { c.all_reduce_sum(input({2}, 0).to(DType::BF16)); }),
               Error);
}

TEST(LocalGroup, OtherDtypesAreCopiedBytewise) {
  LocalGroup g(2);
  std::vector<Tensor> out(2);
  g.run([&](Communicator& c) {
    const Tensor x = input({4, 6}, c.rank()).to(DType::BF16);
    out[static_cast<size_t>(c.rank())] = c.all_to_all(x, 0, 1);
  });
  EXPECT_EQ(out[0].dtype(), DType::BF16);
  EXPECT_EQ(out[0].shape(), (Shape{2, 12}));
  EXPECT_EQ(out[1].to(DType::F32).data<float>()[6], 1000.f + 12.f);  // rank 1's row 2
}

TEST(LocalGroup, IndivisibleSplitIsAClearError) {
  LocalGroup g(3);
  try {
    g.run([&](Communicator& c) { c.all_to_all(input({4, 3}, c.rank()), 0, 1); });
    FAIL() << "no error";
  } catch (const Error& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find("not a multiple of the 3 ranks"), std::string::npos) << what;
    EXPECT_NE(what.find("rank"), std::string::npos) << what;
  }
}

TEST(LocalGroup, MismatchedCallsAndFailedRanksDoNotHang) {
  LocalGroup g(2);
  // Different shapes on the two ranks: both see it and throw.
  EXPECT_THROW(g.run([&](Communicator& c) {
    c.all_gather(input({c.rank() + 1, 2}, 0), 0);
  }),
               Error);
  // Different collectives.
  EXPECT_THROW(g.run([&](Communicator& c) {
    if (c.rank() == 0)
      c.barrier();
    else
      c.all_gather(input({2}, 0), 0);
  }),
               Error);
  // Rank 1 fails before its collective; rank 0, waiting in the barrier, is released.
  try {
    g.run([&](Communicator& c) {
      if (c.rank() == 1) fail("boom");
      c.barrier();
    });
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_EQ(std::string(e.what()), "rank 1 of 2: boom");
  }
  // The group is usable again after a failed run.
  std::vector<Tensor> out(2);
  g.run([&](Communicator& c) {
    out[static_cast<size_t>(c.rank())] = c.all_gather(input({1}, c.rank()), 0);
  });
  EXPECT_EQ(out[1].data<float>()[1], 1000.f);
  EXPECT_THROW(LocalGroup(0), Error);
  EXPECT_THROW(g.comm(2), Error);
  EXPECT_EQ(g.comm(1).describe(), "rank 1 of 2 (local threads)");
}

TEST(LocalGroup, UndefinedTensorsAreRefused) {
  LocalGroup g(1);
  EXPECT_THROW(g.run([&](Communicator& c) { c.all_gather(Tensor(), 0); }), Error);
}

}  // namespace
}  // namespace freeswim::parallel
