#include "gguf_writer.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <fstream>
#include <stdexcept>

#include "core/dtype.h"
#include "io/gguf_quants.h"

namespace freeswim::formats {

namespace {

void put(std::vector<uint8_t>& out, uint64_t v, int bytes) {
  for (int i = 0; i < bytes; ++i) out.push_back(static_cast<uint8_t>(v >> (8 * i)));
}

void put_str(std::vector<uint8_t>& out, const std::string& s) {
  put(out, s.size(), 8);
  out.insert(out.end(), s.begin(), s.end());
}

uint32_t float_bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}

float h2f(uint16_t h) {
  return f16_to_float(h);
}

void put16(uint8_t* p, uint16_t v) {
  p[0] = static_cast<uint8_t>(v);
  p[1] = static_cast<uint8_t>(v >> 8);
}

// The smallest half >= x (x >= 0).
uint16_t f16_at_least(float x) {
  uint16_t h = to_f16(x);
  if (h2f(h) < x) ++h;
  return h;
}

int nearest(float v) {
  return static_cast<int>(std::lrintf(v));
}

float amax_of(const float* x, int n) {
  float a = 0;
  for (int i = 0; i < n; ++i) a = std::fmax(a, std::fabs(x[i]));
  return a;
}

// --- 32-value formats ---

void q8_0(const float* x, uint8_t* b) {
  const uint16_t dh = to_f16(amax_of(x, 32) / 127);
  const float d = h2f(dh);
  put16(b, dh);
  for (int j = 0; j < 32; ++j) {
    const int q = d == 0 ? 0 : std::clamp(nearest(x[j] / d), -127, 127);
    b[2 + j] = static_cast<uint8_t>(static_cast<int8_t>(q));
  }
}

void q4_0(const float* x, uint8_t* b) {
  const uint16_t dh = to_f16(amax_of(x, 32) / 7);
  const float d = h2f(dh);
  put16(b, dh);
  auto q = [&](float v) { return d == 0 ? 8 : std::clamp(nearest(v / d) + 8, 0, 15); };
  for (int j = 0; j < 16; ++j) b[2 + j] = static_cast<uint8_t>(q(x[j]) | q(x[j + 16]) << 4);
}

void q5_0(const float* x, uint8_t* b) {
  const uint16_t dh = to_f16(amax_of(x, 32) / 15);
  const float d = h2f(dh);
  put16(b, dh);
  uint32_t qh = 0;
  for (int j = 0; j < 16; ++j) {
    const int q0 = d == 0 ? 16 : std::clamp(nearest(x[j] / d) + 16, 0, 31);
    const int q1 = d == 0 ? 16 : std::clamp(nearest(x[j + 16] / d) + 16, 0, 31);
    b[6 + j] = static_cast<uint8_t>((q0 & 15) | (q1 & 15) << 4);
    qh |= static_cast<uint32_t>(q0 >> 4) << j;
    qh |= static_cast<uint32_t>(q1 >> 4) << (j + 16);
  }
  for (int i = 0; i < 4; ++i) b[2 + i] = static_cast<uint8_t>(qh >> (8 * i));
}

// Q4_1 (levels 15) and Q5_1 (levels 31).
void q_1(const float* x, uint8_t* b, int levels) {
  float mn = x[0], mx = x[0];
  for (int j = 0; j < 32; ++j) {
    mn = std::fmin(mn, x[j]);
    mx = std::fmax(mx, x[j]);
  }
  const uint16_t dh = to_f16((mx - mn) / static_cast<float>(levels)), mh = to_f16(mn);
  const float d = h2f(dh), m = h2f(mh);
  put16(b, dh);
  put16(b + 2, mh);
  int q[32];
  for (int j = 0; j < 32; ++j) q[j] = d == 0 ? 0 : std::clamp(nearest((x[j] - m) / d), 0, levels);
  if (levels == 15) {
    for (int j = 0; j < 16; ++j) b[4 + j] = static_cast<uint8_t>(q[j] | q[j + 16] << 4);
  } else {
    uint32_t qh = 0;
    for (int j = 0; j < 16; ++j) {
      b[8 + j] = static_cast<uint8_t>((q[j] & 15) | (q[j + 16] & 15) << 4);
      qh |= static_cast<uint32_t>(q[j] >> 4) << j;
      qh |= static_cast<uint32_t>(q[j + 16] >> 4) << (j + 16);
    }
    for (int i = 0; i < 4; ++i) b[4 + i] = static_cast<uint8_t>(qh >> (8 * i));
  }
}

// --- 256-value formats ---

// Q3_K: groups of 16, step a_g / 3 rounded up to a multiple of the super scale d.
void q3_k(const float* x, uint8_t* b) {
  float step[16], dmax = 0;
  for (int g = 0; g < 16; ++g) {
    step[g] = amax_of(x + 16 * g, 16) / 3;
    dmax = std::fmax(dmax, step[g]);
  }
  const uint16_t dh = f16_at_least(dmax / 31);
  const float d = h2f(dh);
  std::memset(b, 0, 110);
  uint8_t* hmask = b;
  uint8_t* qs = b + 32;
  uint8_t* sc = b + 96;
  put16(b + 108, dh);
  for (int g = 0; g < 16; ++g) {
    const int s = d == 0 ? 0 : std::min(31, static_cast<int>(std::ceil(step[g] / d)));
    const int stored = s + 32;
    if (g < 8)
      sc[g] |= static_cast<uint8_t>(stored & 15);
    else
      sc[g - 8] |= static_cast<uint8_t>((stored & 15) << 4);
    sc[8 + g % 4] |= static_cast<uint8_t>((stored >> 4) << (2 * (g / 4)));
    const float e = d * static_cast<float>(s);
    for (int i = 0; i < 16; ++i) {
      const int k = 16 * g + i;
      const int q = e == 0 ? 0 : std::clamp(nearest(x[k] / e), -4, 3);
      const int stored_q = q + 4;  // 0..7
      const int h = k / 128, j = (k % 128) / 32, l = k % 32;
      qs[32 * h + l] |= static_cast<uint8_t>((stored_q & 3) << (2 * j));
      if (stored_q & 4) hmask[l] |= static_cast<uint8_t>(1 << (4 * h + j));
    }
  }
}

// Q4_K (levels 15) and Q5_K (levels 31): groups of 32, x = d*sc*q - dmin*m.
void q_k(const float* x, uint8_t* b, int levels) {
  float step[8], off[8], smax = 0, omax = 0;
  for (int g = 0; g < 8; ++g) {
    float mn = 0, mx = 0;
    for (int i = 0; i < 32; ++i) {
      mn = std::fmin(mn, x[32 * g + i]);
      mx = std::fmax(mx, x[32 * g + i]);
    }
    step[g] = (mx - mn) / static_cast<float>(levels);
    off[g] = -mn;
    smax = std::fmax(smax, step[g]);
    omax = std::fmax(omax, off[g]);
  }
  const uint16_t dh = f16_at_least(smax / 63), mh = f16_at_least(omax / 63);
  const float d = h2f(dh), dmin = h2f(mh);
  const size_t size = levels == 15 ? 144 : 176;
  std::memset(b, 0, size);
  put16(b, dh);
  put16(b + 2, mh);
  uint8_t* scales = b + 4;
  uint8_t* qh = b + 16;
  uint8_t* ql = levels == 15 ? b + 16 : b + 48;
  for (int g = 0; g < 8; ++g) {
    const int s = d == 0 ? 0 : std::min(63, static_cast<int>(std::ceil(step[g] / d)));
    const int m = dmin == 0 ? 0 : std::min(63, static_cast<int>(std::ceil(off[g] / dmin)));
    if (g < 4) {
      scales[g] = static_cast<uint8_t>(s);
      scales[g + 4] = static_cast<uint8_t>(m);
    } else {
      scales[g + 4] = static_cast<uint8_t>((s & 15) | (m & 15) << 4);
      scales[g - 4] |= static_cast<uint8_t>((s >> 4) << 6);
      scales[g] |= static_cast<uint8_t>((m >> 4) << 6);
    }
    const float e = d * static_cast<float>(s), o = dmin * static_cast<float>(m);
    for (int i = 0; i < 32; ++i) {
      const int q = e == 0 ? 0 : std::clamp(nearest((x[32 * g + i] + o) / e), 0, levels);
      const int c = g / 2, l = i;
      if (g % 2 == 0) {
        ql[32 * c + l] |= static_cast<uint8_t>(q & 15);
        if (q & 16) qh[l] |= static_cast<uint8_t>(1 << (2 * c));
      } else {
        ql[32 * c + l] |= static_cast<uint8_t>((q & 15) << 4);
        if (q & 16) qh[l] |= static_cast<uint8_t>(2 << (2 * c));
      }
    }
  }
}

// Q6_K: groups of 16, step a_g / 31 rounded up to a multiple of d; q in [-32, 31].
void q6_k(const float* x, uint8_t* b) {
  float step[16], dmax = 0;
  for (int g = 0; g < 16; ++g) {
    step[g] = amax_of(x + 16 * g, 16) / 31;
    dmax = std::fmax(dmax, step[g]);
  }
  const uint16_t dh = f16_at_least(dmax / 127);
  const float d = h2f(dh);
  std::memset(b, 0, 210);
  uint8_t* ql = b;
  uint8_t* qh = b + 128;
  int8_t* sc = reinterpret_cast<int8_t*>(b + 192);
  put16(b + 208, dh);
  for (int g = 0; g < 16; ++g) {
    const int s = d == 0 ? 0 : std::min(127, static_cast<int>(std::ceil(step[g] / d)));
    sc[g] = static_cast<int8_t>(s);
    const float e = d * static_cast<float>(s);
    for (int i = 0; i < 16; ++i) {
      const int k = 16 * g + i;
      const int q = (e == 0 ? 0 : std::clamp(nearest(x[k] / e), -32, 31)) + 32;  // 0..63
      const int h = k / 128, r = k % 128, part = r / 32, l = r % 32;
      // part 0: low nibble of ql[l]; 1: low of ql[l+32]; 2: high of ql[l]; 3: high of ql[l+32].
      uint8_t& byte = ql[64 * h + l + (part % 2) * 32];
      byte |= static_cast<uint8_t>((q & 15) << (part < 2 ? 0 : 4));
      qh[32 * h + l] |= static_cast<uint8_t>((q >> 4) << (2 * part));
    }
  }
}

}  // namespace

