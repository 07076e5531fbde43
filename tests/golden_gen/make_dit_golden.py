#!/usr/bin/env python3
"""Writes DiT golden directories in the format of ../shared/golden (dit_tiny.*) for any Wan DiT
configuration, with diffusers 0.35.2 as the reference model.

The stock forward is diffusers' WanTransformer3DModel itself. The FreeSwim step kinds (dual path,
cache guide / reuse / uncond) are orchestrated here over the same diffusers modules (norms,
projections, rotary embedding, FFN, head), following ../shared/docs/FREESWIM.md: the window
branch's self-attention is PyTorch's scaled_dot_product_attention with the dense boolean
inward-window mask (the official processors' FlexAttention block mask computes the same), both
self-attention branches use sqrt(log(2N)/log(N)/head_dim) with N = the case's base grid, and on
dual steps the full branch's cross-attention output is added to both branches.
`--check-against DIR` first replays the shipped golden DiT cases of DIR with this code and fails
unless they agree (a check that this orchestration is the reference's).

Run where PyTorch is (the GPU machine), with diffusers' sources on PYTHONPATH:
  PYTHONPATH=/path/to/diffusers/src python3 make_dit_golden.py --out DIR --preset NAME [...]
fp32 with TF32 off everywhere (matmul and cuDNN). With --bf16-error, every case is also run with
the model and inputs in bf16 and its relative L2 error against fp32 is written to the json
(`reference_bf16_error`), which `freeswim check` uses as the GPU tolerance (x1.5).
"""
import argparse
import json
import math
import os
import sys

import torch
import torch.nn.functional as F

torch.backends.cuda.matmul.allow_tf32 = False
torch.backends.cudnn.allow_tf32 = False
torch.backends.cuda.matmul.allow_bf16_reduced_precision_reduction = False

from diffusers import WanTransformer3DModel  # noqa: E402
from safetensors.torch import load_file, save_file  # noqa: E402

# text_len rows of context of which the first `valid` are non-zero (the shipped set has 9 of 12);
# latent F x H x W (the token grid is F x H/2 x W/2); base: the base token grid of the window.
PRESETS = {
    # The configuration of the issue: head_dim 16 (16 % 6 == 4), window wider than the grid in w.
    "h3d16": dict(heads=3, head_dim=16, layers=3, ffn=80, text_dim=24, text_len=10, valid=6,
                  latent=(2, 14, 10), base=(3, 6)),
    "h1d32": dict(heads=1, head_dim=32, layers=2, ffn=64, text_dim=16, text_len=5, valid=3,
                  latent=(2, 12, 16), base=(4, 6)),
    # 12 heads (of 8); the window covers the whole 4x4 grid.
    "h12d8": dict(heads=12, head_dim=8, layers=2, ffn=128, text_dim=32, text_len=4, valid=2,
                  latent=(2, 8, 8), base=(6, 8)),
    "h2d64": dict(heads=2, head_dim=64, layers=2, ffn=160, text_dim=32, text_len=8, valid=5,
                  latent=(2, 12, 20), base=(4, 6)),
    "h1d128": dict(heads=1, head_dim=128, layers=2, ffn=192, text_dim=48, text_len=7, valid=5,
                   latent=(3, 20, 24), base=(4, 6)),
    # head dims that are multiples of neither 6 nor 8: 20 (20 % 6 == 2) and 22 (22 % 6 == 4).
    "h3d20": dict(heads=3, head_dim=20, layers=2, ffn=96, text_dim=24, text_len=6, valid=4,
                  latent=(2, 10, 18), base=(3, 4)),
    "h2d22": dict(heads=2, head_dim=22, layers=2, ffn=72, text_dim=20, text_len=3, valid=1,
                  latent=(1, 6, 6), base=(5, 5)),
    # Wan2.1-T2V-1.3B at a grid larger than its window (15 x 26) in both dimensions.
    "wan13b": dict(heads=12, head_dim=128, layers=30, ffn=8960, text_dim=4096, text_len=512,
                   valid=40, latent=(3, 88, 144), base=(30, 52)),
}


