// Reading a golden directory: a `<name>.json` describing tensors stored in `<name>.safetensors`.
#pragma once

#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "core/tensor.h"
#include "io/safetensors.h"

namespace freeswim::check {

// Files in `dir` whose names end with `suffix`, sorted.
std::vector<std::string> files_ending_with(const std::string& dir, const std::string& suffix);

// Parses a JSON file; throws Error naming it.
nlohmann::json read_json(const std::string& path);

// A case file: its json and its tensors. `tensor()` throws Error naming the file and tensor.
struct CaseFile {
  std::string json_path, tensors_path;
  nlohmann::json meta;
  std::shared_ptr<const io::SafetensorsFile> tensors;
  Tensor tensor(const std::string& name) const;  // as f32 on the CPU
};

CaseFile open_case_file(const std::string& json_path, const std::string& tensors_path);

}  // namespace freeswim::check
