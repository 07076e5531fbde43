// Loading the Wan2.1 DiT: configuration (config.json of either release, a preset, or inferred
// from tensor shapes), naming scheme detection, shape validation and one conversion to the
// device's compute dtype.
#include <cmath>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>

#include "core/error.h"
#include "io/safetensors.h"
#include "io/wan_kind.h"
#include "io/wan_names.h"
#include "models/wan_dit.h"

namespace freeswim::models {

namespace fs = std::filesystem;
using nlohmann::json;

std::string WanDitConfig::describe() const {
  return fmt::format("{} layers of {} ({} heads of {}), ffn {}, text {}, patch {}x{}x{}",
                     num_layers, dim(), heads, head_dim, ffn_dim, text_dim, patch_t, patch_h,
                     patch_w);
}

WanDitConfig WanDitConfig::preset(const std::string& name) {
  WanDitConfig c;
  if (name == "1.3B") {
    c.heads = 12;
    c.num_layers = 30;
    c.ffn_dim = 8960;
  } else if (name == "14B") {
    c.heads = 40;
    c.num_layers = 40;
    c.ffn_dim = 13824;
  } else {
    fail("unknown Wan2.1 model size '{}' (expected 1.3B or 14B)", name);
  }
  return c;
}

namespace {

template <typename T>
T get_or(const json& j, const char* key, T fallback) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return fallback;
  return it->get<T>();
}

int positive(int v, const char* key, const std::string& path) {
  FS_CHECK(v > 0, "{}: '{}' must be positive, got {}", path, key, v);
  return v;
}

}  // namespace

WanDitConfig WanDitConfig::from_json_file(const std::string& path) {
  std::ifstream f(path);
  FS_CHECK(f.good(), "cannot open model config '{}'", path);
  json j;
  try {
    j = json::parse(f);
  } catch (const std::exception& e) {
    fail("{}: not valid JSON ({})", path, e.what());
  }
  return from_json(j, path);
}

