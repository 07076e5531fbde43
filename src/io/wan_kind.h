// What a Wan DiT checkpoint is, from its tensor names and shapes alone (no tensor data is
// read, so a file is recognised in well under a second). This engine runs the Wan2.1
// text-to-video DiT; the other members of the family share its blocks and are told apart by
// what they add (docs/model_files.md lists the facts):
//
//   VACE                 vace_patch_embedding, vace_blocks.N.*
//   camera control       control_adapter.*
//   S2V / HuMo / Animate casual_audio_encoder.* / audio_proj.* / face_adapter.*
//   FLF2V (Wan2.1)       img_emb.emb_pos (position table of the two frames' CLIP tokens)
//   I2V (Wan2.1)         img_emb.* (CLIP image projection), cross_attn.k_img / v_img; in_dim 36
//   TI2V-5B (Wan2.2)     in_dim 48 and out_dim 48 (its VAE has 48 latent channels), dim 3072
//   I2V-A14B (Wan2.2)    in_dim 36 without any image embedding
//   other in_dim         e.g. 48 input and 16 output channels (Fun-Control)
//   T2V                  in_dim 16, out_dim 16: Wan2.1 T2V-1.3B (dim 1536) or -14B (dim 5120),
//                        and also each expert of Wan2.2 T2V-A14B, whose tensors are exactly
//                        those of Wan2.1 T2V-14B (only the file name can tell)
#pragma once

#include <string>

namespace freeswim::io {

class TensorSource;

enum class WanDitKind {
  T2V,
  I2V,
  FLF2V,
  VACE,
  CameraControl,
  AudioOrAnimate,
  Wan22I2V,
  TI2V5B,
  OtherInputs,
};

struct WanDitIdentity {
  WanDitKind kind = WanDitKind::T2V;
  std::string what;  // "Wan2.1 T2V-1.3B (text-to-video)", "Wan2.1 VACE ...", ...
  std::string note;  // a remark that does not change the kind (the Wan2.2 expert file names)
  bool runs() const { return kind == WanDitKind::T2V; }
};

// Identifies a DiT checkpoint (any naming scheme and prefix). `path` is used for the file-name
// remark and in errors. Throws Error when the file is not a Wan DiT at all.
WanDitIdentity identify_wan_dit(const TensorSource& src, const std::string& path);

// Throws Error naming what the file is and what this engine runs when it is not a Wan2.1
// text-to-video DiT.
void require_wan_t2v(const WanDitIdentity& id, const std::string& path);

}  // namespace freeswim::io
