#include "core/tensor.h"

#include <atomic>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <new>

#include "core/device_memory.h"
#include "core/error.h"

namespace freeswim {

namespace {

void* cpu_alloc(size_t bytes) {
  // 64-byte alignment for vector loads; aligned_alloc needs a multiple of the alignment.
  size_t rounded = (bytes + 63) / 64 * 64;
  if (rounded == 0) rounded = 64;
  void* p = std::aligned_alloc(64, rounded);
  if (!p) throw OutOfMemory(fmt::format("out of host memory allocating {} bytes", bytes));
  return p;
}

void cpu_release(void* p) {
  std::free(p);
}

void cpu_copy(void* dst, Device dst_dev, const void* src, Device src_dev, size_t bytes) {
  FS_CHECK(dst_dev == Device::CPU && src_dev == Device::CPU, "cpu copy between devices");
  if (bytes) std::memcpy(dst, src, bytes);
}

DeviceMemory g_memory[2] = {{cpu_alloc, cpu_release, cpu_copy}, {}};

std::atomic<int64_t> g_cache_bytes[2];
std::atomic<int64_t> g_offloadable_bytes[2];

}  // namespace

void add_device_cache_bytes(Device device, int64_t delta) {
  g_cache_bytes[static_cast<int>(device)] += delta;
}

size_t device_cache_bytes(Device device) {
  const int64_t b = g_cache_bytes[static_cast<int>(device)].load();
  return b > 0 ? static_cast<size_t>(b) : 0;
}

void add_device_offloadable_bytes(Device device, int64_t delta) {
  g_offloadable_bytes[static_cast<int>(device)] += delta;
}

size_t device_offloadable_bytes(Device device) {
  const int64_t b = g_offloadable_bytes[static_cast<int>(device)].load();
  return b > 0 ? static_cast<size_t>(b) : 0;
}

AsyncCopy::AsyncCopy(AsyncCopy&& o) noexcept : mem_(o.mem_), done_(o.done_) {
  o.done_ = nullptr;
}

AsyncCopy& AsyncCopy::operator=(AsyncCopy&& o) noexcept {
  if (this != &o) {
    if (done_) host_waits();
    mem_ = o.mem_;
    done_ = o.done_;
    o.done_ = nullptr;
  }
  return *this;
}

AsyncCopy::~AsyncCopy() {
  if (!done_) return;
  try {
    host_waits();
  } catch (...) {
    // A failed wait means the device is lost; nothing is left to protect.
  }
}

void AsyncCopy::compute_waits() {
  if (!done_) return;
  void* d = done_;
  done_ = nullptr;
  mem_->compute_waits(d);
  mem_->release_done(d);
}

void AsyncCopy::host_waits() {
  if (!done_) return;
  void* d = done_;
  done_ = nullptr;
  mem_->host_waits(d);
  mem_->release_done(d);
}

AsyncCopy copy_async(const Tensor& dst, const Tensor& src) {
  FS_CHECK(
      dst.defined() && src.defined() && dst.dtype() == src.dtype() && dst.numel() == src.numel(),
      "copy_async: {} into {}", src.defined() ? src.describe() : "nothing",
      dst.defined() ? dst.describe() : "nothing");
  AsyncCopy c;
  if (dst.device() == Device::CPU && src.device() == Device::CPU) {
    if (src.nbytes()) std::memcpy(dst.raw(), src.raw(), src.nbytes());
    return c;
  }
  // As in Tensor::to: the backend of the side that is not the CPU knows both.
  const Device gpu = dst.device() == Device::CPU ? src.device() : dst.device();
  const DeviceMemory& mem = device_memory(gpu);
  if (mem.copy_async == nullptr) {  // a backend without a transfer stream: copy at once
    mem.copy(dst.raw(), dst.device(), src.raw(), src.device(), src.nbytes());
    return c;
  }
  if (src.nbytes() == 0) return c;
  c.mem_ = &mem;
  c.done_ = mem.copy_async(dst.raw(), dst.device(), src.raw(), src.device(), src.nbytes());
  return c;
}

void register_device_memory(Device device, const DeviceMemory& mem) {
  g_memory[static_cast<int>(device)] = mem;
}

void trim_device_memory() {
  for (const DeviceMemory& m : g_memory)
    if (m.trim) m.trim();
}

bool device_available(Device device) {
  return g_memory[static_cast<int>(device)].alloc != nullptr;
}

const DeviceMemory& device_memory(Device device) {
  const DeviceMemory& m = g_memory[static_cast<int>(device)];
  FS_CHECK(m.alloc != nullptr, "device '{}' is not available in this build", device_name(device));
  return m;
}

std::string device_name(Device d) {
  return d == Device::CPU ? "cpu" : "cuda";
}

std::string shape_str(const Shape& s) {
  std::string out = "[";
  for (size_t i = 0; i < s.size(); ++i) out += (i ? ", " : "") + std::to_string(s[i]);
  return out + "]";
}

int64_t shape_numel(const Shape& s) {
  int64_t n = 1;
  for (int64_t d : s) n *= d;
  return n;
}

Tensor Tensor::empty(const Shape& shape, DType dtype, Device device) {
  for (int64_t d : shape) FS_CHECK(d >= 0, "negative dimension in shape {}", shape_str(shape));
  const DeviceMemory& mem = device_memory(device);
  Tensor t;
  t.shape_ = shape;
  t.dtype_ = dtype;
  auto st = std::make_shared<Storage>();
  st->bytes = t.nbytes();
  st->device = device;
  st->data = mem.alloc(st->bytes);
  st->deleter = mem.release;
  t.storage_ = std::move(st);
  return t;
}

Tensor Tensor::empty_pinned(const Shape& shape, DType dtype, Device gpu) {
  const DeviceMemory* mem = device_available(gpu) ? &device_memory(gpu) : nullptr;
  if (gpu == Device::CPU || mem == nullptr || mem->alloc_pinned == nullptr)
    return empty(shape, dtype, Device::CPU);
  for (int64_t d : shape) FS_CHECK(d >= 0, "negative dimension in shape {}", shape_str(shape));
  Tensor t;
  t.shape_ = shape;
  t.dtype_ = dtype;
  auto st = std::make_shared<Storage>();
  st->bytes = t.nbytes();
  st->device = Device::CPU;  // host memory: the CPU reads it directly
  st->data = mem->alloc_pinned(st->bytes);
  st->deleter = mem->release_pinned;
  t.storage_ = std::move(st);
  return t;
}

Tensor Tensor::zeros(const Shape& shape, DType dtype, Device device) {
  Tensor t = empty(shape, dtype, Device::CPU);
  if (t.nbytes()) std::memset(t.raw(), 0, t.nbytes());
  return t.to(device);
}

Tensor Tensor::from_vector(const Shape& shape, const std::vector<float>& values) {
  FS_CHECK(shape_numel(shape) == static_cast<int64_t>(values.size()),
           "from_vector: shape {} does not hold {} values", shape_str(shape), values.size());
  Tensor t = empty(shape, DType::F32, Device::CPU);
  if (!values.empty()) std::memcpy(t.raw(), values.data(), values.size() * sizeof(float));
  return t;
}

Tensor Tensor::borrow(void* data, const Shape& shape, DType dtype, Device device,
                      std::shared_ptr<const void> keepalive) {
  Tensor t;
  t.shape_ = shape;
  t.dtype_ = dtype;
  auto st = std::make_shared<Storage>();
  st->data = data;
  st->bytes = t.nbytes();
  st->device = device;
  // The deleter only drops the reference that keeps the owner alive.
  st->deleter = [keep = std::move(keepalive)](void*) mutable { keep.reset(); };
  t.storage_ = std::move(st);
  return t;
}

int64_t Tensor::dim(int i) const {
  int n = ndim();
  int j = i < 0 ? i + n : i;
  FS_CHECK(j >= 0 && j < n, "dimension {} out of range for tensor of shape {}", i,
           shape_str(shape_));
  return shape_[static_cast<size_t>(j)];
}

Tensor Tensor::reshape(const Shape& shape) const {
  Shape s = shape;
  int infer = -1;
  int64_t known = 1;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == -1) {
      FS_CHECK(infer < 0, "reshape: more than one -1 in {}", shape_str(shape));
      infer = static_cast<int>(i);
    } else {
      known *= s[i];
    }
  }
  if (infer >= 0) {
    FS_CHECK(known > 0 && numel() % known == 0, "reshape {} -> {}: sizes do not divide",
             shape_str(shape_), shape_str(shape));
    s[static_cast<size_t>(infer)] = numel() / known;
  }
  FS_CHECK(shape_numel(s) == numel(), "reshape {} -> {}: element counts differ", shape_str(shape_),
           shape_str(shape));
  Tensor t = *this;
  t.shape_ = s;
  return t;
}

