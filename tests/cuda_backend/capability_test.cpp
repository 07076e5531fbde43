// Which GPUs this build's CUDA kernels can run on and which attention kernels run there
// (ops/cuda/cuda_backend.h: cuda_capability_problem, cuda_kernel_path, parse_gpu_kernels). Host
// functions: no GPU needed, so this test runs everywhere.
#include <gtest/gtest.h>

#include <string>

#include "core/error.h"
#include "ops/cuda/cuda_backend.h"

namespace freeswim::ops::cuda {
namespace {

TEST(CudaCapability, AmpereAndLaterAreSupported) {
  for (const auto& [major, minor] :
       {std::pair{8, 0}, {8, 6}, {8, 7}, {8, 9}, {9, 0}, {10, 0}, {10, 3}, {12, 0}, {12, 1}})
    EXPECT_EQ(cuda_capability_problem("some GPU", major, minor), "") << major << "." << minor;
}

TEST(CudaCapability, OlderGpusAreRefusedWithNameCapabilityAndWhatIsNeeded) {
  struct Case {
    const char* name;
    int major, minor;
  };
  for (const Case& c :
       {Case{"Tesla V100-SXM2-32GB", 7, 0}, Case{"NVIDIA GeForce RTX 2080 Ti", 7, 5},
        Case{"Tesla P100-PCIE-16GB", 6, 0}}) {
    const std::string why = cuda_capability_problem(c.name, c.major, c.minor);
    ASSERT_FALSE(why.empty()) << c.name;
    EXPECT_NE(why.find(c.name), std::string::npos) << why;
    EXPECT_NE(why.find(std::to_string(c.major) + "." + std::to_string(c.minor)), std::string::npos)
        << why;
    EXPECT_NE(why.find("8.0"), std::string::npos) << why;
  }
  EXPECT_NE(cuda_capability_problem("", 7, 5).find("the GPU"), std::string::npos);
}

TEST(CudaCapability, HopperKernelsRunOnComputeCapability90AloneAndCanBeTurnedOff) {
  const std::string hopper = cuda_kernel_path(9, 0, true);
  const std::string portable = cuda_kernel_path(8, 0, true);
  EXPECT_NE(hopper.find("Hopper"), std::string::npos) << hopper;
  EXPECT_NE(portable.find("portable"), std::string::npos) << portable;
  // sm_90a machine code runs on 9.0 only: Blackwell, Ada and Ampere take the portable kernels.
  for (const auto& [major, minor] : {std::pair{8, 0}, {8, 6}, {8, 9}, {10, 0}, {12, 0}})
    EXPECT_EQ(cuda_kernel_path(major, minor, true), portable) << major << "." << minor;
  EXPECT_EQ(cuda_kernel_path(9, 0, false), portable);  // a build without them
  EXPECT_EQ(cuda_kernel_path(9, 0, true, GpuKernels::portable), portable);
  // The portable blocks' shape: narrow where the caller says the SMs take them, or when forced.
  const std::string narrow = cuda_kernel_path(8, 6, true, GpuKernels::automatic, true);
  EXPECT_NE(narrow.find("narrow blocks"), std::string::npos) << narrow;
  EXPECT_NE(portable.find("wide blocks"), std::string::npos) << portable;
  EXPECT_EQ(cuda_kernel_path(9, 0, true, GpuKernels::portable_narrow), narrow);
  EXPECT_EQ(cuda_kernel_path(9, 0, true, GpuKernels::hopper, true), hopper);
  EXPECT_EQ(cuda_kernel_path(9, 0, true, GpuKernels::hopper), hopper);
}

TEST(CudaCapability, GpuKernelsFlagValues) {
  EXPECT_EQ(parse_gpu_kernels("auto"), GpuKernels::automatic);
  EXPECT_EQ(parse_gpu_kernels("hopper"), GpuKernels::hopper);
  EXPECT_EQ(parse_gpu_kernels("portable"), GpuKernels::portable);
  EXPECT_EQ(parse_gpu_kernels("portable-narrow"), GpuKernels::portable_narrow);
  for (const char* bad : {"", "Hopper", "sm_80", "automatic", "portable "}) {
    try {
      parse_gpu_kernels(bad);
      ADD_FAILURE() << "accepted '" << bad << "'";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("--gpu-kernels"), std::string::npos) << e.what();
    }
  }
  for (GpuKernels k : {GpuKernels::automatic, GpuKernels::hopper, GpuKernels::portable,
                       GpuKernels::portable_narrow})
    EXPECT_EQ(parse_gpu_kernels(gpu_kernels_name(k)), k);
}

}  // namespace
}  // namespace freeswim::ops::cuda
