#include "pipeline/models.h"

#include <chrono>
#include <filesystem>

#include "core/bytes.h"
#include "core/device_memory.h"
#include "core/error.h"
#include "core/rng.h"
#include "pipeline/memory_plan.h"

namespace freeswim::pipeline {

namespace fs = std::filesystem;

namespace {

bool has_prefix_file(const fs::path& dir, const std::string& prefix, const std::string& suffix) {
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(dir, ec)) {
    const std::string n = e.path().filename().string();
    if (n.rfind(prefix, 0) == 0 && n.size() >= suffix.size() &&
        n.compare(n.size() - suffix.size(), suffix.size(), suffix) == 0)
      return true;
  }
  return false;
}

std::string existing(const fs::path& p) {
  return fs::exists(p) ? p.string() : "";
}

// The tiny model: the golden pipeline's tiny shapes (2 layers, 2 heads of 32, VAE width 4).
models::WanDitConfig tiny_dit_config() {
  models::WanDitConfig c;
  c.heads = 2;
  c.head_dim = 32;
  c.text_dim = 32;
  c.ffn_dim = 96;
  c.num_layers = 2;
  return c;
}

}  // namespace

const std::string& wan_default_negative_prompt() {
  static const std::string p =
      "色调艳丽，过曝，静态，细节模糊不清，字幕，风格，作品，画作，画面，静止，整体发灰，最差质量，"
      "低质量，"
      "JPEG压缩残留，丑陋的，残缺的，多余的手指，画得不好的手部，画得不好的脸部，畸形的，毁容的，形"
      "态畸形的肢体，"
      "手指融合，静止不动的画面，杂乱的背景，三条腿，背景人很多，倒着走";
  return p;
}

ModelLayout find_models(const ModelPaths& paths, bool need_text, bool need_vae) {
  ModelLayout l;
  if (paths.model == "tiny") {
    // The tiny model is built in memory: a file given beside it would be silently unused.
    for (const auto& [flag, value] :
         {std::pair<const char*, const std::string&>{"--dit", paths.dit},
          {"--vae", paths.vae},
          {"--t5", paths.t5},
          {"--tokenizer", paths.tokenizer}})
      FS_CHECK(value.empty(),
               "{} '{}' cannot be combined with --model tiny (a built-in random model); drop one "
               "of the two",
               flag, value);
    l.layout = "tiny";
    return l;
  }
  if (!paths.model.empty()) {
    const fs::path d(paths.model);
    FS_CHECK(fs::is_directory(d),
             "--model: '{}' is not a directory (give a Wan2.1 checkpoint folder, or 'tiny')",
             paths.model);
    // Wan2.2 A14B: two experts (high noise for the first steps, low noise for the rest), in
    // high_noise_model/ + low_noise_model/ (original release) or transformer/ + transformer_2/
    // (diffusers).
    FS_CHECK(!fs::is_directory(d / "high_noise_model") && !fs::is_directory(d / "transformer_2"),
             "--model: '{}' is a Wan2.2 A14B model (two expert DiTs: {}); this engine runs Wan2.1 "
             "text-to-video (T2V-1.3B or T2V-14B)",
             paths.model,
             fs::is_directory(d / "transformer_2") ? "transformer/ and transformer_2/"
                                                   : "high_noise_model/ and low_noise_model/");
    if (fs::is_directory(d / "transformer")) {
      l.layout = "diffusers";
      l.dit = (d / "transformer").string();
      l.vae = existing(d / "vae");
      l.t5 = existing(d / "text_encoder");
      l.tokenizer = existing(d / "tokenizer");
    } else if (has_prefix_file(d, "diffusion_pytorch_model", ".safetensors") ||
               has_prefix_file(d, "diffusion_pytorch_model", ".index.json")) {
      l.layout = "original";
      l.dit = d.string();
      l.vae = existing(d / "Wan2.1_VAE.pth");
      l.t5 = existing(d / "models_t5_umt5-xxl-enc-bf16.pth");
      l.tokenizer = existing(d / "google" / "umt5-xxl");
    } else {
      fail(
          "--model: '{}' holds neither a diffusers Wan2.1 checkpoint (transformer/, vae/, "
          "text_encoder/, "
          "tokenizer/) nor an original one (diffusion_pytorch_model*.safetensors, Wan2.1_VAE.pth, "
          "models_t5_umt5-xxl-enc-bf16.pth, google/umt5-xxl/)",
          paths.model);
    }
  } else {
    l.layout = "files";
  }
  if (!paths.dit.empty()) l.dit = paths.dit;
  if (!paths.vae.empty()) l.vae = paths.vae;
  if (!paths.t5.empty()) l.t5 = paths.t5;
  if (!paths.tokenizer.empty()) l.tokenizer = paths.tokenizer;
  auto need = [&](const std::string& p, const char* flag, const char* what) {
    FS_CHECK(!p.empty(),
             "no {} found: give {} (or --model DIR with a Wan2.1 checkpoint; --model tiny for a "
             "test run)",
             what, flag);
    FS_CHECK(fs::exists(p), "{}: '{}' does not exist", flag, p);
  };
  need(l.dit, "--dit", "diffusion transformer");
  if (need_vae) need(l.vae, "--vae", "VAE");
  if (need_text) {
    need(l.t5, "--t5", "UMT5 text encoder");
    // The tokenizer may be inside the encoder file (ComfyUI's UMT5, GGUF): load_models looks.
    if (!l.tokenizer.empty()) need(l.tokenizer, "--tokenizer", "tokenizer (spiece.model)");
  }
  return l;
}

