// Which GPUs this build's CUDA kernels can run on (ops/cuda/cuda_backend.h:
// cuda_capability_problem). A host function: no GPU needed, so this test runs everywhere.
#include <gtest/gtest.h>

#include <string>

#include "ops/cuda/cuda_backend.h"

namespace freeswim::ops::cuda {
namespace {

TEST(CudaCapability, HopperIsTheOneSupported) {
  EXPECT_EQ(cuda_capability_problem("NVIDIA H200", 9, 0), "");
  EXPECT_EQ(cuda_capability_problem("NVIDIA H100 80GB HBM3", 9, 0), "");
}

TEST(CudaCapability, OthersAreRefusedWithNameCapabilityAndWhatIsNeeded) {
  struct Case {
    const char* name;
    int major, minor;
  };
  for (const Case& c : {Case{"NVIDIA GeForce RTX 4090", 8, 9}, Case{"NVIDIA A100-SXM4-80GB", 8, 0},
                        Case{"NVIDIA B200", 10, 0}, Case{"NVIDIA GeForce RTX 3090", 8, 6}}) {
    const std::string why = cuda_capability_problem(c.name, c.major, c.minor);
    ASSERT_FALSE(why.empty()) << c.name;
    EXPECT_NE(why.find(c.name), std::string::npos) << why;
    EXPECT_NE(why.find(std::to_string(c.major) + "." + std::to_string(c.minor)), std::string::npos)
        << why;
    EXPECT_NE(why.find("sm_90a"), std::string::npos) << why;
  }
  EXPECT_NE(cuda_capability_problem("", 7, 5).find("the GPU"), std::string::npos);
}

}  // namespace
}  // namespace freeswim::ops::cuda