def config_for(p):
    return {
        "patch_size": [1, 2, 2], "num_attention_heads": p["heads"],
        "attention_head_dim": p["head_dim"], "in_channels": 16, "out_channels": 16,
        "text_dim": p["text_dim"], "freq_dim": 256, "ffn_dim": p["ffn"],
        "num_layers": p["layers"], "cross_attn_norm": True, "qk_norm": "rms_norm_across_heads",
        "eps": 1e-06, "image_dim": None, "added_kv_proj_dim": None, "rope_max_seq_len": 1024,
        "pos_embed_seq_len": None,
    }


def randomize(model, gen):
    """Random weights with norm weights and modulation tables moved off their defaults."""
    with torch.no_grad():
        for name, t in model.named_parameters():
            if name.endswith("scale_shift_table"):
                t.copy_(torch.randn(t.shape, generator=gen) * 0.3)
            elif "norm" in name and name.endswith("weight"):
                t.copy_(1.0 + 0.2 * torch.randn(t.shape, generator=gen))
            elif "norm" in name and name.endswith("bias"):
                t.copy_(0.1 * torch.randn(t.shape, generator=gen))
            elif t.ndim >= 2:
                fan_in = t[0].numel()
                t.copy_(torch.randn(t.shape, generator=gen) / math.sqrt(fan_in))
            else:
                t.copy_(0.05 * torch.randn(t.shape, generator=gen))


def original_name(k):
    """diffusers key -> original Wan key (the inverse of the loader's naming map)."""
    fixed = {
        "proj_out.weight": "head.head.weight", "proj_out.bias": "head.head.bias",
        "scale_shift_table": "head.modulation",
        "condition_embedder.text_embedder.linear_1.weight": "text_embedding.0.weight",
        "condition_embedder.text_embedder.linear_1.bias": "text_embedding.0.bias",
        "condition_embedder.text_embedder.linear_2.weight": "text_embedding.2.weight",
        "condition_embedder.text_embedder.linear_2.bias": "text_embedding.2.bias",
        "condition_embedder.time_embedder.linear_1.weight": "time_embedding.0.weight",
        "condition_embedder.time_embedder.linear_1.bias": "time_embedding.0.bias",
        "condition_embedder.time_embedder.linear_2.weight": "time_embedding.2.weight",
        "condition_embedder.time_embedder.linear_2.bias": "time_embedding.2.bias",
        "condition_embedder.time_proj.weight": "time_projection.1.weight",
        "condition_embedder.time_proj.bias": "time_projection.1.bias",
    }
    if k in fixed:
        return fixed[k]
    if not k.startswith("blocks."):
        return k
    _, i, rest = k.split(".", 2)
    for ours, theirs in (("attn1", "self_attn"), ("attn2", "cross_attn")):
        for proj, o in (("to_q", "q"), ("to_k", "k"), ("to_v", "v"), ("to_out.0", "o")):
            rest = rest.replace(f"{ours}.{proj}.", f"{theirs}.{o}.")
        rest = rest.replace(f"{ours}.norm_", f"{theirs}.norm_")
    rest = {"scale_shift_table": "modulation"}.get(rest, rest)
    rest = rest.replace("ffn.net.0.proj.", "ffn.0.").replace("ffn.net.2.", "ffn.2.")
    rest = rest.replace("norm2.", "norm3.")
    return f"blocks.{i}.{rest}"


def window_mask(T, H, W, dh, dw, device):
    """Dense [N, N] boolean inward-window mask (FREESWIM.md)."""
    idx = torch.arange(T * H * W, device=device)
    h = (idx % (H * W)) // W
    w = idx % W
    d_b = (dh - h).clamp_min(0)
    d_u = (dh + h - H + 1).clamp_min(0)
    d_r = (dw - w).clamp_min(0)
    d_l = (dw + w - W + 1).clamp_min(0)
    qh, qw = h[:, None], w[:, None]
    kh, kw = h[None, :], w[None, :]
    return ((kh <= qh + dh + d_b[:, None]) & (kh >= qh - dh - d_u[:, None]) &
            (kw <= qw + dw + d_r[:, None]) & (kw >= qw - dw - d_l[:, None]))


