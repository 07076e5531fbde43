// Spatial tiling of the VAE: the tile plan and blend weights, the blend reproducing a
// tiling-invariant computation exactly, tiled against untiled decoding of the tiny golden VAE,
// and the working memory of a tiled decode staying bounded by the tile as the frame grows.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <map>
#include <mutex>
#include <random>

#include "core/device_memory.h"
#include "core/error.h"
#include "golden_dir.h"
#include "io/safetensors.h"
#include "models/wan_vae.h"
#include "ops/ops.h"

namespace freeswim {
namespace {

TEST(VaeTilePlan, CoversWithRequestedOverlapAndWeightsSumToOne) {
  for (int64_t length : {5, 8, 9, 17, 33, 40, 61, 135}) {
    const int64_t tile = 8, overlap = 3;
    const auto tiles = models::plan_tiles(length, tile, overlap);
    ASSERT_FALSE(tiles.empty());
    EXPECT_EQ(tiles.front().begin, 0);
    EXPECT_EQ(tiles.back().begin + tiles.back().size, length);
    if (length <= tile) {
      EXPECT_EQ(tiles.size(), 1u);
    }
    for (size_t k = 1; k < tiles.size(); ++k) {
      EXPECT_GE(tiles[k - 1].begin + tiles[k - 1].size - tiles[k].begin, overlap) << length;
      EXPECT_GT(tiles[k].begin, tiles[k - 1].begin);
    }
    for (int64_t scale : {1, 8}) {
      const auto w = models::blend_weights(tiles, length, scale);
      std::vector<double> sum(static_cast<size_t>(length * scale), 0.0);
      for (size_t k = 0; k < tiles.size(); ++k)
        for (size_t u = 0; u < w[k].size(); ++u) {
          EXPECT_GT(w[k][u], 0.f);
          sum[static_cast<size_t>(tiles[k].begin * scale) + u] += w[k][u];
        }
      for (double s : sum) EXPECT_NEAR(s, 1.0, 1e-6) << length;
    }
  }
  EXPECT_THROW(models::plan_tiles(10, 4, 4), Error);
}

TEST(VaeTilePlan, FewestEqualTilesOfTheSmallestSize) {
  for (int64_t length : {9, 17, 40, 61, 135, 136, 240}) {
    for (auto [tile, overlap] : {std::pair<int64_t, int64_t>{8, 3}, {64, 16}, {96, 8}, {32, 8}}) {
      if (length <= tile) continue;
      const auto tiles = models::plan_tiles(length, tile, overlap);
      const auto n = static_cast<int64_t>(tiles.size()), size = tiles[0].size;
      for (const auto& t : tiles) EXPECT_EQ(t.size, size) << length << " " << tile;
      EXPECT_LE(size, tile);
      // One tile fewer could not share `overlap` cells, even at the full tile size...
      EXPECT_LT((n - 1) * tile - (n - 2) * overlap, length) << length << " " << tile;
      // ...and one cell less per tile would not cover the axis with those overlaps.
      EXPECT_LT(n * (size - 1) - (n - 1) * overlap, length) << length << " " << tile;
    }
  }
  // 1088 pixels in 512-pixel tiles sharing 128: 3 tiles of 56 cells rather than of 64.
  const auto t = models::plan_tiles(136, 64, 16);
  ASSERT_EQ(t.size(), 3u);
  EXPECT_EQ(t[0].size, 56);
  EXPECT_EQ(t[1].begin, 40);
  EXPECT_EQ(t[2].begin, 80);
}

TEST(VaeTilePlan, BlendReproducesATilingInvariantComputationExactly) {
  // A "decoder" that upsamples every cell 8x and emits 1 then 4 frames per chunk: its tiles
  // agree wherever they overlap, so any seam or mis-weighting of the blend would show.
  const int64_t C = 3, T = 3, h = 13, w = 21, s = 8;
  std::mt19937 gen(5);
  std::uniform_real_distribution<float> u(-1.f, 1.f);
  std::vector<float> v(static_cast<size_t>(C * T * h * w));
  for (float& x : v) x = u(gen);
  const Tensor z = Tensor::from_vector({C, T, h, w}, v);
  auto emit = [&](const Tensor& region, const models::WanVae::ChunkSink& sink) {
    Tensor up = region;
    for (int i = 0; i < 3; ++i) up = ops::upsample_nearest2x(up);
    for (int64_t t = 0; t < region.dim(1); ++t) {
      Tensor f = ops::slice(up, 1, t, t + 1);
      if (t > 0) f = ops::concat(ops::concat(f, f, 1), ops::concat(f, f, 1), 1);
      sink(t == 0 ? 0 : 1 + 4 * (t - 1), f);
    }
  };
  Tensor want = Tensor::zeros({C, 1 + 4 * (T - 1), h * s, w * s});
  emit(z, [&](int64_t f0, const Tensor& c) { ops::accumulate_tile(want, c, {}, f0, 0, 0); });
  Tensor got = Tensor::zeros(want.shape());
  int tiles = 0;
  models::run_tiled(got, h, w, 6, 2, s,
                    [&](int64_t y0, int64_t x0, int64_t th, int64_t tw, const auto& sink) {
                      ++tiles;
                      emit(ops::slice(ops::slice(z, 2, y0, y0 + th), 3, x0, x0 + tw), sink);
                    });
  EXPECT_EQ(tiles, 3 * 5);
  EXPECT_LT(relative_l2(got, want), 1e-6);
}

// Smooth latents of the tiny model's scale: a few low-frequency waves per channel plus noise.
Tensor test_latents(int64_t T, int64_t h, int64_t w) {
  std::mt19937 gen(11);
  std::normal_distribution<float> n(0.f, 1.f);
  std::vector<float> v(static_cast<size_t>(16 * T * h * w));
  size_t i = 0;
  for (int64_t c = 0; c < 16; ++c) {
    const float a = n(gen), b = n(gen), p = n(gen);
    for (int64_t t = 0; t < T; ++t)
      for (int64_t y = 0; y < h; ++y)
        for (int64_t x = 0; x < w; ++x)
          v[i++] = std::sin(0.3f * a * static_cast<float>(y) + 0.2f * b * static_cast<float>(x) +
                            p + 0.1f * t) +
                   0.3f * n(gen);
  }
  return Tensor::from_vector({16, T, h, w}, v);
}

// The tiny golden VAE with its middle attention blocks' output projection zeroed (the reference
// initialises that layer to zero), written to a temporary file: with random weights a frame-wide
// attention makes every pixel depend on the whole frame, which no tiling can reproduce, so the
// tiling comparison isolates what tiling is responsible for, the convolutions' receptive field.
std::unique_ptr<models::WanVae> vae_without_attention() {
  auto f = io::SafetensorsFile::open(kGolden + "/vae_tiny.diffusers.safetensors");
  std::vector<std::pair<std::string, Tensor>> t;
  for (const auto& info : f->tensors()) {
    Tensor x = f->tensor(info.name).clone();
    if (info.name.find("attentions.0.proj") != std::string::npos) x = Tensor::zeros(x.shape());
    t.emplace_back(info.name, x);
  }
  const std::string path = (std::filesystem::temp_directory_path() /
                            ("freeswim_vae_noattn_" + std::to_string(::getpid()) + ".safetensors"))
                               .string();
  io::write_safetensors(path, t);
  auto vae = models::WanVae::load(path, Device::CPU, kGolden + "/vae_tiny.config.json");
  std::filesystem::remove(path);
  return vae;
}

TEST(VaeTiling, TiledDecodeOfALargeFrameMatchesUntiled) {
  const auto vae = vae_without_attention();
  const Tensor z = test_latents(1, 48, 48);  // 384 x 384 pixels: 2 x 2 tiles of 256
  models::VaeTiling untiled;
  untiled.enabled = false;
  // 256-pixel tiles sharing 128 pixels (16 cells): the plan puts 32-cell tiles at 0 and 16.
  models::VaeTiling wide;
  wide.overlap = 128;
  const Tensor a = vae->decode(z, wide, false), b = vae->decode(z, untiled, false);
  ASSERT_EQ(a.shape(), b.shape());
  // Stated tolerance: 8% relative L2 with a 128-pixel overlap (measured 5.3%). Random weights
  // spread the receptive field (about 11 latent cells of 3x3 convolutions) far more than trained
  // ones; the error falls as the overlap grows (the default 64 pixels, 28-cell tiles at 0 and
  // 20: 12.1%; 128-pixel tiles: 21%).
  const double err = relative_l2(a, b);
  std::printf("tiled vs untiled decode: relative L2 %.3e\n", err);
  EXPECT_LT(err, 8e-2);
  // Disabled or one-tile tiling is the untiled computation, bit for bit.
  models::VaeTiling big;
  big.tile = 384;
  EXPECT_EQ(vae->decode(z, big, false).to_float_vector(), b.to_float_vector());
}

TEST(VaeTiling, TiledEncodeOfALargeFrameMatchesUntiled) {
  const auto vae = vae_without_attention();
  models::VaeTiling untiled;
  untiled.enabled = false;
  const Tensor video = vae->decode(test_latents(1, 48, 48), untiled, true);  // one 384 x 384 frame
  models::VaeTiling wide;  // as in the decode test: 2 x 2 tiles of 32 cells sharing 16
  wide.overlap = 128;
  const double err = relative_l2(vae->encode(video, wide).mean, vae->encode(video, untiled).mean);
  std::printf("tiled vs untiled encode: relative L2 %.3e\n", err);
  // Stated: 3% with a 128-pixel overlap (measured 1.7%; the default 64 pixels: 3.2%).
  EXPECT_LT(err, 3e-2);
}

// Live bytes of CPU tensors, with one allocation size (the output's) left out of the count.
struct MemoryProbe {
  static inline std::mutex mu;
  static inline std::map<void*, size_t> live;
  static inline size_t counted = 0, peak = 0, excluded = 0;
  static inline DeviceMemory base;

