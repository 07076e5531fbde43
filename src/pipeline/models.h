// Finding and loading the three models of a Wan2.1 text-to-video checkpoint.
//
// Layouts understood (a directory given with --model):
//   diffusers   transformer/ vae/ text_encoder/ tokenizer/   (Wan-AI/Wan2.1-T2V-*-Diffusers)
//   original    diffusion_pytorch_model*.safetensors, Wan2.1_VAE.pth,
//               models_t5_umt5-xxl-enc-bf16.pth, google/umt5-xxl/   (Wan-AI/Wan2.1-T2V-*)
// Single files (ComfyUI's split files, for example) are given with --dit/--vae/--t5/--tokenizer,
// which also override what a directory holds. "tiny" builds a small random model in memory.
#pragma once

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "core/tensor.h"
#include "models/wan_dit.h"
#include "models/wan_vae.h"
#include "text/tokenizer.h"
#include "text/umt5.h"

namespace freeswim::pipeline {

struct ModelPaths {
  std::string model;  // a directory, or "tiny"
  std::string dit, dit_config, vae, t5, tokenizer;
  std::vector<std::string> loras;  // --lora FILE[:STRENGTH], merged into the DiT in this order
};

// Where each part was found, and what kind of checkpoint it is.
struct ModelLayout {
  std::string layout;  // "diffusers", "original", "files", "tiny"
  std::string dit, vae, t5, tokenizer;
};

// Resolves paths (throws Error naming the flag and the path for anything missing and needed;
// `info` needs only the DiT and reports the rest as absent).
ModelLayout find_models(const ModelPaths& paths, bool need_text = true, bool need_vae = true);

// The model's native (training) size: the base stage runs there, and its token grid sets the
// FreeSwim window.
struct NativeSize {
  int width = 832, height = 480;
  double flow_shift = 3.0;  // Wan's UniPC shift at that size
  std::string variant;      // "Wan2.1-T2V-1.3B", "Wan2.1-T2V-14B", "tiny (random)"
};

struct LoadedModels {
  ModelLayout layout;
  std::unique_ptr<models::WanDit> dit;
  std::unique_ptr<models::WanVae> vae;
  std::unique_ptr<text::Umt5Encoder> t5;     // absent for the tiny model
  std::optional<text::Tokenizer> tokenizer;  // absent for the tiny model
  NativeSize native;
  // Wall time load_models took (reading, converting and moving the weights), for the job's
  // closing summary.
  double load_seconds = 0;

  // Text context [512, text_dim] for a prompt (Wan's cleaning, tokenizer, UMT5, zero padding).
  // The tiny model has no text encoder: its context is a fixed pseudo-random function of the
  // prompt's bytes, so different prompts still give different videos.
  Tensor encode_text(const std::string& prompt) const;
  // Frees the text encoder once a run's prompts are encoded: nothing needs it again, and
  // UMT5-XXL holds 11 GB of a GPU (23 GB of host memory as f32 on the CPU) that the DiT stages
  // can use. encode_text throws afterwards. No-op for the tiny model (it has none).
  void release_text_encoder();
  bool text_encoder_released() const { return text_released_; }
  // Set when Offload::automatic moved the DiT's blocks to host memory: what ran out, for the CLI
  // to print.
  std::string offload_note;
  // A remark about what the DiT file is (a Wan2.2 expert's file name), for the CLI to print.
  std::string dit_note;

 private:
  bool text_released_ = false;
};

// Where the DiT's block weights live on cuda; always off on the cpu, where they are in host memory
// anyway (device_settings decides it from the device and the flags). on (--offload): in pinned host
// memory, streamed to the GPU two blocks at a time. off
// (--no-offload): on the GPU. automatic (the default): on the GPU when they fit; when loading them
// there runs out of GPU memory, the model is loaded again with its blocks in pinned host memory,
// and LoadedModels::offload_note says why.
enum class Offload { automatic, on, off };

// The policy of `automatic`, on its own for tests: load(false), and when that throws OutOfMemory
// in automatic mode, `fell_back(what())` then load(true); on: load(true); off: load(false), an
// out-of-memory propagating. Any other error propagates in every mode.
std::unique_ptr<models::WanDit> load_dit_with_offload(
    Offload mode, const std::function<std::unique_ptr<models::WanDit>(bool offload)>& load,
    const std::function<void(const std::string& why)>& fell_back);

// The tokenizer: --tokenizer if given, else the one inside the --t5 file (ComfyUI's UMT5 with
// its `spiece_model` tensor, a GGUF encoder's tokenizer.ggml.*), else the model folder's; throws
// naming the encoder file when there is none.
text::Tokenizer load_tokenizer(const ModelPaths& paths, const ModelLayout& layout);

// `offload` as device_settings decided it for `device` (off on the cpu).
LoadedModels load_models(const ModelPaths& paths, Device device, bool need_text, Offload offload);

// Wan's default negative prompt (the Wan2.1 repository's sample_neg_prompt).
const std::string& wan_default_negative_prompt();

}  // namespace freeswim::pipeline
