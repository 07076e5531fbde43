// ggml's tensor types as GGUF files store them: the type ids, the block each type packs values
// into, and dequantisation of the block formats this engine reads (docs/gguf.md has the layouts).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include "core/tensor.h"

namespace freeswim::io {

// ggml_type ids (a uint32 in the file). Only the ones this engine reads are named here; the
// others are known by name for error messages (ggml_type_name).
enum class GgmlType : uint32_t {
  F32 = 0,
  F16 = 1,
  Q4_0 = 2,
  Q4_1 = 3,
  Q5_0 = 6,
  Q5_1 = 7,
  Q8_0 = 8,
  Q3_K = 11,
  Q4_K = 12,
  Q5_K = 13,
  Q6_K = 14,
  BF16 = 30,
};

struct GgmlTypeInfo {
  GgmlType type;
  const char* name;
  int64_t block;       // values per block
  size_t block_bytes;  // bytes per block
};

// The layout of a type this engine reads; nullptr for any other id.
const GgmlTypeInfo* ggml_type_info(uint32_t id);
// ggml's name of a type id ("Q4_K", "IQ2_XXS", ...), or "unknown type <id>".
std::string ggml_type_name(uint32_t id);
// The names of the types this engine reads, for messages ("F32, F16, BF16, Q8_0, ...").
std::string ggml_supported_types();

// Decodes `n` values (a multiple of the type's block) from `blocks` into `out` as ggml's
// reference dequantisers compute them (the same float operations in the same order).
void dequantize_blocks(GgmlType type, const uint8_t* blocks, float* out, int64_t n);

// A new f32 CPU tensor of `shape` from the packed bytes (numel a multiple of the block); runs on
// all threads over whole blocks, so the result does not depend on their number.
Tensor dequantize_tensor(GgmlType type, const uint8_t* bytes, const Shape& shape);

}  // namespace freeswim::io
