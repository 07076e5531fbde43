#include "check/golden_files.h"

#include <algorithm>
#include <filesystem>
#include <fstream>

#include "core/error.h"

namespace freeswim::check {

namespace fs = std::filesystem;

std::vector<std::string> files_ending_with(const std::string& dir, const std::string& suffix) {
  std::vector<std::string> out;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(dir, ec)) {
    const std::string name = entry.path().filename().string();
    if (name.size() >= suffix.size() &&
        name.compare(name.size() - suffix.size(), suffix.size(), suffix) == 0)
      out.push_back(entry.path().string());
  }
  std::sort(out.begin(), out.end());
  return out;
}

nlohmann::json read_json(const std::string& path) {
  std::ifstream f(path);
  FS_CHECK(f.good(), "cannot open '{}'", path);
  try {
    return nlohmann::json::parse(f);
  } catch (const std::exception& e) {
    fail("{}: not valid JSON ({})", path, e.what());
  }
}

Tensor CaseFile::tensor(const std::string& name) const {
  FS_CHECK(tensors->find(name) != nullptr, "{}: missing tensor '{}'", tensors_path, name);
  return tensors->tensor(name).to(DType::F32);
}

CaseFile open_case_file(const std::string& json_path, const std::string& tensors_path) {
  CaseFile f;
  f.json_path = json_path;
  f.tensors_path = tensors_path;
  f.meta = read_json(json_path);
  f.tensors = io::SafetensorsFile::open(tensors_path);
  return f;
}

}  // namespace freeswim::check
