// Finding and loading the three models of a Wan2.1 text-to-video checkpoint.
//
// Layouts understood (a directory given with --model):
//   diffusers   transformer/ vae/ text_encoder/ tokenizer/   (Wan-AI/Wan2.1-T2V-*-Diffusers)
//   original    diffusion_pytorch_model*.safetensors, Wan2.1_VAE.pth,
//               models_t5_umt5-xxl-enc-bf16.pth, google/umt5-xxl/   (Wan-AI/Wan2.1-T2V-*)
// Single files (ComfyUI's split files, for example) are given with --dit/--vae/--t5/--tokenizer,
// which also override what a directory holds. "tiny" builds a small random model in memory.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
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

// Where the text encoder runs (--text-device): auto (default: the GPU when its weights and
// kTextEncoderMargin fit in the free GPU memory before the DiT and VAE are loaded, else the CPU),
// cpu or cuda.
enum class TextDevice : uint8_t { Auto, CPU, CUDA };
// "auto", "cpu" or "cuda"; anything else is an error naming --text-device.
TextDevice parse_text_device(const std::string& value);
const char* text_device_name(TextDevice d);

// Device memory kept free beside the text encoder's weights for its forward: at 512 tokens its
// activations are tens of MiB (a [512, 10240] feed-forward hidden layer, 64 heads of 512 x 512
// scores); the rest is cuBLAS's workspace and the allocator's rounding.
inline constexpr size_t kTextEncoderMargin = size_t{1} << 30;

struct TextPlacement {
  Device device = Device::CPU;
  // For the log: "text encoder on cuda (10.6 GiB fits in 21.9 GiB free)".
  std::string reason;
};

// Where the text encoder of `weight_bytes` (in the compute dtype) runs for a job on `job_device`,
// with `free_bytes` free on it before the DiT and VAE are loaded. A cpu job: the CPU (--text-device
// cuda is an error naming --device). A cuda job: auto puts it on the GPU when weight_bytes +
// kTextEncoderMargin <= free_bytes, else on the CPU; cpu or cuda as asked.
TextPlacement place_text_encoder(TextDevice requested, Device job_device, size_t weight_bytes,
                                 size_t free_bytes);

// A text encoder placed on the CPU keeps f32 weights (`cpu_weight_bytes`) in host memory: throws
// Error before they are read when they and kTextEncoderMargin do not fit in `host_bytes` (the
// host's available memory; 0: not checked), naming the need, the placement's reason and what
// would help. Nothing to check for a placement on a GPU.
void check_text_host_memory(const TextPlacement& where, size_t cpu_weight_bytes, size_t host_bytes);

// What load_models will load, from names, shapes and config files only (no weight is read, so a
// wrong file fails in well under a second): the paths, the DiT's configuration and identity, the
// VAE's identity, the native size.
struct ModelPlan {
  ModelLayout layout;
  models::WanDitConfig dit;
  NativeSize native;
  // A remark about what the DiT file is (a Wan2.2 expert's file name), for the CLI to print.
  std::string dit_note;
};
// Throws Error naming the flag and file for anything missing, of another model, or malformed.
ModelPlan inspect_models(const ModelPaths& paths, bool need_text = true);

// The prompts a job encodes, and where (load_models encodes them before the DiT and VAE take the
// device's memory).
struct TextJob {
  std::vector<std::string> prompts;
  TextDevice device = TextDevice::Auto;
};

struct LoadedModels {
  ModelLayout layout;
  std::unique_ptr<models::WanDit> dit;
  std::unique_ptr<models::WanVae> vae;
  NativeSize native;
  // Wall time load_models took (validating the files, encoding the prompts, reading, converting
  // and moving the weights), for the job's closing summary.
  double load_seconds = 0;
  // The part of load_seconds spent loading the text encoder and encoding the prompts.
  double text_seconds = 0;

  // Text context [512, text_dim] for a prompt (Wan's cleaning, tokenizer, UMT5, zero padding):
  // one of TextJob::prompts, encoded by load_models before the DiT was loaded (the encoder is
  // gone by then); another prompt is an error. The tiny model has no text encoder: its context is
  // a fixed pseudo-random function of the prompt's bytes, so different prompts still give
  // different videos.
  Tensor encode_text(const std::string& prompt) const;
  // Set when Offload::automatic moved the DiT's blocks to host memory: what ran out, for the CLI
  // to print.
  std::string offload_note;
  // A remark about what the DiT file is (a Wan2.2 expert's file name), for the CLI to print.
  std::string dit_note;
  // The contexts of TextJob::prompts, by prompt (CPU, f32).
  std::map<std::string, Tensor> contexts;
};

// Where the DiT's block weights live on cuda; always off on the cpu, where they are in host memory
// anyway (device_settings decides it from the device and the flags). on (--offload): in pinned host
// memory, streamed to the GPU two blocks at a time. off
// (--no-offload): on the GPU. automatic (the default): on the GPU when they fit; when loading them
// there runs out of GPU memory, the model is loaded again with its blocks in pinned host memory,
// and LoadedModels::offload_note says why. (The CLI turns automatic into on beforehand when its
// memory plan finds that the weights would load but the job's working memory would not fit
// beside them: memory_plan.h.)
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

// Loads a job's models onto `device` in the order that leaves the most memory to each part:
//   1. inspect_models (every file checked from its header: a wrong DiT or VAE fails at once);
//   2. the text encoder, on the device place_text_encoder picks for text.device (its weight
//      bytes from the file's shapes, the free memory of `device`); each of text.prompts is
//      encoded (LoadedModels::contexts), then the encoder is freed and, on a GPU, the
//      allocator's blocks go back to the driver (UMT5-XXL: 10.6 GiB of a GPU in bf16, 21 GiB of
//      host memory in f32 on the CPU);
//   3. the DiT (with `offload` as device_settings decided it for `device`: off on the cpu) and
//      the VAE.
// No text encoder is read when text.prompts is empty. `info` gets one line per decision (where the
// text encoder runs and why, that it was released).
LoadedModels load_models(const ModelPaths& paths, Device device, Offload offload,
                         const TextJob& text,
                         const std::function<void(const std::string&)>& info = {});

// Step 2 of load_models on its own: the contexts of text.prompts (CPU, f32, by prompt), the
// encoder on the device place_text_encoder picks for `device` and freed afterwards. Empty for
// the tiny model (its contexts come from the prompt's bytes) and when there are no prompts. A
// launch of several ranks (launch.h) encodes the prompts once with it and gives the contexts to
// every rank's models (LoadedModels::contexts), which load_models then loads without prompts.
std::map<std::string, Tensor> encode_job_prompts(
    const ModelPaths& paths, Device device, const TextJob& text,
    const std::function<void(const std::string&)>& info = {});

// Wan's default negative prompt (the Wan2.1 repository's sample_neg_prompt).
const std::string& wan_default_negative_prompt();

}  // namespace freeswim::pipeline
