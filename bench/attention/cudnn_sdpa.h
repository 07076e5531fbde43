// Dense attention through cuDNN's fused scaled-dot-product-attention engine, built with the cuDNN
// 9 backend (graph) API: the baseline bench_attention times the own dense kernel against (the
// engine does not use it: the own kernel is faster, docs/attention.md). Compiled in when the build
// found cuDNN (FREESWIM_HAVE_CUDNN); otherwise cudnn_sdpa_available() is false.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>
#include <string>

namespace freeswim::bench {

bool cudnn_sdpa_available();

// out = softmax(scale * q k^T) v for bf16 [tokens, heads, head_dim] tensors. The execution plan
// is built once per (device, n_q, n_kv, heads, head_dim) and cached; the scale is a by-value
// scalar of the call, not part of the plan. Returns false with the reason in `why` when cuDNN has
// no engine for the shape (the result is cached too); throws freeswim::Error when a supported
// plan fails to run.
bool cudnn_sdpa_forward(const void* q, const void* k, const void* v, void* out, int64_t n_q,
                        int64_t n_kv, int heads, int head_dim, float scale, cudaStream_t stream,
                        std::string* why);

}  // namespace freeswim::bench
