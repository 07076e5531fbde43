// `freeswim info FILE`: what a checkpoint file (or folder) is, from its names, shapes and
// metadata only (no weights are read): a Wan DiT (which member of the family, and whether this
// engine runs it), a UMT5 text encoder (with or without its tokenizer inside), a Wan VAE, a LoRA,
// a sentencepiece tokenizer; and how it is stored (safetensors dtypes, fp8 scales, GGUF types).
#pragma once

#include <string>
#include <utility>
#include <vector>

namespace freeswim::pipeline {

struct FileInfo {
  std::string kind;     // "Wan DiT", "UMT5 text encoder", "Wan VAE", "LoRA", "tokenizer", "unknown"
  bool usable = false;  // this engine runs it
  // Labelled lines to print ("what", "storage", "note", ...), in order.
  std::vector<std::pair<std::string, std::string>> lines;
};

// Never throws for a file that is merely not a model: `kind` is "unknown" and a line says why.
// Throws Error for a path that does not exist or a file that is corrupt.
FileInfo describe_file(const std::string& path);

}  // namespace freeswim::pipeline
