// Between pixels and latents, as the reference pipelines convert:
//   frames [F, H, W, 3] in [0, 1]  --(2x - 1, to [3, F, H, W])-->  VAE encode mean  --> normalise
//   normalised latents  --> denormalise --> VAE decode (clamped to [-1, 1]) --> x/2 + 0.5
#pragma once

#include "core/tensor.h"
#include "models/wan_vae.h"

namespace freeswim::pipeline {

// frames [F, H, W, 3] in [0, 1] (CPU f32) -> normalised latents [z, T, H/8, W/8] (CPU f32). With
// a `group`, every rank passes the same frames, the encode's tiles are split over the ranks
// (models::WanVae::encode) and every rank gets all latents.
Tensor encode_frames(const models::WanVae& vae, const Tensor& frames_fhwc,
                     const models::VaeTiling& tiling = {}, parallel::Communicator* group = nullptr);
// normalised latents -> frames [F, H, W, 3] in [0, 1] (CPU f32). With a `group`, the decode's
// tiles are split over its ranks (models::WanVae::decode) and every rank gets all frames.
Tensor decode_latents(const models::WanVae& vae, const Tensor& latents,
                      const models::VaeTiling& tiling = {},
                      parallel::Communicator* group = nullptr);

// [F, H, W, 3] <-> [3, F, H, W] layout changes (copies).
Tensor fhwc_to_cfhw(const Tensor& frames);
Tensor cfhw_to_fhwc(const Tensor& video);

}  // namespace freeswim::pipeline
