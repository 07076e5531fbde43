// Loading the UMT5 encoder: where the weights are (safetensors in transformers or original
// naming, sharded or not, or Wan's torch `.pth`), its configuration (config.json or inferred
// from shapes), validation of every tensor against it and one conversion to the compute dtype.
#include <filesystem>
#include <optional>

#include "core/error.h"
#include "io/safetensors.h"
#include "io/strict_json.h"
#include "io/torch_zip.h"
#include "io/umt5_names.h"
#include "ops/ops.h"
#include "text/umt5.h"

namespace freeswim::text {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

// The file name of the encoder in an original Wan2.1 model folder.
constexpr const char* kWanT5File = "models_t5_umt5-xxl-enc-bf16.pth";

// One checkpoint, whichever container holds it: safetensors (one file, an index, a folder) or
// a torch zip.
class Checkpoint {
 public:
  explicit Checkpoint(const std::string& path) : path_(path) {
    if (fs::is_regular_file(path) && io::looks_like_torch_zip(path))
      zip_ = io::TorchZipFile::open(path);
    else
      st_ = io::TensorSource::open(path);
  }
  const std::string& path() const { return path_; }
  std::vector<std::string> names() const {
    if (st_) return st_->names();
    std::vector<std::string> out;
    for (const io::TensorInfo& t : zip_->tensors()) out.push_back(t.name);
    return out;
  }
  const io::TensorInfo* find(const std::string& name) const {
    return st_ ? st_->find(name) : zip_->find(name);
  }
  Tensor tensor(const std::string& name) const {
    return st_ ? st_->tensor(name) : zip_->tensor(name);
  }
  std::string file_of(const std::string& name) const {
    return st_ ? st_->file_of(name) : zip_->path();
  }
  const io::GgufFile* gguf() const { return st_ ? st_->gguf() : nullptr; }

 private:
  std::string path_;
  std::optional<io::TensorSource> st_;
  std::shared_ptr<const io::TorchZipFile> zip_;
};

// The weights inside a directory: a diffusers model root's `text_encoder/`, Wan's `.pth`, or
// the folder itself (safetensors).
std::string resolve_weights(const std::string& path) {
  FS_CHECK(fs::exists(path), "UMT5 encoder: '{}' does not exist", path);
  if (!fs::is_directory(path)) return path;
  const fs::path dir(path);
  if (fs::is_directory(dir / "text_encoder")) return (dir / "text_encoder").string();
  if (fs::is_regular_file(dir / kWanT5File)) return (dir / kWanT5File).string();
  return path;
}

std::string find_config_beside(const std::string& weights) {
  const fs::path p(weights);
  const fs::path dir = fs::is_directory(p) ? p : p.parent_path();
  // A Wan folder's config.json describes the DiT, so only a transformers checkpoint's own
  // folder is searched, and only a UMT5 config is taken from it (checked when parsed).
  if (p.extension() == ".pth") return "";
  return fs::exists(dir / "config.json") ? (dir / "config.json").string() : "";
}

bool is_umt5_config(const std::string& path) {
  try {
    const json j = io::read_json_file(path, 16);
    return j.is_object() && j.value("model_type", std::string()) == "umt5";
  } catch (const Error&) {
    return false;
  }
}

int64_t positive(const json& j, const char* key, int64_t fallback, const std::string& path) {
  const int64_t v = j.contains(key) ? j.at(key).get<int64_t>() : fallback;
  FS_CHECK(v > 0, "{}: '{}' must be positive, got {}", path, key, v);
  return v;
}

// Configuration from the shapes of the tensors (max_distance and eps, which no shape shows,
// keep UMT5's values).
Umt5Config infer_config(const Checkpoint& ck, const io::Umt5Naming& naming) {
  auto shape = [&](const std::string& name) -> Shape {
    const std::string stored = naming.stored(name);
    const io::TensorInfo* t = ck.find(stored);
    FS_CHECK(t != nullptr, "{}: missing tensor '{}' ({})", ck.path(), stored, naming.describe());
    FS_CHECK(t->shape.size() == 2, "{}: tensor '{}' has shape {}, expected 2 dimensions",
             ck.file_of(stored), stored, shape_str(t->shape));
    return t->shape;
  };
  Umt5Config c;
  const Shape emb = shape(std::string(io::kUmt5EmbeddingName));
  c.vocab_size = emb[0];
  c.d_model = emb[1];
  const Shape rel = shape("encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight");
  c.num_buckets = rel[0];
  c.num_heads = rel[1];
  const int64_t inner = shape("encoder.block.0.layer.0.SelfAttention.q.weight")[0];
  FS_CHECK(inner % c.num_heads == 0, "{}: attention width {} is not divisible by {} heads",
           ck.path(), inner, c.num_heads);
  c.d_kv = inner / c.num_heads;
  c.d_ff = shape("encoder.block.0.layer.1.DenseReluDense.wi_0.weight")[0];
  int64_t layers = 0;
  while (ck.find(naming.stored(
             fmt::format("encoder.block.{}.layer.0.SelfAttention.q.weight", layers))) != nullptr)
    ++layers;
  c.num_layers = layers;
  return c;
}

}  // namespace

