// libFuzzer target for LoRA files: arbitrary bytes as a safetensors file, its keys grouped and
// matched to a fixed small model's weights, and every matched weight merged. Only
// freeswim::Error may escape; a merge that reads outside a tensor shows up in ASan.
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <map>
#include <string>

#include "core/error.h"
#include "io/lora.h"

namespace {

// A two-block Wan DiT's weights (width 8, ffn 16), by diffusers name.
std::map<std::string, freeswim::Shape> model() {
  std::map<std::string, freeswim::Shape> s;
  const int64_t D = 8;
  s["patch_embedding.weight"] = {D, 16, 1, 2, 2};
  s["patch_embedding.bias"] = {D};
  s["condition_embedder.time_proj.weight"] = {6 * D, D};
  s["proj_out.weight"] = {64, D};
  s["scale_shift_table"] = {1, 2, D};
  for (int i = 0; i < 2; ++i) {
    const std::string p = "blocks." + std::to_string(i) + ".";
    for (const char* a : {"attn1", "attn2"}) {
      for (const char* proj : {".to_q", ".to_k", ".to_v", ".to_out.0"}) {
        s[p + a + proj + ".weight"] = {D, D};
        s[p + a + proj + ".bias"] = {D};
      }
      s[p + a + ".norm_q.weight"] = {D};
    }
    s[p + "norm2.weight"] = {D};
    s[p + "ffn.net.0.proj.weight"] = {16, D};
    s[p + "ffn.net.2.weight"] = {D, 16};
    s[p + "scale_shift_table"] = {1, 6, D};
  }
  return s;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const std::map<std::string, freeswim::Shape> weights = model();
  static const std::string path =
      "/tmp/freeswim_lora_fuzz_" + std::to_string(::getpid()) + ".safetensors";
  std::FILE* f = std::fopen(path.c_str(), "wb");
  if (!f) return 0;
  std::fwrite(data, 1, size, f);
  std::fclose(f);
  try {
    const auto set = freeswim::io::LoraSet::open({freeswim::io::LoraSpec{path, 0.5}}, weights);
    for (const auto& [name, shape] : weights) {
      if (!set->touches(name)) continue;
      const freeswim::Tensor w = freeswim::Tensor::zeros(shape);
      const freeswim::Tensor m = set->apply(name, w);
      if (m.shape() != shape) __builtin_trap();
    }
  } catch (const freeswim::Error&) {
  }
  return 0;
}
