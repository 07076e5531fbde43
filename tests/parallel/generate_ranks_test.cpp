// A whole `generate` with the built-in tiny model on several ranks of the CPU stand-in
// (LocalGroup; every rank its own models) against the single-rank job, same seed: 2 ranks
// (CFG-parallel) and 4 ranks (CFG pairs of sequence-parallel groups) give the same frames to
// rounding (the decodes are split by tiles over all ranks and the overlapping tiles added in
// another order; the denoising of 2 ranks alone is bit-identical, cfg_parallel_test.cpp). Every
// rank returns the same frames; rank 0 alone writes the mp4.
#include <gtest/gtest.h>

#include <cstdio>
#include <cstring>
#include <filesystem>

#include "local_world.h"
#include "pipeline/generate.h"

namespace freeswim::pipeline {
namespace {

namespace fs = std::filesystem;

JobOptions options(const std::string& output) {
  return tiny_ranks_job(output);
}

LoadedModels tiny() {
  ModelPaths p;
  p.model = "tiny";
  TextJob text;
  text.prompts = job_prompts(options(""));
  return load_models(p, Device::CPU, Offload::off, text);
}

Tensor run_on(int world, const std::string& output) {
  if (world == 1) {
    LoadedModels m = tiny();
    return run_generate(m, options(output), {});
  }
  std::vector<LoadedModels> models;
  for (int r = 0; r < world; ++r) models.push_back(tiny());
  std::vector<Tensor> out(static_cast<size_t>(world));
  run_local_world(world, true, [&](parallel::Communicator& w, const ParallelGroups& g) {
    JobRanks ranks;
    ranks.world = &w;
    ranks.groups = g;
    out[static_cast<size_t>(w.rank())] =
        run_generate(models[static_cast<size_t>(w.rank())], options(output), {}, ranks);
  });
  for (int r = 1; r < world; ++r) {
    EXPECT_EQ(std::memcmp(out[static_cast<size_t>(r)].raw(), out[0].raw(), out[0].nbytes()), 0)
        << "rank " << r << " of " << world;
  }
  return out[0];
}

TEST(GenerateRanks, SameSeedSameVideoOnOneTwoAndFourRanks) {
  const fs::path dir = fs::temp_directory_path() /
                       ("freeswim_generate_ranks_" +
                        std::to_string(::testing::UnitTest::GetInstance()->random_seed()));
  fs::create_directories(dir);
  const Tensor one = run_on(1, (dir / "one.mp4").string());
  const Tensor two = run_on(2, (dir / "two.mp4").string());
  const Tensor four = run_on(4, (dir / "four.mp4").string());
  ASSERT_EQ(two.shape(), one.shape());
  ASSERT_EQ(four.shape(), one.shape());
  EXPECT_LT(relative_l2(two, one), 1e-6);
  EXPECT_LT(relative_l2(four, one), 1e-5);
  std::printf("frames vs one rank: relative L2 %.3g (2 ranks), %.3g (4 ranks)\n",
              relative_l2(two, one), relative_l2(four, one));
  for (const char* f : {"one.mp4", "two.mp4", "four.mp4"}) {
    EXPECT_TRUE(fs::exists(dir / f)) << f;
    EXPECT_FALSE(fs::exists(dir / (std::string(f) + ".resume.safetensors"))) << f;
  }
  fs::remove_all(dir);
}

}  // namespace
}  // namespace freeswim::pipeline