WanDitConfig WanDitConfig::from_json(const nlohmann::json& j, const std::string& path) {
  FS_CHECK(j.is_object(), "{}: expected a JSON object", path);
  WanDitConfig c;
  try {
    if (j.contains("num_attention_heads")) {  // diffusers WanTransformer3DModel
      FS_CHECK(get_or<json>(j, "image_dim", json()).is_null() &&
                   get_or<json>(j, "added_kv_proj_dim", json()).is_null(),
               "{}: an image-to-video DiT (image_dim set); only text-to-video Wan2.1 is supported",
               path);
      c.heads = positive(j.at("num_attention_heads").get<int>(), "num_attention_heads", path);
      c.head_dim = positive(j.at("attention_head_dim").get<int>(), "attention_head_dim", path);
      c.in_channels = positive(get_or(j, "in_channels", 16), "in_channels", path);
      c.out_channels = positive(get_or(j, "out_channels", 16), "out_channels", path);
      c.text_dim = positive(get_or(j, "text_dim", 4096), "text_dim", path);
      c.freq_dim = positive(get_or(j, "freq_dim", 256), "freq_dim", path);
      c.ffn_dim = positive(j.at("ffn_dim").get<int>(), "ffn_dim", path);
      c.num_layers = positive(j.at("num_layers").get<int>(), "num_layers", path);
      c.eps = get_or(j, "eps", 1e-6f);
      c.rope_max_seq_len = positive(get_or(j, "rope_max_seq_len", 1024), "rope_max_seq_len", path);
      c.cross_attn_norm = get_or(j, "cross_attn_norm", true);
      const std::string qk = get_or<std::string>(j, "qk_norm", "rms_norm_across_heads");
      FS_CHECK(qk == "rms_norm_across_heads",
               "{}: qk_norm '{}' is not supported (Wan2.1 uses rms_norm_across_heads)", path, qk);
      auto patch = get_or<std::vector<int>>(j, "patch_size", {1, 2, 2});
      FS_CHECK(patch.size() == 3, "{}: patch_size must have 3 entries", path);
      c.patch_t = positive(patch[0], "patch_size", path);
      c.patch_h = positive(patch[1], "patch_size", path);
      c.patch_w = positive(patch[2], "patch_size", path);
    } else if (j.contains("num_heads") && j.contains("dim")) {  // original Wan config.json
      const std::string type = get_or<std::string>(j, "model_type", "t2v");
      FS_CHECK(type == "t2v", "{}: model_type '{}'; only text-to-video (t2v) Wan2.1 is supported",
               path, type);
      c.heads = positive(j.at("num_heads").get<int>(), "num_heads", path);
      const int dim = positive(j.at("dim").get<int>(), "dim", path);
      FS_CHECK(dim % c.heads == 0, "{}: dim {} is not divisible by num_heads {}", path, dim,
               c.heads);
      c.head_dim = dim / c.heads;
      c.in_channels = positive(get_or(j, "in_dim", 16), "in_dim", path);
      c.out_channels = positive(get_or(j, "out_dim", 16), "out_dim", path);
      c.text_dim = positive(get_or(j, "text_dim", 4096), "text_dim", path);
      c.freq_dim = positive(get_or(j, "freq_dim", 256), "freq_dim", path);
      c.ffn_dim = positive(j.at("ffn_dim").get<int>(), "ffn_dim", path);
      c.num_layers = positive(j.at("num_layers").get<int>(), "num_layers", path);
      c.eps = get_or(j, "eps", 1e-6f);
      auto patch = get_or<std::vector<int>>(j, "patch_size", {1, 2, 2});
      FS_CHECK(patch.size() == 3, "{}: patch_size must have 3 entries", path);
      c.patch_t = positive(patch[0], "patch_size", path);
      c.patch_h = positive(patch[1], "patch_size", path);
      c.patch_w = positive(patch[2], "patch_size", path);
    } else {
      fail("{}: not a Wan2.1 DiT config (no num_attention_heads or num_heads/dim)", path);
    }
  } catch (const Error&) {
    throw;
  } catch (const std::exception& e) {
    fail("{}: malformed DiT config ({})", path, e.what());
  }
  FS_CHECK(c.head_dim % 2 == 0 && c.head_dim >= 6,
           "{}: head_dim {} must be even and >= 6 for 3D RoPE", path, c.head_dim);
  return c;
}

WanDitConfig WanDit::infer_config(const io::TensorSource& src, const std::string& note) {
  const io::WanDitNaming naming = io::detect_wan_dit_naming(src.names(), src.path());
  auto shape = [&](const std::string& name) -> Shape {
    const std::string stored = naming.stored(name);
    const io::TensorInfo* t = src.find(stored);
    FS_CHECK(t != nullptr, "{}: missing tensor '{}' ({}){}", src.path(), stored, naming.describe(),
             note);
    return t->shape;
  };
  WanDitConfig c;
  const Shape pe = shape("patch_embedding.weight");
  FS_CHECK(pe.size() == 5, "{}: patch_embedding.weight must be 5-d, got {}", src.path(),
           shape_str(pe));
  const int dim = static_cast<int>(pe[0]);
  c.in_channels = static_cast<int>(pe[1]);
  c.patch_t = static_cast<int>(pe[2]);
  c.patch_h = static_cast<int>(pe[3]);
  c.patch_w = static_cast<int>(pe[4]);
  // Every released Wan2.1 DiT has 128-dimensional heads (1.3B: 12 x 128, 14B: 40 x 128); a
  // model that does not needs its config.json.
  FS_CHECK(dim % 128 == 0,
           "{}: model width {} is not a multiple of 128; give its config.json (--dit-config)",
           src.path(), dim);
  c.head_dim = 128;
  c.heads = dim / 128;
  c.text_dim = static_cast<int>(shape("condition_embedder.text_embedder.linear_1.weight").at(1));
  c.freq_dim = static_cast<int>(shape("condition_embedder.time_embedder.linear_1.weight").at(1));
  c.ffn_dim = static_cast<int>(shape("blocks.0.ffn.net.0.proj.weight").at(0));
  const int patch = c.patch_t * c.patch_h * c.patch_w;
  c.out_channels = static_cast<int>(shape("proj_out.weight").at(0)) / patch;
  int layers = 0;
  while (src.contains(naming.stored(fmt::format("blocks.{}.attn1.to_q.weight", layers)))) ++layers;
  FS_CHECK(layers > 0, "{}: no transformer blocks found", src.path());
  c.num_layers = layers;
  return c;
}

