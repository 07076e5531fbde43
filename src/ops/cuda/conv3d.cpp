// cuDNN convolution for the VAE. cuDNN pads symmetrically only, so the causal time padding
// (front only, first chunk only: later chunks carry two cached frames instead) and the
// downsamplers' ZeroPad2d((0, 1, 0, 1)) go through an explicit padded copy first; that copy is one
// memory pass per call, small next to the convolution it feeds.
//
// Math: ConvPrecision::FP32 pins CUDNN_FMA_MATH (no tensor cores); TF32 lets cuDNN run fp32 data
// through TF32 tensor cores, as PyTorch does when torch.backends.cudnn.allow_tf32 is on (its
// default), choosing by measurement between tensor-op and FMA algorithms (convolve() says why).
// CUDNN_TENSOR_OP_MATH_ALLOW_CONVERSION is not used: it also permits down-conversion of the data
// to fp16.
//
// Algorithm: once per (shape, precision), cuDNN's heuristics rank the algorithms; the first few
// that fit the workspace bound are run on the real data and timed, and the fastest is cached.
// Heuristics alone sometimes rank a slow 3D algorithm first; timing every algorithm (what
// cudnnFindConvolutionForwardAlgorithm does) would spend seconds on FFT variants that never win.
// The timed runs write the real output, and the winner runs once more when it was not the last
// one timed, so the search costs at most `candidates` extra convolutions per shape. The workspace
// comes from the caching allocator, which hands the same block back on the next call of that shape.
//
// The cuDNN handle and the algorithm cache are kept once per device (CudnnDevice, per_device.h):
// conv3d looks up the calling thread's device once and passes its state down.
#include "ops/cuda/conv3d.h"

#include <algorithm>
#include <array>
#include <atomic>
#include <map>
#include <memory>
#include <mutex>
#include <tuple>
#include <vector>

#include "core/error.h"
#include "ops/cuda/cuda_check.h"
#include "ops/cuda/kernels.h"
#include "ops/cuda/per_device.h"
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

// RAII owners of the cuDNN descriptors of one call.
// dims are always given as [N, C, D, H, W]; channels_last lays them out as NDHWC.
struct TensorDesc {
  cudnnTensorDescriptor_t d = nullptr;
  TensorDesc(const std::array<int, 5>& dims, bool channels_last) {
    check_cudnn(cudnnCreateTensorDescriptor(&d), "cudnnCreateTensorDescriptor");
    std::array<int, 5> strides{};
    if (channels_last) {
      strides[1] = 1;
      strides[4] = dims[1];
      strides[3] = strides[4] * dims[4];
      strides[2] = strides[3] * dims[3];
      strides[0] = strides[2] * dims[2];
    } else {
      strides[4] = 1;
      for (int i = 3; i >= 0; --i) strides[i] = strides[i + 1] * dims[i + 1];
    }
    check_cudnn(cudnnSetTensorNdDescriptor(d, CUDNN_DATA_FLOAT, 5, dims.data(), strides.data()),
                "cudnnSetTensorNdDescriptor");
  }
  ~TensorDesc() { cudnnDestroyTensorDescriptor(d); }
  TensorDesc(const TensorDesc&) = delete;
  TensorDesc& operator=(const TensorDesc&) = delete;
};
struct FilterDesc {
  cudnnFilterDescriptor_t d = nullptr;
  FilterDesc(const std::array<int, 5>& dims, bool channels_last) {
    check_cudnn(cudnnCreateFilterDescriptor(&d), "cudnnCreateFilterDescriptor");
    check_cudnn(cudnnSetFilterNdDescriptor(d, CUDNN_DATA_FLOAT,
                                           channels_last ? CUDNN_TENSOR_NHWC : CUDNN_TENSOR_NCHW, 5,
                                           dims.data()),
                "cudnnSetFilterNdDescriptor");
  }
  ~FilterDesc() { cudnnDestroyFilterDescriptor(d); }
  FilterDesc(const FilterDesc&) = delete;
  FilterDesc& operator=(const FilterDesc&) = delete;
};
struct ConvDesc {
  cudnnConvolutionDescriptor_t d = nullptr;
  ConvDesc(const std::array<int, 3>& pad, const std::array<int, 3>& stride, ConvPrecision prec) {
    check_cudnn(cudnnCreateConvolutionDescriptor(&d), "cudnnCreateConvolutionDescriptor");
    const std::array<int, 3> dilation{1, 1, 1};
    check_cudnn(cudnnSetConvolutionNdDescriptor(d, 3, pad.data(), stride.data(), dilation.data(),
                                                CUDNN_CROSS_CORRELATION, CUDNN_DATA_FLOAT),
                "cudnnSetConvolutionNdDescriptor");
    set_math(base_math(prec));
  }
  ~ConvDesc() { cudnnDestroyConvolutionDescriptor(d); }
  ConvDesc(const ConvDesc&) = delete;
  ConvDesc& operator=(const ConvDesc&) = delete;
  void set_math(cudnnMathType_t m) const {
    check_cudnn(cudnnSetConvolutionMathType(d, m), "cudnnSetConvolutionMathType");
  }
  static cudnnMathType_t base_math(ConvPrecision prec) {
    return prec == ConvPrecision::TF32 ? CUDNN_DEFAULT_MATH : CUDNN_FMA_MATH;
  }
};