Tensor Tensor::slice0(int64_t begin, int64_t end) const {
  FS_CHECK(ndim() >= 1 && begin >= 0 && begin <= end && end <= shape_[0],
           "slice0 [{}, {}) out of range for shape {}", begin, end, shape_str(shape_));
  int64_t row = shape_[0] ? numel() / shape_[0] : 0;
  Tensor t = *this;
  t.shape_[0] = end - begin;
  t.offset_ += static_cast<size_t>(begin * row) * dtype_size(dtype_);
  return t;
}

Tensor Tensor::clone() const {
  Tensor t = empty(shape_, dtype_, device());
  device_memory(device()).copy(t.raw(), device(), raw(), device(), nbytes());
  return t;
}

Tensor Tensor::to(Device device) const {
  if (device == this->device()) return *this;
  Tensor t = empty(shape_, dtype_, device);
  // The copy routine of whichever side is not the CPU knows both.
  Device gpu = device == Device::CPU ? this->device() : device;
  device_memory(gpu).copy(t.raw(), device, raw(), this->device(), nbytes());
  return t;
}

namespace {
float load_as_float(const void* p, DType t, int64_t i) {
  switch (t) {
    case DType::F32:
      return static_cast<const float*>(p)[i];
    case DType::BF16:
      return bf16_to_float(static_cast<const uint16_t*>(p)[i]);
    case DType::F16:
      return f16_to_float(static_cast<const uint16_t*>(p)[i]);
    case DType::I64:
      return static_cast<float>(static_cast<const int64_t*>(p)[i]);
    case DType::I32:
      return static_cast<float>(static_cast<const int32_t*>(p)[i]);
    case DType::U8:
      return static_cast<float>(static_cast<const uint8_t*>(p)[i]);
    case DType::F8_E4M3:
      return f8e4m3_to_float(static_cast<const uint8_t*>(p)[i]);
    case DType::F8_E5M2:
      return f8e5m2_to_float(static_cast<const uint8_t*>(p)[i]);
  }
  return 0.f;
}
}  // namespace