namespace {

std::string find_dit_config_beside(const std::string& path) {
  fs::path p(path);
  if (fs::is_directory(p)) return fs::exists(p / "config.json") ? (p / "config.json").string() : "";
  // diffusers and original layouts keep config.json beside diffusion_pytorch_model*.
  const std::string name = p.filename().string();
  if (name.rfind("diffusion_pytorch_model", 0) == 0 && fs::exists(p.parent_path() / "config.json"))
    return (p.parent_path() / "config.json").string();
  return "";
}

}  // namespace

WanDitConfig WanDit::resolve_config(const std::string& path, const std::string& config_path) {
  const std::string cfg_path = config_path.empty() ? find_dit_config_beside(path) : config_path;
  if (!cfg_path.empty()) return WanDitConfig::from_json_file(cfg_path);
  return infer_config(io::TensorSource::open(path));
}

std::unique_ptr<WanDit> WanDit::load(const std::string& path, Device device,
                                     const std::string& config_path, bool offload,
                                     const std::vector<io::LoraSpec>& loras) {
  // What the file is comes first: an I2V or Wan2.2 file is refused by name, not by a missing
  // tensor or a config field minutes later.
  require_wan_t2v_file(path);
  return load(path, device, resolve_config(path, config_path), offload, loras);
}

io::WanDitIdentity WanDit::identify(const std::string& path) {
  const io::TensorSource src = io::TensorSource::open(path);
  check_gguf_architecture(src, path);
  return io::identify_wan_dit(src, path);
}

void WanDit::require_wan_t2v_file(const std::string& path) {
  io::require_wan_t2v(identify(path), path);
}

namespace {
std::unique_ptr<WanDit> load_weights(const std::string& path, Device device, const WanDitConfig& c,
                                     bool offload, const std::vector<io::LoraSpec>& loras);
}  // namespace

std::map<std::string, Shape> wan_dit_weight_shapes(const WanDitConfig& c) {
  const int64_t D = c.dim();
  std::map<std::string, Shape> s;
  s["patch_embedding.weight"] = {D, c.in_channels, c.patch_t, c.patch_h, c.patch_w};
  s["patch_embedding.bias"] = {D};
  s["condition_embedder.time_embedder.linear_1.weight"] = {D, c.freq_dim};
  s["condition_embedder.time_embedder.linear_1.bias"] = {D};
  s["condition_embedder.time_embedder.linear_2.weight"] = {D, D};
  s["condition_embedder.time_embedder.linear_2.bias"] = {D};
  s["condition_embedder.time_proj.weight"] = {6 * D, D};
  s["condition_embedder.time_proj.bias"] = {6 * D};
  s["condition_embedder.text_embedder.linear_1.weight"] = {D, c.text_dim};
  s["condition_embedder.text_embedder.linear_1.bias"] = {D};
  s["condition_embedder.text_embedder.linear_2.weight"] = {D, D};
  s["condition_embedder.text_embedder.linear_2.bias"] = {D};
  for (int i = 0; i < c.num_layers; ++i) {
    const std::string pre = fmt::format("blocks.{}.", i);
    for (const char* a : {"attn1", "attn2"}) {
      for (const char* proj : {".to_q", ".to_k", ".to_v", ".to_out.0"}) {
        s[pre + a + proj + ".weight"] = {D, D};
        s[pre + a + proj + ".bias"] = {D};
      }
      s[pre + a + ".norm_q.weight"] = {D};
      s[pre + a + ".norm_k.weight"] = {D};
    }
    if (c.cross_attn_norm) {
      s[pre + "norm2.weight"] = {D};
      s[pre + "norm2.bias"] = {D};
    }
    s[pre + "ffn.net.0.proj.weight"] = {c.ffn_dim, D};
    s[pre + "ffn.net.0.proj.bias"] = {c.ffn_dim};
    s[pre + "ffn.net.2.weight"] = {D, c.ffn_dim};
    s[pre + "ffn.net.2.bias"] = {D};
    s[pre + "scale_shift_table"] = {1, 6, D};
  }
  const int64_t P = int64_t{c.patch_t} * c.patch_h * c.patch_w;
  s["scale_shift_table"] = {1, 2, D};
  s["proj_out.weight"] = {c.out_channels * P, D};
  s["proj_out.bias"] = {c.out_channels * P};
  return s;
}