uint16_t to_f16(float x) {
  const uint32_t u = float_bits(x);
  const uint32_t sign = (u >> 16) & 0x8000u;
  const float a = std::fabs(x);
  if (std::isnan(x)) return static_cast<uint16_t>(sign | 0x7e00u);
  if (a >= 65520.f) return static_cast<uint16_t>(sign | 0x7c00u);
  if (a < std::ldexp(1.f, -14)) {
    // Subnormal: a multiple of 2^-24, rounded to nearest even by lrint.
    return static_cast<uint16_t>(sign | static_cast<uint32_t>(std::lrint(std::ldexp(a, 24))));
  }
  int e;
  const float m = std::frexp(a, &e);  // a = m 2^e, m in [0.5, 1)
  // 11 significant bits: round m * 2^11 to an integer in [1024, 2048].
  long q = std::lrint(std::ldexp(m, 11));
  if (q == 2048) {
    q = 1024;
    ++e;
  }
  const uint32_t exp = static_cast<uint32_t>(e - 1 + 15);
  if (exp >= 31) return static_cast<uint16_t>(sign | 0x7c00u);
  return static_cast<uint16_t>(sign | exp << 10 | (static_cast<uint32_t>(q) & 0x3ffu));
}

std::vector<uint8_t> quantize(GgmlType type, const float* x, int64_t n) {
  const io::GgmlTypeInfo* info = io::ggml_type_info(static_cast<uint32_t>(type));
  if (!info || n % info->block) throw std::runtime_error("quantize: not whole blocks");
  std::vector<uint8_t> out(static_cast<size_t>(n / info->block) * info->block_bytes);
  for (int64_t i = 0; i < n / info->block; ++i) {
    const float* xb = x + i * info->block;
    uint8_t* b = out.data() + static_cast<size_t>(i) * info->block_bytes;
    switch (type) {
      case GgmlType::F32:
        std::memcpy(b, xb, 4);
        break;
      case GgmlType::F16:
        put16(b, to_f16(*xb));
        break;
      case GgmlType::BF16:
        put16(b, float_to_bf16(*xb));
        break;
      case GgmlType::Q8_0:
        q8_0(xb, b);
        break;
      case GgmlType::Q4_0:
        q4_0(xb, b);
        break;
      case GgmlType::Q5_0:
        q5_0(xb, b);
        break;
      case GgmlType::Q4_1:
        q_1(xb, b, 15);
        break;
      case GgmlType::Q5_1:
        q_1(xb, b, 31);
        break;
      case GgmlType::Q3_K:
        q3_k(xb, b);
        break;
      case GgmlType::Q4_K:
        q_k(xb, b, 15);
        break;
      case GgmlType::Q5_K:
        q_k(xb, b, 31);
        break;
      case GgmlType::Q6_K:
        q6_k(xb, b);
        break;
    }
  }
  return out;
}