std::vector<float> Tensor::to_float_vector() const {
  Tensor c = to(Device::CPU);
  std::vector<float> out(static_cast<size_t>(numel()));
  for (int64_t i = 0; i < numel(); ++i)
    out[static_cast<size_t>(i)] = load_as_float(c.raw(), dtype_, i);
  return out;
}

Tensor Tensor::to(DType dtype) const {
  if (dtype == dtype_) return *this;
  FS_CHECK(device() == Device::CPU, "dtype conversion of a {} tensor must go through ops",
           device_name(device()));
  Tensor t = empty(shape_, dtype, Device::CPU);
  const int64_t n = numel();
  switch (dtype) {
    case DType::F32:
      for (int64_t i = 0; i < n; ++i) t.data<float>()[i] = load_as_float(raw(), dtype_, i);
      break;
    case DType::BF16:
      for (int64_t i = 0; i < n; ++i)
        t.data<uint16_t>()[i] = float_to_bf16(load_as_float(raw(), dtype_, i));
      break;
    default:
      fail("conversion from {} to {} is not supported", dtype_name(dtype_), dtype_name(dtype));
  }
  return t;
}

std::string Tensor::describe() const {
  return fmt::format("{}{} {}", dtype_name(dtype_), shape_str(shape_), device_name(device()));
}

double relative_l2(const Tensor& a, const Tensor& b) {
  FS_CHECK(a.numel() == b.numel(), "relative_l2: {} vs {}", a.describe(), b.describe());
  std::vector<float> x = a.to_float_vector(), y = b.to_float_vector();
  double num = 0, den = 0;
  for (size_t i = 0; i < x.size(); ++i) {
    double d = static_cast<double>(x[i]) - y[i];
    num += d * d;
    den += static_cast<double>(y[i]) * y[i];
  }
  if (den == 0) return num == 0 ? 0.0 : INFINITY;
  return std::sqrt(num / den);
}

}  // namespace freeswim
