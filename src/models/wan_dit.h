// The Wan2.1 text-to-video diffusion transformer (diffusers' WanTransformer3DModel), with the
// FreeSwim forward kinds. Structure mirrors the diffusers module tree, so a tensor name leads
// to the member that holds it:
//
//   patch_embedding                       Conv3d(in, dim, k = s = patch) as a linear on patches
//   condition_embedder.time_embedder      sinusoid(freq_dim) -> linear_1 -> SiLU -> linear_2 = temb
//   condition_embedder.time_proj          SiLU(temb) -> 6*dim modulation of every block
//   condition_embedder.text_embedder      linear_1 -> GELU(tanh) -> linear_2
//   blocks.i                              see WanBlock
//   scale_shift_table, proj_out           output head: LN * (1+scale) + shift, linear
#pragma once

#include <map>
#include <memory>
#include <nlohmann/json_fwd.hpp>
#include <optional>
#include <string>
#include <vector>

#include "core/tensor.h"
#include "freeswim/policy.h"
#include "io/lora.h"
#include "io/wan_kind.h"
#include "ops/ops.h"

namespace freeswim::io {
class TensorSource;
}
namespace freeswim::parallel {
class Communicator;
struct TokenSplit;
}  // namespace freeswim::parallel

namespace freeswim::models {

struct WanDitConfig {
  int patch_t = 1, patch_h = 2, patch_w = 2;
  int heads = 12;
  int head_dim = 128;
  int in_channels = 16, out_channels = 16;
  int text_dim = 4096;
  int freq_dim = 256;
  int ffn_dim = 8960;
  int num_layers = 30;
  float eps = 1e-6f;
  int rope_max_seq_len = 1024;
  bool cross_attn_norm = true;

  int dim() const { return heads * head_dim; }
  std::string describe() const;  // "30 layers of 1536 (12 heads of 128), ffn 8960"
  // Parses a diffusers `config.json` (transformer/) or an original Wan `config.json`.
  static WanDitConfig from_json_file(const std::string& path);
  // The same from a parsed object; `label` names its origin in errors.
  static WanDitConfig from_json(const nlohmann::json& j, const std::string& label);
  // Wan2.1 T2V configurations by name: "1.3B", "14B".
  static WanDitConfig preset(const std::string& name);
};

struct WanAttentionWeights {
  Tensor to_q_w, to_q_b, to_k_w, to_k_b, to_v_w, to_v_b, to_out_w, to_out_b;
  Tensor norm_q, norm_k;  // RMSNorm over all heads (qk_norm = rms_norm_across_heads)
};

struct WanBlockWeights {
  WanAttentionWeights attn1, attn2;  // self, cross
  Tensor norm2_w, norm2_b;           // LayerNorm before cross-attention (affine)
  Tensor ffn0_w, ffn0_b, ffn2_w, ffn2_b;
  Tensor scale_shift_table;  // [1, 6, dim] f32
};

struct WanDitWeights {
  Tensor patch_w, patch_b;  // patch_w as [dim, in*pt*ph*pw]
  Tensor time1_w, time1_b, time2_w, time2_b, time_proj_w, time_proj_b;
  Tensor text1_w, text1_b, text2_w, text2_b;
  std::vector<WanBlockWeights> blocks;
  Tensor head_table;  // [1, 2, dim]
  Tensor proj_out_w, proj_out_b;
};

// One forward's inputs: latents [C, F, H, W], the diffusion timestep, text context [L, text_dim].
struct DitInput {
  Tensor latents;
  float timestep = 0;
  Tensor context;
};

class BlockStreamer;  // wan_dit.cpp: the --offload path

// Every weight of a DiT of configuration `c`, by diffusers name, with its shape (what load()
// reads; LoRAs are matched against it).
std::map<std::string, Shape> wan_dit_weight_shapes(const WanDitConfig& c);

// Throws Error when `src` is a GGUF file whose general.architecture is not "wan".
void check_gguf_architecture(const io::TensorSource& src, const std::string& path);

class WanDit {
 public:
  WanDit(WanDitConfig config, WanDitWeights weights, Device device);
  ~WanDit();
  WanDit(const WanDit&) = delete;
  WanDit& operator=(const WanDit&) = delete;

