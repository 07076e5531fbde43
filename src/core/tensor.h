// Tensor: a contiguous, row-major n-d array that knows its element type and its device.
// Storage is shared (copies of a Tensor alias the same memory); views (reshape, slicing
// along the first dimension) share it too. Memory may be owned (allocated by a backend) or
// borrowed from something kept alive by the storage (a memory-mapped checkpoint).
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "core/dtype.h"

namespace freeswim {

enum class Device : uint8_t { CPU, CUDA };

std::string device_name(Device d);

using Shape = std::vector<int64_t>;

std::string shape_str(const Shape& s);
int64_t shape_numel(const Shape& s);

// A block of memory on one device. The deleter frees it (or releases whatever keeps a
// borrowed block alive).
struct Storage {
  void* data = nullptr;
  size_t bytes = 0;
  Device device = Device::CPU;
  std::function<void(void*)> deleter;

  Storage() = default;
  Storage(const Storage&) = delete;
  Storage& operator=(const Storage&) = delete;
  ~Storage() {
    if (deleter) deleter(data);
  }
};

class Tensor {
 public:
  Tensor() = default;

  // Uninitialised tensor on `device` (allocated by that device's backend).
  static Tensor empty(const Shape& shape, DType dtype = DType::F32, Device device = Device::CPU);
  static Tensor zeros(const Shape& shape, DType dtype = DType::F32, Device device = Device::CPU);
  // Uninitialised CPU tensor in page-locked memory that `gpu` copies to and from
  // asynchronously (DeviceMemory::alloc_pinned); plain host memory when `gpu` is the CPU or its
  // backend has no pinned memory.
  static Tensor empty_pinned(const Shape& shape, DType dtype, Device gpu);
  // A CPU f32 tensor holding `values`.
  static Tensor from_vector(const Shape& shape, const std::vector<float>& values);
  // Borrow memory: `keepalive` is held as long as any view of the tensor lives.
  static Tensor borrow(void* data, const Shape& shape, DType dtype, Device device,
                       std::shared_ptr<const void> keepalive);

  bool defined() const { return storage_ != nullptr; }
  const Shape& shape() const { return shape_; }
  int64_t dim(int i) const;  // negative i counts from the end
  int ndim() const { return static_cast<int>(shape_.size()); }
  int64_t numel() const { return shape_numel(shape_); }
  size_t nbytes() const { return static_cast<size_t>(numel()) * dtype_size(dtype_); }
  DType dtype() const { return dtype_; }
  Device device() const { return storage_ ? storage_->device : Device::CPU; }

  void* raw() const { return static_cast<char*>(storage_->data) + offset_; }
  template <typename T>
  T* data() const {
    return static_cast<T*>(raw());
  }

  // Views (share storage). reshape accepts one -1.
  Tensor reshape(const Shape& shape) const;
  // Rows [begin, end) of the first dimension.
  Tensor slice0(int64_t begin, int64_t end) const;

  // Copies.
  Tensor clone() const;
  Tensor to(Device device) const;  // returns *this when already there
  Tensor to(DType dtype) const;    // CPU only for integer types; returns *this when equal
  // CPU f32 copy of the values, whatever the dtype/device (for tests and checks).
  std::vector<float> to_float_vector() const;

  std::string describe() const;  // "F32[2, 3] cpu"

 private:
  std::shared_ptr<Storage> storage_;
  size_t offset_ = 0;  // bytes
  Shape shape_;
  DType dtype_ = DType::F32;
};

// Relative L2 error |a - b| / |b| computed in double; shapes must have equal numel.
double relative_l2(const Tensor& a, const Tensor& b);

}  // namespace freeswim
