// State of the CUDA backend kept once per GPU: the caching allocator's pool, the cuBLASLt and
// cuDNN handles with their caches, the transfer stream, the profile's events. Several threads of
// one process may each run the backend on a different device (parallel::NcclGroup::run makes
// every rank's device current on the rank's thread): each thread then works on the state of the
// device current on it, created lazily by the first thread that asks for it on that device.
// Threads on one device share its state; the backend is meant for one thread per GPU at a time
// (the ranks): the state of a GPU that two threads drive at once is shared without further care
// (the cuDNN handle, the cuBLASLt bias scratch, the one compute stream).
//
// PerDevice<T> is a fixed array of kMaxDevices slots. A slot's T is made on the first get() for
// its device, under one mutex (creations are rare and may call the CUDA runtime); once made, it
// stays at the same address, and get() reads it with one atomic load and no lock. A creation that
// throws leaves the slot empty, and the next get() for that device tries again.
//
// The device comes from `Lookup` (by default the calling thread's current CUDA device,
// current_device(): one cudaGetDevice per get()); tests pass their own. Only current_device()
// and require_cuda_device() touch CUDA, and they are defined in per_device.cpp: this header has
// no CUDA include, so a host-only test compiles the template alone.
#pragma once

#include <array>
#include <atomic>
#include <functional>
#include <memory>
#include <mutex>
#include <utility>

#include "core/error.h"

namespace freeswim::ops::cuda {

// Device ordinals PerDevice has slots for: 0 .. kMaxDevices - 1.
constexpr int kMaxDevices = 64;

// The calling thread's current CUDA device (one cudaGetDevice). When the runtime cannot say,
// throws Error: where the machine has no usable device, the message is require_cuda_device()'s,
// else it names cudaGetDevice's failure.
int current_device();

// Throws Error "--device cuda: no usable CUDA device (...); run with --device cpu" when the CUDA
// runtime sees no device (no GPU, no driver, CUDA_VISIBLE_DEVICES hiding them all).
void require_cuda_device();

// PerDevice's default device lookup.
struct CurrentDevice {
  int operator()() const { return current_device(); }
};

template <class T, class Lookup = CurrentDevice>
class PerDevice {
 public:
  // Makes the T of `device`; called on the thread of the first get() for it, with that device
  // current (for the default lookup).
  using Make = std::function<std::unique_ptr<T>(int device)>;

  explicit PerDevice(Make make, Lookup lookup = Lookup{})
      : make_(std::move(make)), lookup_(std::move(lookup)) {}
  // Destroys the slots made, last made first. The backend's own instances are never destroyed
  // (see where they are made): tensors held in static objects may still be released, and handles
  // used, after main returns, and the driver reclaims the devices' memory at exit.
  ~PerDevice() {
    for (int i = count_.load(std::memory_order_acquire) - 1; i >= 0; --i)
      delete slots_[static_cast<size_t>(order_[static_cast<size_t>(i)])].load(
          std::memory_order_relaxed);
  }
  PerDevice(const PerDevice&) = delete;
  PerDevice& operator=(const PerDevice&) = delete;

  // The T of the calling thread's device (one lookup), made now if it is the first use.
  T& get() { return get(lookup_()); }

  // The T of `device`, made now if it is the first use. Throws Error for a device outside
  // 0 .. kMaxDevices - 1.
  T& get(int device) {
    check(device);
    if (T* p = slots_[static_cast<size_t>(device)].load(std::memory_order_acquire)) return *p;
    return make_slot(device);
  }

  // The T of `device` if it has been made, else null; never makes one.
  T* find(int device) const {
    if (device < 0 || device >= kMaxDevices) return nullptr;
    return slots_[static_cast<size_t>(device)].load(std::memory_order_acquire);
  }

  // The device the calling thread's lookup gives (for find()).
  int device() const { return lookup_(); }

  // How many slots have been made so far.
  int made() const { return count_.load(std::memory_order_acquire); }

  // Calls f(device, T&) for every slot made so far, in the order they were made.
  template <class F>
  void for_each(F&& f) const {
    const int n = made();
    for (int i = 0; i < n; ++i) {
      const int d = order_[static_cast<size_t>(i)];
      f(d, *slots_[static_cast<size_t>(d)].load(std::memory_order_acquire));
    }
  }

 private:
  static void check(int device) {
    FS_CHECK(device >= 0 && device < kMaxDevices,
             "cuda: device {} is outside the {} devices the backend keeps state for", device,
             kMaxDevices);
  }

  T& make_slot(int device) {
    const std::lock_guard<std::mutex> lock(mu_);
    std::atomic<T*>& slot = slots_[static_cast<size_t>(device)];
    if (T* p = slot.load(std::memory_order_relaxed)) return *p;  // made while we waited
    std::unique_ptr<T> made = make_(device);
    FS_CHECK(made != nullptr, "cuda: making the state of device {} gave nothing", device);
    T* p = made.release();
    // order_[n] is written before count_ publishes it, and never again.
    const int n = count_.load(std::memory_order_relaxed);
    order_[static_cast<size_t>(n)] = device;
    slot.store(p, std::memory_order_release);
    count_.store(n + 1, std::memory_order_release);
    return *p;
  }

  Make make_;
  Lookup lookup_;
  std::mutex mu_;                                     // held while a slot is made
  std::array<std::atomic<T*>, kMaxDevices> slots_{};  // null until made
  std::array<int, kMaxDevices> order_{};              // devices in the order made
  std::atomic<int> count_{0};                         // entries of order_ in use
};

}  // namespace freeswim::ops::cuda
