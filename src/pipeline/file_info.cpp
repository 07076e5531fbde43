#include "pipeline/file_info.h"

#include <filesystem>

#include "core/error.h"
#include "io/lora.h"
#include "io/safetensors.h"
#include "io/torch_zip.h"
#include "io/umt5_names.h"
#include "io/wan_kind.h"
#include "io/wan_vae_names.h"
#include "models/wan_dit.h"
#include "models/wan_vae.h"
#include "text/tokenizer.h"

namespace freeswim::pipeline {

namespace fs = std::filesystem;

namespace {

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() &&
         s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

bool names_end_with(const std::vector<std::string>& names, const std::string& suffix) {
  for (const std::string& n : names)
    if (ends_with(n, suffix)) return true;
  return false;
}

FileInfo describe_dit(const std::string& path, const io::TensorSource& src) {
  FileInfo f;
  f.kind = "Wan DiT";
  models::check_gguf_architecture(src, path);
  const io::WanDitIdentity id = io::identify_wan_dit(src, path);
  f.usable = id.runs();
  f.lines.emplace_back("what", id.what);
  if (!id.note.empty()) f.lines.emplace_back("note", id.note);
  if (id.runs()) {
    try {
      f.lines.emplace_back("config", models::WanDit::resolve_config(path).describe());
    } catch (const Error& e) {
      f.lines.emplace_back("config", e.what());
    }
  } else {
    f.lines.emplace_back("runs", "no: this engine runs the Wan2.1 text-to-video DiT");
  }
  return f;
}

FileInfo describe_umt5(const std::string& path, const io::Umt5Naming& naming) {
  FileInfo f;
  f.kind = "UMT5 text encoder";
  f.usable = true;
  f.lines.emplace_back("what", "UMT5 encoder, " + naming.describe());
  const std::optional<text::Tokenizer> tok = text::Tokenizer::embedded_in(path);
  f.lines.emplace_back("tokenizer", tok ? fmt::format("inside the file ({} pieces): --t5 alone "
                                                      "suffices",
                                                      tok->vocab_size())
                                        : "not inside: give --tokenizer spiece.model");
  return f;
}

}  // namespace

FileInfo describe_file(const std::string& path) {
  std::error_code ec;
  FS_CHECK(fs::exists(path, ec), "'{}' does not exist", path);
  FileInfo f;
  if (fs::is_regular_file(path, ec) && ends_with(path, ".model")) {
    const text::Tokenizer tok = text::Tokenizer::load(path);
    f.kind = "tokenizer";
    f.usable = true;
    f.lines.emplace_back("what", fmt::format("sentencepiece model, {} pieces", tok.vocab_size()));
    f.lines.emplace_back("storage", "sentencepiece ModelProto");
    return f;
  }
  std::vector<std::string> names;
  std::string storage;
  std::optional<io::TensorSource> src;
  if (fs::is_regular_file(path, ec) && io::looks_like_torch_zip(path)) {
    const auto zip = io::TorchZipFile::open(path);
    for (const auto& t : zip->tensors()) names.push_back(t.name);
    storage = fmt::format("torch zip (.pth), {} tensors", names.size());
  } else {
    src = io::TensorSource::open(path);
    names = src->names();
    storage = src->storage_summary();
  }
  if (src && io::looks_like_lora(names)) {
    const io::LoraFileKeys keys = io::group_lora_keys(path, names);
    int pairs = 0, alphas = 0, deltas = 0;
    int64_t rmin = 0, rmax = 0;
    for (const io::LoraModule& m : keys.modules) {
      if (!m.down.empty()) {
        const int64_t r = src->find(m.down)->shape.at(0);
        rmin = pairs == 0 ? r : std::min(rmin, r);
        rmax = pairs == 0 ? r : std::max(rmax, r);
        ++pairs;
        alphas += !m.alpha.empty();
      }
      deltas += !m.diff.empty() + !m.diff_b.empty() + !m.diff_m.empty() + !m.up_bias.empty();
    }
    f.kind = "LoRA";
    f.usable = true;
    f.lines.emplace_back("what", fmt::format("LoRA, {}", io::lora_format_name(keys.format)));
    f.lines.emplace_back("patches",
                         fmt::format("{} modules: {} low-rank pairs (rank {}{}, {} with "
                                     "alpha), {} full deltas",
                                     keys.modules.size(), pairs, rmin,
                                     rmax != rmin ? fmt::format("-{}", rmax) : "", alphas, deltas));
    f.lines.emplace_back("use",
                         "--lora " + path + "[:STRENGTH] (matched to the DiT's weights at load)");
    f.lines.emplace_back("storage", storage);
    f.lines.emplace_back("tensors", std::to_string(names.size()));
    return f;
  }
  const std::string arch =
      src && src->gguf() ? src->gguf()->string_value("general.architecture") : "";
  const bool dit =
      src && (arch == "wan" || (arch.empty() && names_end_with(names, "patch_embedding.weight")));
  if (dit) {
    f = describe_dit(path, *src);
  } else {
    std::optional<io::Umt5Naming> umt5;
    try {
      umt5 = io::detect_umt5_naming(names, path);
    } catch (const Error&) {
    }
    if (umt5) {
      f = describe_umt5(path, *umt5);
    } else if (names_end_with(names, "conv_in.weight") || names_end_with(names, "conv1.weight")) {
      f.kind = "Wan VAE";
      try {
        f.lines.emplace_back("what", models::WanVae::identify(path));
        f.usable = true;
      } catch (const Error& e) {
        f.lines.emplace_back("what", e.what());
      }
    } else {
      f.kind = "unknown";
      f.lines.emplace_back(
          "what",
          fmt::format("not a Wan DiT, UMT5 encoder, Wan VAE or LoRA "
                      "({} tensors{})",
                      names.size(), arch.empty() ? "" : ", GGUF architecture '" + arch + "'"));
    }
  }
  f.lines.emplace_back("storage", storage);
  f.lines.emplace_back("tensors", std::to_string(names.size()));
  return f;
}

}  // namespace freeswim::pipeline
