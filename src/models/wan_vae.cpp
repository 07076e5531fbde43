// Forward passes of the Wan2.1 VAE. The arithmetic follows diffusers 0.35.2 AutoencoderKLWan
// (identical to wan/modules/vae.py for Wan2.1): RMS norms over channels (F.normalize * sqrt(C)
// * gamma), SiLU, causal convolutions with zero padding in front, single-head attention per
// frame in the middle blocks, nearest 2x upsampling, and zero pad (right/bottom) + stride-2
// downsampling.
#include "models/wan_vae.h"

#include <cmath>

#include "core/error.h"
#include "ops/ops.h"

namespace freeswim::models {

// Per-pass state of every causal layer, taken in the same order in every chunk (the reference's
// feat_cache / feat_idx). `frames` holds the layer's input frames that the next chunk needs;
// `seen` marks that a resampler has had its first chunk.
struct WanVae::Caches {
  struct Slot {
    Tensor frames;
    bool seen = false;
  };
  std::vector<Slot> slots;
  size_t next = 0;
  Slot& take() {
    if (next == slots.size()) slots.emplace_back();
    return slots[next++];
  }
  void begin_chunk() { next = 0; }
};

WanVae::WanVae(WanVaeConfig config, WanVaeWeights weights, Device device)
    : config_(std::move(config)), w_(std::move(weights)), device_(device) {
  config_.validate("VAE config");
  std::vector<float> inv(config_.latents_std.size()), nm(config_.latents_std.size());
  for (size_t i = 0; i < inv.size(); ++i) {
    inv[i] = 1.f / config_.latents_std[i];
    nm[i] = -config_.latents_mean[i] / config_.latents_std[i];
  }
  const int64_t z = config_.z_dim;
  mean_ = ops::to_compute(Tensor::from_vector({z}, config_.latents_mean), device_);
  std_ = ops::to_compute(Tensor::from_vector({z}, config_.latents_std), device_);
  inv_std_ = ops::to_compute(Tensor::from_vector({z}, inv), device_);
  neg_mean_over_std_ = ops::to_compute(Tensor::from_vector({z}, nm), device_);
}

namespace {

// Spatial 'same' padding of a k x k kernel.
ops::Conv3dParams same_spatial(const Tensor& w) {
  ops::Conv3dParams p;
  p.pad_top = p.pad_bottom = static_cast<int>((w.dim(3) - 1) / 2);
  p.pad_left = p.pad_right = static_cast<int>((w.dim(4) - 1) / 2);
  return p;
}

// Frames [begin, end) of x [C, F, H, W].
Tensor frames(const Tensor& x, int64_t begin, int64_t end) {
  return ops::slice(x, 1, begin, end);
}

}  // namespace

Tensor WanVae::conv(const VaeConv& c, const Tensor& x, ops::Conv3dParams p) const {
  p.precision = precision_;
  return ops::conv3d(x, c.w, c.b, p);
}

Tensor WanVae::causal_conv(const VaeConv& c, const Tensor& x, Caches& caches) const {
  ops::Conv3dParams p = same_spatial(c.w);
  const int64_t kt = c.w.dim(2);
  if (kt == 1) return conv(c, x, p);
  // The input is (cached frames of earlier chunks, this chunk), zero-padded in front to kt - 1
  // frames of history; the next chunk keeps the last kt - 1 frames of it.
  Caches::Slot& slot = caches.take();
  const Tensor in = slot.frames.defined() ? ops::concat(slot.frames, x, 1) : x;
  p.pad_front = static_cast<int>(kt - 1 - (in.dim(1) - x.dim(1)));
  const int64_t F = in.dim(1);
  slot.frames = frames(in, std::max<int64_t>(0, F - (kt - 1)), F);
  return conv(c, in, p);
}

Tensor WanVae::res_block(const VaeResBlock& r, const Tensor& x, Caches& caches) const {
  const Tensor h = r.shortcut.w.defined() ? conv(r.shortcut, x, {}) : x;
  Tensor y = ops::rms_norm_channels(x, r.norm1, {}, /*silu=*/true);
  y = causal_conv(r.conv1, y, caches);
  y = ops::rms_norm_channels(y, r.norm2, {}, /*silu=*/true);  // dropout is identity at inference
  y = causal_conv(r.conv2, y, caches);
  return ops::add(y, h);
}

Tensor WanVae::attention(const VaeAttention& a, const Tensor& x) const {
  // One head over the H*W positions of each frame; q, k, v are the three channel thirds of a
  // 1x1 convolution of the normalised frame.
  const int64_t C = x.dim(0), F = x.dim(1), N = x.dim(2) * x.dim(3);
  const Tensor tokens = ops::transpose2d(ops::rms_norm_channels(x, a.norm).reshape({C, F * N}));
  const Tensor qkv = ops::linear(tokens, a.qkv_w, a.qkv_b);  // [F*N, 3C]
  const Tensor q = ops::slice(qkv, 1, 0, C), k = ops::slice(qkv, 1, C, 2 * C),
               v = ops::slice(qkv, 1, 2 * C, 3 * C);
  const float scale = 1.f / std::sqrt(static_cast<float>(C));
  Tensor out;  // [F*N, C]
  for (int64_t f = 0; f < F; ++f) {
    auto rows = [&](const Tensor& t) { return t.slice0(f * N, (f + 1) * N).reshape({N, 1, C}); };
    const Tensor o = ops::attention(rows(q), rows(k), rows(v), scale).reshape({N, C});
    out = out.defined() ? ops::concat(out, o, 0) : o;
  }
  const Tensor proj = ops::linear(out, a.proj_w, a.proj_b);
  return ops::add(ops::transpose2d(proj).reshape(x.shape()), x);
}

Tensor WanVae::mid(const VaeMid& m, const Tensor& x, Caches& caches) const {
  Tensor y = res_block(m.res0, x, caches);
  y = attention(m.attn, y);
  return res_block(m.res1, y, caches);
}

Tensor WanVae::resample(const VaeResample& r, const Tensor& x, Caches& caches) const {
  switch (r.mode) {
    case ResampleMode::Up2d:
    case ResampleMode::Up3d: {
      Tensor y = x;
      if (r.mode == ResampleMode::Up3d) {
        // The first chunk passes untouched (no temporal doubling: frame 0 stays one frame);
        // later chunks go through a causal time convolution to 2C channels whose halves become
        // frames 2t and 2t + 1.
        Caches::Slot& state = caches.take();
        if (state.seen) {
          const Tensor t = causal_conv(r.time_conv, x, caches);  // [2C, f, H, W]
          const int64_t C = x.dim(0), f = x.dim(1), HW = x.dim(2) * x.dim(3);
          const Tensor even = ops::slice(t, 0, 0, C).reshape({C, f, 1, HW});
          const Tensor odd = ops::slice(t, 0, C, 2 * C).reshape({C, f, 1, HW});
          y = ops::concat(even, odd, 2).reshape({C, 2 * f, x.dim(2), x.dim(3)});
        } else {
          state.seen = true;
          caches.take();  // the time convolution's own cache slot, empty until the next chunk
        }
      }
      y = ops::upsample_nearest2x(y);
      return conv(r.conv, y, same_spatial(r.conv.w));
    }
    case ResampleMode::Down2d:
    case ResampleMode::Down3d: {
      ops::Conv3dParams p;  // ZeroPad2d((0, 1, 0, 1)) then a 3x3 stride-2 convolution
      p.pad_bottom = p.pad_right = 1;
      p.stride_h = p.stride_w = 2;
      const Tensor y = conv(r.conv, x, p);
      if (r.mode == ResampleMode::Down2d) return y;
      // The first chunk passes untouched; later ones are prefixed with the previous chunk's
      // last frame and reduced by a stride-2 kernel-3 time convolution.
      Caches::Slot& state = caches.take();
      const int64_t F = y.dim(1);
      const Tensor last = frames(y, F - 1, F);
      if (!state.seen) {
        state.seen = true;
        state.frames = last;
        return y;
      }
      const Tensor in = ops::concat(state.frames, y, 1);
      state.frames = last;
      ops::Conv3dParams tp;
      tp.stride_t = 2;
      return conv(r.time_conv, in, tp);
    }
  }
  fail("VAE: unknown resample mode");
}

Tensor WanVae::encoder_chunk(const Tensor& x, Caches& caches) const {
  const VaeEncoderWeights& e = w_.encoder;
  Tensor y = causal_conv(e.conv_in, x, caches);
  const size_t R = static_cast<size_t>(config_.num_res_blocks);
  for (size_t level = 0; level < static_cast<size_t>(config_.levels()); ++level) {
    for (size_t j = 0; j < R; ++j) y = res_block(e.res[level * R + j], y, caches);
    if (level < e.downsamples.size()) y = resample(e.downsamples[level], y, caches);
  }
  y = mid(e.mid, y, caches);
  y = ops::rms_norm_channels(y, e.norm_out, {}, /*silu=*/true);
  y = causal_conv(e.conv_out, y, caches);
  return conv(w_.quant_conv, y, {});
}

Tensor WanVae::decoder_chunk(const Tensor& z, Caches& caches) const {
  const VaeDecoderWeights& d = w_.decoder;
  Tensor y = conv(w_.post_quant_conv, z, {});
  y = causal_conv(d.conv_in, y, caches);
  y = mid(d.mid, y, caches);
  const size_t R = static_cast<size_t>(config_.num_res_blocks) + 1;
  for (size_t level = 0; level < static_cast<size_t>(config_.levels()); ++level) {
    for (size_t j = 0; j < R; ++j) y = res_block(d.res[level * R + j], y, caches);
    if (level < d.upsamples.size()) y = resample(d.upsamples[level], y, caches);
  }
  y = ops::rms_norm_channels(y, d.norm_out, {}, /*silu=*/true);
  return causal_conv(d.conv_out, y, caches);
}

void WanVae::encode_region(const Tensor& video, const ChunkSink& sink) const {
  const int64_t F = video.dim(1), tf = config_.temporal_factor();
  Caches caches;
  // Frame 0 alone, then tf frames per chunk; chunk i becomes latent frame i.
  for (int64_t i = 0, f0 = 0; f0 < F; ++i) {
    const int64_t n = i == 0 ? 1 : tf;
    caches.begin_chunk();
    sink(i, encoder_chunk(frames(video, f0, f0 + n), caches));
    f0 += n;
  }
}

void WanVae::decode_region(const Tensor& latents, const ChunkSink& sink) const {
  const int64_t T = latents.dim(1), tf = config_.temporal_factor();
  Caches caches;
  for (int64_t t = 0; t < T; ++t) {
    caches.begin_chunk();
    sink(t == 0 ? 0 : 1 + (t - 1) * tf, decoder_chunk(frames(latents, t, t + 1), caches));
  }
}

Tensor WanVae::normalize(const Tensor& z) const {
  FS_CHECK(z.ndim() == 4 && z.dim(0) == config_.z_dim,
           "VAE normalize: expected [{}, T, h, w] latents, got {}", config_.z_dim, z.describe());
  return ops::channel_affine(z, inv_std_, neg_mean_over_std_);
}

Tensor WanVae::denormalize(const Tensor& z) const {
  FS_CHECK(z.ndim() == 4 && z.dim(0) == config_.z_dim,
           "VAE denormalize: expected [{}, T, h, w] latents, got {}", config_.z_dim, z.describe());
  return ops::channel_affine(z, std_, mean_);
}

}  // namespace freeswim::models
