// cuDNN convolution for the VAE. cuDNN pads symmetrically only, so the causal time padding
// (front only) and ZeroPad2d((0, 1, 0, 1)) of the downsamplers go through an explicit padded
// copy first. The algorithm is chosen once per shape by cuDNN's heuristics (fastest first, with
// a bounded workspace) and cached; the workspace comes from the caching allocator, which hands
// the same block back on the next call of that shape.
#include "ops/cuda/conv3d.h"

#include <array>
#include <map>
#include <mutex>
#include <tuple>

#include "core/error.h"
#include "ops/cuda/cuda_check.h"
#include "ops/cuda/kernels.h"
#include "ops/cuda/vae_kernels.h"

#ifdef FREESWIM_HAVE_CUDNN
#include <cudnn.h>
#endif

namespace freeswim::ops::cuda {

#ifdef FREESWIM_HAVE_CUDNN

namespace {

// A workspace above this would compete with the activations for memory; such algorithms are
// skipped in favour of the next one.
constexpr size_t kMaxWorkspace = size_t{1} << 30;

void check_cudnn(cudnnStatus_t s, const char* what) {
  FS_CHECK(s == CUDNN_STATUS_SUCCESS, "cudnn: {} failed: {}", what, cudnnGetErrorString(s));
}

cudnnHandle_t handle() {
  static cudnnHandle_t h = [] {
    cudnnHandle_t created = nullptr;
    check_cudnn(cudnnCreate(&created), "cudnnCreate (conv3d)");
    check_cudnn(cudnnSetStream(created, stream()), "cudnnSetStream");
    return created;
  }();
  return h;
}

// RAII owners of the cuDNN descriptors of one call.
struct TensorDesc {
  cudnnTensorDescriptor_t d = nullptr;
  explicit TensorDesc(const std::array<int, 5>& dims) {
    check_cudnn(cudnnCreateTensorDescriptor(&d), "cudnnCreateTensorDescriptor");
    std::array<int, 5> strides{};
    strides[4] = 1;
    for (int i = 3; i >= 0; --i) strides[i] = strides[i + 1] * dims[i + 1];
    check_cudnn(cudnnSetTensorNdDescriptor(d, CUDNN_DATA_FLOAT, 5, dims.data(), strides.data()),
                "cudnnSetTensorNdDescriptor");
  }
  ~TensorDesc() { cudnnDestroyTensorDescriptor(d); }
  TensorDesc(const TensorDesc&) = delete;
  TensorDesc& operator=(const TensorDesc&) = delete;
};
struct FilterDesc {
  cudnnFilterDescriptor_t d = nullptr;
  explicit FilterDesc(const std::array<int, 5>& dims) {
    check_cudnn(cudnnCreateFilterDescriptor(&d), "cudnnCreateFilterDescriptor");
    check_cudnn(cudnnSetFilterNdDescriptor(d, CUDNN_DATA_FLOAT, CUDNN_TENSOR_NCHW, 5, dims.data()),
                "cudnnSetFilterNdDescriptor");
  }
  ~FilterDesc() { cudnnDestroyFilterDescriptor(d); }
  FilterDesc(const FilterDesc&) = delete;
  FilterDesc& operator=(const FilterDesc&) = delete;
};
struct ConvDesc {
  cudnnConvolutionDescriptor_t d = nullptr;
  ConvDesc(const std::array<int, 3>& pad, const std::array<int, 3>& stride) {
    check_cudnn(cudnnCreateConvolutionDescriptor(&d), "cudnnCreateConvolutionDescriptor");
    const std::array<int, 3> dilation{1, 1, 1};
    check_cudnn(cudnnSetConvolutionNdDescriptor(d, 3, pad.data(), stride.data(), dilation.data(),
                                                CUDNN_CROSS_CORRELATION, CUDNN_DATA_FLOAT),
                "cudnnSetConvolutionNdDescriptor");
    // Plain fp32 FMA: TF32 tensor cores would cost the VAE its fp32 parity.
    check_cudnn(cudnnSetConvolutionMathType(d, CUDNN_FMA_MATH), "cudnnSetConvolutionMathType");
  }
  ~ConvDesc() { cudnnDestroyConvolutionDescriptor(d); }
  ConvDesc(const ConvDesc&) = delete;
  ConvDesc& operator=(const ConvDesc&) = delete;
};

struct Choice {
  cudnnConvolutionFwdAlgo_t algo;
  size_t workspace;
};

using ShapeKey =
    std::tuple<std::array<int, 5>, std::array<int, 5>, std::array<int, 3>, std::array<int, 3>>;

Choice choose(const ShapeKey& key, const TensorDesc& xd, const FilterDesc& wd, const ConvDesc& cd,
              const TensorDesc& yd) {
  static std::mutex mu;
  static std::map<ShapeKey, Choice> cache;
  std::lock_guard<std::mutex> lock(mu);
  if (auto it = cache.find(key); it != cache.end()) return it->second;
  std::array<cudnnConvolutionFwdAlgoPerf_t, CUDNN_CONVOLUTION_FWD_ALGO_COUNT> perf{};
  int returned = 0;
  check_cudnn(
      cudnnGetConvolutionForwardAlgorithm_v7(handle(), xd.d, wd.d, cd.d, yd.d,
                                             static_cast<int>(perf.size()), &returned, perf.data()),
      "cudnnGetConvolutionForwardAlgorithm_v7");
  for (int i = 0; i < returned; ++i) {
    const auto& r = perf[static_cast<size_t>(i)];
    if (r.status != CUDNN_STATUS_SUCCESS || r.memory > kMaxWorkspace) continue;
    const Choice c{r.algo, r.memory};
    cache.emplace(key, c);
    return c;
  }
  fail(
      "conv3d: cuDNN offers no fp32 algorithm for input [{}, {}, {}, {}] and weight [{}, {}, {}, "
      "{}, {}]",
      std::get<0>(key)[1], std::get<0>(key)[2], std::get<0>(key)[3], std::get<0>(key)[4],
      std::get<1>(key)[0], std::get<1>(key)[1], std::get<1>(key)[2], std::get<1>(key)[3],
      std::get<1>(key)[4]);
}

int as_int(int64_t v, const char* what) {
  FS_CHECK(v >= 0 && v <= int64_t{1} << 30, "conv3d: {} {} is out of cuDNN's range", what, v);
  return static_cast<int>(v);
}

// The tensor in fp32 (a widened copy when it is bf16).
Tensor as_f32(const Tensor& t) {
  if (t.dtype() == DType::F32) return t;
  Tensor y = Tensor::empty(t.shape(), DType::F32, Device::CUDA);
  check_cuda(kernels::convert(t.raw(), t.dtype(), y.raw(), DType::F32, t.numel()), "convert");
  return y;
}

}  // namespace

Tensor conv3d(const Tensor& x_in, const Tensor& w_in, const Tensor& b, const Conv3dParams& p) {
  auto usable = [](const Tensor& t) {
    return t.defined() && t.device() == Device::CUDA &&
           (t.dtype() == DType::F32 || t.dtype() == DType::BF16);
  };
  FS_CHECK(usable(x_in) && usable(w_in),
           "conv3d: x {} and weight {} must be f32 or bf16 cuda tensors",
           x_in.defined() ? x_in.describe() : "none", w_in.defined() ? w_in.describe() : "none");
  FS_CHECK(x_in.ndim() == 4 && w_in.ndim() == 5 && w_in.dim(1) == x_in.dim(0),
           "conv3d: x {} does not match weight {}", x_in.describe(), w_in.describe());
  FS_CHECK(p.stride_t > 0 && p.stride_h > 0 && p.stride_w > 0 && p.pad_front >= 0 &&
               p.pad_back >= 0 && p.pad_top >= 0 && p.pad_bottom >= 0 && p.pad_left >= 0 &&
               p.pad_right >= 0,
           "conv3d: negative padding or non-positive stride");
  const int64_t Ci = x_in.dim(0), Fi = x_in.dim(1), Hi = x_in.dim(2), Wi = x_in.dim(3);
  const int64_t Co = w_in.dim(0), kt = w_in.dim(2), kh = w_in.dim(3), kw = w_in.dim(4);
  FS_CHECK(Fi + p.pad_front + p.pad_back >= kt && Hi + p.pad_top + p.pad_bottom >= kh &&
               Wi + p.pad_left + p.pad_right >= kw,
           "conv3d: input {} is smaller than the kernel {}", x_in.describe(), w_in.describe());
  if (b.defined())
    FS_CHECK(b.device() == Device::CUDA && b.dtype() == DType::F32 && b.numel() == Co,
             "conv3d: bias {} does not match weight {} (an f32 cuda vector expected)", b.describe(),
             w_in.describe());
  const int64_t Fo = (Fi + p.pad_front + p.pad_back - kt) / p.stride_t + 1;
  const int64_t Ho = (Hi + p.pad_top + p.pad_bottom - kh) / p.stride_h + 1;
  const int64_t Wo = (Wi + p.pad_left + p.pad_right - kw) / p.stride_w + 1;

  Tensor x = as_f32(x_in);
  const Tensor w = as_f32(w_in);
  Tensor y = Tensor::empty({Co, Fo, Ho, Wo}, DType::F32, Device::CUDA);
  if (y.numel() > 0 && Ci > 0) {
    // Symmetric padding goes to cuDNN; any asymmetric one becomes an explicit zero border.
    std::array<int, 3> pad{p.pad_front, p.pad_top, p.pad_left};
    if (p.pad_front != p.pad_back || p.pad_top != p.pad_bottom || p.pad_left != p.pad_right) {
      Tensor padded = Tensor::empty({Ci, Fi + p.pad_front + p.pad_back,
                                     Hi + p.pad_top + p.pad_bottom, Wi + p.pad_left + p.pad_right},
                                    DType::F32, Device::CUDA);
      check_cuda(kernels::pad3d(x.data<float>(), padded.data<float>(), Ci, Fi, Hi, Wi, p.pad_front,
                                p.pad_back, p.pad_top, p.pad_bottom, p.pad_left, p.pad_right),
                 "conv3d padding kernel");
      x = padded;
      pad = {0, 0, 0};
    }
    const std::array<int, 5> xdims{1, as_int(Ci, "channels"), as_int(x.dim(1), "frames"),
                                   as_int(x.dim(2), "height"), as_int(x.dim(3), "width")};
    const std::array<int, 5> wdims{as_int(Co, "out channels"), as_int(Ci, "channels"),
                                   as_int(kt, "kernel"), as_int(kh, "kernel"),
                                   as_int(kw, "kernel")};
    const std::array<int, 5> ydims{1, as_int(Co, "out channels"), as_int(Fo, "frames"),
                                   as_int(Ho, "height"), as_int(Wo, "width")};
    const std::array<int, 3> stride{p.stride_t, p.stride_h, p.stride_w};
    const TensorDesc xd(xdims), yd(ydims);
    const FilterDesc wd(wdims);
    const ConvDesc cd(pad, stride);
    const Choice c = choose(ShapeKey{xdims, wdims, pad, stride}, xd, wd, cd, yd);
    Tensor workspace;
    if (c.workspace > 0)
      workspace = Tensor::empty({static_cast<int64_t>(c.workspace)}, DType::U8, Device::CUDA);
    const float alpha = 1.f, beta = 0.f;
    check_cudnn(cudnnConvolutionForward(handle(), &alpha, xd.d, x.raw(), wd.d, w.raw(), cd.d,
                                        c.algo, c.workspace > 0 ? workspace.raw() : nullptr,
                                        c.workspace, &beta, yd.d, y.raw()),
                "cudnnConvolutionForward");
    if (b.defined())
      check_cuda(kernels::channel_affine(y.raw(), y.raw(), DType::F32, Co, Fo * Ho * Wo, nullptr,
                                         b.data<float>()),
                 "conv3d bias kernel");
  } else if (y.numel() > 0) {
    // No input channels: the bias alone.
    check_cuda(cudaMemsetAsync(y.raw(), 0, y.numel() * sizeof(float), stream()), "memset");
    if (b.defined())
      check_cuda(kernels::channel_affine(y.raw(), y.raw(), DType::F32, Co, Fo * Ho * Wo, nullptr,
                                         b.data<float>()),
                 "conv3d bias kernel");
  }
  if (x_in.dtype() == DType::F32) return y;
  Tensor out = Tensor::empty(y.shape(), x_in.dtype(), Device::CUDA);
  check_cuda(kernels::convert(y.raw(), DType::F32, out.raw(), out.dtype(), y.numel()), "convert");
  return out;
}

#else

Tensor conv3d(const Tensor&, const Tensor&, const Tensor&, const Conv3dParams&) {
  fail("conv3d on cuda needs cuDNN, which this build did not find: run the VAE on the CPU");
}

#endif

}  // namespace freeswim::ops::cuda