struct Choice {
  cudnnConvolutionFwdAlgo_t algo;
  size_t workspace;
  cudnnMathType_t math;  // what the heuristic reported for the algorithm; set before each run
  bool channels_last;    // run on NDHWC copies of x, w and y (transposed around the call)
  bool same(const Choice& o) const {
    return algo == o.algo && math == o.math && channels_last == o.channels_last;
  }
};

// Candidates timed per new shape, from each ranking: the heuristic's best few (a correct but slow
// first pick is the case this guards against).
constexpr int kTimedTensorOp = 2, kTimedFma = 2, kTimedChannelsLast = 2;

std::atomic<int> g_layout{static_cast<int>(ConvLayout::timed)};

using ShapeKey = std::tuple<std::array<int, 5>, std::array<int, 5>, std::array<int, 3>,
                            std::array<int, 3>, ConvPrecision, int>;

// One GPU's cuDNN state: the handle (on the compute stream) and the algorithm chosen per shape.
// cuDNN allows a handle on one thread at a time: one thread per GPU, as the backend is used.
struct CudnnDevice {
  cudnnHandle_t handle = nullptr;
  std::mutex mu;  // over `cache`, held through a new shape's search
  std::map<ShapeKey, Choice> cache;
};

// Made at the first convolution of each device (with that device current) and kept for the life
// of the process: never destroyed.
CudnnDevice& cudnn_device() {
  static auto* all = new PerDevice<CudnnDevice>([](int) {
    auto c = std::make_unique<CudnnDevice>();
    check_cudnn(cudnnCreate(&c->handle), "cudnnCreate (conv3d)");
    check_cudnn(cudnnSetStream(c->handle, stream()), "cudnnSetStream");
    return c;
  });
  return all->get();
}

// Whether a reported algorithm computes at the requested precision.
bool math_allowed(cudnnMathType_t m, ConvPrecision prec) {
  if (prec == ConvPrecision::FP32) return m == CUDNN_FMA_MATH || m == CUDNN_DEFAULT_MATH;
  return m != CUDNN_TENSOR_OP_MATH_ALLOW_CONVERSION;
}

// The heuristic's usable candidates for a shape, best first, with the descriptor's math set to
// `query` while it ranks them.
std::vector<Choice> candidates(cudnnHandle_t handle, const TensorDesc& xd, const FilterDesc& wd,
                               const ConvDesc& cd, const TensorDesc& yd, ConvPrecision prec,
                               cudnnMathType_t query, bool channels_last) {
  std::array<cudnnConvolutionFwdAlgoPerf_t, 2 * CUDNN_CONVOLUTION_FWD_ALGO_COUNT> perf{};
  int returned = 0;
  cd.set_math(query);
  check_cudnn(
      cudnnGetConvolutionForwardAlgorithm_v7(handle, xd.d, wd.d, cd.d, yd.d,
                                             static_cast<int>(perf.size()), &returned, perf.data()),
      "cudnnGetConvolutionForwardAlgorithm_v7");
  std::vector<Choice> out;
  for (int i = 0; i < returned; ++i) {
    const auto& r = perf[static_cast<size_t>(i)];
    if (r.status != CUDNN_STATUS_SUCCESS || r.memory > kMaxWorkspace ||
        !math_allowed(r.mathType, prec))
      continue;
    // FP32 runs with the descriptor's FMA math whatever the report says (DEFAULT would let
    // cuDNN pick TF32 on Hopper).
    const cudnnMathType_t m = prec == ConvPrecision::FP32 ? CUDNN_FMA_MATH : r.mathType;
    const Choice c{r.algo, r.memory, m, channels_last};
    const bool seen =
        std::any_of(out.begin(), out.end(), [&](const Choice& o) { return o.same(c); });
    if (!seen) out.push_back(c);
  }
  return out;
}

