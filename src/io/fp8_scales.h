// fp8 checkpoints: plain F8_E4M3 / F8_E5M2 weights, and ComfyUI's two ways of storing a scale
// beside each fp8 weight (docs/fp8.md):
//
//   scaled_fp8 (older)   a marker tensor `<prefix>scaled_fp8`; per linear layer a scalar
//                        `<layer>.scale_weight` (W = float(W8) * scale) and an optional
//                        `<layer>.scale_input` (for fp8 activations; not used here)
//   comfy_quant (newer)  per layer `<layer>.comfy_quant` (U8 bytes of a JSON object
//                        {"format": "float8_e4m3fn" | "float8_e5m2", ...}) or the same objects in
//                        the `_quantization_metadata` entry of `__metadata__`
//                        ({"layers": {"<layer>": {...}}}); a scalar `<layer>.weight_scale`
//                        (W = float(W8) * scale) and an optional `<layer>.input_scale`
//
// Both are resolved once when a checkpoint opens: every scale is checked against its weight and
// the marker, scale and configuration tensors are taken out of the checkpoint's list of names,
// so a loader sees only weights, each dequantised once to f32 when read.
#pragma once

#include <functional>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "core/tensor.h"
#include "io/tensor_info.h"

namespace freeswim::io {

struct Fp8Scale {
  std::string name;  // the scale tensor
  float value = 1.f;
};

struct Fp8Scales {
  // Weight name -> the scalar it is multiplied by.
  std::map<std::string, Fp8Scale, std::less<>> scale_of;
  // Tensors that are not weights: the marker, scales, input scales and layer configurations.
  std::set<std::string, std::less<>> auxiliary;
  // "" (no scales), "ComfyUI scaled_fp8" or "ComfyUI comfy_quant".
  std::string scheme;
};

// Resolves the scales of a checkpoint whose tensors are `tensors` (name -> info);
// `quant_metadata` holds each file's `_quantization_metadata` entry of `__metadata__` (file,
// JSON text) where it has one. `read` returns a tensor's CPU tensor (for scales and comfy_quant
// bytes). Throws Error naming `label` and the tensor for: a scale without its weight, a scale on a
// weight that is not fp8, a scale that is not a float scalar, a comfy_quant format other than the
// two fp8 formats (naming the format), a format that disagrees with the weight's dtype, and
// malformed comfy_quant JSON.
Fp8Scales resolve_fp8_scales(const std::string& label,
                             const std::map<std::string, const TensorInfo*, std::less<>>& tensors,
                             const std::vector<std::pair<std::string, std::string>>& quant_metadata,
                             const std::function<Tensor(const std::string&)>& read);

// float(W8) * scale as a new f32 CPU tensor (scale 1 for plain fp8); `w` is an F8_E4M3 or
// F8_E5M2 CPU tensor. Runs on all threads; the result does not depend on their number.
Tensor dequantize_fp8(const Tensor& w, float scale = 1.f);

}  // namespace freeswim::io
