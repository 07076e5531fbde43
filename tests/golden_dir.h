// The golden reference directory of the build (FREESWIM_GOLDEN_DIR: ../shared/golden by default),
// one definition for the tests that read it.
#pragma once

#include <string>

namespace freeswim {

inline const std::string kGolden = FREESWIM_GOLDEN_DIR;

}  // namespace freeswim
