#include "io/wan_kind.h"

#include <algorithm>
#include <cctype>
#include <filesystem>

#include "core/error.h"
#include "io/safetensors.h"
#include "io/wan_names.h"

namespace freeswim::io {

namespace {

bool any_with_prefix(const std::vector<std::string>& names, const std::string& prefix) {
  auto it = std::lower_bound(names.begin(), names.end(), prefix);
  return it != names.end() && it->compare(0, prefix.size(), prefix) == 0;
}

int count_blocks(const std::vector<std::string>& names, const std::string& prefix) {
  int n = 0;
  while (any_with_prefix(names, prefix + std::to_string(n) + ".")) ++n;
  return n;
}

std::string lower(std::string s) {
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

}  // namespace

WanDitIdentity identify_wan_dit(const TensorSource& src, const std::string& path) {
  const std::vector<std::string> names = src.names();  // sorted
  const WanDitNaming naming = detect_wan_dit_naming(names, path);
  const std::string& p = naming.prefix;
  const bool diffusers = naming.scheme == WanDitScheme::Diffusers;
  auto has = [&](const std::string& rest) { return any_with_prefix(names, p + rest); };
  auto shape = [&](const std::string& name) -> Shape {
    const TensorInfo* t = src.find(p + name);
    return t ? t->shape : Shape{};
  };

  WanDitIdentity id;
  const Shape pe = shape("patch_embedding.weight");
  const int64_t dim = pe.size() >= 2 ? pe[0] : 0, in_dim = pe.size() >= 2 ? pe[1] : 0;
  const int64_t patch = pe.size() == 5 ? pe[2] * pe[3] * pe[4] : 1;
  const Shape head = shape(diffusers ? "proj_out.weight" : "head.head.weight");
  const int64_t out_dim = !head.empty() && patch > 0 ? head[0] / patch : 0;
  const std::string channels = fmt::format("{} input and {} output channels", in_dim, out_dim);

  if (has("vace_patch_embedding.") || has("vace_blocks.")) {
    id.kind = WanDitKind::VACE;
    id.what = fmt::format("a Wan VACE DiT (video editing and control; {} VACE blocks)",
                          count_blocks(names, p + "vace_blocks."));
  } else if (has("control_adapter.")) {
    id.kind = WanDitKind::CameraControl;
    id.what = "a Wan camera-control DiT (control_adapter)";
  } else if (has("casual_audio_encoder.") || has("audio_proj.") || has("face_adapter.")) {
    id.kind = WanDitKind::AudioOrAnimate;
    id.what = has("face_adapter.") ? "a Wan2.2 Animate DiT (face_adapter)"
                                   : "a Wan speech/audio-to-video DiT (S2V or HuMo)";
  } else if (has("img_emb.emb_pos") || has("condition_embedder.image_embedder.pos_embed")) {
    id.kind = WanDitKind::FLF2V;
    id.what = fmt::format("a Wan2.1 FLF2V DiT (first-last-frame-to-video; {})", channels);
  } else if (has("img_emb.") || has("condition_embedder.image_embedder.") ||
             has("blocks.0.cross_attn.k_img.") || has("blocks.0.attn2.add_k_proj.")) {
    id.kind = WanDitKind::I2V;
    id.what = fmt::format(
        "a Wan2.1 image-to-video DiT (I2V-14B or Fun-InP: CLIP image "
        "embedding, {})",
        channels);
  } else if (in_dim == 48 && out_dim == 48) {
    id.kind = WanDitKind::TI2V5B;
    id.what = fmt::format(
        "the Wan2.2 TI2V-5B DiT (text/image-to-video, dim {}, {}; it needs the "
        "Wan2.2 VAE with 48 latent channels)",
        dim, channels);
  } else if (in_dim == 36) {
    id.kind = WanDitKind::Wan22I2V;
    id.what = fmt::format(
        "an expert of the Wan2.2 I2V-A14B DiT (image-to-video, {} without an "
        "image embedding)",
        channels);
  } else if (in_dim != 16 || out_dim != 16) {
    id.kind = WanDitKind::OtherInputs;
    id.what = fmt::format("a Wan DiT with {} (text-to-video takes 16 and 16; e.g. Fun-Control)",
                          channels);
  } else {
    id.kind = WanDitKind::T2V;
    id.what = dim == 1536   ? "Wan2.1 T2V-1.3B (text-to-video)"
              : dim == 5120 ? "Wan2.1 T2V-14B (text-to-video)"
                            : fmt::format("a Wan2.1 text-to-video DiT of width {}", dim);
    const std::string file = lower(std::filesystem::path(path).filename().string());
    for (const char* hint :
         {"high_noise", "low_noise", "highnoise", "lownoise", "wan2.2", "wan22"}) {
      if (file.find(hint) != std::string::npos) {
        id.note = fmt::format(
            "the file name says '{}': a Wan2.2 T2V-A14B expert? Its tensors are exactly those of "
            "Wan2.1 T2V-14B, so it is run as that (one expert for every step)",
            hint);
        break;
      }
    }
  }
  return id;
}

void require_wan_t2v(const WanDitIdentity& id, const std::string& path) {
  FS_CHECK(id.runs(),
           "{}: this is {}; this engine runs the Wan2.1 text-to-video DiT (T2V-1.3B or T2V-14B)",
           path, id.what);
}

}  // namespace freeswim::io