double quant_bound(GgmlType type, const float* x) {
  const io::GgmlTypeInfo* info = io::ggml_type_info(static_cast<uint32_t>(type));
  const int n = static_cast<int>(info->block);
  const double a = amax_of(x, n);
  const double slack = std::ldexp(a, -9);
  auto range = [&](const float* v, int k, bool with_zero) {
    double mn = with_zero ? 0 : v[0], mx = with_zero ? 0 : v[0];
    for (int i = 0; i < k; ++i) {
      mn = std::min<double>(mn, v[i]);
      mx = std::max<double>(mx, v[i]);
    }
    return std::make_pair(mn, mx);
  };
  switch (type) {
    case GgmlType::F32:
      return 0;
    case GgmlType::F16:
      return std::ldexp(std::fabs(x[0]), -11) + std::ldexp(1.0, -25);
    case GgmlType::BF16:
      return std::ldexp(std::fabs(x[0]), -8);
    case GgmlType::Q8_0:
      return a / 254 + slack;
    case GgmlType::Q4_0:
      return a / 14 + slack;
    case GgmlType::Q5_0:
      return a / 30 + slack;
    case GgmlType::Q4_1:
    case GgmlType::Q5_1: {
      const auto [mn, mx] = range(x, 32, false);
      return (mx - mn) / (type == GgmlType::Q4_1 ? 30 : 62) + slack;
    }
    case GgmlType::Q3_K:
    case GgmlType::Q6_K: {
      const double div = type == GgmlType::Q3_K ? 3 : 31;
      const double d = a / div / (type == GgmlType::Q3_K ? 31 : 127);
      double worst = 0;
      for (int g = 0; g < 16; ++g) worst = std::max(worst, amax_of(x + 16 * g, 16) / div);
      return 0.5 * (worst + d) + slack;
    }
    case GgmlType::Q4_K:
    case GgmlType::Q5_K: {
      const double levels = type == GgmlType::Q4_K ? 15 : 31;
      double smax = 0, omax = 0;
      for (int g = 0; g < 8; ++g) {
        const auto [mn, mx] = range(x + 32 * g, 32, true);
        smax = std::max(smax, (mx - mn) / levels);
        omax = std::max(omax, -mn);
      }
      return 0.5 * (smax + smax / 63) + omax / 63 + slack;
    }
  }
  return 0;
}

