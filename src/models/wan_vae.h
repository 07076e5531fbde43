// The Wan2.1 video VAE (diffusers AutoencoderKLWan, original wan/modules/vae.py): a causal 3D
// convolutional encoder/decoder, 8x spatial and 4x temporal compression, 16 latent channels.
//
// Video is processed causally in time, one chunk at a time, as the reference does: the encoder
// sees frame 0 alone, then 4 frames per chunk, and emits one latent frame per chunk; the decoder
// sees one latent frame per chunk and emits 1 frame, then 4 per chunk. Every causal convolution
// keeps the last two frames of its input from earlier chunks (the "feature cache"), so memory is
// bounded by a chunk, not by the video length. The results equal the reference's chunked loop.
//
// Frames larger than a tile are processed in overlapping spatial tiles (VaeTiling), each tile
// through all frames with its own caches, and blended; the working memory is then bounded by
// the tile, not by the frame (see wan_vae_tiling.cpp for the tile plan and the blend).
//
// Layouts: video [3, F, H, W] in [-1, 1]; latents [z_dim, T, H/8, W/8]; batch 1.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <nlohmann/json_fwd.hpp>
#include <optional>
#include <string>
#include <vector>

#include "core/tensor.h"
#include "ops/ops.h"

namespace freeswim::parallel {
class Communicator;
}

namespace freeswim::models {

struct WanVaeConfig {
  int base_dim = 96;
  int z_dim = 16;
  std::vector<int> dim_mult{1, 2, 4, 4};
  int num_res_blocks = 2;
  std::vector<bool> temporal_downsample{false, true, true};  // per encoder level but the last
  // Latent normalisation constants: the pipeline's latents are (mean - latents_mean) / latents_std.
  std::vector<float> latents_mean, latents_std;  // z_dim values each

  // The released Wan2.1 VAE (base 96) with Wan's normalisation constants.
  static WanVaeConfig wan21();
  // A diffusers AutoencoderKLWan config.json; absent normalisation constants take Wan's.
  static WanVaeConfig from_json_file(const std::string& path);
  // The same from a parsed object; `label` names its origin in errors.
  static WanVaeConfig from_json(const nlohmann::json& j, const std::string& label);
  std::string describe() const;
  int levels() const { return static_cast<int>(dim_mult.size()); }
  int spatial_factor() const { return 1 << (levels() - 1); }
  int temporal_factor() const;
  // Throws Error (naming `what`) when the configuration is inconsistent.
  void validate(const std::string& what) const;
};

// Spatial tiling, in pixels. A frame wider or taller than `tile` is cut into tiles of `tile`
// pixels overlapping by at least `overlap`; both must be multiples of the VAE's spatial factor.
struct VaeTiling {
  bool enabled = true;
  int tile = 256;
  int overlap = 64;
};

// Diagonal Gaussian posterior of the encoder (unnormalised latents).
struct VaeEncoding {
  Tensor mean;    // [z_dim, T, h, w]
  Tensor logvar;  // clamped to [-30, 20] as diffusers' DiagonalGaussianDistribution does
};

// Weights. Convolutions keep torch's [Co, Ci, kt, kh, kw] layout (2D ones as kt = 1).
struct VaeConv {
  Tensor w, b;
};
struct VaeResBlock {
  Tensor norm1, norm2;  // RMS gammas [C]
  VaeConv conv1, conv2;
  VaeConv shortcut;  // 1x1x1, absent when in == out
};
struct VaeAttention {
  Tensor norm;          // [C]
  Tensor qkv_w, qkv_b;  // [3C, C], [3C]
  Tensor proj_w, proj_b;
};
enum class ResampleMode { Up2d, Up3d, Down2d, Down3d };
struct VaeResample {
  ResampleMode mode = ResampleMode::Down2d;
  VaeConv conv;       // spatial 3x3 as [Co, Ci, 1, 3, 3]
  VaeConv time_conv;  // [.., .., 3, 1, 1] for the 3d modes
};
struct VaeMid {
  VaeResBlock res0, res1;
  VaeAttention attn;
};
struct VaeEncoderWeights {
  VaeConv conv_in;
  std::vector<VaeResBlock> res;          // flat, level by level (num_res_blocks per level)
  std::vector<VaeResample> downsamples;  // one per level but the last
  VaeMid mid;
  Tensor norm_out;
  VaeConv conv_out;
};
struct VaeDecoderWeights {
  VaeConv conv_in;
  VaeMid mid;
  std::vector<VaeResBlock> res;        // flat, level by level (num_res_blocks + 1 per level)
  std::vector<VaeResample> upsamples;  // one per level but the last
  Tensor norm_out;
  VaeConv conv_out;
};
struct WanVaeWeights {
  VaeEncoderWeights encoder;
  VaeDecoderWeights decoder;
  VaeConv quant_conv, post_quant_conv;  // 1x1x1
};

class WanVae {
 public:
  WanVae(WanVaeConfig config, WanVaeWeights weights, Device device);

