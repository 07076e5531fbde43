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

// Text encoder ops (cpu_text_ops.cpp).
Tensor embedding(const Tensor& table, const std::vector<int32_t>& ids);
Tensor mul(const Tensor& a, const Tensor& b);
Tensor attention_bias(const Tensor& q, const Tensor& k, const Tensor& v, float scale,
                      const Tensor& bias, const Tensor& key_mask);

}  // namespace freeswim::ops::cpu