std::unique_ptr<models::WanDit> load_dit_with_offload(
    Offload mode, const std::function<std::unique_ptr<models::WanDit>(bool offload)>& load,
    const std::function<void(const std::string& why)>& fell_back) {
  if (mode != Offload::automatic) return load(mode == Offload::on);
  try {
    return load(false);
  } catch (const OutOfMemory& e) {
    // What the failed load allocated is released by now (unwinding); the allocator's cached
    // blocks go back to the driver so that the second load starts from the whole card.
    trim_device_memory();
    fell_back(e.what());
  }
  return load(true);
}

text::Tokenizer load_tokenizer(const ModelPaths& paths, const ModelLayout& layout) {
  // An explicit --tokenizer wins; then the one inside an encoder file given with --t5 (it belongs
  // to that encoder); then the model folder's.
  if (!paths.tokenizer.empty()) return text::Tokenizer::load(paths.tokenizer);
  if (std::optional<text::Tokenizer> inside = text::Tokenizer::embedded_in(layout.t5))
    return std::move(*inside);
  FS_CHECK(!layout.tokenizer.empty(),
           "no tokenizer found: '{}' holds none (ComfyUI's UMT5 files and GGUF encoders carry "
           "theirs); give --tokenizer spiece.model",
           layout.t5);
  return text::Tokenizer::load(layout.tokenizer);
}

TextDevice parse_text_device(const std::string& value) {
  if (value == "auto") return TextDevice::Auto;
  if (value == "cpu") return TextDevice::CPU;
  if (value == "cuda") return TextDevice::CUDA;
  fail("--text-device must be auto, cpu or cuda, got '{}'", value);
}

const char* text_device_name(TextDevice d) {
  switch (d) {
    case TextDevice::Auto:
      return "auto";
    case TextDevice::CPU:
      return "cpu";
    case TextDevice::CUDA:
      return "cuda";
  }
  return "?";
}

TextPlacement place_text_encoder(TextDevice requested, Device job_device, size_t weight_bytes,
                                 size_t free_bytes) {
  const double weights = gib(weight_bytes);
  if (job_device == Device::CPU) {
    FS_CHECK(requested != TextDevice::CUDA,
             "--text-device cuda: the job runs on the cpu; give --device cuda as well, or drop "
             "--text-device");
    return {Device::CPU, "text encoder on cpu (the job's device)"};
  }
  if (requested == TextDevice::CPU) return {Device::CPU, "text encoder on cpu (--text-device cpu)"};
  if (requested == TextDevice::CUDA)
    return {job_device,
            fmt::format("text encoder on {} (--text-device cuda; {:.1f} GiB of weights, "
                        "{:.1f} GiB free)",
                        device_name(job_device), weights, gib(free_bytes))};
  const size_t need = weight_bytes + kTextEncoderMargin;
  if (need <= free_bytes)
    return {job_device, fmt::format("text encoder on {} ({:.1f} GiB fits in {:.1f} GiB free)",
                                    device_name(job_device), weights, gib(free_bytes))};
  return {Device::CPU,
          fmt::format("text encoder on cpu (needs {:.1f} GiB on {} with its working memory, {:.1f} "
                      "GiB free; --text-device cuda forces it)",
                      gib(need), device_name(job_device), gib(free_bytes))};
}

