// --gpus validation (pipeline/gpus.h): every refusal names the flag.
#include <gtest/gtest.h>

#include "core/error.h"
#include "pipeline/gpus.h"

namespace freeswim::pipeline {
namespace {

std::string refusal(int gpus, Device device, GpuInventory inv) {
  try {
    check_gpus(gpus, device, inv);
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

TEST(GpusFlag, OneGpuAlwaysRuns) {
  EXPECT_EQ(refusal(1, Device::CPU, {}), "");
  EXPECT_EQ(refusal(1, Device::CUDA, {1, true}), "");
}

TEST(GpusFlag, RefusalsNameTheFlag) {
  for (int n : {0, 3, 5, 16, -2}) {
    const std::string e = refusal(n, Device::CUDA, {8, true});
    EXPECT_NE(e.find("--gpus " + std::to_string(n)), std::string::npos) << e;
    EXPECT_NE(e.find("1, 2, 4 or 8"), std::string::npos) << e;
  }
  std::string e = refusal(2, Device::CPU, {8, true});
  EXPECT_NE(e.find("--gpus 2 needs --device cuda"), std::string::npos) << e;
  e = refusal(4, Device::CUDA, {2, true});
  EXPECT_NE(e.find("--gpus 4: this process sees 2 GPU(s)"), std::string::npos) << e;
  e = refusal(2, Device::CUDA, {2, false});
  EXPECT_NE(e.find("without NCCL"), std::string::npos) << e;
}

// Everything in place: refused while kRefuseSeveralGpusUntilVerified says so (saying why), and
// that is the only refusal left.
TEST(GpusFlag, SeveralGpusRefusedOnlyUntilVerified) {
  for (int n : {2, 4, 8}) {
    const std::string e = refusal(n, Device::CUDA, {8, true});
    if (kRefuseSeveralGpusUntilVerified) {
      EXPECT_NE(e.find("--gpus " + std::to_string(n) + ": not available yet"), std::string::npos)
          << e;
      EXPECT_NE(e.find("per-device state"), std::string::npos) << e;
    } else {
      EXPECT_EQ(e, "");
    }
  }
}

}  // namespace
}  // namespace freeswim::pipeline
