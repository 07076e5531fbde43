// Spatial tiling of the VAE and the public encode/decode entry points.
//
// Tile plan: along each axis, as few equal tiles of at most `tile` cells (latent cells: pixels / 8)
// as keep every overlap >= `overlap`, each as small as that allows, starts spread evenly.
// Defaults (VaeTiling): 256-pixel tiles overlapping by at least 64 pixels, as diffusers' Wan
// tiling (256 / stride 192). Each tile runs through every frame with its own causal caches.
//
// Blend: every tile's output is weighted by the product of two 1D profiles that rise linearly
// from 0 to 1 across its overlap with the previous neighbour and fall across its overlap with
// the next one (flat elsewhere and at the frame border); the profiles are normalised to sum to 1
// at each pixel, so the result is a partition-of-unity average and a tile seam never shows a
// step. Tiles are accumulated straight into the output, so the working memory is one tile's
// activations and caches plus the output itself.
#include <cmath>

#include "core/error.h"
#include "models/wan_vae.h"
#include "ops/ops.h"
#include "parallel/communicator.h"

namespace freeswim::models {

std::vector<TileSpan> plan_tiles(int64_t length, int64_t tile, int64_t overlap) {
  FS_CHECK(tile > 0 && overlap >= 0 && overlap < tile,
           "VAE tiling: tile {} and overlap {} (need 0 <= overlap < tile)", tile, overlap);
  if (length <= tile) return {{0, length}};
  // The fewest tiles of at most `tile` cells that can overlap by `overlap`, then the smallest
  // equal size that covers the axis with them: n * size >= length + (n - 1) * overlap. Equal
  // sizes keep one convolution shape per axis; the smallest size wastes the least compute
  // (a 1088-pixel axis in 512-pixel tiles: 3 tiles of 56 cells, not of 64).
  const int64_t n = (length - overlap + (tile - overlap) - 1) / (tile - overlap);
  const int64_t size = (length + (n - 1) * overlap + n - 1) / n;
  std::vector<TileSpan> tiles;
  for (int64_t k = 0; k < n; ++k) {
    // Evenly spread starts; the spacing (length - size) / (n - 1) is at most size - overlap, and
    // rounding never adds a cell beyond that, since size - overlap is an integer.
    const int64_t begin = static_cast<int64_t>(std::llround(
        static_cast<double>(k) * static_cast<double>(length - size) / static_cast<double>(n - 1)));
    tiles.push_back({begin, size});
  }
  return tiles;
}

std::vector<std::vector<float>> blend_weights(const std::vector<TileSpan>& tiles, int64_t length,
                                              int64_t scale) {
  std::vector<std::vector<double>> raw(tiles.size());
  std::vector<double> total(static_cast<size_t>(length * scale), 0.0);
  for (size_t k = 0; k < tiles.size(); ++k) {
    const int64_t n = tiles[k].size * scale;
    const int64_t ov_prev =
        k > 0 ? (tiles[k - 1].begin + tiles[k - 1].size - tiles[k].begin) * scale : 0;
    const int64_t ov_next =
        k + 1 < tiles.size() ? (tiles[k].begin + tiles[k].size - tiles[k + 1].begin) * scale : 0;
    raw[k].resize(static_cast<size_t>(n));
    for (int64_t u = 0; u < n; ++u) {
      double w = 1.0;
      if (ov_prev > 0)
        w *= std::min(1.0, (static_cast<double>(u) + 0.5) / static_cast<double>(ov_prev));
      if (ov_next > 0)
        w *= std::min(1.0, (static_cast<double>(n - u) - 0.5) / static_cast<double>(ov_next));
      raw[k][static_cast<size_t>(u)] = w;
      total[static_cast<size_t>(tiles[k].begin * scale + u)] += w;
    }
  }
  std::vector<std::vector<float>> out(tiles.size());
  for (size_t k = 0; k < tiles.size(); ++k) {
    out[k].resize(raw[k].size());
    for (size_t u = 0; u < raw[k].size(); ++u)
      out[k][u] =
          static_cast<float>(raw[k][u] / total[static_cast<size_t>(tiles[k].begin * scale) + u]);
  }
  return out;
}

void run_tiled(Tensor& out, int64_t height, int64_t width, int64_t tile, int64_t overlap,
               int64_t scale, const TileRegion& region, int rank, int ranks) {
  const std::vector<TileSpan> ys = plan_tiles(height, tile, overlap),
                              xs = plan_tiles(width, tile, overlap);
  const auto wy = blend_weights(ys, height, scale), wx = blend_weights(xs, width, scale);
  for (size_t i = 0; i < ys.size(); ++i)
    for (size_t j = 0; j < xs.size(); ++j) {
      if (static_cast<int64_t>(i * xs.size() + j) % ranks != rank) continue;
      const int64_t th = ys[i].size * scale, tw = xs[j].size * scale;
      std::vector<float> map(static_cast<size_t>(th * tw));
      for (int64_t y = 0; y < th; ++y)
        for (int64_t x = 0; x < tw; ++x)
          map[static_cast<size_t>(y * tw + x)] =
              wy[i][static_cast<size_t>(y)] * wx[j][static_cast<size_t>(x)];
      const Tensor weight = Tensor::from_vector({th, tw}, map).to(out.device());  // fp32
      const int64_t y0 = ys[i].begin * scale, x0 = xs[j].begin * scale;
      region(ys[i].begin, xs[j].begin, ys[i].size, xs[j].size,
             [&](int64_t f0, const Tensor& chunk) {
               ops::accumulate_tile(out, chunk, weight, f0, y0, x0);
             });
    }
}

namespace {

// The VAE computes in fp32 on every device (the reference does): its input in f32 on `device`.
Tensor fp32_on(const Tensor& t, Device device) {
  if (t.device() == device && t.dtype() == DType::F32) return t;
  return t.to(Device::CPU).to(DType::F32).to(device);
}

// Cells [y0, y0 + h) x [x0, x0 + w) of the last two dimensions, times `scale`.
Tensor crop(const Tensor& x, int64_t y0, int64_t x0, int64_t h, int64_t w, int64_t scale) {
  return ops::slice(ops::slice(x, 2, y0 * scale, (y0 + h) * scale), 3, x0 * scale,
                    (x0 + w) * scale);
}

void check_tiling(const VaeTiling& t, int s) {
  FS_CHECK(
      t.tile > 0 && t.tile % s == 0 && t.overlap >= 0 && t.overlap % s == 0 && t.overlap < t.tile,
      "VAE tiling: tile {} and overlap {} pixels must be multiples of {} with 0 <= overlap < tile",
      t.tile, t.overlap, s);
}

}  // namespace

VaeEncoding WanVae::encode(const Tensor& video, const VaeTiling& tiling,
                           parallel::Communicator* group) const {
  const int s = config_.spatial_factor(), tf = config_.temporal_factor();
  FS_CHECK(video.ndim() == 4 && video.dim(0) == 3,
           "VAE encode: expected video [3, F, H, W], got {}", video.describe());
  const int64_t F = video.dim(1), H = video.dim(2), W = video.dim(3);
  FS_CHECK(F >= 1 && (F - 1) % tf == 0,
           "VAE encode: {} frames; the VAE needs 1 + {}k frames (nearest: {} or {})", F, tf,
           1 + (F - 1) / tf * tf, 1 + ((F - 1) / tf + 1) * tf);
  FS_CHECK(H > 0 && W > 0 && H % s == 0 && W % s == 0,
           "VAE encode: frame size {}x{} must be a multiple of {}", W, H, s);
  const Tensor x = fp32_on(video, device_);
  const int64_t h = H / s, w = W / s, T = 1 + (F - 1) / tf, z = config_.z_dim;
  Tensor out = Tensor::zeros({2 * z, T, h, w}, x.dtype(), device_);
  if (tiling.enabled && (H > tiling.tile || W > tiling.tile)) {
    check_tiling(tiling, s);
    run_tiled(
        out, h, w, tiling.tile / s, tiling.overlap / s, 1,
        [&](int64_t y0, int64_t x0, int64_t th, int64_t tw, const ChunkSink& sink) {
          encode_region(crop(x, y0, x0, th, tw, s), sink);
        },
        group ? group->rank() : 0, group ? group->size() : 1);
    if (group && group->size() > 1) out = group->all_reduce_sum(out);
  } else {
    if (!group || group->rank() == 0) {
      encode_region(x, [&](int64_t f0, const Tensor& chunk) {
        ops::accumulate_tile(out, chunk, {}, f0, 0, 0);
      });
    }
    if (group && group->size() > 1) group->broadcast(out, 0);
  }
  VaeEncoding enc;
  enc.mean = ops::slice(out, 0, 0, z);
  enc.logvar = ops::clamp(ops::slice(out, 0, z, 2 * z), -30.f, 20.f);
  return enc;
}

Tensor WanVae::decode(const Tensor& latents, const VaeTiling& tiling, bool clamp,
                      parallel::Communicator* group) const {
  const int s = config_.spatial_factor(), tf = config_.temporal_factor();
  FS_CHECK(latents.ndim() == 4 && latents.dim(0) == config_.z_dim && latents.dim(1) >= 1 &&
               latents.dim(2) > 0 && latents.dim(3) > 0,
           "VAE decode: expected latents [{}, T, h, w], got {}", config_.z_dim, latents.describe());
  const Tensor z = fp32_on(latents, device_);
  const int64_t T = z.dim(1), h = z.dim(2), w = z.dim(3);
  Tensor out = Tensor::zeros({3, 1 + (T - 1) * tf, h * s, w * s}, z.dtype(), device_);
  if (tiling.enabled && (h * s > tiling.tile || w * s > tiling.tile)) {
    check_tiling(tiling, s);
    run_tiled(
        out, h, w, tiling.tile / s, tiling.overlap / s, s,
        [&](int64_t y0, int64_t x0, int64_t th, int64_t tw, const ChunkSink& sink) {
          decode_region(crop(z, y0, x0, th, tw, 1), sink);
        },
        group ? group->rank() : 0, group ? group->size() : 1);
    if (group && group->size() > 1) out = group->all_reduce_sum(out);
  } else {
    if (!group || group->rank() == 0) {
      decode_region(z, [&](int64_t f0, const Tensor& chunk) {
        ops::accumulate_tile(out, chunk, {}, f0, 0, 0);
      });
    }
    if (group && group->size() > 1) group->broadcast(out, 0);
  }
  return clamp ? ops::clamp(out, -1.f, 1.f) : out;
}

}  // namespace freeswim::models
