// The cross-attention cache on the GPU: pinned host memory and the asynchronous copies of the
// transfer stream, a guide step then reuse steps with the cache in host memory giving the same
// bits as with the cache on the device (random head_dim-64 model: the Hopper attention kernels),
// the Auto decision, and the out-of-memory message naming --cache-memory host while a cache is
// held on the device.
#include <gtest/gtest.h>

#include <cstring>
#include <string>

#include "core/device_memory.h"
#include "core/error.h"
#include "freeswim/attention_cache.h"
#include "models/wan_dit.h"
#include "test_util.h"

namespace freeswim::cuda_test {
namespace {

using models::DitInput;
using models::WanDit;
using models::WanDitConfig;

bool same_bits(const Tensor& a, const Tensor& b) {
  if (!a.defined() || !b.defined() || a.dtype() != b.dtype() || a.shape() != b.shape())
    return false;
  const Tensor x = a.to(Device::CPU), y = b.to(Device::CPU);
  return std::memcmp(x.raw(), y.raw(), x.nbytes()) == 0;
}

TEST(CudaCache, AsyncCopiesThroughPinnedMemoryRoundTrip) {
  const Tensor cpu = random_cpu({3, 1 << 20}, 1);  // 12 MiB: long enough to overlap
  // Computed on the compute stream right before the copy: the copy must wait for it.
  const Tensor gpu = ops::add(to_cuda(cpu, DType::F32), to_cuda(cpu, DType::F32));
  const Tensor host = Tensor::empty_pinned(gpu.shape(), gpu.dtype(), Device::CUDA);
  ASSERT_EQ(host.device(), Device::CPU);
  AsyncCopy down = copy_async(host, gpu);
  EXPECT_TRUE(down.pending());
  down.host_waits();
  EXPECT_FALSE(down.pending());
  const std::vector<float> want = cpu.to_float_vector();
  const float* h = host.data<float>();
  for (size_t i = 0; i < want.size(); i += 9973) ASSERT_EQ(h[i], 2 * want[i]) << i;
  // Back up, consumed by the compute stream only: a kernel queued after compute_waits reads it.
  const Tensor back = Tensor::empty(gpu.shape(), gpu.dtype(), Device::CUDA);
  copy_async(back, host).compute_waits();
  EXPECT_TRUE(same_bits(ops::add(back, gpu), ops::add(gpu, gpu)));
}

// Guide, reuse, reuse, guide, reuse (the pipeline's pattern with --cache-every 3) with the
// cache in `cache`; the predictions.
std::vector<Tensor> cache_steps(const WanDit& dit, CrossAttentionCache& cache, uint64_t seed) {
  const WanDitConfig& c = dit.config();
  const Shape lat{16, 3, 18, 22};
  FreeSwimParams fsp;
  fsp.dh = 3;
  fsp.dw = 4;
  fsp.attn_scale = freeswim_attention_scale(int64_t{6} * 8, c.head_dim);
  const Tensor context = random_cpu({20, c.text_dim}, seed);
  std::vector<Tensor> out;
  const StepKind kinds[] = {StepKind::Guide, StepKind::Reuse, StepKind::Reuse, StepKind::Guide,
                            StepKind::Reuse};
  for (size_t s = 0; s < std::size(kinds); ++s) {
    DitInput in{random_cpu(lat, seed + 1 + s), 900.f - 100.f * static_cast<float>(s), context};
    out.push_back(dit.forward(in, kinds[s], &fsp, &cache).to(Device::CPU));
    cache.sync();
  }
  return out;
}

WanDitConfig head_dim_64() {
  WanDitConfig c;
  c.heads = 2;
  c.head_dim = 64;
  c.num_layers = 3;
  c.ffn_dim = 256;
  c.text_dim = 64;
  return c;
}

TEST(CudaCache, HostPlacementGuideThenReuseEqualsDeviceBitForBit) {
  const auto gpu = WanDit::random(head_dim_64(), Device::CUDA, 5);
  CrossAttentionCache on_device(CachePlacement::Device), on_host(CachePlacement::Host);
  const std::vector<Tensor> want = cache_steps(*gpu, on_device, 21);
  EXPECT_EQ(on_device.placement(), CachePlacement::Device);
  for (const Tensor& b : on_device.blocks) EXPECT_EQ(b.device(), Device::CUDA);
  EXPECT_GE(device_cache_bytes(Device::CUDA), on_device.bytes());

  {
    // Precondition: the forward itself is deterministic, so that a difference below is the
    // cache's.
    CrossAttentionCache again(CachePlacement::Device);
    const std::vector<Tensor> rerun = cache_steps(*gpu, again, 21);
    for (size_t s = 0; s < rerun.size(); ++s)
      ASSERT_TRUE(same_bits(rerun[s], want[s])) << "device cache rerun, step " << s;
  }
  const size_t counted_before = device_cache_bytes(Device::CUDA);
  const std::vector<Tensor> got = cache_steps(*gpu, on_host, 21);
  EXPECT_EQ(on_host.placement(), CachePlacement::Host);
  // Host placement holds no device memory for the out-of-memory message to count.
  EXPECT_EQ(device_cache_bytes(Device::CUDA), counted_before);
  ASSERT_EQ(on_host.size(), on_device.size());
  EXPECT_EQ(on_host.bytes(), on_device.bytes());
  for (size_t i = 0; i < on_host.size(); ++i) {
    EXPECT_EQ(on_host.blocks[i].device(), Device::CPU) << i;
    EXPECT_TRUE(same_bits(on_host.blocks[i], on_device.blocks[i])) << "cache block " << i;
  }
  ASSERT_EQ(got.size(), want.size());
  for (size_t s = 0; s < got.size(); ++s) EXPECT_TRUE(same_bits(got[s], want[s])) << "step " << s;
}

TEST(CudaCache, AutoKeepsASmallCacheOnTheGpuAndSaysSo) {
  const auto gpu = WanDit::random(head_dim_64(), Device::CUDA, 6);
  CrossAttentionCache cache;  // Auto
  std::vector<std::string> log;
  cache.set_log([&](const std::string& line) { log.push_back(line); });
  cache_steps(*gpu, cache, 31);
  EXPECT_EQ(cache.placement(), CachePlacement::Device);
  ASSERT_EQ(log.size(), 1u);  // decided once, at the first guide step
  EXPECT_NE(log[0].find("on the GPU"), std::string::npos) << log[0];
  EXPECT_NE(log[0].find("GiB free"), std::string::npos) << log[0];
  // A margin larger than any GPU sends it to host memory.
  CrossAttentionCache tight;
  tight.set_activation_margin(size_t{1} << 50);
  std::vector<std::string> log2;
  tight.set_log([&](const std::string& line) { log2.push_back(line); });
  cache_steps(*gpu, tight, 31);
  EXPECT_EQ(tight.placement(), CachePlacement::Host);
  ASSERT_EQ(log2.size(), 1u);
  EXPECT_NE(log2[0].find("pinned host memory"), std::string::npos) << log2[0];
}

std::string out_of_memory_message() {
  try {
    Tensor::empty({int64_t{1} << 48}, DType::F32, Device::CUDA);  // 1 PiB
  } catch (const OutOfMemory& e) {
    return e.what();
  }
  ADD_FAILURE() << "expected OutOfMemory";
  return {};
}

TEST(CudaCache, OutOfMemoryNamesCacheMemoryHostWhileACacheIsOnTheGpu) {
  const std::string without = out_of_memory_message();
  EXPECT_NE(without.find("--size"), std::string::npos) << without;
  EXPECT_EQ(without.find("--cache-memory"), std::string::npos) << without;
  EXPECT_EQ(without.find("--offload"), std::string::npos) << without;  // no such flag
  {
    CrossAttentionCache cache(CachePlacement::Device);
    cache.begin_store(1);
    cache.store(0, to_cuda(random_cpu({64, 2, 64}, 3), DType::BF16));
    const std::string with = out_of_memory_message();
    EXPECT_NE(with.find("--cache-memory host"), std::string::npos) << with;
    EXPECT_NE(with.find("--size"), std::string::npos) << with;
  }
  // Once the cache is gone, the hint goes with it.
  EXPECT_EQ(out_of_memory_message().find("--cache-memory"), std::string::npos);
}

}  // namespace
}  // namespace freeswim::cuda_test