  // Loads a checkpoint: diffusers `vae/` (directory or safetensors file, diffusers names) or the
  // original `Wan2.1_VAE.pth` (or a safetensors file with original names). The config comes from
  // `config_path` if given, else a `config.json` beside the weights, else the tensor shapes (with
  // Wan's normalisation constants).
  static std::unique_ptr<WanVae> load(const std::string& path, Device device,
                                      const std::string& config_path = "");
  // The same with the configuration in hand (inferred from the shapes when absent); `cfg_note`
  // says where it came from in error messages.
  static std::unique_ptr<WanVae> load(const std::string& path, Device device,
                                      const std::optional<WanVaeConfig>& config,
                                      const std::string& cfg_note);
  static std::unique_ptr<WanVae> random(const WanVaeConfig& config, Device device, uint64_t seed);
  // What a VAE checkpoint is, from names and shapes: "Wan2.1 VAE (<naming>)"; throws Error
  // naming the file for the Wan2.2 VAE (48 latent channels) and for files that are no Wan VAE.
  static std::string identify(const std::string& path);

  const WanVaeConfig& config() const { return config_; }
  Device device() const { return device_; }

  // How the convolutions compute (ops::ConvPrecision): FP32 by default, the exact path the golden
  // parity is checked at; TF32 is the reference's own precision on Ampere and newer GPUs. The
  // CPU backend ignores it (always exact fp32).
  void set_precision(ops::ConvPrecision p) { precision_ = p; }
  ops::ConvPrecision precision() const { return precision_; }

  // video [3, F, H, W] with F = 1 + 4k and H, W multiples of 8 -> posterior [z_dim, 1 + k, H/8,
  // W/8]. With a `group` of ranks, every rank calls encode with the same video and its own
  // replica, and the tiles are split as decode splits them (below): every rank returns the whole
  // posterior.
  VaeEncoding encode(const Tensor& video, const VaeTiling& tiling = {},
                     parallel::Communicator* group = nullptr) const;
  // Unnormalised latents [z_dim, T, h, w] -> video [3, 1 + 4(T - 1), 8h, 8w], clamped to [-1, 1]
  // unless `clamp` is false.
  //
  // With a `group` of ranks (several GPUs, docs/multi_gpu.md), every rank calls decode with the
  // same latents and its own replica: the tiles (numbered row by row) are dealt round-robin,
  // each rank blends its tiles into a zero frame, and Communicator::all_reduce_sum adds the
  // ranks' frames, so every rank returns the whole video (equal to the single-rank decode up to
  // the order of the additions of overlapping tiles). A frame of one tile is decoded by rank 0
  // and broadcast.
  Tensor decode(const Tensor& latents, const VaeTiling& tiling = {}, bool clamp = true,
                parallel::Communicator* group = nullptr) const;

  // (z - latents_mean) / latents_std per channel, and its inverse.
  Tensor normalize(const Tensor& z) const;
  Tensor denormalize(const Tensor& z) const;

  // The chunked causal passes over one spatial region without tiling; each chunk's output is
  // handed to `sink(first_frame, chunk)`. Exposed for the tiling code and its tests.
  using ChunkSink = std::function<void(int64_t first_frame, const Tensor& chunk)>;
  void encode_region(const Tensor& video, const ChunkSink& sink) const;    // chunks [2z, 1, h, w]
  void decode_region(const Tensor& latents, const ChunkSink& sink) const;  // chunks [3, f, H, W]

 private:
  struct Caches;
  // ops::conv3d at this VAE's precision.
  Tensor conv(const VaeConv& c, const Tensor& x, ops::Conv3dParams p) const;
  Tensor causal_conv(const VaeConv& c, const Tensor& x, Caches& caches) const;
  Tensor res_block(const VaeResBlock& r, const Tensor& x, Caches& caches) const;
  Tensor attention(const VaeAttention& a, const Tensor& x) const;
  Tensor mid(const VaeMid& m, const Tensor& x, Caches& caches) const;
  Tensor resample(const VaeResample& r, const Tensor& x, Caches& caches) const;
  Tensor encoder_chunk(const Tensor& x, Caches& caches) const;
  Tensor decoder_chunk(const Tensor& z, Caches& caches) const;

  WanVaeConfig config_;
  WanVaeWeights w_;
  Device device_;
  ops::ConvPrecision precision_ = ops::ConvPrecision::FP32;
  Tensor mean_, inv_std_, std_, neg_mean_over_std_;  // [z_dim] on the device
};

// Tiling helpers (wan_vae_tiling.cpp), exposed for tests.
struct TileSpan {
  int64_t begin = 0, size = 0;
};
// Equal tiles of at most `tile` cells covering [0, length), as few as share at least `overlap`
// cells between neighbours and each the smallest that does; one tile when length <= tile.
std::vector<TileSpan> plan_tiles(int64_t length, int64_t tile, int64_t overlap);
// Per-cell blend weights of every tile (`scale` cells per planned cell), normalised so that the
// weights of all tiles sum to 1 at each cell: each tile ramps linearly across its overlap with a
// neighbour and is flat elsewhere.
std::vector<std::vector<float>> blend_weights(const std::vector<TileSpan>& tiles, int64_t length,
                                              int64_t scale);
// Runs `region(y0, x0, h, w, sink)` for every tile of an `height` x `width` grid (in planned
// cells) and blends the chunks it emits into `out` [C, F, height * scale, width * scale].
using TileRegion = std::function<void(int64_t y0, int64_t x0, int64_t h, int64_t w,
                                      const WanVae::ChunkSink& sink)>;
// Only the tiles whose row-major index is `rank` modulo `ranks` are run (a rank's share of a
// multi-GPU decode).
void run_tiled(Tensor& out, int64_t height, int64_t width, int64_t tile, int64_t overlap,
               int64_t scale, const TileRegion& region, int rank = 0, int ranks = 1);

}  // namespace freeswim::models
