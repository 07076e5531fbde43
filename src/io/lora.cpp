// LoRA keys, their matching to a model's weights, and the merge (see lora.h, docs/lora.md).
#include "io/lora.h"

#include <fmt/ranges.h>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <set>

#include "core/error.h"
#include "core/threads.h"
#include "io/wan_names.h"

namespace freeswim::io {

namespace {

std::string underscored(std::string s) {
  std::replace(s.begin(), s.end(), '.', '_');
  return s;
}

// Module-path prefixes of the formats, longest first.
constexpr std::string_view kPrefixes[] = {"model.diffusion_model.", "diffusion_model.",
                                          "base_model.model.", "transformer.", "lora_unet_"};

enum class Part { Down, Up, Alpha, Diff, DiffB, UpBias, DiffM };

struct Suffix {
  std::string_view text;
  Part part;
};

constexpr Suffix kSuffixes[] = {
    {".lora_down.weight", Part::Down},
    {".lora_A.weight", Part::Down},
    {".lora_A.default.weight", Part::Down},
    {".lora_up.weight", Part::Up},
    {".lora_B.weight", Part::Up},
    {".lora_B.default.weight", Part::Up},
    {".lora_B.bias", Part::UpBias},
    {".alpha", Part::Alpha},
    {".diff", Part::Diff},
    {".diff_b", Part::DiffB},
    {".diff_m", Part::DiffM},
};

std::string& slot(LoraModule& m, Part p) {
  switch (p) {
    case Part::Down:
      return m.down;
    case Part::Up:
      return m.up;
    case Part::Alpha:
      return m.alpha;
    case Part::Diff:
      return m.diff;
    case Part::DiffB:
      return m.diff_b;
    case Part::UpBias:
      return m.up_bias;
    case Part::DiffM:
      return m.diff_m;
  }
  return m.diff;
}

std::string list(const std::vector<std::string>& v, size_t most = 8) {
  std::vector<std::string> head(v.begin(),
                                v.begin() + static_cast<std::ptrdiff_t>(std::min(most, v.size())));
  std::string s = fmt::format("{}", fmt::join(head, ", "));
  if (v.size() > most) s += fmt::format(" and {} more", v.size() - most);
  return s;
}

bool is_float(DType t) {
  return t == DType::F32 || t == DType::BF16 || t == DType::F16 || t == DType::F8_E4M3 ||
         t == DType::F8_E5M2;
}

}  // namespace

LoraSpec LoraSpec::parse(const std::string& arg) {
  LoraSpec s;
  s.path = arg;
  const size_t colon = arg.rfind(':');
  if (colon != std::string::npos && colon + 1 < arg.size()) {
    const std::string tail = arg.substr(colon + 1);
    double v = 0;
    const auto [ptr, ec] = std::from_chars(tail.data(), tail.data() + tail.size(), v);
    if (ec == std::errc() && ptr == tail.data() + tail.size()) {
      FS_CHECK(std::isfinite(v), "--lora '{}': the strength must be a finite number", arg);
      s.path = arg.substr(0, colon);
      s.strength = v;
    }
  }
  FS_CHECK(!s.path.empty(), "--lora '{}': no file given (FILE or FILE:STRENGTH)", arg);
  return s;
}

std::string lora_format_name(LoraFormat f) {
  switch (f) {
    case LoraFormat::ComfyUI:
      return "ComfyUI / original Wan names";
    case LoraFormat::Kohya:
      return "kohya / musubi (lora_unet_)";
    case LoraFormat::Diffusers:
      return "diffusers / PEFT names";
  }
  return "?";
}

bool looks_like_lora(const std::vector<std::string>& keys) {
  if (keys.empty()) return false;
  for (const std::string& k : keys) {
    bool known = false;
    for (const Suffix& s : kSuffixes) known = known || k.ends_with(s.text);
    if (!known) return false;
  }
  return true;
}

LoraFileKeys group_lora_keys(const std::string& path, const std::vector<std::string>& keys) {
  LoraFileKeys out;
  out.path = path;
  std::map<std::string, LoraModule> modules;
  std::vector<std::string> unknown;
  int kohya = 0, diffusers = 0;
  for (const std::string& key : keys) {
    std::string_view rest = key;
    for (std::string_view p : kPrefixes) {
      if (rest.starts_with(p)) {
        kohya += p == "lora_unet_";
        rest.remove_prefix(p.size());
        break;
      }
    }
    const Suffix* found = nullptr;
    for (const Suffix& s : kSuffixes)
      if (rest.ends_with(s.text) && (!found || s.text.size() > found->text.size())) found = &s;
    if (found == nullptr || rest.size() == found->text.size()) {
      unknown.push_back(key);
      continue;
    }
    const std::string module(rest.substr(0, rest.size() - found->text.size()));
    diffusers += module.find("attn1.") != std::string::npos ||
                 module.find("attn2.") != std::string::npos ||
                 module.find("ffn.net.") != std::string::npos ||
                 module.starts_with("condition_embedder.") || module == "proj_out";
    LoraModule& m = modules[module];
    m.module = module;
    std::string& s = slot(m, found->part);
    FS_CHECK(s.empty(), "{}: module '{}' has two {} keys, '{}' and '{}'", path, module, found->text,
             s, key);
    s = key;
  }
  if (!unknown.empty()) {
    bool lycoris = false;
    for (const std::string& k : unknown)
      lycoris =
          lycoris || k.find("hada_") != std::string::npos || k.find("lokr_") != std::string::npos;
    fail(
        "{}: {} keys are not LoRA keys this engine reads{}: {} (it reads lora_down/lora_up, "
        "lora_A/lora_B, alpha, diff, diff_b, diff_m)",
        path, unknown.size(), lycoris ? " (LoHa / LoKr are not supported)" : "", list(unknown));
  }
  FS_CHECK(!modules.empty(), "{}: holds no tensors; not a LoRA", path);
  for (auto& [name, m] : modules) {
    FS_CHECK(m.up.empty() == m.down.empty(), "{}: module '{}' has '{}' but no {} half", path, name,
             m.up.empty() ? m.down : m.up,
             m.up.empty() ? "up (lora_up / lora_B)" : "down (lora_down / lora_A)");
    FS_CHECK(m.alpha.empty() || !m.down.empty(),
             "{}: '{}' has no lora_down / lora_up pair to scale", path, m.alpha);
    out.modules.push_back(m);
  }
  out.format = kohya > 0       ? LoraFormat::Kohya
               : diffusers > 0 ? LoraFormat::Diffusers
                               : LoraFormat::ComfyUI;
  return out;
}

std::shared_ptr<const LoraSet> LoraSet::open(const std::vector<LoraSpec>& specs,
                                             const std::map<std::string, Shape>& weights) {
  // Every name a file may use for a weight -> the weight (diffusers name): its diffusers and
  // original names, and both with '.' as '_' (kohya). Names two weights share are dropped.
  std::map<std::string, std::string> alias;
  std::set<std::string> ambiguous;
  auto add = [&](const std::string& name, const std::string& weight) {
    auto [it, fresh] = alias.emplace(name, weight);
    if (!fresh && it->second != weight) ambiguous.insert(name);
  };
  for (const auto& [w, shape] : weights) {
    const std::string original = wan_dit_original_name(w);
    for (const std::string& n : {w, original}) {
      add(n, w);
      add(underscored(n), w);
    }
  }
  for (const std::string& n : ambiguous) alias.erase(n);
  auto resolve = [&](const std::string& module, const std::string& param) -> std::string {
    for (const std::string& n : {module + "." + param, underscored(module) + "_" + param}) {
      auto it = alias.find(n);
      if (it != alias.end()) return it->second;
    }
    if (param == "weight") {  // a parameter named by itself (blocks.0.modulation, ...)
      auto it = alias.find(module);
      if (it != alias.end()) return it->second;
    }
    return "";
  };

  auto set = std::make_shared<LoraSet>();
  for (size_t f = 0; f < specs.size(); ++f) {
    const LoraSpec& spec = specs[f];
    TensorSource src = TensorSource::open(spec.path);
    FS_CHECK(src.gguf() == nullptr, "{}: a GGUF LoRA; LoRAs are read from safetensors", spec.path);
    const LoraFileKeys keys = group_lora_keys(spec.path, src.names());
    std::vector<std::string> unmatched;
    auto shape_of = [&](const std::string& key) -> const Shape& {
      const TensorInfo* t = src.find(key);
      FS_CHECK(is_float(t->dtype), "{}: tensor '{}' has dtype {}, expected a float type", spec.path,
               key, dtype_name(t->dtype));
      return t->shape;
    };
    auto add_patch = [&](const std::string& weight, const std::string& key, Patch p) {
      std::vector<Patch>& v = set->patches_[weight];
      // ComfyUI keeps only the last of two patches one file makes to a weight; neither is
      // clearly meant, so such a file is refused.
      for (const Patch& q : v)
        FS_CHECK(q.file != f, "{}: '{}' and another key of the file both change weight '{}'",
                 spec.path, key, weight);
      v.push_back(std::move(p));
    };
    for (const LoraModule& m : keys.modules) {
      if (!m.down.empty()) {
        const std::string w = resolve(m.module, "weight");
        if (w.empty()) {
          unmatched.push_back(m.down);
        } else {
          const Shape& down = shape_of(m.down);
          const Shape& up = shape_of(m.up);
          const Shape& ws = weights.at(w);
          FS_CHECK(down.size() >= 2 && up.size() >= 2 && down[0] > 0 && up[1] == down[0] &&
                       shape_numel(up) == up[0] * up[1] && !ws.empty() && up[0] == ws[0] &&
                       shape_numel(down) / down[0] * up[0] == shape_numel(ws),
                   "{}: '{}' {} and '{}' {} do not make a delta of weight '{}' {}", spec.path, m.up,
                   shape_str(up), m.down, shape_str(down), w, shape_str(ws));
          double scale = spec.strength;
          if (!m.alpha.empty()) {
            FS_CHECK(shape_numel(shape_of(m.alpha)) == 1, "{}: '{}' must be one number", spec.path,
                     m.alpha);
            const double alpha = src.tensor(m.alpha).to(DType::F32).data<float>()[0];
            FS_CHECK(std::isfinite(alpha), "{}: '{}' is {}", spec.path, m.alpha, alpha);
            scale = spec.strength * (alpha / static_cast<double>(down[0]));
          }
          add_patch(w, m.down, Patch{f, scale, m.up, m.down, ""});
        }
      }
      auto delta = [&](const std::string& key, const std::string& param) {
        if (key.empty()) return;
        const std::string w = resolve(m.module, param);
        if (w.empty()) {
          unmatched.push_back(key);
          return;
        }
        const Shape& s = shape_of(key);
        FS_CHECK(shape_numel(s) == shape_numel(weights.at(w)),
                 "{}: '{}' {} does not fit weight '{}' {}", spec.path, key, shape_str(s), w,
                 shape_str(weights.at(w)));
        add_patch(w, key, Patch{f, spec.strength, "", "", key});
      };
      delta(m.diff, "weight");
      delta(m.diff_b, "bias");
      delta(m.up_bias, "bias");
      delta(m.diff_m, "modulation");
    }
    FS_CHECK(unmatched.empty(),
             "{}: {} keys match no weight of this model (a LoRA for another model, e.g. an "
             "image-to-video or Wan2.2 one, or for the text encoder): {}",
             spec.path, unmatched.size(), list(unmatched));
    set->files_.push_back(File{spec, std::move(src), keys.format, keys.modules.size()});
  }
  return set;
}

Tensor LoraSet::apply(const std::string& weight, const Tensor& w) const {
  auto it = patches_.find(weight);
  if (it == patches_.end()) return w;
  FS_CHECK(w.device() == Device::CPU && w.dtype() == DType::F32,
           "LoRA merge of '{}': expected an f32 CPU weight, got {}", weight, w.describe());
  const int64_t rows = w.ndim() ? w.dim(0) : 1;
  const int64_t cols = rows ? w.numel() / rows : 0;
  struct Ready {
    double scale;
    int64_t rank = 0;
    std::vector<float> up, down, delta;  // up [rows, rank], down [rank, cols] / delta [numel]
  };
  std::vector<Ready> ready;
  for (const Patch& p : it->second) {
    const TensorSource& src = files_[p.file].src;
    Ready r;
    r.scale = p.scale;
    if (p.delta.empty()) {
      r.up = src.tensor(p.up).to(DType::F32).to_float_vector();
      r.down = src.tensor(p.down).to(DType::F32).to_float_vector();
      r.rank = static_cast<int64_t>(r.up.size()) / rows;
    } else {
      r.delta = src.tensor(p.delta).to(DType::F32).to_float_vector();
    }
    ready.push_back(std::move(r));
  }
  Tensor out = Tensor::empty(w.shape(), DType::F32, Device::CPU);
  const float* src_w = w.data<float>();
  float* dst = out.data<float>();
  parallel_for(rows, 4, [&](int64_t r0, int64_t r1) {
    std::vector<double> acc(static_cast<size_t>(cols)), sum(static_cast<size_t>(cols));
    for (int64_t i = r0; i < r1; ++i) {
      for (int64_t j = 0; j < cols; ++j) sum[static_cast<size_t>(j)] = src_w[i * cols + j];
      for (const Ready& p : ready) {
        if (p.rank > 0) {
          std::fill(acc.begin(), acc.end(), 0.0);
          for (int64_t k = 0; k < p.rank; ++k) {
            const double a = p.up[static_cast<size_t>(i * p.rank + k)];
            const float* d = p.down.data() + k * cols;
            for (int64_t j = 0; j < cols; ++j)
              acc[static_cast<size_t>(j)] += a * static_cast<double>(d[j]);
          }
        } else {
          for (int64_t j = 0; j < cols; ++j)
            acc[static_cast<size_t>(j)] = p.delta[static_cast<size_t>(i * cols + j)];
        }
        for (int64_t j = 0; j < cols; ++j)
          sum[static_cast<size_t>(j)] =
              std::fma(p.scale, acc[static_cast<size_t>(j)], sum[static_cast<size_t>(j)]);
      }
      for (int64_t j = 0; j < cols; ++j)
        dst[i * cols + j] = static_cast<float>(sum[static_cast<size_t>(j)]);
    }
  });
  return out;
}

std::vector<std::string> LoraSet::describe() const {
  std::vector<std::string> out;
  for (const File& f : files_)
    out.push_back(fmt::format("{}: {}, {} modules, strength {}", f.spec.path,
                              lora_format_name(f.format), f.modules, f.spec.strength));
  return out;
}

}  // namespace freeswim::io
