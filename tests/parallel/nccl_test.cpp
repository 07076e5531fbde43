// NcclGroup (built with CUDA and NCCL). Without a GPU only the refusal of absent devices runs;
// with one or more, the collectives, Ulysses attention, sub-groups split from the group
// (ncclCommSplit) and an NcclWorld, on CUDA tensors with one rank (one GPU; several ranks wait
// for the per-device CUDA backend to be verified: docs/multi_gpu.md), against the expected copies
// and the unsplit attention. Labelled `gpu` for those tests' sake.
#include <cuda_runtime_api.h>
#include <gtest/gtest.h>

#include <cstdlib>
#include <cstring>

#include "core/error.h"
#include "core/rng.h"
#include "ops/cuda/cuda_backend.h"
#include "parallel/nccl_group.h"
#include "parallel/ulysses.h"

namespace freeswim::parallel {
namespace {

class Nccl : public testing::Test {
 protected:
  static void SetUpTestSuite() { ops::cuda::register_cuda_backend(); }
};

TEST_F(Nccl, AbsentGpusAreRefusedNamingThem) {
  const int visible = cuda_device_count();
  try {
    NcclGroup g({visible});
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("rank 0 needs GPU " + std::to_string(visible)),
              std::string::npos)
        << e.what();
  }
  if (visible >= 1) {
    EXPECT_THROW(NcclGroup({0, 0}), Error);
  }
}

TEST_F(Nccl, CollectivesOnOneGpu) {
  if (cuda_device_count() < 1) GTEST_SKIP() << "no GPU";
  NcclGroup g({0});
  // NVLS is off unless the user set it.
  ASSERT_NE(std::getenv("NCCL_NVLS_ENABLE"), nullptr);
  const Tensor x = rng::normal_tensor({4, 6, 8}, 3);
  g.run([&](Communicator& c) {
    EXPECT_EQ(c.describe(), "rank 0 of 1 (GPU 0, NCCL)");
    const Tensor d = x.to(Device::CUDA);
    for (int split = 0; split < 3; ++split) {
      for (int concat = 0; concat < 3; ++concat) {
        const Tensor y = c.all_to_all(d, split, concat).to(Device::CPU);
        EXPECT_EQ(std::memcmp(y.raw(), x.raw(), x.nbytes()), 0) << split << " " << concat;
      }
      const Tensor a = c.all_gather(d, split).to(Device::CPU);
      EXPECT_EQ(std::memcmp(a.raw(), x.raw(), x.nbytes()), 0) << split;
    }
    const Tensor sum = c.all_reduce_sum(d).to(Device::CPU);
    EXPECT_EQ(std::memcmp(sum.raw(), x.raw(), x.nbytes()), 0);
    Tensor b = d.clone();
    c.broadcast(b, 0);
    EXPECT_EQ(std::memcmp(b.to(Device::CPU).raw(), x.raw(), x.nbytes()), 0);
    c.barrier();
    EXPECT_THROW(c.all_gather(x, 0), Error);  // a CPU tensor
  });
}

TEST_F(Nccl, UlyssesAttentionOnOneGpuEqualsTheOp) {
  if (cuda_device_count() < 1) GTEST_SKIP() << "no GPU";
  NcclGroup g({0});
  const WindowGeometry grid{2, 8, 12, 2, 3};
  const auto q = rng::normal_tensor({grid.tokens(), 4, 128}, 1).to(DType::BF16).to(Device::CUDA);
  const auto k = rng::normal_tensor({grid.tokens(), 4, 128}, 2).to(DType::BF16).to(Device::CUDA);
  const auto v = rng::normal_tensor({grid.tokens(), 4, 128}, 3).to(DType::BF16).to(Device::CUDA);
  g.run([&](Communicator& c) {
    for (const WindowGeometry* w : {&grid, static_cast<const WindowGeometry*>(nullptr)}) {
      const Tensor want = ops::attention(q, k, v, 0.1f, w).to(Device::CPU);
      const Tensor got = ulysses_attention(c, TokenSplit::make(grid.tokens(), 1), q, k, v, 0.1f, w)
                             .to(Device::CPU);
      EXPECT_EQ(std::memcmp(got.raw(), want.raw(), want.nbytes()), 0);
    }
  });
}

// The sub-groups of a layout are split from the world communicator on the rank's thread; with
// one rank each is a group of one whose collectives copy. A failing rank aborts them with the
// world communicator: afterwards every collective on them, and any further split, is an Error.
TEST_F(Nccl, SubGroupsSplitOnOneGpu) {
  if (cuda_device_count() < 1) GTEST_SKIP() << "no GPU";
  NcclGroup g({0});
  const Tensor x = rng::normal_tensor({4, 6, 8}, 4);
  Communicator* cfg = nullptr;
  Communicator* seq = nullptr;
  g.run([&](Communicator& c) {
    cfg = &g.split(c, 0, 0);
    seq = &g.split(c, 0, 0);
    EXPECT_NE(cfg, seq);
    EXPECT_THROW(g.split(c, -1, 0), Error);  // NCCL_SPLIT_NOCOLOR makes no group
  });
  ASSERT_TRUE(cfg && seq);
  EXPECT_EQ(cfg->rank(), 0);
  EXPECT_EQ(cfg->size(), 1);
  EXPECT_EQ(seq->describe(), "rank 0 of 1 (GPU 0, NCCL)");
  // The sub-groups outlive the run that made them (the group owns them).
  g.run([&](Communicator&) {
    const Tensor d = x.to(Device::CUDA);
    for (Communicator* sub : {cfg, seq}) {
      const Tensor a = sub->all_gather(d, 1).to(Device::CPU);
      EXPECT_EQ(std::memcmp(a.raw(), x.raw(), x.nbytes()), 0);
      const Tensor t = sub->all_to_all(d, 0, 2).to(Device::CPU);
      EXPECT_EQ(std::memcmp(t.raw(), x.raw(), x.nbytes()), 0);
      Tensor b = d.clone();
      sub->broadcast(b, 0);
      EXPECT_EQ(std::memcmp(b.to(Device::CPU).raw(), x.raw(), x.nbytes()), 0);
      sub->barrier();
    }
  });
  try {
    g.run([&](Communicator&) { fail("injected failure"); });
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_EQ(std::string(e.what()), "rank 0 of 1 (GPU 0): injected failure");
  }
  g.run([&](Communicator& c) {
    const Tensor d = x.to(Device::CUDA);
    EXPECT_THROW(cfg->all_gather(d, 0), Error);
    EXPECT_THROW(seq->barrier(), Error);
    EXPECT_THROW(g.split(c, 0, 0), Error);
  });
}

// An NcclWorld of one GPU: a 1 x 1 layout, no sub-group to make, the world communicator works.
TEST_F(Nccl, WorldOfOneGpu) {
  if (cuda_device_count() < 1) GTEST_SKIP() << "no GPU";
  NcclWorld w({0}, true);
  EXPECT_EQ(w.size(), 1);
  EXPECT_EQ(w.layout().cfg, 1);
  EXPECT_EQ(w.layout().seq, 1);
  const Tensor x = rng::normal_tensor({3, 5}, 6);
  int ran = 0;
  w.run([&](const RankGroups& g) {
    ++ran;
    ASSERT_NE(g.world, nullptr);
    EXPECT_EQ(g.cfg, nullptr);
    EXPECT_EQ(g.sequence, nullptr);
    int device = -1;
    ASSERT_EQ(cudaGetDevice(&device), cudaSuccess);
    EXPECT_EQ(device, 0);
    const Tensor a = g.world->all_gather(x.to(Device::CUDA), 0).to(Device::CPU);
    EXPECT_EQ(std::memcmp(a.raw(), x.raw(), x.nbytes()), 0);
  });
  EXPECT_EQ(ran, 1);
}

}  // namespace
}  // namespace freeswim::parallel