Umt5Config Umt5Config::from_json_file(const std::string& path) {
  const json j = io::read_json_file(path, 16);
  FS_CHECK(j.is_object(), "{}: expected a JSON object", path);
  Umt5Config c;
  try {
    const std::string type = j.value("model_type", std::string());
    FS_CHECK(type == "umt5",
             "{}: model_type '{}' is not 'umt5' (Wan's text encoder is google/umt5-xxl)", path,
             type);
    const std::string ffn = j.value("feed_forward_proj", std::string("gated-gelu"));
    FS_CHECK(ffn == "gated-gelu",
             "{}: feed_forward_proj '{}' is not supported (UMT5 uses gated-gelu)", path, ffn);
    const std::string act = j.value("dense_act_fn", std::string("gelu_new"));
    FS_CHECK(act == "gelu_new" || act == "gelu_pytorch_tanh",
             "{}: dense_act_fn '{}' is not supported (UMT5 uses gelu_new)", path, act);
    c.vocab_size = positive(j, "vocab_size", c.vocab_size, path);
    c.d_model = positive(j, "d_model", c.d_model, path);
    c.num_layers = positive(j, "num_layers", c.num_layers, path);
    c.num_heads = positive(j, "num_heads", c.num_heads, path);
    c.d_kv = positive(j, "d_kv", c.d_kv, path);
    c.d_ff = positive(j, "d_ff", c.d_ff, path);
    c.num_buckets = positive(j, "relative_attention_num_buckets", c.num_buckets, path);
    c.max_distance = positive(j, "relative_attention_max_distance", c.max_distance, path);
    c.eps = j.value("layer_norm_epsilon", c.eps);
  } catch (const Error&) {
    throw;
  } catch (const std::exception& e) {
    fail("{}: malformed UMT5 config ({})", path, e.what());
  }
  FS_CHECK(c.num_buckets >= 4, "{}: relative_attention_num_buckets {} is too small", path,
           c.num_buckets);
  FS_CHECK(c.eps > 0, "{}: layer_norm_epsilon must be positive", path);
  return c;
}

namespace {

// A GGUF file must hold a T5 encoder.
void check_gguf_architecture(const Checkpoint& ck, const std::string& weights) {
  if (const io::GgufFile* g = ck.gguf()) {
    const std::string arch = g->string_value("general.architecture");
    FS_CHECK(arch.empty() || arch == "t5encoder" || arch == "t5",
             "{}: a GGUF file of architecture '{}', not a T5 encoder (general.architecture "
             "'t5encoder')",
             weights, arch);
  }
}

// config_path, else a UMT5 config.json beside the weights; empty: inferred from the shapes.
std::string config_for(const std::string& weights, const std::string& config_path) {
  if (!config_path.empty()) return config_path;
  std::string beside = find_config_beside(weights);
  return !beside.empty() && is_umt5_config(beside) ? beside : std::string();
}

}  // namespace

