// Loading the Wan2.1 VAE: configuration (diffusers config.json, or inferred from tensor shapes
// with Wan's normalisation constants), naming scheme detection (diffusers / original), the two
// file kinds (safetensors, torch zip `.pth`), shape validation and one conversion to the device.
#include <fmt/ranges.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <functional>
#include <nlohmann/json.hpp>
#include <optional>
#include <random>

#include "core/error.h"
#include "io/safetensors.h"
#include "io/torch_zip.h"
#include "io/wan_vae_names.h"
#include "models/wan_vae.h"
#include "ops/ops.h"

namespace freeswim::models {

namespace fs = std::filesystem;
using nlohmann::json;

WanVaeConfig WanVaeConfig::wan21() {
  WanVaeConfig c;
  // Wan's published per-channel statistics of the latents (wan/modules/vae.py, diffusers config).
  c.latents_mean = {-0.7571f, -0.7089f, -0.9113f, 0.1075f,  -0.1745f, 0.9653f,  -0.1517f, 1.5508f,
                    0.4134f,  -0.0715f, 0.5517f,  -0.3632f, -0.1922f, -0.9497f, 0.2503f,  -0.2921f};
  c.latents_std = {2.8184f, 1.4541f, 2.3275f, 2.6558f, 1.2196f, 1.7708f, 2.6052f, 2.0743f,
                   3.2687f, 2.1526f, 2.8652f, 1.5579f, 1.6382f, 1.1253f, 2.8251f, 1.9160f};
  return c;
}

int WanVaeConfig::temporal_factor() const {
  int f = 1;
  for (bool t : temporal_downsample) f *= t ? 2 : 1;
  return f;
}

std::string WanVaeConfig::describe() const {
  std::vector<std::string> temporal;
  for (bool t : temporal_downsample) temporal.emplace_back(t ? "T" : "F");
  return fmt::format("base {} x [{}], z {}, {} res blocks, temporal [{}]", base_dim,
                     fmt::join(dim_mult, ","), z_dim, num_res_blocks, fmt::join(temporal, ","));
}

void WanVaeConfig::validate(const std::string& what) const {
  FS_CHECK(base_dim > 0 && z_dim > 0 && num_res_blocks > 0,
           "{}: base_dim, z_dim and num_res_blocks must be positive", what);
  FS_CHECK(dim_mult.size() >= 2, "{}: dim_mult needs at least 2 levels", what);
  for (int m : dim_mult) FS_CHECK(m > 0, "{}: dim_mult entries must be positive", what);
  FS_CHECK(temporal_downsample.size() + 1 == dim_mult.size(),
           "{}: temperal_downsample has {} entries, expected {} (one per level but the last)", what,
           temporal_downsample.size(), dim_mult.size() - 1);
  // Upsampling halves the channels into the next level, so every level above the first must be
  // even.
  for (size_t i = 1; i < dim_mult.size(); ++i)
    FS_CHECK(base_dim * dim_mult[i] % 2 == 0, "{}: level widths must be even", what);
  FS_CHECK(latents_mean.size() == static_cast<size_t>(z_dim) &&
               latents_std.size() == static_cast<size_t>(z_dim),
           "{}: latents_mean and latents_std need {} values each (got {} and {})", what, z_dim,
           latents_mean.size(), latents_std.size());
  for (float s : latents_std)
    FS_CHECK(s > 0 && std::isfinite(s), "{}: latents_std values must be positive", what);
}

WanVaeConfig WanVaeConfig::from_json_file(const std::string& path) {
  std::ifstream f(path);
  FS_CHECK(f.good(), "cannot open VAE config '{}'", path);
  json j;
  try {
    j = json::parse(f);
  } catch (const std::exception& e) {
    fail("{}: not valid JSON ({})", path, e.what());
  }
  return from_json(j, path);
}

WanVaeConfig WanVaeConfig::from_json(const nlohmann::json& j, const std::string& path) {
  FS_CHECK(j.is_object() && j.contains("base_dim") && j.contains("z_dim"),
           "{}: not a Wan VAE config (no base_dim / z_dim)", path);
  WanVaeConfig c = wan21();
  try {
    auto has = [&](const char* k) { return j.contains(k) && !j[k].is_null(); };
    c.base_dim = j.at("base_dim").get<int>();
    c.z_dim = j.at("z_dim").get<int>();
    if (has("dim_mult")) c.dim_mult = j["dim_mult"].get<std::vector<int>>();
    if (has("num_res_blocks")) c.num_res_blocks = j["num_res_blocks"].get<int>();
    if (has("temperal_downsample"))
      c.temporal_downsample = j["temperal_downsample"].get<std::vector<bool>>();
    if (has("latents_mean")) c.latents_mean = j["latents_mean"].get<std::vector<float>>();
    if (has("latents_std")) c.latents_std = j["latents_std"].get<std::vector<float>>();
    FS_CHECK(!has("attn_scales") || j["attn_scales"].empty(),
             "{}: attn_scales is not empty; only the Wan2.1 VAE layout (no attention outside the "
             "middle) is supported",
             path);
    FS_CHECK(!has("is_residual") || !j["is_residual"].get<bool>(),
             "{}: is_residual is set (a Wan2.2 VAE); only the Wan2.1 VAE is supported", path);
    FS_CHECK(!has("patch_size"),
             "{}: patch_size is set (a Wan2.2 VAE); only the Wan2.1 VAE is supported", path);
    FS_CHECK(!has("decoder_base_dim") || j["decoder_base_dim"].get<int>() == c.base_dim,
             "{}: decoder_base_dim differs from base_dim; only the Wan2.1 VAE is supported", path);
    for (const char* k : {"in_channels", "out_channels"})
      FS_CHECK(!has(k) || j[k].get<int>() == 3, "{}: {} must be 3", path, k);
  } catch (const Error&) {
    throw;
  } catch (const std::exception& e) {
    fail("{}: malformed VAE config ({})", path, e.what());
  }
  c.validate(path);
  return c;
}

namespace {

// One checkpoint of either file kind, as name -> tensor.
struct VaeSource {
  std::string path;
  std::shared_ptr<const io::TorchZipFile> zip;
  std::optional<io::TensorSource> st;