std::unique_ptr<WanDit> WanDit::load(const std::string& path, Device device, const WanDitConfig& c,
                                     bool offload, const std::vector<io::LoraSpec>& loras) {
  try {
    return load_weights(path, device, c, offload, loras);
  } catch (const OutOfMemory& e) {
    // The allocator's advice cannot know that a DiT is half loaded: name the flag that keeps its
    // blocks (nearly all of its weights) off the device.
    if (offload || device == Device::CPU) throw;
    throw OutOfMemory(fmt::format(
        "{}; while loading the DiT {} ({}): --offload keeps its block weights in host memory",
        e.what(), path, c.describe()));
  }
}

namespace {

// Shapes equal once leading 1s are dropped: GGUF writers drop the leading 1 of the modulation
// tables ([1, 6, dim] stored as [6, dim]); the bytes are the same.
}  // namespace

void check_gguf_architecture(const io::TensorSource& src, const std::string& path) {
  if (const io::GgufFile* g = src.gguf()) {
    const std::string arch = g->string_value("general.architecture");
    FS_CHECK(arch.empty() || arch == "wan",
             "{}: a GGUF file of architecture '{}', not a Wan DiT (general.architecture 'wan')",
             path, arch);
  }
}

namespace {

bool same_but_leading_ones(const Shape& a, const Shape& b) {
  auto strip = [](const Shape& s) {
    size_t i = 0;
    while (i < s.size() && s[i] == 1) ++i;
    return Shape(s.begin() + static_cast<std::ptrdiff_t>(i), s.end());
  };
  return strip(a) == strip(b);
}

std::unique_ptr<WanDit> load_weights(const std::string& path, Device device, const WanDitConfig& c,
                                     bool offload, const std::vector<io::LoraSpec>& loras) {
  const io::TensorSource src = io::TensorSource::open(path);
  const std::map<std::string, Shape> shapes = wan_dit_weight_shapes(c);
  check_gguf_architecture(src, path);
  io::require_wan_t2v(io::identify_wan_dit(src, path), path);
  const io::WanDitNaming naming = io::detect_wan_dit_naming(src.names(), path);
  // Every LoRA key is matched to a weight before any weight is read: a LoRA for another model
  // fails here, not after minutes of loading.
  const std::shared_ptr<const io::LoraSet> lora =
      loras.empty() ? nullptr : io::LoraSet::open(loras, shapes);

  auto get = [&](const std::string& name, const Shape& expected) -> Tensor {
    FS_CHECK(shapes.count(name) && shapes.at(name) == expected,
             "internal: DiT weight '{}' {} is not in wan_dit_weight_shapes", name,
             shape_str(expected));
    const std::string stored = naming.stored(name);
    FS_CHECK(src.contains(stored), "{}: missing tensor '{}' ({}; model {})", path, stored,
             naming.describe(), c.describe());
    Tensor t = src.tensor(stored);
    if (t.shape() != expected && same_but_leading_ones(t.shape(), expected))
      t = t.reshape(expected);
    FS_CHECK(t.shape() == expected, "{}: tensor '{}' has shape {}, expected {} for a model of {}",
             src.file_of(stored), stored, shape_str(t.shape()), shape_str(expected), c.describe());
    FS_CHECK(t.dtype() == DType::F32 || t.dtype() == DType::BF16 || t.dtype() == DType::F16,
             "{}: tensor '{}' has dtype {}, expected F32, BF16 or F16", src.file_of(stored), stored,
             dtype_name(t.dtype()));
    // LoRAs are merged in f32 before the one conversion to the compute dtype.
    if (lora && lora->touches(name)) t = lora->apply(name, t.to(DType::F32));
    return ops::to_compute(t.dtype() == DType::F16 ? t.to(DType::F32) : t, device);
  };
  const int64_t D = c.dim(), P = int64_t{c.patch_t} * c.patch_h * c.patch_w;
  WanDitWeights w;
  w.patch_w = get("patch_embedding.weight", {D, c.in_channels, c.patch_t, c.patch_h, c.patch_w})
                  .reshape({D, c.in_channels * P});
  w.patch_b = get("patch_embedding.bias", {D});
  w.time1_w = get("condition_embedder.time_embedder.linear_1.weight", {D, c.freq_dim});
  w.time1_b = get("condition_embedder.time_embedder.linear_1.bias", {D});
  w.time2_w = get("condition_embedder.time_embedder.linear_2.weight", {D, D});
  w.time2_b = get("condition_embedder.time_embedder.linear_2.bias", {D});
  w.time_proj_w = get("condition_embedder.time_proj.weight", {6 * D, D});
  w.time_proj_b = get("condition_embedder.time_proj.bias", {6 * D});
  w.text1_w = get("condition_embedder.text_embedder.linear_1.weight", {D, c.text_dim});
  w.text1_b = get("condition_embedder.text_embedder.linear_1.bias", {D});
  w.text2_w = get("condition_embedder.text_embedder.linear_2.weight", {D, D});
  w.text2_b = get("condition_embedder.text_embedder.linear_2.bias", {D});
  // Block weights: with offload each goes to pinned host memory right after its conversion, so
  // the device holds one tensor of the blocks at a time while loading.
  auto get_block = [&](const std::string& name, const Shape& expected) -> Tensor {
    Tensor t = get(name, expected);
    return offload ? WanDit::pin_for_offload(t, device) : t;
  };
  for (int i = 0; i < c.num_layers; ++i) {
    WanBlockWeights b;
    const std::string pre = fmt::format("blocks.{}.", i);
    auto attn = [&](const std::string& a) {
      WanAttentionWeights x;
      x.to_q_w = get_block(pre + a + ".to_q.weight", {D, D});
      x.to_q_b = get_block(pre + a + ".to_q.bias", {D});
      x.to_k_w = get_block(pre + a + ".to_k.weight", {D, D});
      x.to_k_b = get_block(pre + a + ".to_k.bias", {D});
      x.to_v_w = get_block(pre + a + ".to_v.weight", {D, D});
      x.to_v_b = get_block(pre + a + ".to_v.bias", {D});
      x.to_out_w = get_block(pre + a + ".to_out.0.weight", {D, D});
      x.to_out_b = get_block(pre + a + ".to_out.0.bias", {D});
      x.norm_q = get_block(pre + a + ".norm_q.weight", {D});
      x.norm_k = get_block(pre + a + ".norm_k.weight", {D});
      return x;
    };
    b.attn1 = attn("attn1");
    b.attn2 = attn("attn2");
    if (c.cross_attn_norm) {
      b.norm2_w = get_block(pre + "norm2.weight", {D});
      b.norm2_b = get_block(pre + "norm2.bias", {D});
    }
    b.ffn0_w = get_block(pre + "ffn.net.0.proj.weight", {c.ffn_dim, D});
    b.ffn0_b = get_block(pre + "ffn.net.0.proj.bias", {c.ffn_dim});
    b.ffn2_w = get_block(pre + "ffn.net.2.weight", {D, c.ffn_dim});
    b.ffn2_b = get_block(pre + "ffn.net.2.bias", {D});
    // Modulation tables stay fp32 on every backend (the reference adds them in fp32).
    b.scale_shift_table = get_block(pre + "scale_shift_table", {1, 6, D});
    w.blocks.push_back(std::move(b));
  }
  FS_CHECK(!src.contains(naming.stored(fmt::format("blocks.{}.attn1.to_q.weight", c.num_layers))),
           "{}: holds more than the {} blocks of {}", path, c.num_layers, c.describe());
  w.head_table = get("scale_shift_table", {1, 2, D});
  w.proj_out_w = get("proj_out.weight", {c.out_channels * P, D});
  w.proj_out_b = get("proj_out.bias", {c.out_channels * P});
  auto model = std::make_unique<WanDit>(c, std::move(w), device);
  if (offload) model->enable_offload();  // the blocks are in host memory already: no copies
  return model;
}
}  // namespace