void check_text_host_memory(const TextPlacement& where, size_t cpu_weight_bytes,
                            size_t host_bytes) {
  if (where.device != Device::CPU || host_bytes == 0) return;
  const size_t need = cpu_weight_bytes + kTextEncoderMargin;
  FS_CHECK(need <= host_bytes,
           "not enough host memory for the text encoder: {}, and there it needs about {:.1f} GiB "
           "(f32 weights and 1 GiB), {:.1f} GiB available (MemAvailable); free host memory, or "
           "run it on a GPU with room for its bf16 weights and 1 GiB (--text-device cuda forces "
           "the GPU)",
           where.reason, gib(need), gib(host_bytes));
}

namespace {

// Wan2.1 sizes: 1.3B is trained at 480x832 (UniPC shift 3), 14B at 720x1280 (shift 5).
NativeSize native_size(const models::WanDitConfig& c) {
  if (c.dim() >= 5120) return {1280, 720, 5.0, "Wan2.1-T2V-14B"};
  return {832, 480, 3.0, "Wan2.1-T2V-1.3B"};
}

}  // namespace

ModelPlan inspect_models(const ModelPaths& paths, bool need_text) {
  ModelPlan p;
  p.layout = find_models(paths, need_text);
  if (p.layout.layout == "tiny") {
    p.dit = tiny_dit_config();
    p.native = {96, 64, 3.0, "tiny (random weights)"};
    return p;
  }
  // What each file is comes first: an I2V or Wan2.2 DiT, or a Wan2.2 VAE, is refused by name
  // before any weight is read.
  const io::WanDitIdentity id = models::WanDit::identify(p.layout.dit);
  io::require_wan_t2v(id, p.layout.dit);
  p.dit_note = id.note;
  p.dit = models::WanDit::resolve_config(p.layout.dit, paths.dit_config);
  models::WanVae::identify(p.layout.vae);
  p.native = native_size(p.dit);
  return p;
}

namespace {

// Step 2 of load_models: the prompts' contexts, with the encoder on the device
// place_text_encoder picks, freed afterwards.
std::map<std::string, Tensor> encode_prompts(const ModelPaths& paths, const ModelPlan& plan,
                                             Device device, const TextJob& text,
                                             const std::function<void(const std::string&)>& info) {
  constexpr int64_t kTextLen = 512;
  const text::Umt5Config tc = text::Umt5Encoder::resolve_config(plan.layout.t5);
  FS_CHECK(tc.d_model == plan.dit.text_dim,
           "the text encoder's width {} does not match the DiT's text_dim {} (--t5 {}, --dit {})",
           tc.d_model, plan.dit.text_dim, plan.layout.t5, plan.layout.dit);
  const text::Tokenizer tokenizer = load_tokenizer(paths, plan.layout);
  const size_t weight_bytes = static_cast<size_t>(tc.parameter_count()) *
                              (device == Device::CPU ? sizeof(float) : dtype_size(DType::BF16));
  const size_t free_bytes = device == Device::CPU ? 0 : device_memory(device).free_bytes();
  const TextPlacement where = place_text_encoder(text.device, device, weight_bytes, free_bytes);
  check_text_host_memory(where, static_cast<size_t>(tc.parameter_count()) * sizeof(float),
                         host_available_bytes());
  if (info) info(where.reason);
  std::map<std::string, Tensor> contexts;
  {
    const std::unique_ptr<text::Umt5Encoder> t5 =
        text::Umt5Encoder::load(plan.layout.t5, where.device);
    for (const std::string& prompt : text.prompts)
      if (!contexts.count(prompt))
        contexts[prompt] = t5->wan_context(tokenizer.tokenize_prompt(prompt, kTextLen), kTextLen)
                               .to(Device::CPU)
                               .to(DType::F32);
  }
  if (where.device != Device::CPU) trim_device_memory();
  if (info)
    info(fmt::format("prompts encoded; text encoder released ({} memory back for the DiT and VAE)",
                     device_name(where.device)));
  return contexts;
}

}  // namespace

