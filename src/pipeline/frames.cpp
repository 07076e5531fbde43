#include "pipeline/frames.h"

#include "core/error.h"

namespace freeswim::pipeline {

Tensor fhwc_to_cfhw(const Tensor& frames) {
  FS_CHECK(frames.ndim() == 4 && frames.dim(3) == 3 && frames.device() == Device::CPU &&
               frames.dtype() == DType::F32,
           "expected CPU f32 frames [F, H, W, 3], got {}", frames.describe());
  const int64_t F = frames.dim(0), H = frames.dim(1), W = frames.dim(2);
  Tensor out = Tensor::empty({3, F, H, W});
  const float* s = frames.data<float>();
  float* o = out.data<float>();
  for (int64_t f = 0; f < F; ++f)
    for (int64_t p = 0; p < H * W; ++p)
      for (int64_t c = 0; c < 3; ++c) o[(c * F + f) * H * W + p] = s[(f * H * W + p) * 3 + c];
  return out;
}

Tensor cfhw_to_fhwc(const Tensor& video) {
  const Tensor v = video.to(Device::CPU).to(DType::F32);
  FS_CHECK(v.ndim() == 4 && v.dim(0) == 3, "expected a video [3, F, H, W], got {}", v.describe());
  const int64_t F = v.dim(1), H = v.dim(2), W = v.dim(3);
  Tensor out = Tensor::empty({F, H, W, 3});
  const float* s = v.data<float>();
  float* o = out.data<float>();
  for (int64_t f = 0; f < F; ++f)
    for (int64_t p = 0; p < H * W; ++p)
      for (int64_t c = 0; c < 3; ++c) o[(f * H * W + p) * 3 + c] = s[(c * F + f) * H * W + p];
  return out;
}

Tensor encode_frames(const models::WanVae& vae, const Tensor& frames_fhwc,
                     const models::VaeTiling& tiling) {
  Tensor video = fhwc_to_cfhw(frames_fhwc);
  float* d = video.data<float>();
  for (int64_t i = 0; i < video.numel(); ++i) d[i] = 2.f * d[i] - 1.f;
  const models::VaeEncoding enc = vae.encode(video.to(vae.device()), tiling);
  return vae.normalize(enc.mean).to(Device::CPU).to(DType::F32);
}

Tensor decode_latents(const models::WanVae& vae, const Tensor& latents,
                      const models::VaeTiling& tiling) {
  const Tensor z = vae.denormalize(latents.to(vae.device()));
  Tensor frames = cfhw_to_fhwc(vae.decode(z, tiling, /*clamp=*/true));
  float* d = frames.data<float>();
  for (int64_t i = 0; i < frames.numel(); ++i) d[i] = d[i] / 2.f + 0.5f;
  return frames;
}

}  // namespace freeswim::pipeline