std::unique_ptr<WanDit> WanDit::random(const WanDitConfig& c, Device device, uint64_t seed) {
  // Uniform(-1/sqrt(fan_in), 1/sqrt(fan_in)) from a fixed 64-bit engine, mapped by our own
  // arithmetic so that every platform builds the same model from a seed.
  std::mt19937_64 gen(seed);
  auto uniform = [&](const Shape& s, float bound, float offset = 0.f) {
    Tensor t = Tensor::empty(s);
    float* d = t.data<float>();
    for (int64_t i = 0; i < t.numel(); ++i) {
      const double u = static_cast<double>(gen() >> 11) * (1.0 / 9007199254740992.0);
      d[i] = offset + bound * static_cast<float>(2.0 * u - 1.0);
    }
    return ops::to_compute(t, device);
  };
  auto lin = [&](int64_t out, int64_t in) {
    return uniform({out, in}, static_cast<float>(1.0 / std::sqrt(in)));
  };
  const int64_t D = c.dim(), P = int64_t{c.patch_t} * c.patch_h * c.patch_w;
  WanDitWeights w;
  w.patch_w = lin(D, c.in_channels * P);
  w.patch_b = uniform({D}, 0.02f);
  w.time1_w = lin(D, c.freq_dim);
  w.time1_b = uniform({D}, 0.02f);
  w.time2_w = lin(D, D);
  w.time2_b = uniform({D}, 0.02f);
  w.time_proj_w = lin(6 * D, D);
  w.time_proj_b = uniform({6 * D}, 0.02f);
  w.text1_w = lin(D, c.text_dim);
  w.text1_b = uniform({D}, 0.02f);
  w.text2_w = lin(D, D);
  w.text2_b = uniform({D}, 0.02f);
  for (int i = 0; i < c.num_layers; ++i) {
    WanBlockWeights b;
    for (WanAttentionWeights* a : {&b.attn1, &b.attn2}) {
      a->to_q_w = lin(D, D);
      a->to_k_w = lin(D, D);
      a->to_v_w = lin(D, D);
      a->to_out_w = lin(D, D);
      a->to_q_b = uniform({D}, 0.02f);
      a->to_k_b = uniform({D}, 0.02f);
      a->to_v_b = uniform({D}, 0.02f);
      a->to_out_b = uniform({D}, 0.02f);
      a->norm_q = uniform({D}, 0.1f, 1.f);
      a->norm_k = uniform({D}, 0.1f, 1.f);
    }
    b.norm2_w = uniform({D}, 0.1f, 1.f);
    b.norm2_b = uniform({D}, 0.02f);
    b.ffn0_w = lin(c.ffn_dim, D);
    b.ffn0_b = uniform({c.ffn_dim}, 0.02f);
    b.ffn2_w = lin(D, c.ffn_dim);
    b.ffn2_b = uniform({D}, 0.02f);
    b.scale_shift_table = uniform({1, 6, D}, 0.1f);
    w.blocks.push_back(std::move(b));
  }
  w.head_table = uniform({1, 2, D}, 0.1f);
  w.proj_out_w = lin(c.out_channels * P, D);
  w.proj_out_b = uniform({c.out_channels * P}, 0.02f);
  return std::make_unique<WanDit>(c, std::move(w), device);
}

}  // namespace freeswim::models