Umt5Config Umt5Encoder::resolve_config(const std::string& path, const std::string& config_path) {
  const std::string weights = resolve_weights(path);
  const Checkpoint ck(weights);
  check_gguf_architecture(ck, weights);
  const std::string cfg_path = config_for(weights, config_path);
  return cfg_path.empty() ? infer_config(ck, io::detect_umt5_naming(ck.names(), weights))
                          : Umt5Config::from_json_file(cfg_path);
}

std::unique_ptr<Umt5Encoder> Umt5Encoder::load(const std::string& path, Device device,
                                               const std::string& config_path) {
  const std::string weights = resolve_weights(path);
  const Checkpoint ck(weights);
  check_gguf_architecture(ck, weights);
  const io::Umt5Naming naming = io::detect_umt5_naming(ck.names(), weights);
  const std::string cfg_path = config_for(weights, config_path);
  const Umt5Config c =
      cfg_path.empty() ? infer_config(ck, naming) : Umt5Config::from_json_file(cfg_path);
  const std::string cfg_note =
      cfg_path.empty() ? "config inferred from shapes" : "config " + cfg_path;
  FS_CHECK(c.num_layers > 0, "{}: no encoder blocks found ({})", weights, naming.describe());

  auto get = [&](const std::string& name, const Shape& expected) -> Tensor {
    const std::string stored = naming.stored(name);
    FS_CHECK(ck.find(stored) != nullptr, "{}: missing tensor '{}' ({}; model {}, {})", weights,
             stored, naming.describe(), c.describe(), cfg_note);
    Tensor t = ck.tensor(stored);
    FS_CHECK(t.shape() == expected,
             "{}: tensor '{}' has shape {}, expected {} for a model of {} ({})", ck.file_of(stored),
             stored, shape_str(t.shape()), shape_str(expected), c.describe(), cfg_note);
    FS_CHECK(t.dtype() == DType::F32 || t.dtype() == DType::BF16 || t.dtype() == DType::F16,
             "{}: tensor '{}' has dtype {}, expected F32, BF16 or F16", ck.file_of(stored), stored,
             dtype_name(t.dtype()));
    return ops::to_compute(t.dtype() == DType::F16 ? t.to(DType::F32) : t, device);
  };

  const int64_t D = c.d_model, I = c.inner_dim(), F = c.d_ff;
  Umt5Weights w;
  w.embedding = get(std::string(io::kUmt5EmbeddingName), {c.vocab_size, D});
  for (int64_t i = 0; i < c.num_layers; ++i) {
    const std::string b = fmt::format("encoder.block.{}.", i);
    Umt5LayerWeights l;
    l.norm1 = get(b + "layer.0.layer_norm.weight", {D});
    l.q = get(b + "layer.0.SelfAttention.q.weight", {I, D});
    l.k = get(b + "layer.0.SelfAttention.k.weight", {I, D});
    l.v = get(b + "layer.0.SelfAttention.v.weight", {I, D});
    l.o = get(b + "layer.0.SelfAttention.o.weight", {D, I});
    l.rel_bias = get(b + "layer.0.SelfAttention.relative_attention_bias.weight",
                     {c.num_buckets, c.num_heads});
    l.norm2 = get(b + "layer.1.layer_norm.weight", {D});
    l.wi0 = get(b + "layer.1.DenseReluDense.wi_0.weight", {F, D});
    l.wi1 = get(b + "layer.1.DenseReluDense.wi_1.weight", {F, D});
    l.wo = get(b + "layer.1.DenseReluDense.wo.weight", {D, F});
    w.layers.push_back(std::move(l));
  }
  w.final_norm = get("encoder.final_layer_norm.weight", {D});
  return std::make_unique<Umt5Encoder>(c, std::move(w), device);
}

}  // namespace freeswim::text
