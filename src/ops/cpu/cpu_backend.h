// The CPU backend: fp32 throughout, OpenBLAS for matrix products, parallel_for for the rest.
// It is the oracle every other backend is tested against, so it favours plain, exact code.
#pragma once

#include "ops/ops.h"

namespace freeswim::ops::cpu {

Backend& cpu_backend();

// Attention kernels of the CPU backend (cpu_attention.cpp).
Tensor attention_full(const Tensor& q, const Tensor& k, const Tensor& v, float scale);
Tensor attention_window(const Tensor& q, const Tensor& k, const Tensor& v, float scale,
                        const WindowGeometry& g);

}  // namespace freeswim::ops::cpu
