// `freeswim info --model DIR` (what a model folder holds, which layout, which variant) and
// `freeswim info FILE...` (what each checkpoint file is: DiT, text encoder, VAE, LoRA, tokenizer;
// which model; how it is stored).
#include <cstdio>
#include <memory>

#include "cli/commands.h"
#include "core/error.h"
#include "io/safetensors.h"
#include "models/wan_dit.h"
#include "pipeline/file_info.h"
#include "pipeline/models.h"

namespace freeswim::cli {

namespace {
std::shared_ptr<pipeline::ModelPaths> g_paths;
std::shared_ptr<std::vector<std::string>> g_files;
CLI::App* g_info = nullptr;

int run_files(const std::vector<std::string>& files) {
  for (const std::string& f : files) {
    const pipeline::FileInfo info = pipeline::describe_file(f);
    std::printf("file:        %s\n", f.c_str());
    std::printf("kind:        %s%s\n", info.kind.c_str(),
                info.kind == "unknown" || info.usable ? "" : " (not run by this engine)");
    for (const auto& [label, text] : info.lines)
      std::printf("%-12s %s\n", (label + ":").c_str(), text.c_str());
  }
  return 0;
}

int run_info(const pipeline::ModelPaths& p) {
  const pipeline::ModelLayout l = pipeline::find_models(p, /*need_text=*/false, /*need_vae=*/false);
  std::printf("layout:      %s\n", l.layout.c_str());
  if (l.layout == "tiny") {
    std::printf("model:       built-in tiny random model (2 layers, 2 heads of 32)\n");
    return 0;
  }
  std::printf("transformer: %s\n", l.dit.c_str());
  const io::WanDitIdentity id = models::WanDit::identify(l.dit);
  std::printf("kind:        %s\n", id.what.c_str());
  if (!id.note.empty()) std::printf("note:        %s\n", id.note.c_str());
  if (!id.runs()) {
    std::printf("runs:        no: this engine runs the Wan2.1 text-to-video DiT\n");
    return 0;
  }
  const io::TensorSource src = io::TensorSource::open(l.dit);
  const models::WanDitConfig c = models::WanDit::resolve_config(l.dit, p.dit_config);
  std::printf("             %zu tensors, %s\n", src.names().size(), c.describe().c_str());
  const char* variant = c.dim() == 1536   ? "Wan2.1-T2V-1.3B (native 832x480)"
                        : c.dim() == 5120 ? "Wan2.1-T2V-14B (native 1280x720)"
                                          : "unknown Wan2.1 variant";
  std::printf("variant:     %s\n", variant);
  std::printf("vae:         %s\n", l.vae.empty() ? "(not found)" : l.vae.c_str());
  std::printf("text:        %s\n", l.t5.empty() ? "(not found)" : l.t5.c_str());
  std::printf("tokenizer:   %s\n", l.tokenizer.empty() ? "(not found)" : l.tokenizer.c_str());
  return 0;
}
}  // namespace

void add_info_command(CLI::App& app) {
  g_paths = std::make_shared<pipeline::ModelPaths>();
  g_info = app.add_subcommand("info", "Show what a model folder holds: layout, variant, files");
  g_info->add_option("--model", g_paths->model, "Wan2.1 checkpoint folder, or 'tiny'");
  g_info->add_option("--dit,--diffusion-model", g_paths->dit,
                     "Diffusion transformer file or folder");
  g_files = std::make_shared<std::vector<std::string>>();
  g_info->add_option("files", *g_files,
                     "Checkpoint files to describe (DiT, UMT5, VAE, LoRA, spiece.model; "
                     "safetensors, GGUF or .pth)");
  g_info->add_option("--dit-config", g_paths->dit_config, "config.json of the transformer");
}

int run_info_if_parsed() {
  if (!g_info || !g_info->parsed()) return -1;
  if (!g_files->empty() && g_paths->model.empty() && g_paths->dit.empty())
    return run_files(*g_files);
  if (!g_files->empty()) run_files(*g_files);
  return run_info(*g_paths);
}

}  // namespace freeswim::cli