def rotate(x, cos, sin):
    """diffusers' apply_rotary_emb: pair j by column 2j's cos and column 2j+1's sin."""
    x1, x2 = x.unflatten(-1, (-1, 2)).unbind(-1)
    c, s = cos[..., 0::2], sin[..., 1::2]
    out = torch.empty_like(x)
    out[..., 0::2] = x1 * c - x2 * s
    out[..., 1::2] = x1 * s + x2 * c
    return out.type_as(x)


def heads_of(attn, t):
    return t.unflatten(2, (attn.heads, -1))


def self_core(attn, x, rope, scale, mask):
    q = rotate(heads_of(attn, attn.norm_q(attn.to_q(x))), *rope)
    k = rotate(heads_of(attn, attn.norm_k(attn.to_k(x))), *rope)
    v = heads_of(attn, attn.to_v(x))
    o = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2),
                                       attn_mask=mask, scale=scale)
    return o.transpose(1, 2).flatten(2, 3).type_as(x)


def cross_core(attn, x, ctx):
    """Cross-attention output before to_out: [B, tokens, heads, head_dim]."""
    q = heads_of(attn, attn.norm_q(attn.to_q(x)))
    k = heads_of(attn, attn.norm_k(attn.to_k(ctx)))
    v = heads_of(attn, attn.to_v(ctx))
    o = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2))
    return o.transpose(1, 2).type_as(x)


