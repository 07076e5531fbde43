#include "pipeline/frames.h"

#include <vector>

#include "core/error.h"
#include "core/threads.h"
#include "ops/ops.h"

namespace freeswim::pipeline {

Tensor fhwc_to_cfhw(const Tensor& frames) {
  FS_CHECK(frames.ndim() == 4 && frames.dim(3) == 3 && frames.device() == Device::CPU &&
               frames.dtype() == DType::F32,
           "expected CPU f32 frames [F, H, W, 3], got {}", frames.describe());
  const int64_t F = frames.dim(0), H = frames.dim(1), W = frames.dim(2);
  Tensor out = Tensor::empty({3, F, H, W});
  const float* s = frames.data<float>();
  float* o = out.data<float>();
  parallel_for(F, 1, [&](int64_t f0, int64_t f1) {
    for (int64_t f = f0; f < f1; ++f)
      for (int64_t p = 0; p < H * W; ++p)
        for (int64_t c = 0; c < 3; ++c) o[(c * F + f) * H * W + p] = s[(f * H * W + p) * 3 + c];
  });
  return out;
}

Tensor cfhw_to_fhwc(const Tensor& video) {
  const Tensor v = video.to(Device::CPU).to(DType::F32);
  FS_CHECK(v.ndim() == 4 && v.dim(0) == 3, "expected a video [3, F, H, W], got {}", v.describe());
  const int64_t F = v.dim(1), H = v.dim(2), W = v.dim(3);
  Tensor out = Tensor::empty({F, H, W, 3});
  const float* s = v.data<float>();
  float* o = out.data<float>();
  parallel_for(F, 1, [&](int64_t f0, int64_t f1) {
    for (int64_t f = f0; f < f1; ++f)
      for (int64_t p = 0; p < H * W; ++p)
        for (int64_t c = 0; c < 3; ++c) o[(f * H * W + p) * 3 + c] = s[(c * F + f) * H * W + p];
  });
  return out;
}

namespace {

// A per-channel constant on `device` (the three colour channels).
Tensor channel_constant(float v, Device device) {
  return Tensor::from_vector({3}, std::vector<float>{v, v, v}).to(device);
}

// y = x * a + b elementwise on the CPU, in place (threads over equal chunks).
void scale_shift(Tensor& x, float a, float b) {
  float* d = x.data<float>();
  parallel_for(x.numel(), 1 << 16, [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; ++i) d[i] = d[i] * a + b;
  });
}

}  // namespace

// On a GPU VAE the layout change and the affine map run on the device: the frames are one
// [F*H*W, 3] matrix whose transpose is the [3, F*H*W] video, and x * a + b with a = 2 or 1/2
// rounds exactly as the CPU loop does (the product by a power of two is exact), so both routes
// give the same bits. A 1920x1088x81 video is 2 GB: the CPU loops took seconds, the device
// passes take milliseconds.
Tensor encode_frames(const models::WanVae& vae, const Tensor& frames_fhwc,
                     const models::VaeTiling& tiling, parallel::Communicator* group) {
  Tensor video;
  if (vae.device() == Device::CPU) {
    video = fhwc_to_cfhw(frames_fhwc);
    scale_shift(video, 2.f, -1.f);
  } else {
    FS_CHECK(frames_fhwc.ndim() == 4 && frames_fhwc.dim(3) == 3 &&
                 frames_fhwc.device() == Device::CPU && frames_fhwc.dtype() == DType::F32,
             "expected CPU f32 frames [F, H, W, 3], got {}", frames_fhwc.describe());
    const int64_t F = frames_fhwc.dim(0), H = frames_fhwc.dim(1), W = frames_fhwc.dim(2);
    const Device d = vae.device();
    const Tensor planes = ops::transpose2d(frames_fhwc.reshape({F * H * W, 3}).to(d));
    video = ops::channel_affine(planes, channel_constant(2.f, d), channel_constant(-1.f, d))
                .reshape({3, F, H, W});
  }
  const models::VaeEncoding enc = vae.encode(video.to(vae.device()), tiling, group);
  return vae.normalize(enc.mean).to(Device::CPU).to(DType::F32);
}

Tensor decode_latents(const models::WanVae& vae, const Tensor& latents,
                      const models::VaeTiling& tiling, parallel::Communicator* group) {
  const Tensor z = vae.denormalize(latents.to(vae.device()));
  const Tensor video = vae.decode(z, tiling, /*clamp=*/true, group);
  if (vae.device() == Device::CPU) {
    Tensor frames = cfhw_to_fhwc(video);
    scale_shift(frames, 0.5f, 0.5f);
    return frames;
  }
  const int64_t F = video.dim(1), H = video.dim(2), W = video.dim(3);
  const Device d = video.device();
  const Tensor planes = ops::channel_affine(video.to(DType::F32).reshape({3, F * H * W}),
                                            channel_constant(0.5f, d), channel_constant(0.5f, d));
  return ops::transpose2d(planes).to(Device::CPU).reshape({F, H, W, 3});
}

}  // namespace freeswim::pipeline
