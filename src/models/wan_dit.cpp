// Forward pass of the Wan2.1 DiT and its FreeSwim variants. Arithmetic follows diffusers
// 0.35.2 WanTransformer3DModel: adaLN modulation, norms and residual adds in fp32; RoPE angles
// in float64 cast to fp32, laid out as models/wan_rope.h says; the timestep sinusoid in fp32 with
// cos before sin.
#include "models/wan_dit.h"

#include <algorithm>
#include <atomic>
#include <cmath>

#include "core/device_memory.h"
#include "core/error.h"
#include "models/wan_dit_chunks.h"
#include "models/wan_rope.h"
#include "parallel/communicator.h"
#include "parallel/ulysses.h"

namespace freeswim::models {

namespace {
std::atomic<int64_t> g_ffn_rows_cap{0};  // set_ffn_chunk_rows_cap (tests)
}  // namespace

int64_t ffn_chunk_rows(int64_t tokens, int64_t ffn_dim) {
  int64_t cap = std::max<int64_t>(1, kFfnChunkElements / std::max<int64_t>(ffn_dim, 1));
  const int64_t test_cap = g_ffn_rows_cap.load();
  if (test_cap > 0) cap = std::min(cap, test_cap);
  const int64_t chunks = std::max<int64_t>(1, (tokens + cap - 1) / cap);
  const int64_t even = (tokens + chunks - 1) / chunks;
  const int64_t block = ops::kLinearRowBlock;
  return std::max<int64_t>(block, (even + block - 1) / block * block);
}

int64_t set_ffn_chunk_rows_cap(int64_t rows) {
  return g_ffn_rows_cap.exchange(rows);
}

struct WanDit::Embedded {
  Tensor x;         // [tokens, dim]
  Tensor temb;      // [1, dim]
  Tensor mod_proj;  // [1, 6*dim] (time_proj(SiLU(temb)))
  Tensor context;   // [L, dim]
  int T = 0, Hg = 0, Wg = 0;
  // Sequence-parallel: how the tokens are cut, and x holds only this rank's (padded) slab.
  std::optional<parallel::TokenSplit> split;
};

WanDit::WanDit(WanDitConfig config, WanDitWeights weights, Device device)
    : config_(config), w_(std::move(weights)), device_(device) {
  // The out-of-memory message names --offload with the bytes it would move (block weights on the
  // device; load(offload = true) hands them over in host memory already).
  const bool on_device = !w_.blocks.empty() && w_.blocks[0].ffn0_w.defined() &&
                         w_.blocks[0].ffn0_w.device() != Device::CPU;
  if (on_device) {
    offloadable_counted_ = block_weight_bytes();
    add_device_offloadable_bytes(device_, offloadable_counted_);
  }
}

WanDit::~WanDit() {
  add_device_offloadable_bytes(device_, -offloadable_counted_);
}

Tensor WanDit::pin_for_offload(const Tensor& on_device, Device device) {
  if (device == Device::CPU || on_device.device() == Device::CPU) return on_device;
  Tensor h = Tensor::empty_pinned(on_device.shape(), on_device.dtype(), device);
  copy_async(h, on_device).host_waits();
  return h;
}

namespace {

// Every tensor member of a block, in one fixed order (absent ones are undefined tensors);
// const or not as the block is.
template <typename Block>
auto block_tensors(Block& b) {
  std::vector<decltype(&b.ffn0_w)> v;
  for (auto* a : {&b.attn1, &b.attn2})
    for (auto* t : {&a->to_q_w, &a->to_q_b, &a->to_k_w, &a->to_k_b, &a->to_v_w, &a->to_v_b,
                    &a->to_out_w, &a->to_out_b, &a->norm_q, &a->norm_k})
      v.push_back(t);
  for (auto* t :
       {&b.norm2_w, &b.norm2_b, &b.ffn0_w, &b.ffn0_b, &b.ffn2_w, &b.ffn2_b, &b.scale_shift_table})
    v.push_back(t);
  return v;
}

}  // namespace

// The --offload mechanism (WanDit::enable_offload). Two slots on the device; slot s holds block
// block_[s] once copies_[s] have completed. acquire(i) makes the compute stream wait for block
// i's copies, then queues block i + 1 (the first block after the last, for the next forward)
// into the other slot. copy_async starts a copy only after the work already queued on the
// compute stream, which includes every kernel of the block that used that slot before, and
// block i's kernels are queued after it, so the copy overlaps them.
class BlockStreamer {
 public:
  BlockStreamer(std::vector<WanBlockWeights>& blocks, Device device) {
    FS_CHECK(!blocks.empty(), "--offload: the model has no blocks");
    host_ = blocks;
    const std::vector<Tensor*> first = block_tensors(host_[0]);  // the shapes every slot takes
    for (size_t i = 0; i < host_.size(); ++i) {
      const std::vector<Tensor*> ts = block_tensors(host_[i]);
      for (size_t k = 0; k < ts.size(); ++k) {
        Tensor& t = *ts[k];
        FS_CHECK(t.defined() == first[k]->defined() &&
                     (!t.defined() ||
                      (t.shape() == first[k]->shape() && t.dtype() == first[k]->dtype())),
                 "--offload: block {} has other weight shapes than block 0", i);
        if (!t.defined()) continue;
        t = WanDit::pin_for_offload(t, device);  // (already in host memory: kept)
      }
      blocks[i] = host_[i];  // releases the device copy of block i
    }
    for (WanBlockWeights& slot : slot_) {
      slot = host_[0];
      for (Tensor* t : block_tensors(slot))
        if (t->defined()) *t = Tensor::empty(t->shape(), t->dtype(), device);
    }
  }