// One convolution's descriptors in both layouts and its (NCDHW) operands.
struct ConvArgs {
  const TensorDesc &xd, &xd_cl;  // NCDHW, NDHWC
  const void* x;
  const FilterDesc &wd, &wd_cl;
  const void* w;
  const ConvDesc& cd;
  const TensorDesc &yd, &yd_cl;
  void* y;
  int64_t ci, spatial_in, co, kernel, spatial_out;  // spatial: frames * height * width
};

void run_conv(cudnnHandle_t handle, const ConvArgs& a, const Choice& c, void* workspace) {
  a.cd.set_math(c.math);
  const float alpha = 1.f, beta = 0.f;
  void* ws = c.workspace > 0 ? workspace : nullptr;
  if (!c.channels_last) {
    check_cudnn(cudnnConvolutionForward(handle, &alpha, a.xd.d, a.x, a.wd.d, a.w, a.cd.d, c.algo,
                                        ws, c.workspace, &beta, a.yd.d, a.y),
                "cudnnConvolutionForward");
    return;
  }
  // cuDNN's tensor-core convolutions work on channels-last data; with NCDHW operands they
  // convert internally (or fall back to slower kernels). Here the conversion is explicit and
  // timed with the call: x and w to NDHWC, the product, y back to NCDHW (three memory passes).
  const Tensor xt = Tensor::empty({a.ci * a.spatial_in}, DType::F32, Device::CUDA);
  const Tensor wt = Tensor::empty({a.co * a.ci * a.kernel}, DType::F32, Device::CUDA);
  const Tensor yt = Tensor::empty({a.co * a.spatial_out}, DType::F32, Device::CUDA);
  check_cuda(kernels::transpose2d(a.x, xt.raw(), 4, a.ci, a.spatial_in), "transpose to NDHWC");
  check_cuda(kernels::weight_to_nhwc(static_cast<const float*>(a.w), wt.data<float>(), a.co, a.ci,
                                     a.kernel),
             "weight to NDHWC");
  check_cudnn(cudnnConvolutionForward(handle, &alpha, a.xd_cl.d, xt.raw(), a.wd_cl.d, wt.raw(),
                                      a.cd.d, c.algo, ws, c.workspace, &beta, a.yd_cl.d, yt.raw()),
              "cudnnConvolutionForward (NDHWC)");
  check_cuda(kernels::transpose2d(yt.raw(), a.y, 4, a.spatial_out, a.co), "transpose to NCDHW");
}

Tensor workspace_for(size_t bytes) {
  if (bytes == 0) return {};
  return Tensor::empty({static_cast<int64_t>(bytes)}, DType::U8, Device::CUDA);
}

