// Row chunking of the DiT's feed-forward network. The FFN is token-wise, so it can run over row
// slices of the residual stream: only one chunk's hidden activation [rows, ffn_dim] exists at a
// time instead of [tokens, ffn_dim] (2.9 GiB in bf16 at Wan2.1-1.3B's 171,360 tokens of
// 1088x1920x81, plus as much again for an unfused GELU's copy).
#pragma once

#include <cstdint>

namespace freeswim::models {

// The most hidden-activation elements of one FFN chunk: 2^29 (1 GiB in bf16), i.e. 59,918 rows
// of Wan's 8960 features, evened out to three chunks of 57,344 rows at 171,360 tokens. Less would
// save little, since self-attention's q, k, v and output (4 x 0.5 GiB there) are then the
// block's peak; and each chunk's products keep M >= ~57K rows, about 20 waves of output tiles
// on an H200 for the narrowest (ffn2, N = 1536), so splitting costs no tensor-core efficiency.
constexpr int64_t kFfnChunkElements = int64_t{1} << 29;

// Rows per FFN chunk for `tokens` rows of `ffn_dim` hidden features: chunks of equal size (the
// caching allocator then reuses one block), a multiple of ops::kLinearRowBlock so that chunked
// and unchunked forwards are bit-identical on the CPU backend, the last chunk taking the rest.
int64_t ffn_chunk_rows(int64_t tokens, int64_t ffn_dim);

// For tests: caps the rows per chunk (0: no cap beyond kFfnChunkElements), so that small models
// run several chunks. Returns the previous cap. Not meant to be changed during a forward.
int64_t set_ffn_chunk_rows_cap(int64_t rows);

}  // namespace freeswim::models