  const WanBlockWeights& acquire(size_t i) {
    int s = block_[0] == static_cast<int64_t>(i)   ? 0
            : block_[1] == static_cast<int64_t>(i) ? 1
                                                   : -1;
    if (s < 0) {  // not prefetched (the first forward, or blocks taken out of order)
      s = active_ < 0 ? 0 : 1 - active_;
      start(i, s);
    }
    for (AsyncCopy& c : copies_[s]) c.compute_waits();
    copies_[s].clear();
    active_ = s;
    const size_t next = (i + 1) % host_.size();
    if (next != i && block_[1 - s] != static_cast<int64_t>(next)) start(next, 1 - s);
    return slot_[s];
  }

 private:
  void start(size_t i, int s) {
    copies_[s].clear();  // (waits on the host for copies never waited for: none in order)
    const std::vector<Tensor*> dst = block_tensors(slot_[s]);
    const std::vector<Tensor*> src = block_tensors(host_[i]);
    for (size_t k = 0; k < dst.size(); ++k)
      if (dst[k]->defined()) copies_[s].push_back(copy_async(*dst[k], *src[k]));
    block_[s] = static_cast<int64_t>(i);
  }

  std::vector<WanBlockWeights> host_;  // every block, in pinned host memory
  WanBlockWeights slot_[2];            // on the device
  std::vector<AsyncCopy> copies_[2];   // in flight into each slot
  int64_t block_[2] = {-1, -1};        // block each slot holds or is receiving
  int active_ = -1;                    // slot of the block being computed
};

void WanDit::enable_offload() {
  if (streamer_) return;
  streamer_ = std::make_shared<BlockStreamer>(w_.blocks, device_);
  add_device_offloadable_bytes(device_, -offloadable_counted_);
  offloadable_counted_ = 0;
}

int64_t WanDit::block_weight_bytes() const {
  int64_t bytes = 0;
  for (const WanBlockWeights& b : w_.blocks)
    for (const Tensor* t : block_tensors(b))
      if (t->defined()) bytes += static_cast<int64_t>(t->nbytes());
  return bytes;
}

namespace {

// diffusers get_timestep_embedding(t, dim, flip_sin_to_cos=True, downscale_freq_shift=0), fp32.
Tensor timestep_sinusoid(float t, int dim) {
  FS_CHECK(dim % 2 == 0, "freq_dim {} must be even", dim);
  const int half = dim / 2;
  std::vector<float> v(static_cast<size_t>(dim));
  const float neg_log_period = static_cast<float>(-std::log(10000.0));
  for (int i = 0; i < half; ++i) {
    const float exponent = neg_log_period * static_cast<float>(i) / static_cast<float>(half);
    const float arg = t * std::exp(exponent);
    v[static_cast<size_t>(i)] = std::cos(arg);
    v[static_cast<size_t>(half + i)] = std::sin(arg);
  }
  return Tensor::from_vector({1, dim}, v);
}

// Rank `rank`'s rows of x [tokens, features] under `split`, padded with zero rows to the slab.
Tensor token_slab(const Tensor& x, const parallel::TokenSplit& split, int rank) {
  const int64_t b = split.begin(rank), e = split.end(rank);
  if (e - b == split.slab) return x.slice0(b, e).clone();
  const Tensor pad = Tensor::zeros({split.slab - (e - b), x.dim(1)}, x.dtype(), x.device());
  return e > b ? ops::concat(x.slice0(b, e), pad, 0) : pad;
}

// Row i of a [n, dim] tensor as a [dim] view.
Tensor row(const Tensor& t, int64_t i) {
  return t.slice0(i, i + 1).reshape({t.dim(-1)});
}

}  // namespace

ops::Rope3D WanDit::rope_for(int T, int Hg, int Wg) const {
  FS_CHECK(T <= config_.rope_max_seq_len && Hg <= config_.rope_max_seq_len &&
               Wg <= config_.rope_max_seq_len,
           "token grid {}x{}x{} exceeds the rotary table length {}", T, Hg, Wg,
           config_.rope_max_seq_len);
  ops::Rope3D r = wan_rope_tables(T, Hg, Wg, config_.head_dim);
  r.frame = r.frame.to(device_);
  r.row = r.row.to(device_);
  r.col = r.col.to(device_);
  return r;
}

WanDit::Embedded WanDit::embed(const DitInput& in, parallel::Communicator* sequence) const {
  const WanDitConfig& c = config_;
  FS_CHECK(in.latents.ndim() == 4 && in.latents.dim(0) == c.in_channels,
           "DiT input latents must be [{}, F, H, W], got {}", c.in_channels, in.latents.describe());
  FS_CHECK(in.latents.dim(1) % c.patch_t == 0 && in.latents.dim(2) % c.patch_h == 0 &&
               in.latents.dim(3) % c.patch_w == 0,
           "latents {} are not divisible by the patch size {}x{}x{}", in.latents.describe(),
           c.patch_t, c.patch_h, c.patch_w);
  FS_CHECK(in.context.ndim() == 2 && in.context.dim(1) == c.text_dim,
           "text context must be [L, {}], got {}", c.text_dim, in.context.describe());
  Embedded e;
  e.T = static_cast<int>(in.latents.dim(1) / c.patch_t);
  e.Hg = static_cast<int>(in.latents.dim(2) / c.patch_h);
  e.Wg = static_cast<int>(in.latents.dim(3) / c.patch_w);
  Tensor lat = ops::to_compute(in.latents, device_);
  Tensor patches = ops::patchify(lat, c.patch_t, c.patch_h, c.patch_w);
  if (sequence) {
    FS_CHECK(c.heads % sequence->size() == 0,
             "{}: sequence-parallel DiT: {} heads are not a multiple of the {} ranks",
             sequence->describe(), c.heads, sequence->size());
    e.split = parallel::TokenSplit::make(patches.dim(0), sequence->size());
    patches = token_slab(patches, *e.split, sequence->rank());
  }
  e.x = ops::linear(patches, w_.patch_w, w_.patch_b);

  Tensor sinus = ops::to_compute(timestep_sinusoid(in.timestep, c.freq_dim), device_);
  e.temb =
      ops::linear(ops::silu(ops::linear(sinus, w_.time1_w, w_.time1_b)), w_.time2_w, w_.time2_b);
  e.mod_proj = ops::linear(ops::silu(e.temb), w_.time_proj_w, w_.time_proj_b);

  Tensor ctx = ops::to_compute(in.context, device_);
  e.context =
      ops::linear(ops::linear_gelu_tanh(ctx, w_.text1_w, w_.text1_b), w_.text2_w, w_.text2_b);
  return e;
}

// Self-attention up to (not including) the output projection, which the caller fuses with the
// gated residual add: [n, dim].
Tensor WanDit::self_attention(const WanAttentionWeights& a, const Tensor& x,
                              const ops::Rope3D& rope, float scale, const WindowGeometry* window,
                              parallel::Communicator* sequence,
                              const parallel::TokenSplit* split) const {
  const int64_t n = x.dim(0);
  const Shape heads{n, config_.heads, config_.head_dim};
  if (sequence) {
    // The RMSNorm spans all heads of a token, so it runs on the slab; the rotation needs global
    // positions, so it runs after the exchange (ulysses_attention).
    const Tensor q =
        ops::rms_norm(ops::linear(x, a.to_q_w, a.to_q_b), a.norm_q, config_.eps).reshape(heads);
    const Tensor k =
        ops::rms_norm(ops::linear(x, a.to_k_w, a.to_k_b), a.norm_k, config_.eps).reshape(heads);
    const Tensor v = ops::linear(x, a.to_v_w, a.to_v_b).reshape(heads);
    return parallel::ulysses_attention(*sequence, *split, q, k, v, scale, window, &rope)
        .reshape({n, config_.dim()});
  }
  // RMSNorm over all heads and the rotation in one pass, in place on the projections.
  Tensor q = ops::linear(x, a.to_q_w, a.to_q_b).reshape(heads);
  ops::rms_norm_rope_3d(q, a.norm_q, config_.eps, rope);
  Tensor k = ops::linear(x, a.to_k_w, a.to_k_b).reshape(heads);
  ops::rms_norm_rope_3d(k, a.norm_k, config_.eps, rope);
  Tensor v = ops::linear(x, a.to_v_w, a.to_v_b).reshape(heads);
  return ops::attention(q, k, v, scale, window).reshape({n, config_.dim()});
}

Tensor WanDit::cross_attention_core(const WanAttentionWeights& a, const Tensor& x,
                                    const Tensor& context) const {
  const int64_t n = x.dim(0), l = context.dim(0);
  Tensor q = ops::rms_norm(ops::linear(x, a.to_q_w, a.to_q_b), a.norm_q, config_.eps)
                 .reshape({n, config_.heads, config_.head_dim});
  Tensor k = ops::rms_norm(ops::linear(context, a.to_k_w, a.to_k_b), a.norm_k, config_.eps)
                 .reshape({l, config_.heads, config_.head_dim});
  Tensor v = ops::linear(context, a.to_v_w, a.to_v_b).reshape({l, config_.heads, config_.head_dim});
  return ops::attention(q, k, v, static_cast<float>(1.0 / std::sqrt(config_.head_dim)));
}

Tensor WanDit::head(const Tensor& x, const Tensor& temb, int T, int Hg, int Wg,
                    parallel::Communicator* sequence) const {
  const int64_t dim = config_.dim();
  // (scale_shift_table + temb) gives shift (row 0) and scale (row 1), fp32.
  Tensor mod = ops::add(w_.head_table.reshape({2, dim}), temb);
  Tensor y = ops::layer_norm(x, {}, {}, config_.eps, row(mod, 1), row(mod, 0));
  y = ops::linear(y, w_.proj_out_w, w_.proj_out_b);
  if (sequence) {
    // Token-wise up to here: the ranks' slabs are gathered (and the padding cut) for unpatchify.
    const int64_t tokens = int64_t{T} * Hg * Wg;
    y = sequence->all_gather(y, 0);
    if (y.dim(0) > tokens) y = y.slice0(0, tokens);
  }
  return ops::unpatchify(y, T, Hg, Wg, config_.patch_t, config_.patch_h, config_.patch_w);
}

namespace {

// The six per-block modulation vectors: shift, scale, gate of self-attention and of the FFN.
struct Modulation {
  Tensor shift_msa, scale_msa, gate_msa, c_shift, c_scale, c_gate;
};

Modulation block_modulation(const Tensor& table, const Tensor& mod_proj, int64_t dim) {
  Tensor m = ops::add(table.reshape({6, dim}), mod_proj.reshape({6, dim}));
  return {row(m, 0), row(m, 1), row(m, 2), row(m, 3), row(m, 4), row(m, 5)};
}

}  // namespace

Tensor WanDit::forward(const DitInput& in, StepKind kind, const FreeSwimParams* freeswim,
                       CrossAttentionCache* cache, parallel::Communicator* sequence) const {
  const WanDitConfig& c = config_;
  FS_CHECK(kind == StepKind::Stock || freeswim != nullptr, "{} step needs FreeSwim parameters",
           step_kind_name(kind));
  FS_CHECK((kind != StepKind::Guide && kind != StepKind::Reuse) || cache != nullptr,
           "{} step needs a cache", step_kind_name(kind));
  Embedded e = embed(in, sequence);
  const int64_t dim = c.dim();
  const ops::Rope3D rope = rope_for(e.T, e.Hg, e.Wg);
  // Sequence-parallel: x holds this rank's token slab from here to the output head.
  const std::optional<parallel::TokenSplit>& split = e.split;
  const int64_t tokens = e.x.dim(0);

  WindowGeometry window;
  float self_scale = static_cast<float>(1.0 / std::sqrt(c.head_dim));
  if (kind != StepKind::Stock) {
    window = WindowGeometry{e.T, e.Hg, e.Wg, freeswim->dh, freeswim->dw};
    FS_CHECK(freeswim->dh >= 0 && freeswim->dw >= 0, "window half sizes must be >= 0, got {}x{}",
             freeswim->dh, freeswim->dw);
    self_scale = static_cast<float>(freeswim->attn_scale);
  }
  const bool dual = kind == StepKind::Dual || kind == StepKind::Guide;
  const WindowGeometry* main_window = kind == StepKind::Stock ? nullptr : &window;
  if (kind == StepKind::Reuse) {
    FS_CHECK(cache->size() == w_.blocks.size(),
             "cross-attention cache holds {} blocks, the model has {} (run a guide step first)",
             cache->size(), w_.blocks.size());
  }
  if (kind == StepKind::Guide) cache->begin_store(w_.blocks.size());

  // The main branch (window, or the stock model's full attention) and, on dual steps, the full
  // branch, which starts from the same tokens.
  Tensor x = e.x;
  Tensor full = dual ? e.x.clone() : Tensor{};

  for (size_t i = 0; i < w_.blocks.size(); ++i) {
    const WanBlockWeights& b = streamer_ ? streamer_->acquire(i) : w_.blocks[i];
    const Modulation m = block_modulation(b.scale_shift_table, e.mod_proj, dim);
    auto self_attn = [&](Tensor& h, const WindowGeometry* win) {
      Tensor o;
      {
        const Tensor n1 = ops::layer_norm(h, {}, {}, c.eps, m.scale_msa, m.shift_msa);
        o = self_attention(b.attn1, n1, rope, self_scale, win, sequence, split ? &*split : nullptr);
      }  // n1 is released before the projection
      // h += gate * to_out(o), the gate and residual add in the product's epilogue.
      ops::linear_add_gated(h, o, b.attn1.to_out_w, b.attn1.to_out_b, m.gate_msa);
    };
    auto cross_input = [&](const Tensor& h) {
      return c.cross_attn_norm ? ops::layer_norm(h, b.norm2_w, b.norm2_b, c.eps) : h;
    };
    // The FFN is token-wise: it runs over row chunks of h (views, updated in place), so only
    // one chunk's [rows, ffn_dim] hidden activation exists at a time (wan_dit_chunks.h).
    auto ffn = [&](Tensor& h) {
      const int64_t rows = ffn_chunk_rows(tokens, c.ffn_dim);
      for (int64_t r0 = 0; r0 < tokens; r0 += rows) {
        Tensor hc = h.slice0(r0, std::min(tokens, r0 + rows));
        const Tensor n3 = ops::layer_norm(hc, {}, {}, c.eps, m.c_scale, m.c_shift);
        const Tensor hidden = ops::linear_gelu_tanh(n3, b.ffn0_w, b.ffn0_b);
        ops::linear_add_gated(hc, hidden, b.ffn2_w, b.ffn2_b, m.c_gate);
      }
    };

    self_attn(x, main_window);
    if (dual) self_attn(full, nullptr);

    // Cross-attention: on dual steps the full branch's output is added to both branches.
    Tensor core;
    if (kind == StepKind::Reuse) {
      core = cache->load(i, device_);
      FS_CHECK(core.defined() && core.numel() == tokens * dim,
               "cross-attention cache of block {} has {} values, expected {}", i,
               core.defined() ? core.numel() : 0, tokens * dim);
    } else {
      core = cross_attention_core(b.attn2, cross_input(dual ? full : x), e.context);
    }
    if (kind == StepKind::Guide) cache->store(i, core);
    const Tensor core2d = core.reshape({tokens, dim});
    if (dual) {
      // Both branches add the same projection: computed once, added twice.
      const Tensor cross = ops::linear(core2d, b.attn2.to_out_w, b.attn2.to_out_b);
      ops::add_gated(x, cross);
      ops::add_gated(full, cross);
    } else {
      ops::linear_add_gated(x, core2d, b.attn2.to_out_w, b.attn2.to_out_b);
    }

    ffn(x);
    // Only the main branch's prediction is used: the full branch's last FFN would be wasted.
    if (dual && i + 1 < w_.blocks.size()) ffn(full);
  }
  return head(x, e.temb, e.T, e.Hg, e.Wg, sequence);
}

}  // namespace freeswim::models