// Runs the convolution on the calling thread's device, choosing (and caching) the algorithm on
// the first call of a shape there.
void convolve(const ShapeKey& key, const ConvArgs& a, ConvPrecision prec) {
  CudnnDevice& dev = cudnn_device();
  const cudnnHandle_t h = dev.handle;
  std::unique_lock<std::mutex> lock(dev.mu);
  if (auto it = dev.cache.find(key); it != dev.cache.end()) {
    const Choice c = it->second;
    lock.unlock();
    const Tensor ws = workspace_for(c.workspace);
    run_conv(h, a, c, ws.defined() ? ws.raw() : nullptr);
    return;
  }
  // TF32 allows tensor cores, it does not demand them: on the H200 the heuristic's first picks
  // for these NCDHW fp32 convolutions under CUDNN_DEFAULT_MATH computed in plain fp32 and ran at
  // half the speed of the FMA-math picks (cuda_backend_test, CudaConv3dPrecision). So TF32 times
  // the best few of an explicit CUDNN_TENSOR_OP_MATH ranking and of the FMA ranking together and
  // keeps the fastest: never slower than FP32, and on tensor cores where cuDNN has a faster
  // kernel for the shape.
  // TF32 also times the best channels-last tensor-op picks, transposes included (run_conv).
  std::vector<Choice> cands;
  const auto take = [&](std::vector<Choice> from, int count) {
    if (from.size() > static_cast<size_t>(count)) from.resize(static_cast<size_t>(count));
    for (const Choice& c : from) {
      const bool seen =
          std::any_of(cands.begin(), cands.end(), [&](const Choice& o) { return o.same(c); });
      if (!seen) cands.push_back(c);
    }
  };
  const auto layout = static_cast<ConvLayout>(std::get<5>(key));
  if (prec == ConvPrecision::TF32) {
    if (layout != ConvLayout::channels_last) {
      take(candidates(h, a.xd, a.wd, a.cd, a.yd, prec, CUDNN_TENSOR_OP_MATH, false),
           kTimedTensorOp);
      take(candidates(h, a.xd, a.wd, a.cd, a.yd, ConvPrecision::FP32, CUDNN_FMA_MATH, false),
           kTimedFma);
    }
    if (layout != ConvLayout::ncdhw)
      take(candidates(h, a.xd_cl, a.wd_cl, a.cd, a.yd_cl, prec, CUDNN_TENSOR_OP_MATH, true),
           kTimedChannelsLast);
  } else {
    take(candidates(h, a.xd, a.wd, a.cd, a.yd, prec, CUDNN_FMA_MATH, false),
         kTimedTensorOp + kTimedFma);
  }
  if (cands.empty())
    fail(
        "conv3d: cuDNN offers no {} algorithm within {} MiB of workspace for input [{}, {}, {}, "
        "{}] and weight [{}, {}, {}, {}, {}]",
        prec == ConvPrecision::TF32 ? "tf32" : "fp32", kMaxWorkspace >> 20, std::get<0>(key)[1],
        std::get<0>(key)[2], std::get<0>(key)[3], std::get<0>(key)[4], std::get<1>(key)[0],
        std::get<1>(key)[1], std::get<1>(key)[2], std::get<1>(key)[3], std::get<1>(key)[4]);
  size_t most = 0;
  for (const Choice& c : cands) most = std::max(most, c.workspace);
  const Tensor ws = workspace_for(most);
  void* wsp = ws.defined() ? ws.raw() : nullptr;
  Choice best = cands.front();
  if (cands.size() > 1) {
    cudaEvent_t t0 = nullptr, t1 = nullptr;
    check_cuda(cudaEventCreate(&t0), "cudaEventCreate");
    check_cuda(cudaEventCreate(&t1), "cudaEventCreate");
    float best_ms = 0.f;
    // The last candidate's output stays in y; every candidate computes the same convolution.
    for (size_t i = 0; i < cands.size(); ++i) {
      check_cuda(cudaEventRecord(t0, stream()), "cudaEventRecord");
      run_conv(h, a, cands[i], wsp);
      check_cuda(cudaEventRecord(t1, stream()), "cudaEventRecord");
      check_cuda(cudaEventSynchronize(t1), "cudaEventSynchronize");
      float ms = 0.f;
      check_cuda(cudaEventElapsedTime(&ms, t0, t1), "cudaEventElapsedTime");
      if (i == 0 || ms < best_ms) {
        best_ms = ms;
        best = cands[i];
      }
    }
    cudaEventDestroy(t0);
    cudaEventDestroy(t1);
    // y holds the last candidate's output; every later call of this shape runs `best`, so the
    // first call must too (TF32 and FMA candidates round differently: without this the first
    // call's result differed from the rest, seen in CudaConv3dPrecision on the H200).
    if (!cands.back().same(best)) run_conv(h, a, best, wsp);
  } else {
    run_conv(h, a, best, wsp);
  }
  dev.cache.emplace(key, best);
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
    const TensorDesc xd(xdims, false), yd(ydims, false), xd_cl(xdims, true), yd_cl(ydims, true);
    const FilterDesc wd(wdims, false), wd_cl(wdims, true);
    const ConvDesc cd(pad, stride, p.precision);
    convolve(ShapeKey{xdims, wdims, pad, stride, p.precision, g_layout.load()},
             ConvArgs{xd, xd_cl, x.raw(), wd, wd_cl, w.raw(), cd, yd, yd_cl, y.raw(), Ci,
                      x.dim(1) * x.dim(2) * x.dim(3), Co, kt * kh * kw, Fo * Ho * Wo},
             p.precision);
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

void set_conv_layout(ConvLayout layout) {
  g_layout.store(static_cast<int>(layout));
}

#else

void set_conv_layout(ConvLayout) {}

Tensor conv3d(const Tensor&, const Tensor&, const Tensor&, const Conv3dParams&) {
  fail("conv3d on cuda needs cuDNN, which this build did not find: run the VAE on the CPU");
}

#endif

}  // namespace freeswim::ops::cuda
