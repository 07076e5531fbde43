// CPU attention: exact fp32 softmax attention, full or inward-window. Work is split over
// parallel_for's threads by (head, query block) or by spatial position, and each piece is
// computed with plain loops, not BLAS: Debian's OpenBLAS is threaded itself and serialises
// concurrent calls behind one lock, so BLAS calls from inside parallel_for ran one at a time
// (a 16-core machine took 35 s for a window case of 5.7 GFLOP). The loops give the same result
// for any thread count.
#include <algorithm>
#include <cmath>
#include <vector>

#include "core/error.h"
#include "core/threads.h"
#include "ops/cpu/cpu_backend.h"

namespace freeswim::ops::cpu {

namespace {

// a . b over n floats with eight partial sums (the compiler vectorises them without reassociating
// a single sum).
float dot(const float* a, const float* b, int64_t n) {
  float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    for (int l = 0; l < 8; ++l) acc[l] += a[i + l] * b[i + l];
  float tail = 0;
  for (; i < n; ++i) tail += a[i] * b[i];
  return ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7])) + tail;
}

// out[nq, d] (row stride ldo) = softmax(scale * q k^T) v for q [nq, d] (ldq), k, v [nk, d] (ldk).
void attend_block(const float* q, int64_t ldq, const float* k, const float* v, int64_t ldk,
                  int64_t nq, int64_t nk, int64_t d, float scale, float* out, int64_t ldo,
                  std::vector<float>& s) {
  s.resize(static_cast<size_t>(nk));
  for (int64_t i = 0; i < nq; ++i) {
    const float* qi = q + i * ldq;
    float m = -INFINITY;
    for (int64_t j = 0; j < nk; ++j) {
      s[j] = scale * dot(qi, k + j * ldk, d);
      m = std::max(m, s[j]);
    }
    double sum = 0;
    for (int64_t j = 0; j < nk; ++j) {
      s[j] = std::exp(s[j] - m);
      sum += s[j];
    }
    const float inv = static_cast<float>(1.0 / sum);
    float* o = out + i * ldo;
    std::fill(o, o + d, 0.f);
    for (int64_t j = 0; j < nk; ++j) {
      const float pj = s[j] * inv;
      const float* vj = v + j * ldk;
      for (int64_t c = 0; c < d; ++c) o[c] += pj * vj[c];
    }
  }
}

}  // namespace

Tensor attention_full(const Tensor& q, const Tensor& k, const Tensor& v, float scale) {
  const int64_t nq = q.dim(0), nk = k.dim(0), heads = q.dim(1), d = q.dim(2);
  FS_CHECK(nk > 0, "attention: no keys");
  Tensor out = Tensor::empty(q.shape());
  constexpr int64_t kBlock = 64;
  const int64_t blocks = (nq + kBlock - 1) / kBlock;
  const int64_t ld = heads * d;
  parallel_for(heads * blocks, 1, [&](int64_t b, int64_t e) {
    std::vector<float> s;
    for (int64_t item = b; item < e; ++item) {
      const int64_t h = item / blocks, q0 = (item % blocks) * kBlock, n = std::min(kBlock, nq - q0);
      attend_block(q.data<float>() + q0 * ld + h * d, ld, k.data<float>() + h * d,
                   v.data<float>() + h * d, ld, n, nk, d, scale,
                   out.data<float>() + q0 * ld + h * d, ld, s);
    }
  });
  return out;
}

Tensor attention_window(const Tensor& q, const Tensor& k, const Tensor& v, float scale,
                        const WindowGeometry& g) {
  const int64_t heads = q.dim(1), d = q.dim(2), ld = heads * d;
  const int eh = window_extent(g.H, g.dh), ew = window_extent(g.W, g.dw);
  const int64_t nk = window_keys_per_query(g);
  const int64_t plane = int64_t{g.H} * g.W;
  Tensor out = Tensor::empty(q.shape());
  // Queries at one spatial position (all frames) share one key set: gather it once per head.
  parallel_for(plane, 1, [&](int64_t b, int64_t e) {
    std::vector<float> qg(static_cast<size_t>(g.T * d)), kg(static_cast<size_t>(nk * d)),
        vg(static_cast<size_t>(nk * d)), og(static_cast<size_t>(g.T * d)), s;
    for (int64_t pos = b; pos < e; ++pos) {
      const int h = static_cast<int>(pos / g.W), w = static_cast<int>(pos % g.W);
      const int hs = window_start(h, g.H, g.dh), ws = window_start(w, g.W, g.dw);
      for (int64_t head = 0; head < heads; ++head) {
        int64_t j = 0;
        for (int t = 0; t < g.T; ++t)
          for (int kh = hs; kh < hs + eh; ++kh)
            for (int kw = ws; kw < ws + ew; ++kw, ++j) {
              const int64_t tok = t * plane + int64_t{kh} * g.W + kw;
              std::copy_n(k.data<float>() + tok * ld + head * d, d, kg.data() + j * d);
              std::copy_n(v.data<float>() + tok * ld + head * d, d, vg.data() + j * d);
            }
        for (int t = 0; t < g.T; ++t)
          std::copy_n(q.data<float>() + (t * plane + pos) * ld + head * d, d, qg.data() + t * d);
        attend_block(qg.data(), d, kg.data(), vg.data(), d, g.T, nk, d, scale, og.data(), d, s);
        for (int t = 0; t < g.T; ++t)
          std::copy_n(og.data() + t * d, d, out.data<float>() + (t * plane + pos) * ld + head * d);
      }
    }
  });
  return out;
}

}  // namespace freeswim::ops::cpu
