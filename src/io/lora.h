// LoRA files for the Wan DiT, merged into the weights at load (docs/lora.md).
//
// Three key formats are read, each with low-rank pairs and full deltas:
//   ComfyUI / original Wan   diffusion_model.blocks.0.self_attn.q.lora_down.weight / lora_up.weight
//                            (or lora_A / lora_B), .alpha; .diff (weight delta), .diff_b (bias
//                            delta), blocks.0.diff_m (modulation delta), as lightx2v files carry
//   kohya / musubi           lora_unet_blocks_0_self_attn_q.lora_down.weight / lora_up.weight,
//                            .alpha (original module names with '.' as '_')
//   diffusers / PEFT         transformer.blocks.0.attn1.to_q.lora_A.weight / lora_B.weight,
//                            lora_B.bias (bias delta)
// A weight W (f32) becomes, for every patch of every file in order,
//   W + strength * (alpha / rank) * up @ down      (alpha absent: alpha / rank = 1)
//   W + strength * diff                            (full deltas)
// accumulated in double (each product up[i][r] * down[r][j] is exact in double, summed over r in
// order, then added with one fused multiply-add per patch) and rounded to f32 once, before the
// model's one conversion to its compute dtype. Every key of every file must be understood and
// land on a weight of the model being loaded; anything else is an error naming the keys, so a
// LoRA for another model never half-applies.
#pragma once

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "core/tensor.h"
#include "io/safetensors.h"

namespace freeswim::io {

// `FILE` or `FILE:STRENGTH` (the strength a decimal number; default 1).
struct LoraSpec {
  std::string path;
  double strength = 1.0;
  static LoraSpec parse(const std::string& arg);
};

enum class LoraFormat { ComfyUI, Kohya, Diffusers };
std::string lora_format_name(LoraFormat f);

// One file's keys grouped by module, before they are matched to a model.
struct LoraModule {
  std::string module;  // as the file names it, prefix and format marker removed
  std::string down, up, alpha, diff, diff_b, up_bias, diff_m;  // key names (empty: absent)
};

struct LoraFileKeys {
  std::string path;
  LoraFormat format = LoraFormat::ComfyUI;
  std::vector<LoraModule> modules;  // sorted by module
};

// Groups the keys of a LoRA file; throws Error naming the file and the keys it does not
// understand (LoHa / LoKr / other formats, unknown suffixes), modules with only one half of a
// pair, and files that mix formats.
LoraFileKeys group_lora_keys(const std::string& path, const std::vector<std::string>& keys);

// Whether a name list looks like a LoRA file (for `freeswim info`).
bool looks_like_lora(const std::vector<std::string>& keys);

// The LoRA files of one load, matched to a model whose weights are `weights` (diffusers names:
// "blocks.0.attn1.to_q.weight", "blocks.0.scale_shift_table", ...), each with the shape the model
// gives it.
class LoraSet {
 public:
  // Opens and validates every file and matches every key; throws Error naming the file and the
  // keys that match no weight of the model, and patches whose shapes do not fit their weight.
  static std::shared_ptr<const LoraSet> open(const std::vector<LoraSpec>& specs,
                                             const std::map<std::string, Shape>& weights);

  bool touches(const std::string& weight) const { return patches_.count(weight) != 0; }
  // `w` (f32 CPU, the weight's shape) with every patch for `weight` merged; `w` itself when
  // none. Runs on all threads; the result does not depend on their number.
  Tensor apply(const std::string& weight, const Tensor& w) const;
  // One line per file: "<path>: <format>, N modules, strength S".
  std::vector<std::string> describe() const;

 private:
  struct Patch {
    size_t file = 0;
    double scale = 1;             // strength * alpha / rank, or strength
    std::string up, down, delta;  // keys: a low-rank pair, or a full delta
  };
  struct File {
    LoraSpec spec;
    TensorSource src;
    LoraFormat format;
    size_t modules = 0;
  };
  std::vector<File> files_;
  std::map<std::string, std::vector<Patch>> patches_;  // weight -> patches in file order
};

}  // namespace freeswim::io