  // Loads from a checkpoint: a safetensors file, a sharded index, or a directory (diffusers
  // `transformer/` or an original Wan folder). The config comes from `config_path` if given,
  // else a `config.json` beside the weights, else is inferred from the tensor shapes.
  // Weights are validated against the config and converted once to the device's compute dtype.
  // `offload` (--offload, see enable_offload): the blocks' weights go to pinned host memory one
  // tensor at a time as they are converted, so a DiT larger than the GPU loads too.
  // `loras` (--lora) are matched to the weights before any is read and merged into each in f32
  // before its conversion (io/lora.h).
  static std::unique_ptr<WanDit> load(const std::string& path, Device device,
                                      const std::string& config_path = "", bool offload = false,
                                      const std::vector<io::LoraSpec>& loras = {});
  // The same with a configuration already in hand.
  static std::unique_ptr<WanDit> load(const std::string& path, Device device,
                                      const WanDitConfig& config, bool offload = false,
                                      const std::vector<io::LoraSpec>& loras = {});
  // The configuration load() uses for `path`: `config_path`, else config.json beside, else
  // inferred.
  static WanDitConfig resolve_config(const std::string& path, const std::string& config_path = "");
  // What a DiT checkpoint is (names and shapes only; fast): Wan2.1 T2V or another member of the
  // family (I2V, FLF2V, VACE, Wan2.2 TI2V-5B, ...). Throws when it is not a Wan DiT.
  static io::WanDitIdentity identify(const std::string& path);
  // Throws Error naming what the file is unless it is a Wan2.1 text-to-video DiT.
  static void require_wan_t2v_file(const std::string& path);
  // A randomly initialised model (the built-in tiny model, and real-size benchmarks).
  static std::unique_ptr<WanDit> random(const WanDitConfig& config, Device device, uint64_t seed);
  // Infers the configuration from tensor shapes (head_dim 128 assumed when no config says
  // otherwise: every released Wan2.1 DiT uses it).
  static WanDitConfig infer_config(const io::TensorSource& src,
                                   const std::string& prefix_note = "");

  const WanDitConfig& config() const { return config_; }
  Device device() const { return device_; }

  // --offload: moves every block's weights to pinned host memory and keeps two device slots of
  // one block each; a forward copies block i + 1 into the free slot on the transfer stream while
  // block i computes, and waits for it (on the GPU, not the host) before block i + 1. The device
  // then holds two blocks instead of all (1.3B: 2 x 95 MiB instead of 2.8 GiB; 14B: 2 x 0.9 GiB
  // instead of 27 GiB) for one extra pass of the weights over PCIe per forward, overlapped with
  // compute. Results are bit-identical (the same tensors, copied). On the CPU the "host" and
  // "device" are the same memory and this only exercises the mechanism (tests). Not undone.
  void enable_offload();
  // A tensor converted for `device` and moved to pinned host memory (on the CPU: itself); what
  // load(offload = true) does with each block weight.
  static Tensor pin_for_offload(const Tensor& on_device, Device device);
  bool offloaded() const { return streamer_ != nullptr; }
  // Bytes of all blocks' weights (what enable_offload moves off the device).
  int64_t block_weight_bytes() const;

  // The velocity prediction [C_out, F, H, W] for one step kind. `freeswim` is required for
  // every kind but Stock. Guide fills `cache`; Reuse reads it (one tensor per block).
  //
  // Sequence-parallel (`sequence`, a group of P ranks; docs/multi_gpu.md): every rank calls
  // forward with the same inputs and its own replica of the weights. The tokens are cut into P
  // slabs (parallel::TokenSplit: equal slabs, the last padded); each rank runs the linear
  // layers, norms, FFN and cross-attention on its slab only, with the text context and time
  // embedding computed whole on every rank. Self-attention exchanges the slab's q, k, v for
  // whole sequences of heads / P heads (parallel::ulysses_attention: the window and dense
  // kernels run unchanged) and applies RoPE there, so positions are global. The cache holds
  // each rank's slab of every block (sharded by token). The output head's rows are gathered, so
  // every rank returns the whole prediction. heads must be a multiple of P.
  Tensor forward(const DitInput& in, StepKind kind, const FreeSwimParams* freeswim = nullptr,
                 CrossAttentionCache* cache = nullptr,
                 parallel::Communicator* sequence = nullptr) const;

 private:
  struct Embedded;
  Embedded embed(const DitInput& in, parallel::Communicator* sequence) const;
  // `sequence` / `split`: the sequence-parallel group and token split (null: single rank).
  Tensor self_attention(const WanAttentionWeights& a, const Tensor& x, const ops::Rope3D& rope,
                        float scale, const WindowGeometry* window,
                        parallel::Communicator* sequence = nullptr,
                        const parallel::TokenSplit* split = nullptr) const;
  Tensor cross_attention_core(const WanAttentionWeights& a, const Tensor& x,
                              const Tensor& context) const;
  // x: all tokens, or with `sequence` this rank's slab (every rank gets the whole prediction).
  Tensor head(const Tensor& x, const Tensor& temb, int T, int Hg, int Wg,
              parallel::Communicator* sequence = nullptr) const;
  ops::Rope3D rope_for(int T, int Hg, int Wg) const;

  WanDitConfig config_;
  WanDitWeights w_;
  Device device_;
  std::shared_ptr<BlockStreamer> streamer_;  // set by enable_offload
  int64_t offloadable_counted_ = 0;          // bytes this model added to the --offload advice
};

}  // namespace freeswim::models