  static VaeSource open(const std::string& path) {
    VaeSource s;
    s.path = path;
    std::error_code ec;
    if (fs::is_regular_file(path, ec) && io::looks_like_torch_zip(path))
      s.zip = io::TorchZipFile::open(path);
    else
      s.st = io::TensorSource::open(path);
    return s;
  }
  std::vector<std::string> names() const {
    if (st) return st->names();
    std::vector<std::string> n;
    for (const auto& t : zip->tensors()) n.push_back(t.name);
    return n;  // tensors() is sorted by name
  }
  const io::TensorInfo* find(const std::string& n) const { return st ? st->find(n) : zip->find(n); }
  Tensor tensor(const std::string& n) const { return st ? st->tensor(n) : zip->tensor(n); }
  std::string file_of(const std::string& n) const { return st ? st->file_of(n) : path; }
};

// The Wan2.2 VAE (of TI2V-5B) has 48 latent channels where Wan2.1's has 16: its last encoder
// convolution (original `conv1`, 2 x 48 outputs) and first decoder one (original `conv2`,
// diffusers `post_quant_conv`) are 48 wide, and it patchifies the frames 2x2 before the encoder's
// first convolution (12 input channels). Any of these, at the top level of the names, is enough.
void refuse_wan22_vae(const VaeSource& src) {
  for (const std::string& n : src.names()) {
    const io::TensorInfo* t = src.find(n);
    if (t == nullptr || t->shape.size() != 5) continue;
    const bool top =
        n.find("encoder.") == std::string::npos && n.find("decoder.") == std::string::npos;
    const bool post = top &&
                      (n.ends_with("conv2.weight") || n.ends_with("post_quant_conv.weight")) &&
                      t->shape[0] == 48;
    const bool first =
        (n.ends_with("encoder.conv1.weight") || n.ends_with("encoder.conv_in.weight")) &&
        t->shape[1] == 12;
    FS_CHECK(!post && !first,
             "{}: this is the Wan2.2 VAE (48 latent channels, frames patchified 2x2: tensor '{}' "
             "has shape {}), the VAE of Wan2.2 TI2V-5B; this engine runs Wan2.1 with its VAE "
             "(16 latent channels)",
             src.path, n, shape_str(t->shape));
  }
}

std::string find_vae_config_beside(const std::string& path) {
  fs::path p(path);
  std::error_code ec;
  if (fs::is_directory(p, ec))
    return fs::exists(p / "config.json") ? (p / "config.json").string() : "";
  if (p.filename().string().rfind("diffusion_pytorch_model", 0) == 0 &&
      fs::exists(p.parent_path() / "config.json"))
    return (p.parent_path() / "config.json").string();
  return "";
}

// The configuration implied by the tensor shapes of the encoder (Wan's normalisation constants).
WanVaeConfig infer_config(const VaeSource& src, io::WanVaeNaming naming) {
  auto shape = [&](const std::string& name) -> const Shape* {
    const io::TensorInfo* t = src.find(naming.stored(name));
    return t ? &t->shape : nullptr;
  };
  WanVaeConfig c = WanVaeConfig::wan21();
  const Shape* conv_in = shape("encoder.conv_in.weight");
  const Shape* post = shape("post_quant_conv.weight");
  FS_CHECK(conv_in && conv_in->size() == 5 && post && post->size() == 5,
           "{}: cannot infer the VAE configuration (encoder conv_in / post_quant_conv missing or "
           "not 5-d)",
           src.path);
  c.base_dim = static_cast<int>((*conv_in)[0]);
  c.z_dim = static_cast<int>((*post)[0]);
  // The encoder's flat block list: residual blocks (conv1) and resamplers (resample.1) per level.
  std::vector<int> level_widths, res_counts{0};
  c.temporal_downsample.clear();
  int last_width = c.base_dim;
  for (int i = 0;; ++i) {
    const std::string pre = fmt::format("encoder.down_blocks.{}.", i);
    if (const Shape* conv1 = shape(pre + "conv1.weight")) {
      last_width = static_cast<int>((*conv1)[0]);
      ++res_counts.back();
    } else if (shape(pre + "resample.1.weight")) {
      level_widths.push_back(last_width);
      c.temporal_downsample.push_back(shape(pre + "time_conv.weight") != nullptr);
      res_counts.push_back(0);
    } else {
      break;
    }
  }
  level_widths.push_back(last_width);
  for (int n : res_counts)
    FS_CHECK(n == res_counts.front() && n > 0,
             "{}: encoder levels have unequal residual block counts", src.path);
  c.num_res_blocks = res_counts.front();
  c.dim_mult.clear();
  for (int wdt : level_widths) {
    FS_CHECK(wdt % c.base_dim == 0, "{}: encoder width {} is not a multiple of base {}", src.path,
             wdt, c.base_dim);
    c.dim_mult.push_back(wdt / c.base_dim);
  }
  FS_CHECK(static_cast<size_t>(c.z_dim) == c.latents_mean.size(),
           "{}: z_dim {} differs from Wan's 16; give the VAE's config.json for its normalisation "
           "constants",
           src.path, c.z_dim);
  c.validate(src.path + " (inferred config)");
  return c;
}

}  // namespace

namespace {

Shape without_trailing_ones(Shape s) {
  while (!s.empty() && s.back() == 1) s.pop_back();
  return s;
}

// The weights of a VAE of config `c`, each tensor fetched by its diffusers name and shape.
using WeightGetter = std::function<Tensor(const std::string& name, const Shape& shape)>;

WanVaeWeights build_weights(const WanVaeConfig& c, const WeightGetter& get) {
  auto conv = [&](const std::string& pre, int64_t co, int64_t ci, int64_t kt, int64_t k) {
    VaeConv v;
    v.w = get(pre + "weight", {co, ci, kt, k, k});
    v.b = get(pre + "bias", {co});
    return v;
  };
  auto conv2d = [&](const std::string& pre, int64_t co, int64_t ci) {
    VaeConv v;
    v.w = get(pre + "weight", {co, ci, 3, 3}).reshape({co, ci, 1, 3, 3});
    v.b = get(pre + "bias", {co});
    return v;
  };
  auto res = [&](const std::string& pre, int64_t in, int64_t out) {
    VaeResBlock r;
    r.norm1 = get(pre + "norm1.gamma", {in});
    r.conv1 = conv(pre + "conv1.", out, in, 3, 3);
    r.norm2 = get(pre + "norm2.gamma", {out});
    r.conv2 = conv(pre + "conv2.", out, out, 3, 3);
    if (in != out) r.shortcut = conv(pre + "conv_shortcut.", out, in, 1, 1);
    return r;
  };
  auto mid = [&](const std::string& pre, int64_t dim) {
    VaeMid m;
    m.res0 = res(pre + "resnets.0.", dim, dim);
    m.attn.norm = get(pre + "attentions.0.norm.gamma", {dim});
    m.attn.qkv_w = get(pre + "attentions.0.to_qkv.weight", {3 * dim, dim});
    m.attn.qkv_b = get(pre + "attentions.0.to_qkv.bias", {3 * dim});
    m.attn.proj_w = get(pre + "attentions.0.proj.weight", {dim, dim});
    m.attn.proj_b = get(pre + "attentions.0.proj.bias", {dim});
    m.res1 = res(pre + "resnets.1.", dim, dim);
    return m;
  };

  const int L = c.levels(), R = c.num_res_blocks;
  const int64_t z = c.z_dim, base = c.base_dim;
  WanVaeWeights w;
  // Encoder: widths base * [1, dim_mult...].
  VaeEncoderWeights& e = w.encoder;
  e.conv_in = conv("encoder.conv_in.", base, 3, 3, 3);
  int index = 0;
  int64_t in = base;
  for (int level = 0; level < L; ++level) {
    const int64_t out = base * c.dim_mult[static_cast<size_t>(level)];
    for (int j = 0; j < R; ++j, in = out)
      e.res.push_back(res(fmt::format("encoder.down_blocks.{}.", index++), in, out));
    if (level + 1 < L) {
      const std::string pre = fmt::format("encoder.down_blocks.{}.", index++);
      VaeResample r;
      r.mode = c.temporal_downsample[static_cast<size_t>(level)] ? ResampleMode::Down3d
                                                                 : ResampleMode::Down2d;
      r.conv = conv2d(pre + "resample.1.", out, out);
      if (r.mode == ResampleMode::Down3d) r.time_conv = conv(pre + "time_conv.", out, out, 3, 1);
      e.downsamples.push_back(std::move(r));
    }
  }
  e.mid = mid("encoder.mid_block.", in);
  e.norm_out = get("encoder.norm_out.gamma", {in});
  e.conv_out = conv("encoder.conv_out.", 2 * z, in, 3, 3);
  w.quant_conv = conv("quant_conv.", 2 * z, 2 * z, 1, 1);
  w.post_quant_conv = conv("post_quant_conv.", z, z, 1, 1);

  // Decoder: widths base * [dim_mult.back(), reversed dim_mult...]; every level after the first
  // starts at half the previous width (the upsampler's 2D convolution halves the channels).
  VaeDecoderWeights& d = w.decoder;
  const int64_t top = base * c.dim_mult.back();
  d.conv_in = conv("decoder.conv_in.", top, z, 3, 3);
  d.mid = mid("decoder.mid_block.", top);
  int64_t width = top;
  for (int level = 0; level < L; ++level) {
    const int64_t out = base * c.dim_mult[static_cast<size_t>(L - 1 - level)];
    int64_t din = level == 0 ? width : width / 2;
    for (int j = 0; j <= R; ++j, din = out)
      d.res.push_back(res(fmt::format("decoder.up_blocks.{}.resnets.{}.", level, j), din, out));
    width = out;
    if (level + 1 < L) {
      const std::string pre = fmt::format("decoder.up_blocks.{}.upsamplers.0.", level);
      VaeResample r;
      // The decoder's temporal upsampling mirrors the encoder's downsampling.
      const bool temporal = c.temporal_downsample[static_cast<size_t>(L - 2 - level)];
      r.mode = temporal ? ResampleMode::Up3d : ResampleMode::Up2d;
      r.conv = conv2d(pre + "resample.1.", out / 2, out);
      if (temporal) r.time_conv = conv(pre + "time_conv.", 2 * out, out, 3, 1);
      d.upsamples.push_back(std::move(r));
    }
  }
  d.norm_out = get("decoder.norm_out.gamma", {width});
  d.conv_out = conv("decoder.conv_out.", 3, width, 3, 3);
  return w;
}

}  // namespace

std::unique_ptr<WanVae> WanVae::load(const std::string& path, Device device,
                                     const std::string& config_path) {
  const std::string cfg_path = config_path.empty() ? find_vae_config_beside(path) : config_path;
  if (!cfg_path.empty())
    return load(path, device, WanVaeConfig::from_json_file(cfg_path), "config " + cfg_path);
  return load(path, device, std::optional<WanVaeConfig>{}, "config inferred from shapes");
}

std::string WanVae::identify(const std::string& path) {
  const VaeSource src = VaeSource::open(path);
  refuse_wan22_vae(src);
  return "Wan2.1 VAE (" + io::detect_wan_vae_naming(src.names(), path).describe() + ")";
}

std::unique_ptr<WanVae> WanVae::load(const std::string& path, Device device,
                                     const std::optional<WanVaeConfig>& config,
                                     const std::string& cfg_note) {
  const VaeSource src = VaeSource::open(path);
  refuse_wan22_vae(src);
  io::WanVaeNaming naming = io::detect_wan_vae_naming(src.names(), path);
  const WanVaeConfig c = config ? *config : infer_config(src, naming);
  naming.num_res_blocks = c.num_res_blocks;

  WanVaeWeights w = build_weights(c, [&](const std::string& name, const Shape& expected) -> Tensor {
    const std::string stored = naming.stored(name);
    FS_CHECK(src.find(stored) != nullptr, "{}: missing tensor '{}' ({}; VAE {}, {})", path, stored,
             naming.describe(), c.describe(), cfg_note);
    Tensor t = src.tensor(stored);
    // Norm gammas and 1x1 convolutions carry trailing 1-dims ([C, 1, 1, 1]) in both schemes.
    FS_CHECK(without_trailing_ones(t.shape()) == without_trailing_ones(expected),
             "{}: tensor '{}' has shape {}, expected {} for a VAE of {} ({})", src.file_of(stored),
             stored, shape_str(t.shape()), shape_str(expected), c.describe(), cfg_note);
    FS_CHECK(t.dtype() == DType::F32 || t.dtype() == DType::BF16 || t.dtype() == DType::F16,
             "{}: tensor '{}' has dtype {}, expected F32, BF16 or F16", src.file_of(stored), stored,
             dtype_name(t.dtype()));
    // The VAE runs in fp32 on every device (as the reference pipelines do); half weights are
    // upcast, and not narrowed again by a GPU backend's to_compute.
    return t.to(DType::F32).reshape(expected).to(device);
  });
  const int next = c.levels() * c.num_res_blocks + c.levels() - 1;
  FS_CHECK(
      src.find(naming.stored(fmt::format("encoder.down_blocks.{}.conv1.weight", next))) == nullptr,
      "{}: holds more encoder blocks than a VAE of {} ({})", path, c.describe(), cfg_note);
  return std::make_unique<WanVae>(c, std::move(w), device);
}

std::unique_ptr<WanVae> WanVae::random(const WanVaeConfig& c, Device device, uint64_t seed) {
  c.validate("random VAE config");
  // Uniform(-1/sqrt(fan_in), 1/sqrt(fan_in)) weights, gammas near 1 and small biases from a fixed
  // 64-bit engine mapped by our own arithmetic, so a seed builds the same model everywhere.
  std::mt19937_64 gen(seed);
  WanVaeWeights w = build_weights(c, [&](const std::string& name, const Shape& shape) {
    const bool gamma = name.size() >= 5 && name.compare(name.size() - 5, 5, "gamma") == 0;
    const bool bias = name.size() >= 4 && name.compare(name.size() - 4, 4, "bias") == 0;
    const int64_t fan_in = shape.size() > 1 ? shape_numel(shape) / shape[0] : 1;
    const float bound = gamma  ? 0.2f
                        : bias ? 0.05f
                               : static_cast<float>(1.0 / std::sqrt(static_cast<double>(fan_in)));
    Tensor t = Tensor::empty(shape);
    float* d = t.data<float>();
    for (int64_t i = 0; i < t.numel(); ++i) {
      const double u = static_cast<double>(gen() >> 11) * (1.0 / 9007199254740992.0);
      d[i] = (gamma ? 1.f : 0.f) + bound * static_cast<float>(2.0 * u - 1.0);
    }
    return t.to(device);  // fp32 on every device, as load() keeps it
  });
  return std::make_unique<WanVae>(c, std::move(w), device);
}

}  // namespace freeswim::models
