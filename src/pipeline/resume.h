// --resume: after every denoising step the state needed to continue (stage, step, latents,
// scheduler history, the inputs of the last guide step) is written beside the output as a
// safetensors file (atomically: a kill never leaves a half-written state). A resumed run
// continues from it and produces the same bits as an uninterrupted run. The state records a
// fingerprint of every setting that affects the result; a state from other settings is refused.
#pragma once

#include <optional>
#include <string>

#include "pipeline/denoise.h"

namespace freeswim::pipeline {

struct ResumeRecord {
  std::string fingerprint;
  std::string stage;  // "base" or "freeswim"
  StageState state;
};

void save_resume(const std::string& path, const ResumeRecord& r);
// Reads a state; throws Error naming the file when it is corrupt or its fingerprint differs.
ResumeRecord load_resume(const std::string& path, const std::string& expected_fingerprint);

}  // namespace freeswim::pipeline