def freeswim_forward(model, latents, t, ctx, kind, mask, scale, cache=None):
    """One FreeSwim step kind on the diffusers modules: 'dual', 'guide', 'reuse', 'uncond'.
    Returns [2, C, F, H, W] as the reference does (dual: [window, full]; others both rows)."""
    B, C, Fr, H, W = latents.shape
    pt, ph, pw = model.config.patch_size
    rope = model.rope(latents)
    x = model.patch_embedding(latents).flatten(2).transpose(1, 2)
    temb, tproj, ctx_e, _ = model.condition_embedder(t, ctx, None)
    tproj = tproj.unflatten(1, (6, -1))
    dual = kind in ("dual", "guide")
    h = torch.cat([x, x]) if dual else x
    for i, blk in enumerate(model.blocks):
        shift, sc, gate, c_shift, c_sc, c_gate = (blk.scale_shift_table + tproj.float()).chunk(6, 1)
        n1 = (blk.norm1(h.float()) * (1 + sc) + shift).type_as(h)
        if dual:
            a = torch.cat([self_core(blk.attn1, n1[:1], rope, scale, mask),
                           self_core(blk.attn1, n1[1:], rope, scale, None)])
        else:
            a = self_core(blk.attn1, n1, rope, scale, mask)
        a = blk.attn1.to_out[0](a)
        h = (h.float() + a * gate).type_as(h)
        n2 = blk.norm2(h.float()).type_as(h)
        if kind == "reuse":
            core = cache[i]
        elif dual:
            core = cross_core(blk.attn2, n2[1:], ctx_e)  # the full branch's
            if kind == "guide":
                cache.append(core)
        else:
            core = cross_core(blk.attn2, n2, ctx_e)
        out = blk.attn2.to_out[0](core.flatten(2, 3))
        h = h + out  # broadcast over both rows on dual steps
        n3 = (blk.norm3(h.float()) * (1 + c_sc) + c_shift).type_as(h)
        h = (h.float() + blk.ffn(n3).float() * c_gate).type_as(h)
    shift, sc = (model.scale_shift_table + temb.unsqueeze(1)).chunk(2, dim=1)
    h = (model.norm_out(h.float()) * (1 + sc) + shift).type_as(h)
    h = model.proj_out(h)
    Bo = h.shape[0]
    h = h.reshape(Bo, Fr // pt, H // ph, W // pw, pt, ph, pw, -1)
    h = h.permute(0, 7, 1, 4, 2, 5, 3, 6).flatten(6, 7).flatten(4, 5).flatten(2, 3)
    return h if Bo == 2 else torch.cat([h, h])


DESCRIPTIONS = {
    "out_plain": "stock Wan forward (diffusers WanTransformer3DModel), batch 1, timestep, context",
    "out_dual_cond": "FreeSwim dual path, batch 2 = [window branch, full branch] both fed "
                     "`latents`; every cross-attention output is the full branch's; use row 0",
    "out_dual_uncond": "same with negative_context",
    "out_cache_guide": "cache mode, guide step (cond): as out_dual_cond, and cached_cross_i = "
                       "full-branch cross-attention output of block i before to_out, "
                       "[1, tokens, heads, head_dim]",
    "out_cache_reuse": "cache mode, reuse step (cond) on latents_step2/timestep_step2: window "
                       "self-attention only, cross-attention output from cached_cross_i; rows equal",
    "out_cache_uncond": "cache mode, unconditional pass on latents_step2/timestep_step2 with "
                        "negative_context: window self-attention, own cross-attention; rows equal",
}


def run_cases(model, inp, dh, dw, scale):
    lat = inp["latents"]
    T, H, W = lat.shape[2], lat.shape[3] // 2, lat.shape[4] // 2
    mask = window_mask(T, H, W, dh, dw, lat.device)
    out = {}
    with torch.no_grad():
        out["out_plain"] = model(lat, inp["timestep"], inp["context"], return_dict=False)[0]
        out["out_dual_cond"] = freeswim_forward(model, lat, inp["timestep"], inp["context"],
                                                "dual", mask, scale)
        out["out_dual_uncond"] = freeswim_forward(model, lat, inp["timestep"],
                                                  inp["negative_context"], "dual", mask, scale)
        cache = []
        out["out_cache_guide"] = freeswim_forward(model, lat, inp["timestep"], inp["context"],
                                                  "guide", mask, scale, cache)
        for i, c in enumerate(cache):
            out[f"cached_cross_{i}"] = c
        out["out_cache_reuse"] = freeswim_forward(model, inp["latents_step2"],
                                                  inp["timestep_step2"], inp["context"], "reuse",
                                                  mask, scale, cache)
        out["out_cache_uncond"] = freeswim_forward(model, inp["latents_step2"],
                                                   inp["timestep_step2"],
                                                   inp["negative_context"], "uncond", mask, scale)
    return out


def rel_l2(a, b):
    a, b = a.double(), b.double()
    return float((a - b).norm() / b.norm())


def check_against(golden, device):
    """Replays the shipped dit_tiny cases with this code; exits non-zero unless they agree."""
    meta = json.load(open(os.path.join(golden, "dit_tiny_cases.json")))
    cfg = json.load(open(os.path.join(golden, "dit_tiny.config.json")))
    cfg = {k: v for k, v in cfg.items() if not k.startswith("_")}
    model = WanTransformer3DModel(**cfg).to(device).float().eval()
    model.load_state_dict(load_file(os.path.join(golden, "dit_tiny.diffusers.safetensors")))
    cases = {k: v.to(device) for k, v in
             load_file(os.path.join(golden, "dit_tiny_cases.safetensors")).items()}
    out = run_cases(model, cases, *meta["window_half"], meta["attention_scale"])
    worst = 0.0
    for k in out:
        e = rel_l2(out[k][:1] if k.startswith("out_") else out[k],
                   cases[k][:1] if k.startswith("out_") else cases[k])
        print(f"  replay {k}: {e:.2e}")
        worst = max(worst, e)
    if worst > 1e-5:
        sys.exit(f"this generator does not reproduce {golden} (worst {worst:.2e})")


def make(preset, out_dir, device, seed, bf16_error, stem):
    p = PRESETS[preset]
    os.makedirs(out_dir, exist_ok=True)
    gen = torch.Generator().manual_seed(seed)
    cfg = config_for(p)
    model = WanTransformer3DModel(**cfg).float()
    randomize(model, gen)
    model = model.to(device).eval()
    Fr, Hl, Wl = p["latent"]
    ctx = torch.randn(1, p["text_len"], p["text_dim"], generator=gen)
    ctx[:, p["valid"]:] = 0
    neg = torch.randn(1, p["text_len"], p["text_dim"], generator=gen)
    neg[:, max(1, p["valid"] // 2):] = 0
    inp = {
        "latents": torch.randn(1, 16, Fr, Hl, Wl, generator=gen),
        "latents_step2": torch.randn(1, 16, Fr, Hl, Wl, generator=gen),
        "timestep": torch.tensor([700.0]), "timestep_step2": torch.tensor([431.5]),
        "context": ctx, "negative_context": neg,
    }
    inp = {k: v.to(device) for k, v in inp.items()}
    bh, bw = p["base"]
    dh, dw = bh // 2, bw // 2
    n = bh * bw
    scale = math.sqrt(math.log(2 * n) / math.log(n) / p["head_dim"])
    out = run_cases(model, inp, dh, dw, scale)
    meta = {
        "attention_scale": scale,
        "attention_scale_rule": "sqrt(log(2*N)/log(N) / head_dim), N = base_grid[0]*base_grid[1]",
        "base_grid": [bh, bw], "window_half": [dh, dw], "config": cfg,
        "cases": DESCRIPTIONS,
        "made_by": "tests/golden_gen/make_dit_golden.py --preset " + preset +
                   f" --seed {seed} (diffusers {__import__('diffusers').__version__}, torch "
                   f"{torch.__version__}, {device}, fp32, TF32 off)",
    }
    # The weights as written (fp32), taken before a bf16 run rounds the model in place.
    sd = {k: v.detach().float().contiguous().cpu() for k, v in model.state_dict().items()}
    if bf16_error:
        mb = model.to(torch.bfloat16)
        ib = {k: (v.to(torch.bfloat16) if k not in ("timestep", "timestep_step2") else v)
              for k, v in inp.items()}
        ob = run_cases(mb, ib, dh, dw, scale)
        meta["reference_bf16_error"] = {
            k: rel_l2(ob[k][:1] if k.startswith("out_") else ob[k],
                      out[k][:1] if k.startswith("out_") else out[k]) for k in out}
        del ob, mb, model
    tensors = {k: v.detach().float().contiguous().cpu() for k, v in {**inp, **out}.items()}
    meta["tensors"] = {k: list(v.shape) for k, v in tensors.items()}
    json.dump(meta, open(os.path.join(out_dir, f"{stem}_cases.json"), "w"), indent=1)
    save_file(tensors, os.path.join(out_dir, f"{stem}_cases.safetensors"))
    json.dump(cfg, open(os.path.join(out_dir, f"{stem}.config.json"), "w"), indent=1)
    save_file(sd, os.path.join(out_dir, f"{stem}.diffusers.safetensors"))
    orig = {original_name(k): v for k, v in sd.items()}
    if preset != "wan13b":  # (5.7 GB each at real size: the diffusers file and bf16 suffice)
        save_file({"model.diffusion_model." + k: v for k, v in orig.items()},
                  os.path.join(out_dir, f"{stem}.original.safetensors"))
    save_file({k: v.to(torch.bfloat16) for k, v in orig.items()},
              os.path.join(out_dir, f"{stem}.original.bf16.safetensors"))
    print(f"{preset}: wrote {out_dir}" +
          (f"; bf16 errors {meta['reference_bf16_error']}" if bf16_error else ""))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", required=True, help="output root; one folder per preset")
    ap.add_argument("--preset", action="append", choices=sorted(PRESETS), required=True)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--bf16-error", action="store_true")
    ap.add_argument("--check-against", help="a golden dir whose dit_tiny cases must replay")
    a = ap.parse_args()
    if a.check_against:
        check_against(a.check_against, a.device)
    for i, preset in enumerate(a.preset):
        make(preset, os.path.join(a.out, preset), a.device, a.seed + i, a.bf16_error, "dit")


if __name__ == "__main__":
    main()
