#include "pipeline/resume.h"

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "io/safetensors.h"

namespace freeswim::pipeline {

namespace {
constexpr const char* kMetaKey = "freeswim_resume";
constexpr int kVersion = 1;
}  // namespace

void save_resume(const std::string& path, const ResumeRecord& r) {
  nlohmann::json meta;
  meta["version"] = kVersion;
  meta["fingerprint"] = r.fingerprint;
  meta["stage"] = r.stage;
  meta["next_step"] = r.state.next_step;
  meta["scheduler"] = r.state.scheduler.meta;
  meta["has_guide"] = r.state.has_guide;
  meta["guide_step"] = r.state.guide_step;
  std::vector<std::pair<std::string, Tensor>> tensors{{"latents", r.state.latents}};
  nlohmann::json arrays = nlohmann::json::array();
  for (const auto& [name, values] : r.state.scheduler.arrays) {
    arrays.push_back(name);
    tensors.emplace_back("scheduler." + name,
                         Tensor::from_vector({static_cast<int64_t>(values.size())}, values));
  }
  meta["scheduler_arrays"] = arrays;
  if (r.state.has_guide) tensors.emplace_back("guide_latents", r.state.guide_latents);
  io::write_safetensors(path, tensors, {{kMetaKey, meta.dump()}});
}

ResumeRecord load_resume(const std::string& path, const std::string& expected_fingerprint) {
  const auto file = io::SafetensorsFile::open(path);
  const auto it = file->metadata().find(kMetaKey);
  FS_CHECK(it != file->metadata().end(), "--resume: '{}' is not a FreeSwim resume state", path);
  ResumeRecord r;
  try {
    const auto meta = nlohmann::json::parse(it->second);
    FS_CHECK(meta.at("version").get<int>() == kVersion,
             "--resume: '{}' was written by another version", path);
    r.fingerprint = meta.at("fingerprint").get<std::string>();
    FS_CHECK(r.fingerprint == expected_fingerprint,
             "--resume: '{}' was written for other settings (prompt, size, frames, steps, seed, "
             "model or "
             "attention); run without --resume to start over",
             path);
    r.stage = meta.at("stage").get<std::string>();
    FS_CHECK(r.stage == "base" || r.stage == "freeswim", "--resume: '{}': unknown stage '{}'", path,
             r.stage);
    r.state.next_step = meta.at("next_step").get<int>();
    r.state.scheduler.meta = meta.at("scheduler");
    for (const auto& name : meta.at("scheduler_arrays")) {
      const Tensor t = file->tensor("scheduler." + name.get<std::string>()).to(DType::F32);
      r.state.scheduler.arrays.emplace_back(
          name.get<std::string>(),
          std::vector<float>(t.data<float>(), t.data<float>() + t.numel()));
    }
    r.state.latents = file->tensor("latents").to(DType::F32).clone();
    r.state.has_guide = meta.at("has_guide").get<bool>();
    r.state.guide_step = meta.at("guide_step").get<int>();
    if (r.state.has_guide)
      r.state.guide_latents = file->tensor("guide_latents").to(DType::F32).clone();
  } catch (const Error&) {
    throw;
  } catch (const std::exception& e) {
    fail("--resume: '{}' is corrupt ({})", path, e.what());
  }
  return r;
}

}  // namespace freeswim::pipeline
