// CPU ops of the text encoder: embedding row gather, elementwise product (the gated FFN) and
// attention with an additive per-head bias and a key padding mask (T5's relative positions).
#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "core/error.h"
#include "core/threads.h"
#include "ops/cpu/cpu_backend.h"

namespace freeswim::ops::cpu {

Tensor embedding(const Tensor& table, const std::vector<int32_t>& ids) {
  require_f32(table, "embedding", "table");
  FS_CHECK(table.ndim() == 2, "embedding: table must be [vocab, dim], got {}", table.describe());
  const int64_t V = table.dim(0), D = table.dim(1), n = static_cast<int64_t>(ids.size());
  for (int64_t i = 0; i < n; ++i)
    FS_CHECK(ids[i] >= 0 && ids[i] < V,
             "embedding: id {} at position {} is outside the table of {} rows", ids[i], i, V);
  Tensor y = Tensor::empty({n, D});
  const float* src = table.data<float>();
  float* dst = y.data<float>();
  for (int64_t i = 0; i < n; ++i)
    std::memcpy(dst + i * D, src + int64_t{ids[i]} * D, static_cast<size_t>(D) * sizeof(float));
  return y;
}

Tensor mul(const Tensor& a, const Tensor& b) {
  require_f32(a, "mul", "a");
  require_f32(b, "mul", "b");
  FS_CHECK(a.numel() == b.numel(), "mul: {} vs {}", a.describe(), b.describe());
  Tensor y = Tensor::empty(a.shape());
  const float *ad = a.data<float>(), *bd = b.data<float>();
  float* yd = y.data<float>();
  parallel_for(a.numel(), 1 << 14, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) yd[i] = ad[i] * bd[i];
  });
  return y;
}

Tensor attention_bias(const Tensor& q, const Tensor& k, const Tensor& v, float scale,
                      const Tensor& bias, const Tensor& key_mask) {
  require_f32(q, "attention_bias", "q");
  require_f32(k, "attention_bias", "k");
  require_f32(v, "attention_bias", "v");
  FS_CHECK(q.ndim() == 3 && k.ndim() == 3 && q.dim(1) == k.dim(1) && q.dim(2) == k.dim(2) &&
               k.shape() == v.shape(),
           "attention_bias: q {} k {} v {} do not match", q.describe(), k.describe(), v.describe());
  const int64_t nq = q.dim(0), nk = k.dim(0), heads = q.dim(1), d = q.dim(2);
  FS_CHECK(nk > 0, "attention_bias: no keys");
  const float* bd = nullptr;
  if (bias.defined()) {
    require_f32(bias, "attention_bias", "bias");
    FS_CHECK(bias.numel() == nq * nk * heads, "attention_bias: bias {} is not [{}, {}, {}]",
             bias.describe(), nq, nk, heads);
    bd = bias.data<float>();
  }
  std::vector<int64_t> keys;  // the keys every query attends to
  if (key_mask.defined()) {
    require_f32(key_mask, "attention_bias", "key_mask");
    FS_CHECK(key_mask.numel() == nk, "attention_bias: key_mask {} does not match {} keys",
             key_mask.describe(), nk);
    const float* m = key_mask.data<float>();
    for (int64_t j = 0; j < nk; ++j)
      if (m[j] != 0.f) keys.push_back(j);
  }
  // No mask, or nothing but padding: every key. With all keys padded the references add the
  // same huge negative to every score, which leaves a uniform softmax; the empty bias below
  // reproduces that.
  const bool all_padding = key_mask.defined() && keys.empty();
  if (keys.empty())
    for (int64_t j = 0; j < nk; ++j) keys.push_back(j);
  const int64_t n = static_cast<int64_t>(keys.size());

  Tensor out = Tensor::empty(q.shape());
  const float *qd = q.data<float>(), *kd = k.data<float>(), *vd = v.data<float>();
  float* od = out.data<float>();
  const int64_t ld = heads * d;
  parallel_for(nq * heads, 16, [&](int64_t begin, int64_t end) {
    std::vector<float> s(static_cast<size_t>(n));
    std::vector<double> acc(static_cast<size_t>(d));
    for (int64_t item = begin; item < end; ++item) {
      const int64_t i = item / heads, h = item % heads;
      const float* qi = qd + i * ld + h * d;
      float m = -INFINITY;
      for (int64_t t = 0; t < n; ++t) {
        const int64_t j = keys[t];
        float score = 0.f;
        if (!all_padding) {
          const float* kj = kd + j * ld + h * d;
          for (int64_t c = 0; c < d; ++c) score += qi[c] * kj[c];
          score *= scale;
          if (bd) score += bd[(i * nk + j) * heads + h];
        }
        s[t] = score;
        m = std::max(m, score);
      }
      double sum = 0;
      for (int64_t t = 0; t < n; ++t) {
        s[t] = std::exp(s[t] - m);
        sum += s[t];
      }
      std::fill(acc.begin(), acc.end(), 0.0);
      for (int64_t t = 0; t < n; ++t) {
        const float* vj = vd + keys[t] * ld + h * d;
        for (int64_t c = 0; c < d; ++c) acc[c] += static_cast<double>(s[t]) * vj[c];
      }
      float* oi = od + i * ld + h * d;
      for (int64_t c = 0; c < d; ++c) oi[c] = static_cast<float>(acc[c] / sum);
    }
  });
  return out;
}

}  // namespace freeswim::ops::cpu