void GgufWriter::raw(const std::string& key, uint32_t type, const std::vector<uint8_t>& value) {
  kvs_.push_back({key, type, value});
}

void GgufWriter::u32(const std::string& key, uint32_t v) {
  std::vector<uint8_t> b;
  put(b, v, 4);
  raw(key, static_cast<uint32_t>(GgufValueType::UINT32), b);
}

void GgufWriter::i32(const std::string& key, int32_t v) {
  std::vector<uint8_t> b;
  put(b, static_cast<uint32_t>(v), 4);
  raw(key, static_cast<uint32_t>(GgufValueType::INT32), b);
}

void GgufWriter::f32(const std::string& key, float v) {
  std::vector<uint8_t> b;
  put(b, float_bits(v), 4);
  raw(key, static_cast<uint32_t>(GgufValueType::FLOAT32), b);
}

void GgufWriter::boolean(const std::string& key, bool v) {
  raw(key, static_cast<uint32_t>(GgufValueType::BOOL), {static_cast<uint8_t>(v)});
}

void GgufWriter::string(const std::string& key, const std::string& v) {
  std::vector<uint8_t> b;
  put_str(b, v);
  raw(key, static_cast<uint32_t>(GgufValueType::STRING), b);
}

void GgufWriter::strings(const std::string& key, const std::vector<std::string>& v) {
  std::vector<uint8_t> b;
  put(b, static_cast<uint32_t>(GgufValueType::STRING), 4);
  put(b, v.size(), 8);
  for (const auto& s : v) put_str(b, s);
  raw(key, static_cast<uint32_t>(GgufValueType::ARRAY), b);
}

