// The CUDA backend tests' main: registers the backend with the attention kernels named on the
// command line (--gpu-kernels=auto|hopper|portable, default auto), so that one binary runs the
// whole suite on either path (tests/cuda_backend/CMakeLists.txt registers it twice with ctest).
// Registration touches no GPU, so listing the tests works on machines without one.
#include <gtest/gtest.h>

#include <cstdio>
#include <cstring>
#include <string>

#include "core/error.h"
#include "ops/cuda/cuda_backend.h"

int main(int argc, char** argv) {
  testing::InitGoogleTest(&argc, argv);  // removes the --gtest_ flags
  freeswim::ops::cuda::CudaBackendOptions options;
  constexpr const char* kFlag = "--gpu-kernels=";
  for (int i = 1; i < argc; ++i) {
    if (std::strncmp(argv[i], kFlag, std::strlen(kFlag)) == 0) {
      try {
        options.kernels = freeswim::ops::cuda::parse_gpu_kernels(argv[i] + std::strlen(kFlag));
      } catch (const freeswim::Error& e) {
        std::fprintf(stderr, "%s\n", e.what());
        return 2;
      }
    } else {
      std::fprintf(stderr, "unknown argument %s (--gpu-kernels=auto|hopper|portable)\n", argv[i]);
      return 2;
    }
  }
  freeswim::ops::cuda::register_cuda_backend(options);
  if (!GTEST_FLAG_GET(list_tests))
    std::fprintf(stderr, "CUDA backend: --gpu-kernels=%s\n",
                 freeswim::ops::cuda::gpu_kernels_name(options.kernels));
  return RUN_ALL_TESTS();
}