LoadedModels load_models(const ModelPaths& paths, Device device, Offload offload,
                         const TextJob& text, const std::function<void(const std::string&)>& info) {
  const auto t0 = std::chrono::steady_clock::now();
  auto seconds = [&] {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  };
  FS_CHECK(device == Device::CUDA || offload == Offload::off,
           "load_models: the DiT's blocks can be streamed from host memory to a GPU only, not to "
           "the cpu (device_settings turns offload off there)");
  std::vector<io::LoraSpec> loras;
  for (const std::string& l : paths.loras) loras.push_back(io::LoraSpec::parse(l));
  for (const io::LoraSpec& l : loras)
    FS_CHECK(fs::is_regular_file(l.path), "--lora: '{}' is not a file", l.path);
  const ModelPlan plan = inspect_models(paths, !text.prompts.empty());
  LoadedModels m;
  m.layout = plan.layout;
  m.native = plan.native;
  m.dit_note = plan.dit_note;
  if (m.layout.layout == "tiny") {
    FS_CHECK(loras.empty(),
             "--lora: the built-in tiny model has random weights; a LoRA applies to real Wan2.1 "
             "weights");
    m.dit = models::WanDit::random(plan.dit, device, 1234);
    if (offload == Offload::on) m.dit->enable_offload();
    models::WanVaeConfig vc = models::WanVaeConfig::wan21();
    vc.base_dim = 4;
    m.vae = models::WanVae::random(vc, device, 4321);
    m.load_seconds = seconds();
    return m;
  }
  if (!text.prompts.empty()) {
    const double before = seconds();
    m.contexts = encode_prompts(paths, plan, device, text, info);
    m.text_seconds = seconds() - before;
  }
  m.dit = load_dit_with_offload(
      offload,
      [&](bool streamed) {
        return models::WanDit::load(m.layout.dit, device, plan.dit, streamed, loras);
      },
      [&](const std::string& why) {
        m.offload_note = fmt::format(
            "the DiT's weights do not fit in GPU memory ({}); loaded again with its blocks in "
            "pinned host memory, streamed to the GPU two at a time (as --offload; --no-offload "
            "turns this off)",
            why.substr(0, why.find('\n')));
      });
  m.vae = models::WanVae::load(m.layout.vae, device);
  m.load_seconds = seconds();
  return m;
}

std::map<std::string, Tensor> encode_job_prompts(
    const ModelPaths& paths, Device device, const TextJob& text,
    const std::function<void(const std::string&)>& info) {
  if (text.prompts.empty()) return {};
  const ModelPlan plan = inspect_models(paths, true);
  if (plan.layout.layout == "tiny") return {};
  return encode_prompts(paths, plan, device, text, info);
}

Tensor LoadedModels::encode_text(const std::string& prompt) const {
  if (layout.layout != "tiny") {
    const auto it = contexts.find(prompt);
    FS_CHECK(it != contexts.end(),
             "internal: the prompt '{}' was not among those encoded before the models were loaded "
             "(the text encoder is gone by now)",
             prompt);
    return it->second;
  }
  // Tiny model: 12 rows derived from the prompt bytes, zeros after (as padding would be).
  constexpr int64_t kTextLen = 512;
  const int64_t dim = dit->config().text_dim;
  uint64_t seed = 1469598103934665603ull;  // FNV-1a of the prompt
  for (unsigned char ch : prompt) seed = (seed ^ ch) * 1099511628211ull;
  Tensor ctx = Tensor::zeros({kTextLen, dim});
  const Tensor rows = rng::normal_tensor({12, dim}, seed);
  std::copy_n(rows.data<float>(), rows.numel(), ctx.data<float>());
  return ctx;
}

}  // namespace freeswim::pipeline