void GgufWriter::f32s(const std::string& key, const std::vector<float>& v) {
  std::vector<uint8_t> b;
  put(b, static_cast<uint32_t>(GgufValueType::FLOAT32), 4);
  put(b, v.size(), 8);
  for (float f : v) put(b, float_bits(f), 4);
  raw(key, static_cast<uint32_t>(GgufValueType::ARRAY), b);
}

void GgufWriter::i32s(const std::string& key, const std::vector<int32_t>& v) {
  std::vector<uint8_t> b;
  put(b, static_cast<uint32_t>(GgufValueType::INT32), 4);
  put(b, v.size(), 8);
  for (int32_t i : v) put(b, static_cast<uint32_t>(i), 4);
  raw(key, static_cast<uint32_t>(GgufValueType::ARRAY), b);
}

void GgufWriter::u8s(const std::string& key, const std::vector<uint8_t>& v) {
  std::vector<uint8_t> b;
  put(b, static_cast<uint32_t>(GgufValueType::UINT8), 4);
  put(b, v.size(), 8);
  b.insert(b.end(), v.begin(), v.end());
  raw(key, static_cast<uint32_t>(GgufValueType::ARRAY), b);
}

void GgufWriter::tensor(const std::string& name, uint32_t type, const std::vector<uint64_t>& dims,
                        std::vector<uint8_t> bytes) {
  tensors_.push_back({name, type, dims, std::move(bytes)});
}

void GgufWriter::tensor(const std::string& name, GgmlType type, const Tensor& values,
                        int64_t reshape_rows) {
  const Tensor f = values.to(DType::F32);
  std::vector<uint64_t> dims;
  if (reshape_rows > 0) {
    dims = {static_cast<uint64_t>(reshape_rows), static_cast<uint64_t>(f.numel() / reshape_rows)};
    std::vector<int32_t> shape(values.shape().begin(), values.shape().end());
    i32s("comfy.gguf.orig_shape." + name, shape);
  } else {
    for (auto it = values.shape().rbegin(); it != values.shape().rend(); ++it)
      dims.push_back(static_cast<uint64_t>(*it));
  }
  tensor(name, static_cast<uint32_t>(type), dims, quantize(type, f.data<float>(), f.numel()));
}

std::vector<uint8_t> GgufWriter::bytes(uint32_t alignment) const {
  std::vector<uint8_t> out = {'G', 'G', 'U', 'F'};
  put(out, 3, 4);
  layout_ = Layout{};
  layout_.tensor_count_at = out.size();
  put(out, tensors_.size(), 8);
  layout_.kv_count_at = out.size();
  put(out, kvs_.size(), 8);
  for (const Kv& kv : kvs_) {
    layout_.kv_at[kv.key] = out.size();
    put_str(out, kv.key);
    put(out, kv.type, 4);
    out.insert(out.end(), kv.value.begin(), kv.value.end());
  }
  uint64_t offset = 0;
  std::vector<uint64_t> offsets;
  for (const T& t : tensors_) {
    layout_.tensor_info_at[t.name] = out.size();
    put_str(out, t.name);
    put(out, t.dims.size(), 4);
    for (uint64_t d : t.dims) put(out, d, 8);
    put(out, t.type, 4);
    put(out, offset, 8);
    offsets.push_back(offset);
    offset += (t.data.size() + alignment - 1) / alignment * alignment;
  }
  out.resize((out.size() + alignment - 1) / alignment * alignment, 0);
  layout_.data_start = out.size();
  for (size_t i = 0; i < tensors_.size(); ++i) {
    out.resize(layout_.data_start + offsets[i], 0);
    out.insert(out.end(), tensors_[i].data.begin(), tensors_[i].data.end());
  }
  return out;
}

void GgufWriter::write(const std::string& path, uint32_t alignment) const {
  const std::vector<uint8_t> b = bytes(alignment);
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  f.write(reinterpret_cast<const char*>(b.data()), static_cast<std::streamsize>(b.size()));
  if (!f) throw std::runtime_error("cannot write " + path);
}

}  // namespace freeswim::formats
