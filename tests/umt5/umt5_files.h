// The tiny UMT5 checkpoints and configuration of the golden directory, in both namings.
#pragma once

#include <string>

#include "golden_dir.h"

namespace freeswim {

inline const std::string kConfig = kGolden + "/umt5_tiny.config.json";
inline const std::string kHf = kGolden + "/umt5_tiny.hf.safetensors";
inline const std::string kOriginal = kGolden + "/umt5_tiny.original.safetensors";

}  // namespace freeswim
