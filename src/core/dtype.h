// Element types of tensors and their conversion to float. bf16, fp16 and the two fp8 formats
// appear in checkpoints; the CPU backend computes in fp32, the CUDA backend in bf16 with fp32
// where the reference keeps fp32. fp8 tensors only ever live on the host: loaders turn them into
// f32 before anything else sees them (docs/fp8.md).
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string_view>

namespace freeswim {

// F8_E4M3 is torch.float8_e4m3fn (OCP E4M3: bias 7, no infinities, one NaN pattern per sign,
// largest finite 448); F8_E5M2 is torch.float8_e5m2 (IEEE-like: bias 15, infinities, largest
// finite 57344). Names are safetensors' dtype strings.
enum class DType : uint8_t { F32, BF16, F16, I64, I32, U8, F8_E4M3, F8_E5M2 };

constexpr size_t dtype_size(DType t) {
  switch (t) {
    case DType::F32:
      return 4;
    case DType::BF16:
      return 2;
    case DType::F16:
      return 2;
    case DType::I64:
      return 8;
    case DType::I32:
      return 4;
    case DType::U8:
    case DType::F8_E4M3:
    case DType::F8_E5M2:
      return 1;
  }
  return 0;
}

constexpr std::string_view dtype_name(DType t) {
  switch (t) {
    case DType::F32:
      return "F32";
    case DType::BF16:
      return "BF16";
    case DType::F16:
      return "F16";
    case DType::I64:
      return "I64";
    case DType::I32:
      return "I32";
    case DType::U8:
      return "U8";
    case DType::F8_E4M3:
      return "F8_E4M3";
    case DType::F8_E5M2:
      return "F8_E5M2";
  }
  return "?";
}

inline float bf16_to_float(uint16_t h) {
  uint32_t u = static_cast<uint32_t>(h) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

// Round to nearest even, NaN kept quiet.
inline uint16_t float_to_bf16(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  if ((u & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((u >> 16) | 0x40);
  u += 0x7fffu + ((u >> 16) & 1u);
  return static_cast<uint16_t>(u >> 16);
}

inline float f16_to_float(uint16_t h) {
  uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  uint32_t exp = (h >> 10) & 0x1fu;
  uint32_t mant = h & 0x3ffu;
  uint32_t u;
  if (exp == 0) {
    if (mant == 0) {
      u = sign;
    } else {  // subnormal: normalise
      int e = -1;
      do {
        ++e;
        mant <<= 1;
      } while ((mant & 0x400u) == 0);
      u = sign | static_cast<uint32_t>(127 - 15 - e) << 23 | (mant & 0x3ffu) << 13;
    }
  } else if (exp == 31) {
    u = sign | 0x7f800000u | mant << 13;
  } else {
    u = sign | (exp + 127 - 15) << 23 | mant << 13;
  }
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

namespace detail {

// The float32 bit pattern of one fp8 code, built by moving the fields into place: sign to bit
// 31, the exponent re-biased from `bias` to 127, the mantissa left-aligned in 23 bits.
// Subnormal codes are normalised; a zero exponent field with a zero mantissa is a signed zero.
// `ieee_specials`: an all-ones exponent means infinity (mantissa 0) or NaN (E5M2). Without it
// (E4M3FN) only the all-ones exponent *and* mantissa is NaN and every other code is finite.
constexpr uint32_t f8_to_f32_bits(uint8_t code, int exp_bits, int man_bits, bool ieee_specials) {
  const uint32_t sign = static_cast<uint32_t>(code >> 7) << 31;
  const uint32_t exp_max = (1u << exp_bits) - 1;
  const uint32_t exp = (code >> man_bits) & exp_max;
  uint32_t man = code & ((1u << man_bits) - 1);
  const int bias = (1 << (exp_bits - 1)) - 1;
  if (exp == exp_max && (ieee_specials || man == (1u << man_bits) - 1)) {
    if (ieee_specials && man == 0) return sign | 0x7f800000u;  // infinity
    return sign | 0x7fc00000u | (man << (23 - man_bits));      // quiet NaN
  }
  if (exp == 0) {
    if (man == 0) return sign;
    // Subnormal: value = man * 2^(1 - bias - man_bits). Shift the leading one out.
    int e = 1 - bias;
    while ((man & (1u << man_bits)) == 0) {
      man <<= 1;
      --e;
    }
    man &= (1u << man_bits) - 1;
    return sign | static_cast<uint32_t>(e + 127) << 23 | man << (23 - man_bits);
  }
  return sign | (exp - static_cast<uint32_t>(bias) + 127u) << 23 | man << (23 - man_bits);
}

struct F8Table {
  uint32_t bits[256];
};

constexpr F8Table make_f8_table(int exp_bits, int man_bits, bool ieee_specials) {
  F8Table t{};
  for (int c = 0; c < 256; ++c)
    t.bits[c] = f8_to_f32_bits(static_cast<uint8_t>(c), exp_bits, man_bits, ieee_specials);
  return t;
}

inline constexpr F8Table kE4M3Table = make_f8_table(4, 3, false);
inline constexpr F8Table kE5M2Table = make_f8_table(5, 2, true);

inline float bits_to_float(uint32_t u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

}  // namespace detail

// Exact: every fp8 value is a float32 value.
inline float f8e4m3_to_float(uint8_t code) {
  return detail::bits_to_float(detail::kE4M3Table.bits[code]);
}
inline float f8e5m2_to_float(uint8_t code) {
  return detail::bits_to_float(detail::kE5M2Table.bits[code]);
}

}  // namespace freeswim
