#include "pipeline/models.h"

#include <chrono>
#include <filesystem>

#include "core/device_memory.h"
#include "core/error.h"
#include "core/rng.h"

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

LoadedModels load_models(const ModelPaths& paths, Device device, bool need_text, Offload offload) {
  const auto t0 = std::chrono::steady_clock::now();
  auto seconds = [&] {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  };
  LoadedModels m;
  m.layout = find_models(paths, need_text);
  FS_CHECK(device == Device::CUDA || offload == Offload::off,
           "load_models: the DiT's blocks can be streamed from host memory to a GPU only, not to "
           "the cpu (device_settings turns offload off there)");
  std::vector<io::LoraSpec> loras;
  for (const std::string& l : paths.loras) loras.push_back(io::LoraSpec::parse(l));
  for (const io::LoraSpec& l : loras)
    FS_CHECK(fs::is_regular_file(l.path), "--lora: '{}' is not a file", l.path);
  if (m.layout.layout == "tiny") {
    FS_CHECK(loras.empty(),
             "--lora: the built-in tiny model has random weights; a LoRA applies to real Wan2.1 "
             "weights");
    m.dit = models::WanDit::random(tiny_dit_config(), device, 1234);
    if (offload == Offload::on) m.dit->enable_offload();
    models::WanVaeConfig vc = models::WanVaeConfig::wan21();
    vc.base_dim = 4;
    m.vae = models::WanVae::random(vc, device, 4321);
    m.native = {96, 64, 3.0, "tiny (random weights)"};
    m.load_seconds = seconds();
    return m;
  }
  m.dit = load_dit_with_offload(
      offload,
      [&](bool streamed) {
        return models::WanDit::load(m.layout.dit, device, paths.dit_config, streamed, loras);
      },
      [&](const std::string& why) {
        m.offload_note = fmt::format(
            "the DiT's weights do not fit in GPU memory ({}); loaded again with its blocks in "
            "pinned host memory, streamed to the GPU two at a time (as --offload; --no-offload "
            "turns this off)",
            why.substr(0, why.find('\n')));
      });
  m.dit_note = models::WanDit::identify(m.layout.dit).note;
  m.vae = models::WanVae::load(m.layout.vae, device);
  if (need_text) {
    m.t5 = text::Umt5Encoder::load(m.layout.t5, device);
    m.tokenizer = load_tokenizer(paths, m.layout);
    FS_CHECK(m.t5->config().d_model == m.dit->config().text_dim,
             "the text encoder's width {} does not match the DiT's text_dim {} (--t5 {}, --dit {})",
             m.t5->config().d_model, m.dit->config().text_dim, m.layout.t5, m.layout.dit);
  }
  // Wan2.1 sizes: 1.3B is trained at 480x832 (UniPC shift 3), 14B at 720x1280 (shift 5).
  if (m.dit->config().dim() >= 5120)
    m.native = {1280, 720, 5.0, "Wan2.1-T2V-14B"};
  else
    m.native = {832, 480, 3.0, "Wan2.1-T2V-1.3B"};
  m.load_seconds = seconds();
  return m;
}

void LoadedModels::release_text_encoder() {
  if (!t5) return;
  t5.reset();
  text_released_ = true;
}

Tensor LoadedModels::encode_text(const std::string& prompt) const {
  constexpr int64_t kTextLen = 512;
  FS_CHECK(!text_released_,
           "internal: the text encoder was released after the prompts were encoded and is asked "
           "to encode another");
  if (!t5) {
    // Tiny model: 12 rows derived from the prompt bytes, zeros after (as padding would be).
    const int64_t dim = dit->config().text_dim;
    uint64_t seed = 1469598103934665603ull;  // FNV-1a of the prompt
    for (unsigned char ch : prompt) seed = (seed ^ ch) * 1099511628211ull;
    Tensor ctx = Tensor::zeros({kTextLen, dim});
    const Tensor rows = rng::normal_tensor({12, dim}, seed);
    std::copy_n(rows.data<float>(), rows.numel(), ctx.data<float>());
    return ctx;
  }
  return t5->wan_context(tokenizer->tokenize_prompt(prompt, kTextLen), kTextLen)
      .to(Device::CPU)
      .to(DType::F32);
}

}  // namespace freeswim::pipeline
