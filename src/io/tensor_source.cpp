// A checkpoint as one name -> tensor table over one or more safetensors files (single file,
// sharded index, or a directory holding one of those).
#include <fmt/ranges.h>

#include <algorithm>
#include <filesystem>
#include <set>

#include "core/error.h"
#include "io/safetensors.h"
#include "io/strict_json.h"

namespace freeswim::io {

namespace fs = std::filesystem;

namespace {

constexpr std::string_view kIndexSuffix = ".safetensors.index.json";
constexpr std::string_view kFileSuffix = ".safetensors";
constexpr std::string_view kGgufSuffix = ".gguf";

// weight_map of an index: tensor name -> shard path as written in the index.
std::map<std::string, std::string> read_weight_map(const std::string& index_path) {
  // Index metadata is free-form; the depth bound only stops pathological nesting.
  const nlohmann::json index = read_json_file(index_path, /*max_depth=*/16);
  FS_CHECK(index.is_object() && index.contains("weight_map") && index["weight_map"].is_object(),
           "{}: not a safetensors index (no 'weight_map' object)", index_path);
  std::map<std::string, std::string> map;
  for (const auto& [name, shard] : index["weight_map"].items()) {
    FS_CHECK(shard.is_string(), "{}: weight_map entry for tensor '{}' is not a string", index_path,
             name);
    const fs::path rel(shard.get<std::string>());
    // Shards live beside (or below) the index; a path escaping it is a malformed index.
    bool escapes = rel.empty() || rel.is_absolute();
    for (const fs::path& part : rel) escapes = escapes || part == "..";
    FS_CHECK(!escapes,
             "{}: tensor '{}' maps to shard '{}', which is not a path relative to the index",
             index_path, name, rel.string());
    // Normalised so that "./a" and "a" name one shard, opened once.
    map.emplace(name, rel.lexically_normal().string());
  }
  return map;
}

// The one checkpoint inside a directory: its single index, or else its single file.
std::string checkpoint_in_directory(const std::string& dir) {
  std::vector<std::string> indexes, files, ggufs;
  std::error_code ec;
  for (const fs::directory_entry& e : fs::directory_iterator(dir, ec)) {
    const std::string name = e.path().filename().string();
    if (name.ends_with(kIndexSuffix)) indexes.push_back(name);
    if (name.ends_with(kFileSuffix)) files.push_back(name);
    if (name.ends_with(kGgufSuffix)) ggufs.push_back(name);
  }
  std::sort(ggufs.begin(), ggufs.end());
  FS_CHECK(!ec, "{}: cannot list directory: {}", dir, ec.message());
  std::sort(indexes.begin(), indexes.end());
  std::sort(files.begin(), files.end());
  auto list = [](const std::vector<std::string>& v) {
    return fmt::format("{}", fmt::join(v, ", "));
  };

  if (indexes.size() == 1) {
    // Every .safetensors file beside the index must be one of its shards; another file (a
    // variant such as *.fp16.safetensors, or a stale unsharded copy) makes the choice ambiguous.
    const std::string index = (fs::path(dir) / indexes[0]).string();
    std::set<std::string> shards;
    for (const auto& [name, shard] : read_weight_map(index)) shards.insert(shard);
    for (const std::string& f : files) {
      FS_CHECK(shards.count(f) != 0,
               "{}: holds both the index '{}' and '{}', which it does not list; pass one file", dir,
               indexes[0], f);
    }
    return index;
  }
  FS_CHECK(indexes.empty(), "{}: holds several shard indexes ({}); pass one of them", dir,
           list(indexes));
  if (files.empty() && !ggufs.empty()) {
    FS_CHECK(ggufs.size() == 1, "{}: holds several GGUF files ({}); pass one of them", dir,
             list(ggufs));
    return (fs::path(dir) / ggufs[0]).string();
  }
  FS_CHECK(!files.empty(), "{}: holds no *.safetensors file, *.safetensors.index.json or *.gguf",
           dir);
  FS_CHECK(files.size() == 1, "{}: holds several safetensors files ({}); pass one of them", dir,
           list(files));
  return (fs::path(dir) / files[0]).string();
}

}  // namespace

TensorSource TensorSource::open(const std::string& path) {
  TensorSource src;
  src.path_ = path;
  std::error_code ec;
  std::string target = path;
  if (fs::is_directory(path, ec)) target = checkpoint_in_directory(path);

  if (fs::is_regular_file(target, ec) && looks_like_gguf(target)) {
    src.gguf_ = GgufFile::open(target);
    for (const GgufTensorInfo& g : src.gguf_->tensors()) {
      TensorInfo t;
      t.name = g.name;
      t.dtype = g.type == GgmlType::F16    ? DType::F16
                : g.type == GgmlType::BF16 ? DType::BF16
                                           : DType::F32;
      t.shape = g.shape;
      t.begin = static_cast<size_t>(g.offset);
      t.nbytes = g.nbytes;
      src.gguf_infos_.push_back(std::move(t));
    }
    return src;
  }
  if (!target.ends_with(".json")) {
    src.files_.push_back(SafetensorsFile::open(target));
    for (const TensorInfo& t : src.files_[0]->tensors()) src.index_.emplace(t.name, 0);
    src.resolve_fp8();
    return src;
  }

  // Sharded: open each shard once, then require the index and the shards to agree exactly.
  const std::map<std::string, std::string> weight_map = read_weight_map(target);
  std::map<std::string, std::vector<std::string>> by_shard;
  for (const auto& [name, shard] : weight_map) by_shard[shard].push_back(name);
  const fs::path dir = fs::path(target).parent_path();
  for (const auto& [shard, names] : by_shard) {
    const std::string shard_path = (dir / shard).string();
    std::shared_ptr<const SafetensorsFile> file;
    try {
      file = SafetensorsFile::open(shard_path);
    } catch (const Error& e) {
      fail("{}: shard '{}' (listed for tensor '{}'): {}", target, shard, names.front(), e.what());
    }
    const size_t k = src.files_.size();
    src.files_.push_back(file);
    for (const std::string& name : names) {
      FS_CHECK(file->find(name) != nullptr,
               "{}: tensor '{}' is mapped to shard '{}', which does not contain it", target, name,
               shard_path);
      src.index_.emplace(name, k);
    }
    for (const TensorInfo& t : file->tensors()) {
      auto it = weight_map.find(t.name);
      FS_CHECK(it != weight_map.end() && it->second == shard,
               "{}: shard '{}' holds tensor '{}', which the weight_map {}", target, shard_path,
               t.name,
               it == weight_map.end() ? "does not list" : "assigns to '" + it->second + "'");
    }
  }
  src.resolve_fp8();
  return src;
}

void TensorSource::resolve_fp8() {
  std::map<std::string, const TensorInfo*, std::less<>> infos;
  std::vector<std::pair<std::string, std::string>> quant_metadata;
  for (const auto& file : files_) {
    for (const TensorInfo& t : file->tensors()) infos.emplace(t.name, &t);
    auto q = file->metadata().find("_quantization_metadata");
    if (q != file->metadata().end()) quant_metadata.emplace_back(file->path(), q->second);
  }
  fp8_ = resolve_fp8_scales(path_, infos, quant_metadata, [&](const std::string& name) {
    return files_[index_.find(name)->second]->tensor(name);
  });
}

std::vector<std::string> TensorSource::names() const {
  std::vector<std::string> out;
  if (gguf_) {
    for (const TensorInfo& t : gguf_infos_) out.push_back(t.name);
    return out;
  }
  out.reserve(index_.size());
  for (const auto& [name, k] : index_)
    if (fp8_.auxiliary.count(name) == 0) out.push_back(name);
  return out;
}

bool TensorSource::contains(std::string_view name) const {
  if (gguf_) return gguf_->find(name) != nullptr;
  return index_.find(name) != index_.end() && fp8_.auxiliary.find(name) == fp8_.auxiliary.end();
}

const TensorInfo* TensorSource::find(std::string_view name) const {
  if (gguf_) {
    auto it = std::lower_bound(gguf_infos_.begin(), gguf_infos_.end(), name,
                               [](const TensorInfo& t, std::string_view n) { return t.name < n; });
    return it != gguf_infos_.end() && it->name == name ? &*it : nullptr;
  }
  if (!contains(name)) return nullptr;
  return files_[index_.find(name)->second]->find(name);
}

Tensor TensorSource::tensor(std::string_view name) const {
  FS_CHECK(contains(name), "{}: no tensor named '{}'", path_, name);
  if (gguf_) return gguf_->tensor(name);
  const Tensor t = files_[index_.find(name)->second]->tensor(name);
  if (t.dtype() != DType::F8_E4M3 && t.dtype() != DType::F8_E5M2) return t;
  auto scale = fp8_.scale_of.find(name);
  return dequantize_fp8(t, scale == fp8_.scale_of.end() ? 1.f : scale->second.value);
}

std::string TensorSource::storage_summary() const {
  std::map<std::string, int> counts;
  if (gguf_) {
    for (const GgufTensorInfo& t : gguf_->tensors()) ++counts[ggml_type_name(t.type_id)];
    std::vector<std::string> parts;
    for (const auto& [type, n] : counts) parts.push_back(fmt::format("{} x {}", type, n));
    const std::string arch = gguf_->string_value("general.architecture");
    return fmt::format("GGUF v{} ({}){}", gguf_->version(), fmt::join(parts, ", "),
                       arch.empty() ? "" : "; general.architecture " + arch);
  }
  for (const auto& [name, k] : index_)
    if (fp8_.auxiliary.count(name) == 0)
      ++counts[std::string(dtype_name(files_[k]->find(name)->dtype))];
  std::vector<std::string> parts;
  for (const auto& [dtype, n] : counts) parts.push_back(fmt::format("{} x {}", dtype, n));
  std::string s = fmt::format("safetensors ({})", fmt::join(parts, ", "));
  if (!fp8_.scheme.empty())
    s += fmt::format("; {} scales on {} fp8 weights", fp8_.scheme, fp8_.scale_of.size());
  return s;
}

const std::string& TensorSource::file_of(std::string_view name) const {
  if (gguf_) {
    FS_CHECK(gguf_->find(name) != nullptr, "{}: no tensor named '{}'", path_, name);
    return gguf_->path();
  }
  auto it = index_.find(name);
  FS_CHECK(it != index_.end(), "{}: no tensor named '{}'", path_, name);
  return files_[it->second]->path();
}

}  // namespace freeswim::io
