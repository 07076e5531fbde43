// Dequantisation of ggml's block formats. Each function reads one block and writes its values in
// storage order; the arithmetic (float multiplies and adds in the order ggml's reference
// dequantisers use) makes the output bit-identical to theirs, which the tests check against
// hashes of ggml's own output. Layouts: docs/gguf.md.
#include "io/gguf_quants.h"

#include <array>
#include <cstring>

#include "core/dtype.h"
#include "core/error.h"
#include "core/threads.h"

namespace freeswim::io {

namespace {

constexpr std::array<GgmlTypeInfo, 12> kTypes{{
    {GgmlType::F32, "F32", 1, 4},
    {GgmlType::F16, "F16", 1, 2},
    {GgmlType::BF16, "BF16", 1, 2},
    {GgmlType::Q8_0, "Q8_0", 32, 34},
    {GgmlType::Q4_0, "Q4_0", 32, 18},
    {GgmlType::Q4_1, "Q4_1", 32, 20},
    {GgmlType::Q5_0, "Q5_0", 32, 22},
    {GgmlType::Q5_1, "Q5_1", 32, 24},
    {GgmlType::Q3_K, "Q3_K", 256, 110},
    {GgmlType::Q4_K, "Q4_K", 256, 144},
    {GgmlType::Q5_K, "Q5_K", 256, 176},
    {GgmlType::Q6_K, "Q6_K", 256, 210},
}};

// Every ggml_type id up to 39 (ggml.h; removed ids have no name).
constexpr std::array<const char*, 40> kAllNames{
    "F32",   "F16",        "Q4_0",       "Q4_1",       nullptr,    nullptr,    "Q5_0",
    "Q5_1",  "Q8_0",       "Q8_1",       "Q2_K",       "Q3_K",     "Q4_K",     "Q5_K",
    "Q6_K",  "Q8_K",       "IQ2_XXS",    "IQ2_XS",     "IQ3_XXS",  "IQ1_S",    "IQ4_NL",
    "IQ3_S", "IQ2_S",      "IQ4_XS",     "I8",         "I16",      "I32",      "I64",
    "F64",   "IQ1_M",      "BF16",       "Q4_0_4_4",   "Q4_0_4_8", "Q4_0_8_8", "TQ1_0",
    "TQ2_0", "IQ4_NL_4_4", "IQ4_NL_4_8", "IQ4_NL_8_8", "MXFP4"};

float half(const uint8_t* p) {
  return f16_to_float(static_cast<uint16_t>(p[0] | p[1] << 8));
}

// Q8_0: d (f16), 32 x int8.
void q8_0(const uint8_t* b, float* y) {
  const float d = half(b);
  for (int j = 0; j < 32; ++j) y[j] = static_cast<float>(static_cast<int8_t>(b[2 + j])) * d;
}

// Q4_0: d (f16), 16 bytes of nibbles: value j in the low nibble of byte j, value j + 16 in its
// high nibble; x = (q - 8) * d.
void q4_0(const uint8_t* b, float* y) {
  const float d = half(b);
  const uint8_t* qs = b + 2;
  for (int j = 0; j < 16; ++j) {
    y[j] = static_cast<float>((qs[j] & 0x0f) - 8) * d;
    y[j + 16] = static_cast<float>((qs[j] >> 4) - 8) * d;
  }
}

// Q4_1: d, m (f16), nibbles as Q4_0; x = q * d + m.
void q4_1(const uint8_t* b, float* y) {
  const float d = half(b), m = half(b + 2);
  const uint8_t* qs = b + 4;
  for (int j = 0; j < 16; ++j) {
    y[j] = static_cast<float>(qs[j] & 0x0f) * d + m;
    y[j + 16] = static_cast<float>(qs[j] >> 4) * d + m;
  }
}

uint32_t le32(const uint8_t* p) {
  return static_cast<uint32_t>(p[0]) | static_cast<uint32_t>(p[1]) << 8 |
         static_cast<uint32_t>(p[2]) << 16 | static_cast<uint32_t>(p[3]) << 24;
}

// Q5_0: d (f16), qh (32 fifth bits, little-endian: bit j belongs to value j), nibbles as Q4_0;
// x = (q - 16) * d.
void q5_0(const uint8_t* b, float* y) {
  const float d = half(b);
  const uint32_t qh = le32(b + 2);
  const uint8_t* qs = b + 6;
  for (int j = 0; j < 16; ++j) {
    const int hi0 = static_cast<int>((qh >> j) & 1) << 4;
    const int hi1 = static_cast<int>((qh >> (j + 16)) & 1) << 4;
    y[j] = static_cast<float>(((qs[j] & 0x0f) | hi0) - 16) * d;
    y[j + 16] = static_cast<float>(((qs[j] >> 4) | hi1) - 16) * d;
  }
}

// Q5_1: d, m (f16), qh, nibbles; x = q * d + m.
void q5_1(const uint8_t* b, float* y) {
  const float d = half(b), m = half(b + 2);
  const uint32_t qh = le32(b + 4);
  const uint8_t* qs = b + 8;
  for (int j = 0; j < 16; ++j) {
    const int hi0 = static_cast<int>((qh >> j) & 1) << 4;
    const int hi1 = static_cast<int>((qh >> (j + 16)) & 1) << 4;
    y[j] = static_cast<float>((qs[j] & 0x0f) | hi0) * d + m;
    y[j + 16] = static_cast<float>((qs[j] >> 4) | hi1) * d + m;
  }
}

// Q3_K (256 values in 16 groups of 16): hmask[32], qs[64], scales[12], d (f16).
// Value k = 128h + 32j + l (h < 2, j < 4, l < 32): low two bits (qs[32h + l] >> 2j) & 3, high
// bit hmask[l] bit (4h + j) (clear: subtract 4), group 8h + 2j + l/16 whose 6-bit scale is
// stored as 4 low bits (byte g of scales for g < 8, high nibble of byte g - 8 otherwise) and 2
// high bits (bits 2(g/4) of byte 8 + g%4), minus 32.
void q3_k(const uint8_t* b, float* y) {
  const uint8_t* hmask = b;
  const uint8_t* qs = b + 32;
  const uint8_t* sc = b + 96;
  const float d_all = half(b + 108);
  int scale[16];
  for (int g = 0; g < 16; ++g) {
    const int low = g < 8 ? sc[g] & 0x0f : sc[g - 8] >> 4;
    const int high = (sc[8 + g % 4] >> (2 * (g / 4))) & 3;
    scale[g] = (low | high << 4) - 32;
  }
  for (int h = 0; h < 2; ++h) {
    for (int j = 0; j < 4; ++j) {
      for (int half_group = 0; half_group < 2; ++half_group) {
        const float dl = d_all * static_cast<float>(scale[8 * h + 2 * j + half_group]);
        for (int l = 16 * half_group; l < 16 * half_group + 16; ++l) {
          const int low = (qs[32 * h + l] >> (2 * j)) & 3;
          const int sub = (hmask[l] & (1 << (4 * h + j))) ? 0 : 4;
          y[128 * h + 32 * j + l] = dl * static_cast<float>(low - sub);
        }
      }
    }
  }
}

// The 6-bit scale and min of group j (< 8) of a Q4_K / Q5_K block's 12 scale bytes.
void scale_min_k4(int j, const uint8_t* q, uint8_t& sc, uint8_t& m) {
  if (j < 4) {
    sc = q[j] & 63;
    m = q[j + 4] & 63;
  } else {
    sc = static_cast<uint8_t>((q[j + 4] & 0x0f) | ((q[j - 4] >> 6) << 4));
    m = static_cast<uint8_t>((q[j + 4] >> 4) | ((q[j] >> 6) << 4));
  }
}

// Q4_K (256 values in 8 groups of 32): d, dmin (f16), scales[12], qs[128]. Chunk c < 4 of 64
// values: the low nibbles of qs[32c .. 32c+32) are group 2c, the high nibbles group 2c + 1;
// x = d * sc * q - dmin * m.
void q4_k(const uint8_t* b, float* y) {
  const float d = half(b), dmin = half(b + 2);
  const uint8_t* scales = b + 4;
  const uint8_t* q = b + 16;
  for (int c = 0; c < 4; ++c) {
    uint8_t sc, m;
    scale_min_k4(2 * c, scales, sc, m);
    const float d1 = d * sc, m1 = dmin * m;
    scale_min_k4(2 * c + 1, scales, sc, m);
    const float d2 = d * sc, m2 = dmin * m;
    for (int l = 0; l < 32; ++l) y[64 * c + l] = d1 * static_cast<float>(q[32 * c + l] & 0x0f) - m1;
    for (int l = 0; l < 32; ++l)
      y[64 * c + 32 + l] = d2 * static_cast<float>(q[32 * c + l] >> 4) - m2;
  }
}

// Q5_K: d, dmin (f16), scales[12], qh[32], qs[128]: as Q4_K with a fifth bit, qh[l] bit 2c for
// value 64c + l and bit 2c + 1 for value 64c + 32 + l.
void q5_k(const uint8_t* b, float* y) {
  const float d = half(b), dmin = half(b + 2);
  const uint8_t* scales = b + 4;
  const uint8_t* qh = b + 16;
  const uint8_t* ql = b + 48;
  for (int c = 0; c < 4; ++c) {
    uint8_t sc, m;
    scale_min_k4(2 * c, scales, sc, m);
    const float d1 = d * sc, m1 = dmin * m;
    scale_min_k4(2 * c + 1, scales, sc, m);
    const float d2 = d * sc, m2 = dmin * m;
    const int u1 = 1 << (2 * c), u2 = 2 << (2 * c);
    for (int l = 0; l < 32; ++l)
      y[64 * c + l] = d1 * static_cast<float>((ql[32 * c + l] & 0x0f) + (qh[l] & u1 ? 16 : 0)) - m1;
    for (int l = 0; l < 32; ++l)
      y[64 * c + 32 + l] =
          d2 * static_cast<float>((ql[32 * c + l] >> 4) + (qh[l] & u2 ? 16 : 0)) - m2;
  }
}

// Q6_K (256 values in 16 groups of 16): ql[128], qh[64], scales[16] (int8), d (f16). Half
// h < 2, l < 32: value 128h + l + 32i (i < 4) has low nibble ql[64h + l + 32(i%2)] (i < 2:
// low nibble, else high), high two bits (qh[32h + l] >> 2i) & 3, minus 32; group (128h + l +
// 32i) / 16. x = d * scale * q.
void q6_k(const uint8_t* b, float* y) {
  const float d = half(b + 208);
  for (int h = 0; h < 2; ++h) {
    const uint8_t* ql = b + 64 * h;
    const uint8_t* qh = b + 128 + 32 * h;
    const int8_t* sc = reinterpret_cast<const int8_t*>(b + 192) + 8 * h;
    float* yh = y + 128 * h;
    for (int l = 0; l < 32; ++l) {
      const int is = l / 16;
      const int q1 = ((ql[l] & 0x0f) | ((qh[l] >> 0) & 3) << 4) - 32;
      const int q2 = ((ql[l + 32] & 0x0f) | ((qh[l] >> 2) & 3) << 4) - 32;
      const int q3 = ((ql[l] >> 4) | ((qh[l] >> 4) & 3) << 4) - 32;
      const int q4 = ((ql[l + 32] >> 4) | ((qh[l] >> 6) & 3) << 4) - 32;
      yh[l] = d * static_cast<float>(sc[is]) * static_cast<float>(q1);
      yh[l + 32] = d * static_cast<float>(sc[is + 2]) * static_cast<float>(q2);
      yh[l + 64] = d * static_cast<float>(sc[is + 4]) * static_cast<float>(q3);
      yh[l + 96] = d * static_cast<float>(sc[is + 6]) * static_cast<float>(q4);
    }
  }
}

}  // namespace

const GgmlTypeInfo* ggml_type_info(uint32_t id) {
  for (const GgmlTypeInfo& t : kTypes)
    if (static_cast<uint32_t>(t.type) == id) return &t;
  return nullptr;
}

std::string ggml_type_name(uint32_t id) {
  if (id < kAllNames.size() && kAllNames[id] != nullptr) return kAllNames[id];
  return fmt::format("unknown type {}", id);
}

std::string ggml_supported_types() {
  std::string s;
  for (const GgmlTypeInfo& t : kTypes) s += (s.empty() ? "" : ", ") + std::string(t.name);
  return s;
}

void dequantize_blocks(GgmlType type, const uint8_t* blocks, float* out, int64_t n) {
  const GgmlTypeInfo* info = ggml_type_info(static_cast<uint32_t>(type));
  FS_CHECK(info != nullptr && n % info->block == 0, "dequantize_blocks: bad type or count");
  const int64_t nb = n / info->block;
  for (int64_t i = 0; i < nb; ++i) {
    const uint8_t* b = blocks + static_cast<size_t>(i) * info->block_bytes;
    float* y = out + i * info->block;
    switch (type) {
      case GgmlType::F32:
        std::memcpy(y, b, 4);
        break;
      case GgmlType::F16:
        *y = half(b);
        break;
      case GgmlType::BF16:
        *y = bf16_to_float(static_cast<uint16_t>(b[0] | b[1] << 8));
        break;
      case GgmlType::Q8_0:
        q8_0(b, y);
        break;
      case GgmlType::Q4_0:
        q4_0(b, y);
        break;
      case GgmlType::Q4_1:
        q4_1(b, y);
        break;
      case GgmlType::Q5_0:
        q5_0(b, y);
        break;
      case GgmlType::Q5_1:
        q5_1(b, y);
        break;
      case GgmlType::Q3_K:
        q3_k(b, y);
        break;
      case GgmlType::Q4_K:
        q4_k(b, y);
        break;
      case GgmlType::Q5_K:
        q5_k(b, y);
        break;
      case GgmlType::Q6_K:
        q6_k(b, y);
        break;
    }
  }
}

Tensor dequantize_tensor(GgmlType type, const uint8_t* bytes, const Shape& shape) {
  const GgmlTypeInfo* info = ggml_type_info(static_cast<uint32_t>(type));
  const int64_t n = shape_numel(shape);
  FS_CHECK(info != nullptr && n % info->block == 0,
           "dequantize_tensor: {} values are not whole blocks of {}", n,
           ggml_type_name(static_cast<uint32_t>(type)));
  Tensor out = Tensor::empty(shape, DType::F32, Device::CPU);
  float* y = out.data<float>();
  const int64_t blocks = n / info->block;
  // Grain: about 64 Ki values per task.
  parallel_for(blocks, std::max<int64_t>(1, 65536 / info->block), [&](int64_t b0, int64_t b1) {
    dequantize_blocks(type, bytes + static_cast<size_t>(b0) * info->block_bytes,
                      y + b0 * info->block, (b1 - b0) * info->block);
  });
  return out;
}

}  // namespace freeswim::io