  static void* alloc(size_t bytes) {
    void* p = base.alloc(bytes);
    std::lock_guard lock(mu);
    live[p] = bytes;
    if (bytes != excluded) peak = std::max(peak, counted += bytes);
    return p;
  }
  static void release(void* p) {
    {
      std::lock_guard lock(mu);
      auto it = live.find(p);
      if (it != live.end()) {
        if (it->second != excluded) counted -= it->second;
        live.erase(it);
      }
    }
    base.release(p);
  }
  // Peak working set of `fn` above what was live before it, output-sized tensors excluded.
  template <typename Fn>
  static size_t measure(size_t excluded_bytes, Fn fn) {
    base = device_memory(Device::CPU);
    {
      std::lock_guard lock(mu);
      excluded = excluded_bytes;
      counted = peak = 0;
    }
    register_device_memory(Device::CPU, {alloc, release, base.copy});
    try {
      fn();
    } catch (...) {
      register_device_memory(Device::CPU, base);
      throw;
    }
    register_device_memory(Device::CPU, base);
    std::lock_guard lock(mu);
    return peak;
  }
};

TEST(VaeTiling, TiledDecodeWorkingMemoryIsBoundedByTheTile) {
  const auto vae = models::WanVae::load(kGolden + "/vae_tiny.diffusers.safetensors", Device::CPU);
  models::VaeTiling tiled;
  tiled.tile = 64;  // 8 latent cells
  tiled.overlap = 32;
  models::VaeTiling untiled;
  untiled.enabled = false;
  auto working_set = [&](int64_t h, int64_t w, const models::VaeTiling& t) {
    const Tensor z = test_latents(3, h, w);
    const size_t out_bytes = sizeof(float) * 3 * 9 * static_cast<size_t>(h * 8 * w * 8);
    return MemoryProbe::measure(out_bytes, [&] { vae->decode(z, t); });
  };
  const size_t one_tile = working_set(8, 8, tiled);  // a frame of exactly one tile (untiled path)
  const size_t wide_tiled = working_set(8, 24, tiled);    // 3x wider: 5 tiles
  const size_t large_tiled = working_set(16, 16, tiled);  // 4x the area: 9 tiles
  const size_t large_untiled = working_set(16, 16, untiled);
  std::printf(
      "decode working set: one tile %zu B, 8x8 latent tiles of 8x24: %zu B, 16x16: %zu B, 16x16 "
      "untiled %zu B\n",
      one_tile, wide_tiled, large_tiled, large_untiled);
  // The tiled working set does not grow with the frame: within 25% of one tile's (the extra is
  // the tile's latent crop and blend map), while the untiled one grows with the area.
  EXPECT_LT(wide_tiled, one_tile * 5 / 4);
  EXPECT_LT(large_tiled, one_tile * 5 / 4);
  EXPECT_GT(large_untiled, large_tiled * 3);
}

}  // namespace
}  // namespace freeswim
