// Warpgroup tensor-core products (wgmma, sm_90a) and the shared-memory layout they read.
//
// Tiles live in shared memory in the 128-byte swizzle that wgmma descriptors and the TMA unit
// both use: a row of D bf16 is split into column blocks of 64 values (128 bytes); a column block
// of R rows is R x 128 bytes with the 16-byte chunk c of row r stored at c ^ (r % 8) (atoms of 8
// rows = 1024 bytes, which must be 1024-byte aligned).
//
// The products of one 64-row warpgroup (accumulator d[j][e]: 8-column block j, in the mma.sync
// m16n8 C layout per warp):
//   S = Q K^T  (m64n128k16): Q from registers (A fragments) or from shared memory, K K-major;
//   O += P V   (m64n{D}k16): P from registers (S's accumulator layout is P's A-fragment layout),
//              V MN-major, i.e. transposed by the descriptor.
#pragma once

#include <cstdint>

#include "ops/cuda/attention/hopper.cuh"

namespace freeswim::attention::detail {

// Element offset of 16-byte chunk `chunk` of row `row` in a swizzled tile of R rows.
template <int R>
__device__ __forceinline__ int sw128(int row, int chunk) {
  return (chunk >> 3) * (R * 64) + row * 64 + (((chunk & 7) ^ (row & 7)) << 3);
}

// wgmma shared-memory descriptor, 128-byte swizzle; byte offsets LBO and SBO.
__device__ __forceinline__ uint64_t smem_desc_sw128(const void* p, uint32_t lbo, uint32_t sbo) {
  const uint64_t a = smem_u32(p);
  return ((a & 0x3FFFF) >> 4) | (uint64_t{(lbo >> 4) & 0x3FFF} << 16) |
         (uint64_t{(sbo >> 4) & 0x3FFF} << 32) | (uint64_t{1} << 62);
}
// A descriptor moved by `bytes` inside shared memory: the start address is the low 14-bit field
// in 16-byte units, and shared addresses stay below 2^18 bytes, so the add cannot carry out of it.
__device__ __forceinline__ uint64_t desc_advance(uint64_t d, uint32_t bytes) {
  const uint32_t lo = static_cast<uint32_t>(d) + (bytes >> 4);
  return (d & 0xFFFFFFFF00000000ull) | lo;
}

__device__ __forceinline__ void wgmma_fence() {
  asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory");
}
__device__ __forceinline__ void wgmma_commit() {
  asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory");
}
__device__ __forceinline__ void wgmma_wait0() {
  asm volatile("wgmma.wait_group.sync.aligned 0;\n" ::: "memory");
}
__device__ __forceinline__ void wgmma_wait1() {
  asm volatile("wgmma.wait_group.sync.aligned 1;\n" ::: "memory");
}
// Keeps the compiler from moving reads or writes of accumulators across wgmma fences and waits.
template <int N>
__device__ __forceinline__ void fence_regs(float (&r)[N][4]) {
#pragma unroll
  for (int i = 0; i < N; ++i)
#pragma unroll
    for (int e = 0; e < 4; ++e) asm volatile("" : "+f"(r[i][e])::"memory");
}

// The 32 accumulator operands of an m64n64 product (d[8][4]) and the 64 of an m64n128 one.
#define FS_WGMMA_ACC64(d)                                                                       \
  "+f"(d[0][0]), "+f"(d[0][1]), "+f"(d[0][2]), "+f"(d[0][3]), "+f"(d[1][0]), "+f"(d[1][1]),     \
      "+f"(d[1][2]), "+f"(d[1][3]), "+f"(d[2][0]), "+f"(d[2][1]), "+f"(d[2][2]), "+f"(d[2][3]), \
      "+f"(d[3][0]), "+f"(d[3][1]), "+f"(d[3][2]), "+f"(d[3][3]), "+f"(d[4][0]), "+f"(d[4][1]), \
      "+f"(d[4][2]), "+f"(d[4][3]), "+f"(d[5][0]), "+f"(d[5][1]), "+f"(d[5][2]), "+f"(d[5][3]), \
      "+f"(d[6][0]), "+f"(d[6][1]), "+f"(d[6][2]), "+f"(d[6][3]), "+f"(d[7][0]), "+f"(d[7][1]), \
      "+f"(d[7][2]), "+f"(d[7][3])
#define FS_WGMMA_ACC128(d)                                                                         \
  FS_WGMMA_ACC64(d), "+f"(d[8][0]), "+f"(d[8][1]), "+f"(d[8][2]), "+f"(d[8][3]), "+f"(d[9][0]),    \
      "+f"(d[9][1]), "+f"(d[9][2]), "+f"(d[9][3]), "+f"(d[10][0]), "+f"(d[10][1]), "+f"(d[10][2]), \
      "+f"(d[10][3]), "+f"(d[11][0]), "+f"(d[11][1]), "+f"(d[11][2]), "+f"(d[11][3]),              \
      "+f"(d[12][0]), "+f"(d[12][1]), "+f"(d[12][2]), "+f"(d[12][3]), "+f"(d[13][0]),              \
      "+f"(d[13][1]), "+f"(d[13][2]), "+f"(d[13][3]), "+f"(d[14][0]), "+f"(d[14][1]),              \
      "+f"(d[14][2]), "+f"(d[14][3]), "+f"(d[15][0]), "+f"(d[15][1]), "+f"(d[15][2]),              \
      "+f"(d[15][3])
#define FS_WGMMA_REGS32                                                                          \
  "{%0,%1,%2,%3,%4,%5,%6,%7,%8,%9,%10,%11,%12,%13,%14,%15,%16,%17,%18,%19,%20,%21,%22,%23,%24,%" \
  "25,%26,%27,%28,%29,%30,%31}"
#define FS_WGMMA_REGS64                                                                          \
  "{%0,%1,%2,%3,%4,%5,%6,%7,%8,%9,%10,%11,%12,%13,%14,%15,%16,%17,%18,%19,%20,%21,%22,%23,%24,%" \
  "25,%26,%27,%28,%29,%30,%31,%32,%33,%34,%35,%36,%37,%38,%39,%40,%41,%42,%43,%44,%45,%46,%47,%" \
  "48,%49,%50,%51,%52,%53,%54,%55,%56,%57,%58,%59,%60,%61,%62,%63}"

// S = Q K^T for 128 keys, Q (A) from registers, K (B) K-major in shared memory; scale_d = 0
// starts from zero.
__device__ __forceinline__ void wgmma_s_qregs(float (&d)[16][4], const uint32_t (&a)[4],
                                              uint64_t db, int scale_d) {
  asm volatile(
      "{\n.reg .pred p;\nsetp.ne.b32 p, %69, 0;\n"
      "wgmma.mma_async.sync.aligned.m64n128k16.f32.bf16.bf16 " FS_WGMMA_REGS64
      ", {%64,%65,%66,%67}, %68, p, 1, 1, 0;\n}\n"
      : FS_WGMMA_ACC128(d)
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(db), "r"(scale_d));
}

// The same with Q (A) in shared memory too (both K-major).
__device__ __forceinline__ void wgmma_s_qsmem(float (&d)[16][4], uint64_t da, uint64_t db,
                                              int scale_d) {
  asm volatile(
      "{\n.reg .pred p;\nsetp.ne.b32 p, %66, 0;\n"
      "wgmma.mma_async.sync.aligned.m64n128k16.f32.bf16.bf16 " FS_WGMMA_REGS64
      ", %64, %65, p, 1, 1, 0, 0;\n}\n"
      : FS_WGMMA_ACC128(d)
      : "l"(da), "l"(db), "r"(scale_d));
}

// O += P V for D = 128 and D = 64: P (A) from registers, V (B) MN-major in shared memory.
__device__ __forceinline__ void wgmma_pv(float (&d)[16][4], const uint32_t (&a)[4], uint64_t db) {
  asm volatile(
      "{\n.reg .pred p;\nsetp.eq.u32 p, 1, 1;\n"
      "wgmma.mma_async.sync.aligned.m64n128k16.f32.bf16.bf16 " FS_WGMMA_REGS64
      ", {%64,%65,%66,%67}, %68, p, 1, 1, 1;\n}\n"
      : FS_WGMMA_ACC128(d)
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(db));
}
__device__ __forceinline__ void wgmma_pv(float (&d)[8][4], const uint32_t (&a)[4], uint64_t db) {
  asm volatile(
      "{\n.reg .pred p;\nsetp.eq.u32 p, 1, 1;\n"
      "wgmma.mma_async.sync.aligned.m64n64k16.f32.bf16.bf16 " FS_WGMMA_REGS32
      ", {%32,%33,%34,%35}, %36, p, 1, 1, 1;\n}\n"
      : FS_WGMMA_ACC64(d)
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(db));
}

#undef FS_WGMMA_ACC64
#undef FS_WGMMA_ACC128
#undef FS_WGMMA_REGS32
#undef FS_WGMMA_REGS64

}  // namespace freeswim::attention::detail
