// Resolution of ComfyUI's fp8 scales (see fp8_scales.h and docs/fp8.md) and fp8 -> f32.
#include "io/fp8_scales.h"

#include <cmath>
#include <cstring>

#include "core/error.h"
#include "core/threads.h"
#include "io/strict_json.h"

namespace freeswim::io {

namespace {

bool is_fp8(DType t) {
  return t == DType::F8_E4M3 || t == DType::F8_E5M2;
}

// The dtype a comfy_quant format stores its weight in; throws for formats this engine does not
// read (nvfp4, int8, ...), naming them.
DType fp8_format_dtype(const std::string& label, const std::string& layer,
                       const nlohmann::json& conf) {
  FS_CHECK(conf.is_object() && conf.contains("format") && conf["format"].is_string(),
           "{}: layer '{}': quantization config {} has no \"format\" string", label, layer,
           conf.dump());
  const std::string format = conf["format"].get<std::string>();
  if (format == "float8_e4m3fn") return DType::F8_E4M3;
  if (format == "float8_e5m2") return DType::F8_E5M2;
  fail(
      "{}: layer '{}' is quantized as '{}', which this engine does not read (it reads the fp8 "
      "formats float8_e4m3fn and float8_e5m2, GGUF files and float checkpoints)",
      label, layer, format);
}

}  // namespace

Fp8Scales resolve_fp8_scales(const std::string& label,
                             const std::map<std::string, const TensorInfo*, std::less<>>& tensors,
                             const std::vector<std::pair<std::string, std::string>>& quant_metadata,
                             const std::function<Tensor(const std::string&)>& read) {
  Fp8Scales out;
  auto info_of = [&](const std::string& name) -> const TensorInfo* {
    auto it = tensors.find(name);
    return it == tensors.end() ? nullptr : it->second;
  };

  // Layer -> (where the config came from, config).
  std::map<std::string, std::pair<std::string, nlohmann::json>> configs;
  for (const auto& [file, text] : quant_metadata) {
    const std::string where = file + " (__metadata__ _quantization_metadata)";
    const nlohmann::json q = parse_json_strict(text, where, 8);
    FS_CHECK(q.is_object() && q.contains("layers") && q["layers"].is_object(),
             "{}: not an object with a \"layers\" object", where);
    for (const auto& [layer, conf] : q["layers"].items()) {
      auto [it, fresh] = configs.emplace(layer, std::make_pair(where, conf));
      FS_CHECK(fresh || it->second.second == conf,
               "{}: layer '{}' is configured differently by two files", label, layer);
    }
  }

  bool marker = false;
  for (const auto& [name, info] : tensors) {
    if (name == "scaled_fp8" || name.ends_with(".scaled_fp8")) {
      FS_CHECK(!marker, "{}: more than one scaled_fp8 marker tensor ('{}')", label, name);
      marker = true;
      out.auxiliary.insert(name);
      out.scheme = "ComfyUI scaled_fp8";
    } else if (name.ends_with(".comfy_quant")) {
      const std::string layer =
          name.substr(0, name.size() - std::string_view(".comfy_quant").size());
      FS_CHECK(info->dtype == DType::U8 && info->shape.size() == 1,
               "{}: tensor '{}' must be U8 bytes of a JSON object, got {}{}", label, name,
               dtype_name(info->dtype), shape_str(info->shape));
      const Tensor bytes = read(name);
      const std::string_view text(static_cast<const char*>(bytes.raw()), bytes.nbytes());
      nlohmann::json conf = parse_json_strict(text, label + " (tensor '" + name + "')", 8);
      auto [it, fresh] = configs.emplace(layer, std::make_pair(name, conf));
      FS_CHECK(fresh || it->second.second == conf,
               "{}: layer '{}' is configured both by tensor '{}' and by {}, differently", label,
               layer, name, it->second.first);
      out.auxiliary.insert(name);
      if (out.scheme.empty()) out.scheme = "ComfyUI comfy_quant";
    } else if (name.ends_with(".scale_input") || name.ends_with(".input_scale")) {
      // Scales for fp8 activations; the weights are dequantised, so activations stay as they are.
      out.auxiliary.insert(name);
    }
  }

  // Every configured layer: an fp8 weight of the configured format.
  for (const auto& [layer, where_conf] : configs) {
    const auto& [where, conf] = where_conf;
    const DType want = fp8_format_dtype(label, layer, conf);
    const std::string weight = layer + ".weight";
    const TensorInfo* w = info_of(weight);
    FS_CHECK(w != nullptr, "{}: {} configures layer '{}', but there is no tensor '{}'", label,
             where, layer, weight);
    FS_CHECK(w->dtype == want, "{}: tensor '{}' is {} but {} says its format is {}", label, weight,
             dtype_name(w->dtype), where, dtype_name(want));
    if (out.scheme.empty()) out.scheme = "ComfyUI comfy_quant";
  }

  // Scales: each belongs to an fp8 weight and is one float.
  for (const auto& [name, info] : tensors) {
    std::string layer;
    for (const char* suffix : {".scale_weight", ".weight_scale"}) {
      if (name.ends_with(suffix)) layer = name.substr(0, name.size() - std::strlen(suffix));
    }
    if (layer.empty()) continue;
    const std::string weight = layer + ".weight";
    const TensorInfo* w = info_of(weight);
    FS_CHECK(w != nullptr, "{}: scale '{}' has no weight '{}' beside it", label, name, weight);
    FS_CHECK(is_fp8(w->dtype), "{}: scale '{}' belongs to '{}', which is {}, not fp8", label, name,
             weight, dtype_name(w->dtype));
    FS_CHECK(info->dtype == DType::F32 || info->dtype == DType::BF16 || info->dtype == DType::F16,
             "{}: scale '{}' has dtype {}, expected F32, BF16 or F16", label, name,
             dtype_name(info->dtype));
    FS_CHECK(shape_numel(info->shape) == 1,
             "{}: scale '{}' has shape {}; only one scale per weight (a scalar) is supported",
             label, name, shape_str(info->shape));
    const float s = read(name).to(DType::F32).data<float>()[0];
    FS_CHECK(std::isfinite(s), "{}: scale '{}' is {}", label, name, s);
    auto [it, fresh] = out.scale_of.emplace(weight, Fp8Scale{name, s});
    FS_CHECK(fresh, "{}: weight '{}' has two scales, '{}' and '{}'", label, weight, it->second.name,
             name);
    out.auxiliary.insert(name);
    if (out.scheme.empty()) out.scheme = "ComfyUI scaled_fp8";
  }
  return out;
}

Tensor dequantize_fp8(const Tensor& w, float scale) {
  FS_CHECK(w.device() == Device::CPU && is_fp8(w.dtype()),
           "dequantize_fp8: expected an fp8 CPU tensor, got {}", w.describe());
  Tensor out = Tensor::empty(w.shape(), DType::F32, Device::CPU);
  const uint8_t* src = static_cast<const uint8_t*>(w.raw());
  float* dst = out.data<float>();
  const bool e4m3 = w.dtype() == DType::F8_E4M3;
  parallel_for(w.numel(), 1 << 16, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      const float v = e4m3 ? f8e4m3_to_float(src[i]) : f8e5m2_to_float(src[i]);
      dst[i] = v * scale;
    }
  });
  return out;
}

}  // namespace freeswim::io
