// The CUDA backend's state kept per GPU (ops/cuda/per_device.h) on real devices: a block released
// on a thread with another device current goes back to the pool that handed it out; a second
// thread on the same GPU shares that GPU's pool, handles and caches; threads on different GPUs
// (two or more visible) each allocate on, and run products, convolutions and asynchronous copies
// on, their own GPU at once. The CPU-only checks of the container are per_device_test.cpp.
#include <cuda_runtime_api.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <exception>
#include <thread>
#include <vector>

#include "core/device_memory.h"
#include "core/error.h"
#include "ops/cpu/cpu_backend.h"
#include "test_util.h"

namespace freeswim::cuda_test {
namespace {

constexpr size_t kMiB = size_t{1} << 20;

int device_count() {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    cudaGetLastError();
    return 0;
  }
  return n;
}

// The device whose memory `p` is (-1 when the runtime cannot say).
int device_of(const void* p) {
  cudaPointerAttributes a{};
  if (cudaPointerGetAttributes(&a, p) != cudaSuccess) {
    cudaGetLastError();
    return -1;
  }
  return a.type == cudaMemoryTypeDevice ? a.device : -1;
}

// Runs f on a new thread with `device` current there; rethrows what it threw.
template <class F>
void on_thread(int device, F&& f) {
  std::exception_ptr error;
  std::thread t([&] {
    try {
      const cudaError_t e = cudaSetDevice(device);
      FS_CHECK(e == cudaSuccess, "cudaSetDevice({}): {}", device, cudaGetErrorString(e));
      f();
    } catch (...) {
      error = std::current_exception();
    }
  });
  t.join();
  if (error) std::rethrow_exception(error);
}

TEST(CudaPerDevice, ABlockReleasedOnAnotherThreadGoesBackToItsPool) {
  ops::cuda::release_cached_memory();
  const ops::cuda::MemoryStats before = ops::cuda::memory_stats();
  Tensor t = Tensor::empty({5 << 20}, kF32, Device::CUDA);  // 20 MiB on this thread's device 0
  const void* block = t.raw();
  EXPECT_EQ(device_of(block), 0);
  EXPECT_EQ(ops::cuda::memory_stats().in_use, before.in_use + 20 * kMiB);
  // On another thread: device 1 where there is one (its own pool made first by an allocation
  // there), else device 0 again. The last reference to t goes there.
  const int other = device_count() > 1 ? 1 : 0;
  on_thread(other, [&] {
    const Tensor mine = Tensor::empty({1 << 20}, kF32, Device::CUDA);  // 4 MiB
    EXPECT_EQ(device_of(mine.raw()), other);
    const ops::cuda::MemoryStats own = ops::cuda::memory_stats();
    t = Tensor();
    const ops::cuda::MemoryStats after = ops::cuda::memory_stats();
    if (other != 0) {
      // Device 1's pool is untouched by device 0's block.
      EXPECT_EQ(after.in_use, own.in_use);
      EXPECT_EQ(after.reserved, own.reserved);
    } else {
      EXPECT_EQ(after.in_use + 20 * kMiB, own.in_use);
    }
  });
  EXPECT_EQ(ops::cuda::memory_stats().in_use, before.in_use);
  // The block is cached in device 0's pool: the same request on device 0 gets it back.
  const Tensor again = Tensor::empty({5 << 20}, kF32, Device::CUDA);
  EXPECT_EQ(again.raw(), block);
}

TEST(CudaPerDevice, ASecondThreadOnTheSameGpuSharesItsState) {
  const Tensor x = random_cpu({64, 96}, 1), w = random_cpu({80, 96}, 2, -0.2f, 0.2f);
  const Tensor b = random_cpu({80}, 3);
  const Tensor cx = random_cpu({4, 3, 9, 11}, 4), cw = random_cpu({6, 4, 3, 3, 3}, 5, -0.3f, 0.3f);
  ops::Conv3dParams p;
  p.pad_front = p.pad_back = p.pad_top = p.pad_bottom = p.pad_left = p.pad_right = 1;
  p.precision = ops::ConvPrecision::TF32;
  // Here first: the algorithms are chosen and cached for device 0.
  const Tensor lin = ops::linear_gelu_tanh(to_cuda(x, kBF), to_cuda(w, kBF), to_cuda(b, kF32));
  const Tensor conv = ops::conv3d(to_cuda(cx, kF32), to_cuda(cw, kF32), {}, p);
  const ops::cuda::MemoryStats here = ops::cuda::memory_stats();
  on_thread(0, [&] {
    {
      // The same cached algorithms: the same bits.
      const Tensor lin2 = ops::linear_gelu_tanh(to_cuda(x, kBF), to_cuda(w, kBF), to_cuda(b, kF32));
      const Tensor conv2 = ops::conv3d(to_cuda(cx, kF32), to_cuda(cw, kF32), {}, p);
      EXPECT_EQ(count_differing(lin2, lin), 0);
      EXPECT_EQ(count_differing(conv2, conv), 0);
    }
    // The same pool: what this thread holds shows in the figures of device 0.
    const Tensor held = Tensor::empty({2 << 20}, kF32, Device::CUDA);  // 8 MiB
    EXPECT_EQ(ops::cuda::memory_stats().in_use, here.in_use + 8 * kMiB);
  });
  EXPECT_EQ(ops::cuda::memory_stats().in_use, here.in_use);
}

// Every visible GPU (up to 8) on its own thread, all at once, several rounds: each thread's
// tensors are on its device, its products (bf16 with an fp32 bias through the bias scratch, fused
// GELU), convolutions (timed algorithm search on each device) and pinned round trips match the
// CPU, and each device's pool counts its own thread's tensors only.
TEST(CudaPerDevice, ThreadsOnSeveralGpusRunAtOnce) {
  const int n = std::min(device_count(), 8);
  if (n < 2) GTEST_SKIP() << "needs two visible GPUs (this machine has " << n << ")";
  const Tensor x = random_cpu({96, 160}, 11, -2.f, 2.f), w = random_cpu({72, 160}, 12, -0.3f, 0.3f);
  const Tensor b = random_cpu({72}, 13);
  const Tensor lin_want =
      ops::cpu::cpu_backend().linear_gelu_tanh(as_seen(x, kBF), as_seen(w, kBF), b);
  const Tensor cx = random_cpu({5, 4, 10, 12}, 14),
               cw = random_cpu({7, 5, 3, 3, 3}, 15, -0.3f, 0.3f);
  const Tensor cb = random_cpu({7}, 16);
  ops::Conv3dParams p;
  p.pad_front = 2;  // causal: asymmetric, through the padded copy
  p.pad_top = p.pad_bottom = p.pad_left = p.pad_right = 1;
  const Tensor conv_want = ops::cpu::cpu_backend().conv3d(cx, cw, cb, p);
  const Tensor big = random_cpu({1 << 20}, 17);  // 4 MiB through pinned memory and back
  const std::vector<float> big_want = big.to_float_vector();

  constexpr int kRounds = 5;
  std::vector<double> lin_err(static_cast<size_t>(n), 1.0), conv_err(static_cast<size_t>(n), 1.0);
  std::vector<int> wrong_device(static_cast<size_t>(n), 0), wrong_copy(static_cast<size_t>(n), 0);
  std::vector<size_t> held(static_cast<size_t>(n), 0), counted(static_cast<size_t>(n), 0);
  std::vector<std::exception_ptr> errors(static_cast<size_t>(n));
  std::atomic<int> waiting{n};
  std::vector<std::thread> threads;
  for (int d = 0; d < n; ++d) {
    threads.emplace_back([&, d] {
      const auto i = static_cast<size_t>(d);
      try {
        const cudaError_t e = cudaSetDevice(d);
        FS_CHECK(e == cudaSuccess, "cudaSetDevice({}): {}", d, cudaGetErrorString(e));
        --waiting;
        while (waiting.load() > 0) std::this_thread::yield();
        const size_t base = ops::cuda::memory_stats().in_use;
        double le = 0, ce = 0;
        for (int r = 0; r < kRounds; ++r) {
          const Tensor gx = to_cuda(x, kBF), gw = to_cuda(w, kBF), gb = to_cuda(b, kF32);
          const Tensor lin = ops::linear_gelu_tanh(gx, gw, gb);
          const Tensor conv =
              ops::conv3d(to_cuda(cx, kF32), to_cuda(cw, kF32), to_cuda(cb, kF32), p);
          for (const Tensor* t : {&gx, &lin, &conv}) wrong_device[i] += device_of(t->raw()) != d;
          le = std::max(le, relative_l2(lin, lin_want));
          ce = std::max(ce, relative_l2(conv, conv_want));
          const Tensor gbig = to_cuda(big, kF32);
          const Tensor host = Tensor::empty_pinned(gbig.shape(), kF32, Device::CUDA);
          copy_async(host, gbig).host_waits();
          const Tensor back = Tensor::empty(gbig.shape(), kF32, Device::CUDA);
          copy_async(back, host).compute_waits();
          const Tensor got = back.to(Device::CPU);
          wrong_copy[i] += std::memcmp(got.raw(), big_want.data(), got.nbytes()) != 0;
        }
        lin_err[i] = le;
        conv_err[i] = ce;
        // 2 (d + 1) MiB: a whole number of the allocator's 2 MiB buckets.
        const Tensor mine = Tensor::empty({int64_t{d + 1} << 19}, kF32, Device::CUDA);
        held[i] = (static_cast<size_t>(d) + 1) * 2 * kMiB;
        counted[i] = ops::cuda::memory_stats().in_use - base;
      } catch (...) {
        errors[i] = std::current_exception();
      }
    });
  }
  for (std::thread& t : threads) t.join();
  for (int d = 0; d < n; ++d) {
    const auto i = static_cast<size_t>(d);
    if (errors[i]) {
      try {
        std::rethrow_exception(errors[i]);
      } catch (const std::exception& e) {
        ADD_FAILURE() << "GPU " << d << ": " << e.what();
      }
      continue;
    }
    EXPECT_EQ(wrong_device[i], 0) << "GPU " << d;
    EXPECT_LT(lin_err[i], 1e-2) << "GPU " << d;
    EXPECT_LT(conv_err[i], 1e-4) << "GPU " << d;
    EXPECT_EQ(wrong_copy[i], 0) << "GPU " << d;
    EXPECT_EQ(counted[i], held[i]) << "GPU " << d << ": its pool counts other threads' tensors";
  }
}

}  // namespace
}  // namespace freeswim::cuda_test
