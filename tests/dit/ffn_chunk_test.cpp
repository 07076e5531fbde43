// The DiT's FFN row chunking and the fused ops it and the attention blocks use, on the CPU
// backend: the fused ops are exactly the compositions they replace, products split at
// kLinearRowBlock multiples are bit-identical to whole ones, and so a chunked forward is
// bit-identical to an unchunked one.
#include <gtest/gtest.h>

#include <cmath>

#include "dit_test_util.h"
#include "models/wan_dit.h"
#include "models/wan_dit_chunks.h"
#include "models/wan_rope.h"
#include "ops/cpu/cpu_backend.h"
#include "ops/ops.h"

namespace freeswim::models {
namespace {

TEST(FfnChunks, RowsAreEvenBlockMultiplesWithinTheBudget) {
  // Wan2.1-1.3B at 1088x1920x81: three chunks of 57,344 rows (the last one 56,672).
  EXPECT_EQ(ffn_chunk_rows(171360, 8960), 57344);
  for (int64_t tokens : {1, 511, 512, 513, 4096, 75600, 171360, 1000000}) {
    for (int64_t ffn : {96, 8960, 13824}) {
      const int64_t rows = ffn_chunk_rows(tokens, ffn);
      EXPECT_EQ(rows % ops::kLinearRowBlock, 0) << tokens << " " << ffn;
      EXPECT_GE(rows, ops::kLinearRowBlock);
      // Within the budget but for the rounding up to a row block.
      EXPECT_LE(rows * ffn, kFfnChunkElements + ops::kLinearRowBlock * ffn) << tokens << " " << ffn;
      // Even: no chunk but the last is shorter, and the last is not a sliver of a block when
      // rows were rounded (at most one block shorter per chunk before it).
      const int64_t chunks = (tokens + rows - 1) / rows;
      EXPECT_GE(tokens - (chunks - 1) * rows, 1);
    }
  }
  const int64_t previous = set_ffn_chunk_rows_cap(1000);
  EXPECT_EQ(ffn_chunk_rows(3000, 96), 1024);  // 3 chunks of 1000 -> rounded to 1024
  EXPECT_EQ(ffn_chunk_rows(400, 96), 512);
  set_ffn_chunk_rows_cap(previous);
  EXPECT_EQ(ffn_chunk_rows(3000, 96), 3072);  // one chunk
}

TEST(FusedOpsCpu, AreExactlyTheCompositions) {
  auto& cpu = ops::cpu::cpu_backend();
  const Tensor x = random_tensor({37, 96}, 1), w = random_tensor({80, 96}, 2, -0.2f, 0.2f);
  const Tensor b = random_tensor({80}, 3), gate = random_tensor({80}, 4);
  expect_identical(cpu.linear_gelu_tanh(x, w, b), cpu.gelu_tanh(cpu.linear(x, w, b)),
                   "linear_gelu_tanh");
  expect_identical(cpu.linear_gelu_tanh(x, w, {}), cpu.gelu_tanh(cpu.linear(x, w, {})),
                   "linear_gelu_tanh without bias");
  for (bool gated : {true, false}) {
    const Tensor r0 = random_tensor({37, 80}, 5);
    Tensor want = r0.clone(), got = r0.clone();
    cpu.add_gated(want, cpu.linear(x, w, b), gated ? gate : Tensor{});
    cpu.linear_add_gated(got, x, w, b, gated ? gate : Tensor{});
    expect_identical(got, want, "linear_add_gated");
  }

  const int T = 2, H = 3, W = 5, heads = 3, hd = 32;
  const ops::Rope3D rope = models::wan_rope_tables(T, H, W, hd);
  const Tensor q = random_tensor({T * H * W, heads, hd}, 6, -3.f, 3.f);
  const Tensor nw = random_tensor({heads * hd}, 7, 0.5f, 1.5f);
  Tensor want = cpu.rms_norm(q.reshape({T * H * W, heads * hd}), nw, 1e-6f).reshape(q.shape());
  cpu.rope_3d(want, rope);
  Tensor got = q.clone();
  cpu.rms_norm_rope_3d(got, nw, 1e-6f, rope);
  expect_identical(got, want, "rms_norm_rope_3d");
}

TEST(FusedOpsCpu, LinearSplitAtRowBlocksIsBitIdentical) {
  auto& cpu = ops::cpu::cpu_backend();
  const int64_t B = ops::kLinearRowBlock, M = 2 * B + 77, K = 200, N = 300;
  const Tensor x = random_tensor({M, K}, 10), w = random_tensor({N, K}, 11, -0.1f, 0.1f);
  const Tensor b = random_tensor({N}, 12);
  const Tensor whole = cpu.linear(x, w, b);
  for (const auto& [r0, r1] : {std::pair<int64_t, int64_t>{0, B}, {B, 2 * B}, {2 * B, M}, {B, M}}) {
    const Tensor part = cpu.linear(x.slice0(r0, r1), w, b);
    expect_identical(part, whole.slice0(r0, r1).clone(), "row chunk of linear");
  }
}

// A random model with more tokens than one chunk of 512 rows: every step kind's prediction with
// the FFN in chunks of 512 rows equals the unchunked forward bit for bit.
TEST(FfnChunks, ChunkedForwardIsBitIdenticalOnCpu) {
  WanDitConfig c;
  c.heads = 2;
  c.head_dim = 32;
  c.num_layers = 2;
  c.ffn_dim = 96;
  c.text_dim = 32;
  const auto model = WanDit::random(c, Device::CPU, 3);
  DitInput in;
  in.latents = random_tensor({16, 3, 32, 48}, 20);  // 3 x 16 x 24 tokens: chunks 512, 512, 128
  in.timestep = 500.f;
  in.context = random_tensor({7, c.text_dim}, 21);
  const int64_t tokens = 3 * 16 * 24;
  FreeSwimParams fsp;
  fsp.dh = 2;
  fsp.dw = 3;
  fsp.attn_scale = freeswim_attention_scale(int64_t{2 * fsp.dh} * (2 * fsp.dw), c.head_dim);

  for (StepKind kind : {StepKind::Stock, StepKind::Dual}) {
    const FreeSwimParams* p = kind == StepKind::Stock ? nullptr : &fsp;
    ASSERT_GE(ffn_chunk_rows(tokens, c.ffn_dim), tokens);  // one chunk by default
    const Tensor whole = model->forward(in, kind, p);
    const int64_t previous = set_ffn_chunk_rows_cap(ops::kLinearRowBlock);
    ASSERT_LT(ffn_chunk_rows(tokens, c.ffn_dim), tokens);  // several chunks now
    const Tensor chunked = model->forward(in, kind, p);
    set_ffn_chunk_rows_cap(previous);
    expect_identical(chunked, whole, step_kind_name(kind));
  }
}

}  // namespace
}  // namespace freeswim::models
