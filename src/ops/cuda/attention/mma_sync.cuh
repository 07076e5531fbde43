// Primitives of the portable attention kernels (portable_kernels.cu), all of them available from
// compute capability 8.0 on: cp.async with commit groups, ldmatrix, the warp-wide bf16 tensor-core
// product mma.sync m16n8k16, the XOR swizzle of the shared-memory tiles, and the softmax's scalar
// helpers. Each function is one or two PTX instructions. The Hopper kernels have their own
// (hopper.cuh, wgmma.cuh); this namespace keeps the two sets apart.
#pragma once

#include <cuda_bf16.h>

#include <cstdint>
#include <cstring>

namespace freeswim::attention::portable {

__device__ __forceinline__ uint32_t smem_u32(const void* p) {
  return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}

// ---- cp.async: 16-byte copies from global to shared memory, tracked in commit groups ----

// valid = false writes 16 zero bytes and reads nothing (padding keys must be finite: P V with
// P = 0 must stay 0).
__device__ __forceinline__ void cp_async16(uint32_t dst, const void* src, bool valid) {
  const int n = valid ? 16 : 0;
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(dst), "l"(src), "r"(n)
               : "memory");
}
__device__ __forceinline__ void cp_async_commit() {
  asm volatile("cp.async.commit_group;\n" ::: "memory");
}
// Waits until at most N of this thread's committed groups are still in flight.
template <int N>
__device__ __forceinline__ void cp_async_wait() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(N) : "memory");
}

// ---- fragments and products ----

// Four 8x8 b16 matrices; lane l gives the address of row l % 8 of matrix l / 8, and receives
// elements (l / 4, 2 (l % 4) .. + 1) of each (in r[0..3]).
__device__ __forceinline__ void ldmatrix_x4(uint32_t (&r)[4], uint32_t addr) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(addr));
}
// The same with each matrix transposed: lane l receives elements (2 (l % 4) .. + 1, l / 4).
__device__ __forceinline__ void ldmatrix_x4_trans(uint32_t (&r)[4], uint32_t addr) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(addr));
}

// c += a b for a 16x16 bf16 A fragment (row-major), a 16x8 bf16 B fragment (column-major) and a
// 16x8 fp32 accumulator. With g = lane / 4, c4 = lane % 4: c[0], c[1] are row g, columns 2 c4,
// 2 c4 + 1; c[2], c[3] the same columns of row g + 8. a[0] holds row g, k 2 c4 .. + 1, a[1] row
// g + 8, a[2] and a[3] the same rows at k + 8. b0 holds k 2 c4 .. + 1 of column g, b1 k + 8.
__device__ __forceinline__ void mma_16816(float (&c)[4], const uint32_t (&a)[4], uint32_t b0,
                                          uint32_t b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, "
      "{%8,%9}, {%0,%1,%2,%3};\n"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

// ---- shared-memory layout ----

// A tile of rows of D bf16 (D / 8 chunks of 16 bytes each) keeps chunk c of row r at chunk
// c ^ (r % 8): the 8 rows one ldmatrix matrix reads (same logical chunk, consecutive rows) then sit
// in 8 different 16-byte bank groups, for D = 64 (128-byte rows) and D = 128 (256-byte rows) alike.
// Returns the byte offset of the chunk.
template <int D>
__device__ __forceinline__ uint32_t swizzled(int row, int chunk) {
  return static_cast<uint32_t>(row * (D * 2) + ((chunk ^ (row & 7)) << 4));
}

// ---- scalars ----

// One MUFU.EX2: the softmax's exponents are <= kLazyMax and values below 2^-126 do not matter next
// to a row's largest term (>= 1), so the flush to zero is harmless and saves the denormal fix-up.
__device__ __forceinline__ float exp2_ftz(float x) {
  float y;
  asm("ex2.approx.ftz.f32 %0, %1;\n" : "=f"(y) : "f"(x));
  return y;
}
__device__ __forceinline__ uint32_t pack_bf16(float lo, float hi) {
  const __nv_bfloat162 h = __floats2bfloat162_rn(lo, hi);
  uint32_t u;
  memcpy(&u, &h, sizeof(u));
  return u;
}

}  // namespace freeswim::attention::portable
