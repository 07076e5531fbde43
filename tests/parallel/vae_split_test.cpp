// The VAE decode and encode split by tiles over LocalGroup ranks (each rank its share of the
// tiles, the blended outputs summed with all_reduce_sum) against the single-rank pass, and a frame
// of one tile (run by rank 0, broadcast).
#include <gtest/gtest.h>

#include <cstring>

#include "core/rng.h"
#include "golden_dir.h"
#include "models/wan_vae.h"
#include "ops/ops.h"
#include "parallel/local_group.h"

namespace freeswim::models {
namespace {

TEST(VaeSplit, TiledDecodeOnSeveralRanksEqualsOneRank) {
  const auto vae = WanVae::load(kGolden + "/vae_tiny.diffusers.safetensors", Device::CPU);
  VaeTiling tiled;
  tiled.tile = 64;  // 8 latent cells
  tiled.overlap = 32;
  const Tensor z = rng::normal_tensor({16, 2, 12, 20}, 5);  // 2 x 4 tiles of 8 x 8 cells
  const Tensor want = vae->decode(z, tiled);
  for (int P : {2, 3}) {  // 8 tiles: 4 each, and 3, 3, 2
    std::vector<std::unique_ptr<WanVae>> vaes;
    for (int r = 0; r < P; ++r) {
      vaes.push_back(WanVae::load(kGolden + "/vae_tiny.diffusers.safetensors", Device::CPU));
    }
    parallel::LocalGroup g(P);
    std::vector<Tensor> out(static_cast<size_t>(P));
    g.run([&](parallel::Communicator& c) {
      out[static_cast<size_t>(c.rank())] =
          vaes[static_cast<size_t>(c.rank())]->decode(z, tiled, true, &c);
    });
    for (int r = 0; r < P; ++r) {
      const Tensor& o = out[static_cast<size_t>(r)];
      ASSERT_EQ(o.shape(), want.shape());
      // Overlapping tiles are added in another order: equal to rounding.
      EXPECT_LT(relative_l2(o, want), 1e-6) << "P " << P << " rank " << r;
      EXPECT_EQ(std::memcmp(o.raw(), out[0].raw(), o.nbytes()), 0) << "P " << P << " rank " << r;
    }
  }
}

TEST(VaeSplit, OneTileFrameIsDecodedOnceAndBroadcast) {
  const auto vae = WanVae::load(kGolden + "/vae_tiny.diffusers.safetensors", Device::CPU);
  const Tensor z = rng::normal_tensor({16, 2, 4, 6}, 6);
  const Tensor want = vae->decode(z);
  parallel::LocalGroup g(2);
  std::vector<Tensor> out(2);
  g.run([&](parallel::Communicator& c) {
    out[static_cast<size_t>(c.rank())] = vae->decode(z, {}, true, &c);
  });
  for (const Tensor& o : out) EXPECT_EQ(std::memcmp(o.raw(), want.raw(), want.nbytes()), 0);
}

TEST(VaeSplit, TiledEncodeOnSeveralRanksEqualsOneRank) {
  const auto vae = WanVae::load(kGolden + "/vae_tiny.diffusers.safetensors", Device::CPU);
  VaeTiling tiled;
  tiled.tile = 64;  // 8 latent cells
  tiled.overlap = 32;
  // 5 frames of 96 x 128 pixels: 2 x 3 tiles of 8 x 8 latent cells.
  Tensor video = rng::normal_tensor({3, 5, 96, 128}, 7);
  video = ops::clamp(video, -1.f, 1.f);
  const VaeEncoding want = vae->encode(video, tiled);
  for (int P : {2, 4}) {
    std::vector<std::unique_ptr<WanVae>> vaes;
    for (int r = 0; r < P; ++r) {
      vaes.push_back(WanVae::load(kGolden + "/vae_tiny.diffusers.safetensors", Device::CPU));
    }
    parallel::LocalGroup g(P);
    std::vector<VaeEncoding> out(static_cast<size_t>(P));
    g.run([&](parallel::Communicator& c) {
      out[static_cast<size_t>(c.rank())] =
          vaes[static_cast<size_t>(c.rank())]->encode(video, tiled, &c);
    });
    for (int r = 0; r < P; ++r) {
      const VaeEncoding& o = out[static_cast<size_t>(r)];
      ASSERT_EQ(o.mean.shape(), want.mean.shape());
      EXPECT_LT(relative_l2(o.mean, want.mean), 1e-6) << "P " << P << " rank " << r;
      EXPECT_LT(relative_l2(o.logvar, want.logvar), 1e-6) << "P " << P << " rank " << r;
      EXPECT_EQ(std::memcmp(o.mean.raw(), out[0].mean.raw(), o.mean.nbytes()), 0)
          << "P " << P << " rank " << r;
    }
  }
}

TEST(VaeSplit, OneTileEncodeIsRunOnceAndBroadcast) {
  const auto vae = WanVae::load(kGolden + "/vae_tiny.diffusers.safetensors", Device::CPU);
  const Tensor video = ops::clamp(rng::normal_tensor({3, 5, 32, 48}, 8), -1.f, 1.f);
  const VaeEncoding want = vae->encode(video);
  parallel::LocalGroup g(2);
  std::vector<VaeEncoding> out(2);
  g.run([&](parallel::Communicator& c) {
    out[static_cast<size_t>(c.rank())] = vae->encode(video, {}, &c);
  });
  for (const VaeEncoding& o : out) {
    EXPECT_EQ(std::memcmp(o.mean.raw(), want.mean.raw(), want.mean.nbytes()), 0);
    EXPECT_EQ(std::memcmp(o.logvar.raw(), want.logvar.raw(), want.logvar.nbytes()), 0);
  }
}

}  // namespace
}  // namespace freeswim::models
