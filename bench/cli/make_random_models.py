#!/usr/bin/env python3
"""Writes Wan2.1-T2V-1.3B model folders with random weights of the real shapes, for running the
`freeswim` CLI on a real-size checkpoint without downloading one (bench/cli/run_real_size.sh).

  make_random_models.py OUT [--layout diffusers|original|both]   (on the GPU machine)
  make_random_models.py --self-test [--golden DIR]                (anywhere; no torch needed)

Layouts, as the engine finds them (src/pipeline/models.cpp, the loaders in src/models and
src/text):

  OUT/diffusers/   the layout of Wan-AI/Wan2.1-T2V-1.3B-Diffusers
      model_index.json, scheduler/scheduler_config.json
      transformer/config.json + diffusion_pytorch_model.safetensors      (f32, diffusers names)
      vae/config.json + diffusion_pytorch_model.safetensors              (f32)
      text_encoder/config.json + model-0000k-of-0000n.safetensors + model.safetensors.index.json
                                                                         (bf16, transformers names;
                                                                         the tied embedding stored
                                                                         once, as shared.weight)
      tokenizer/spiece.model (+ tokenizer_config.json, special_tokens_map.json)
  OUT/original/    the layout of Wan-AI/Wan2.1-T2V-1.3B
      config.json + diffusion_pytorch_model.safetensors                  (f32, original Wan names)
      Wan2.1_VAE.pth                                                     (f32, torch.save)
      models_t5_umt5-xxl-enc-bf16.pth                                    (bf16, torch.save)
      google/umt5-xxl/spiece.model (+ tokenizer files)

Shapes: a pure-Python description of each model from its config (mirroring the engine's loaders),
checked on the GPU machine against the state dicts of diffusers' WanTransformer3DModel and
AutoencoderKLWan and transformers' UMT5EncoderModel built on the meta device (no memory is
allocated for them). Original names: the engine's naming maps (src/io/wan_names.cpp,
wan_vae_names.cpp, umt5_names.cpp) ported to Python; --self-test checks that they, and the shape
descriptions, reproduce the tiny golden files' key sets, shapes and bytes (../shared/golden).

Values: every tensor is drawn on the GPU from a generator seeded by its diffusers name, so both
layouts hold the same model: uniform(-1/sqrt(fan_in), 1/sqrt(fan_in)) weights, norm weights
1 +- 0.1 (VAE gammas 1 +- 0.2), biases +- 0.02, modulation tables +- 0.1 (the engine's own random
models use the same rule). The tokenizer is a small sentencepiece model (the golden
spiece_tiny.model, 98 pieces), whose ids all fall inside UMT5's 256384-row table.

A layout already complete in OUT (its marker file names the same settings) is not written again.
"""

import argparse
import json
import os
import re
import shutil
import struct
import sys
import time
import zlib

# ---------------------------------------------------------------------------------------------
# Naming: diffusers / transformers names -> original Wan names, as src/io/*_names.cpp map them.
# ---------------------------------------------------------------------------------------------

# src/io/wan_names.cpp: fragments after "blocks.<i>." and of top-level names, first match wins.
DIT_BLOCK_FRAGMENTS = [
    ("attn1.to_out.0.", "self_attn.o."),
    ("attn2.to_out.0.", "cross_attn.o."),
    ("attn1.to_", "self_attn."),
    ("attn2.to_", "cross_attn."),
    ("attn1.", "self_attn."),
    ("attn2.", "cross_attn."),
    ("ffn.net.0.proj.", "ffn.0."),
    ("ffn.net.2.", "ffn.2."),
    ("norm2.", "norm3."),
    ("scale_shift_table", "modulation"),
]
DIT_TOP_FRAGMENTS = [
    ("condition_embedder.text_embedder.linear_1.", "text_embedding.0."),
    ("condition_embedder.text_embedder.linear_2.", "text_embedding.2."),
    ("condition_embedder.time_embedder.linear_1.", "time_embedding.0."),
    ("condition_embedder.time_embedder.linear_2.", "time_embedding.2."),
    ("condition_embedder.time_proj.", "time_projection.1."),
    ("proj_out.", "head.head."),
    ("scale_shift_table", "head.modulation"),
]


def _replace_prefix(name, table):
    for frm, to in table:
        if name.startswith(frm):
            return to + name[len(frm):]
    return name


def wan_dit_original_name(name):
    """Original Wan name of a diffusers WanTransformer3DModel tensor name."""
    if name.startswith("blocks."):
        dot = name.find(".", len("blocks."))
        if dot != -1:
            return name[: dot + 1] + _replace_prefix(name[dot + 1:], DIT_BLOCK_FRAGMENTS)
    return _replace_prefix(name, DIT_TOP_FRAGMENTS)


# src/io/wan_vae_names.cpp
VAE_RESIDUAL_PARTS = [
    ("norm1.", "residual.0."),
    ("conv1.", "residual.2."),
    ("norm2.", "residual.3."),
    ("conv2.", "residual.6."),
    ("conv_shortcut.", "shortcut."),
]


def _vae_residual_part(rest):
    for frm, to in VAE_RESIDUAL_PARTS:
        if rest.startswith(frm):
            return to + rest[len(frm):]
    return rest  # resample.1.*, time_conv.* are shared


def _split_index(s):
    m = re.match(r"(\d+)\.(.+)$", s)
    return (int(m.group(1)), m.group(2)) if m else (None, None)


def _vae_coder_part(rest, decoder, R, full):
    if rest.startswith("conv_in."):
        return "conv1." + rest[8:]
    if rest.startswith("norm_out."):
        return "head.0." + rest[9:]
    if rest.startswith("conv_out."):
        return "head.2." + rest[9:]
    if rest.startswith("mid_block.resnets."):
        i, tail = _split_index(rest[18:])
        if i in (0, 1):
            return "middle.%d.%s" % (2 * i, _vae_residual_part(tail))
    if rest.startswith("mid_block.attentions.0."):
        return "middle.1." + rest[23:]
    if not decoder and rest.startswith("down_blocks."):
        i, tail = _split_index(rest[12:])
        if i is not None:
            return "downsamples.%d.%s" % (i, _vae_residual_part(tail))
    if decoder and rest.startswith("up_blocks."):
        i, tail = _split_index(rest[10:])
        if i is not None:
            if tail.startswith("resnets."):
                j, part = _split_index(tail[8:])
                if j is not None:
                    return "upsamples.%d.%s" % (i * (R + 2) + j, _vae_residual_part(part))
            if tail.startswith("upsamplers.0."):
                return "upsamples.%d.%s" % (i * (R + 2) + R + 1, tail[13:])
    raise ValueError("'%s' is not a Wan2.1 VAE tensor name the engine knows" % full)


def wan_vae_original_name(name, num_res_blocks):
    """Original Wan name of a diffusers AutoencoderKLWan tensor name."""
    if name.startswith("quant_conv."):
        return "conv1." + name[11:]
    if name.startswith("post_quant_conv."):
        return "conv2." + name[16:]
    if name.startswith("encoder."):
        return "encoder." + _vae_coder_part(name[8:], False, num_res_blocks, name)
    if name.startswith("decoder."):
        return "decoder." + _vae_coder_part(name[8:], True, num_res_blocks, name)
    raise ValueError("'%s' is not a Wan2.1 VAE tensor name the engine knows" % name)


# src/io/umt5_names.cpp
UMT5_BLOCK_NAMES = {
    "layer.0.layer_norm.weight": "norm1.weight",
    "layer.0.SelfAttention.q.weight": "attn.q.weight",
    "layer.0.SelfAttention.k.weight": "attn.k.weight",
    "layer.0.SelfAttention.v.weight": "attn.v.weight",
    "layer.0.SelfAttention.o.weight": "attn.o.weight",
    "layer.0.SelfAttention.relative_attention_bias.weight": "pos_embedding.embedding.weight",
    "layer.1.layer_norm.weight": "norm2.weight",
    "layer.1.DenseReluDense.wi_0.weight": "ffn.gate.0.weight",
    "layer.1.DenseReluDense.wi_1.weight": "ffn.fc1.weight",
    "layer.1.DenseReluDense.wo.weight": "ffn.fc2.weight",
}


def umt5_original_name(name):
    """Original Wan (T5Encoder) name of a transformers UMT5EncoderModel tensor name."""
    if name in ("encoder.embed_tokens.weight", "shared.weight"):
        return "token_embedding.weight"
    if name == "encoder.final_layer_norm.weight":
        return "norm.weight"
    m = re.match(r"encoder\.block\.(\d+)\.(.+)$", name)
    if m and m.group(2) in UMT5_BLOCK_NAMES:
        return "blocks.%d.%s" % (int(m.group(1)), UMT5_BLOCK_NAMES[m.group(2)])
    raise ValueError("'%s' is not a UMT5 encoder tensor name" % name)


# ---------------------------------------------------------------------------------------------
# Shapes from configs, as the engine's loaders expect them (pure Python).
# ---------------------------------------------------------------------------------------------


def dit_shapes(cfg):
    """diffusers name -> shape of a WanTransformer3DModel of a diffusers config (dict)."""
    H, hd = cfg["num_attention_heads"], cfg["attention_head_dim"]
    D = H * hd
    pt, ph, pw = cfg.get("patch_size", [1, 2, 2])
    cin, cout = cfg.get("in_channels", 16), cfg.get("out_channels", 16)
    F, T, fq = cfg["ffn_dim"], cfg.get("text_dim", 4096), cfg.get("freq_dim", 256)
    P = pt * ph * pw
    s = {
        "patch_embedding.weight": [D, cin, pt, ph, pw],
        "patch_embedding.bias": [D],
        "condition_embedder.time_embedder.linear_1.weight": [D, fq],
        "condition_embedder.time_embedder.linear_1.bias": [D],
        "condition_embedder.time_embedder.linear_2.weight": [D, D],
        "condition_embedder.time_embedder.linear_2.bias": [D],
        "condition_embedder.time_proj.weight": [6 * D, D],
        "condition_embedder.time_proj.bias": [6 * D],
        "condition_embedder.text_embedder.linear_1.weight": [D, T],
        "condition_embedder.text_embedder.linear_1.bias": [D],
        "condition_embedder.text_embedder.linear_2.weight": [D, D],
        "condition_embedder.text_embedder.linear_2.bias": [D],
    }
    for i in range(cfg["num_layers"]):
        b = "blocks.%d." % i
        for a in ("attn1", "attn2"):
            for p in ("to_q", "to_k", "to_v", "to_out.0"):
                s[b + a + "." + p + ".weight"] = [D, D]
                s[b + a + "." + p + ".bias"] = [D]
            s[b + a + ".norm_q.weight"] = [D]
            s[b + a + ".norm_k.weight"] = [D]
        if cfg.get("cross_attn_norm", True):
            s[b + "norm2.weight"] = [D]
            s[b + "norm2.bias"] = [D]
        s[b + "ffn.net.0.proj.weight"] = [F, D]
        s[b + "ffn.net.0.proj.bias"] = [F]
        s[b + "ffn.net.2.weight"] = [D, F]
        s[b + "ffn.net.2.bias"] = [D]
        s[b + "scale_shift_table"] = [1, 6, D]
    s["scale_shift_table"] = [1, 2, D]
    s["proj_out.weight"] = [cout * P, D]
    s["proj_out.bias"] = [cout * P]
    return s


def vae_shapes(cfg):
    """diffusers name -> shape of a Wan2.1 AutoencoderKLWan (src/models/wan_vae_load.cpp)."""
    base, z, R = cfg["base_dim"], cfg["z_dim"], cfg.get("num_res_blocks", 2)
    mult = cfg.get("dim_mult", [1, 2, 4, 4])
    tdown = cfg.get("temperal_downsample", [False, True, True])
    L = len(mult)
    s = {}

    def conv(pre, co, ci, kt, k):
        s[pre + "weight"] = [co, ci, kt, k, k]
        s[pre + "bias"] = [co]

    def conv2d(pre, co, ci):
        s[pre + "weight"] = [co, ci, 3, 3]
        s[pre + "bias"] = [co]

    def res(pre, cin, cout):
        s[pre + "norm1.gamma"] = [cin, 1, 1, 1]
        conv(pre + "conv1.", cout, cin, 3, 3)
        s[pre + "norm2.gamma"] = [cout, 1, 1, 1]
        conv(pre + "conv2.", cout, cout, 3, 3)
        if cin != cout:
            conv(pre + "conv_shortcut.", cout, cin, 1, 1)

    def mid(pre, dim):
        res(pre + "resnets.0.", dim, dim)
        s[pre + "attentions.0.norm.gamma"] = [dim, 1, 1]
        s[pre + "attentions.0.to_qkv.weight"] = [3 * dim, dim, 1, 1]
        s[pre + "attentions.0.to_qkv.bias"] = [3 * dim]
        s[pre + "attentions.0.proj.weight"] = [dim, dim, 1, 1]
        s[pre + "attentions.0.proj.bias"] = [dim]
        res(pre + "resnets.1.", dim, dim)

    conv("encoder.conv_in.", base, 3, 3, 3)
    index, cin = 0, base
    for level in range(L):
        out = base * mult[level]
        for _ in range(R):
            res("encoder.down_blocks.%d." % index, cin, out)
            index, cin = index + 1, out
        if level + 1 < L:
            pre = "encoder.down_blocks.%d." % index
            index += 1
            conv2d(pre + "resample.1.", out, out)
            if tdown[level]:
                conv(pre + "time_conv.", out, out, 3, 1)
    mid("encoder.mid_block.", cin)
    s["encoder.norm_out.gamma"] = [cin, 1, 1, 1]
    conv("encoder.conv_out.", 2 * z, cin, 3, 3)
    conv("quant_conv.", 2 * z, 2 * z, 1, 1)
    conv("post_quant_conv.", z, z, 1, 1)

    top = base * mult[-1]
    conv("decoder.conv_in.", top, z, 3, 3)
    mid("decoder.mid_block.", top)
    width = top
    for level in range(L):
        out = base * mult[L - 1 - level]
        din = width if level == 0 else width // 2
        for j in range(R + 1):
            res("decoder.up_blocks.%d.resnets.%d." % (level, j), din, out)
            din = out
        width = out
        if level + 1 < L:
            pre = "decoder.up_blocks.%d.upsamplers.0." % level
            conv2d(pre + "resample.1.", out // 2, out)
            if tdown[L - 2 - level]:
                conv(pre + "time_conv.", 2 * out, out, 3, 1)
    s["decoder.norm_out.gamma"] = [width, 1, 1, 1]
    conv("decoder.conv_out.", 3, width, 3, 3)
    return s


def umt5_shapes(cfg, embed_tokens=False):
    """transformers name -> shape of a UMT5EncoderModel. The token embedding is `shared.weight`
    (and, when embed_tokens, also its tied alias `encoder.embed_tokens.weight`)."""
    D, F, V = cfg["d_model"], cfg["d_ff"], cfg["vocab_size"]
    H, dkv = cfg["num_heads"], cfg["d_kv"]
    nb = cfg.get("relative_attention_num_buckets", 32)
    I = H * dkv
    s = {"shared.weight": [V, D]}
    if embed_tokens:
        s["encoder.embed_tokens.weight"] = [V, D]
    for i in range(cfg["num_layers"]):
        b = "encoder.block.%d." % i
        s[b + "layer.0.SelfAttention.q.weight"] = [I, D]
        s[b + "layer.0.SelfAttention.k.weight"] = [I, D]
        s[b + "layer.0.SelfAttention.v.weight"] = [I, D]
        s[b + "layer.0.SelfAttention.o.weight"] = [D, I]
        s[b + "layer.0.SelfAttention.relative_attention_bias.weight"] = [nb, H]
        s[b + "layer.0.layer_norm.weight"] = [D]
        s[b + "layer.1.DenseReluDense.wi_0.weight"] = [F, D]
        s[b + "layer.1.DenseReluDense.wi_1.weight"] = [F, D]
        s[b + "layer.1.DenseReluDense.wo.weight"] = [D, F]
        s[b + "layer.1.layer_norm.weight"] = [D]
    s["encoder.final_layer_norm.weight"] = [D]
    return s


# ---------------------------------------------------------------------------------------------
# The real configurations.
# ---------------------------------------------------------------------------------------------

# transformer/config.json of Wan-AI/Wan2.1-T2V-1.3B-Diffusers.
DIT_DIFFUSERS_CONFIG = {
    "_class_name": "WanTransformer3DModel",
    "_diffusers_version": "0.35.2",
    "added_kv_proj_dim": None,
    "attention_head_dim": 128,
    "cross_attn_norm": True,
    "eps": 1e-06,
    "ffn_dim": 8960,
    "freq_dim": 256,
    "image_dim": None,
    "in_channels": 16,
    "num_attention_heads": 12,
    "num_layers": 30,
    "out_channels": 16,
    "patch_size": [1, 2, 2],
    "pos_embed_seq_len": None,
    "qk_norm": "rms_norm_across_heads",
    "rope_max_seq_len": 1024,
    "text_dim": 4096,
}

# config.json of Wan-AI/Wan2.1-T2V-1.3B (the original release).
DIT_ORIGINAL_CONFIG = {
    "_class_name": "WanModel",
    "_diffusers_version": "0.30.0",
    "dim": 1536,
    "eps": 1e-06,
    "ffn_dim": 8960,
    "freq_dim": 256,
    "in_dim": 16,
    "model_type": "t2v",
    "num_heads": 12,
    "num_layers": 30,
    "out_dim": 16,
    "text_len": 512,
}

# vae/config.json: AutoencoderKLWan's defaults (the Wan2.1 VAE).
VAE_CONFIG = {
    "_class_name": "AutoencoderKLWan",
    "_diffusers_version": "0.35.2",
    "attn_scales": [],
    "base_dim": 96,
    "dim_mult": [1, 2, 4, 4],
    "dropout": 0.0,
    "latents_mean": [-0.7571, -0.7089, -0.9113, 0.1075, -0.1745, 0.9653, -0.1517, 1.5508,
                     0.4134, -0.0715, 0.5517, -0.3632, -0.1922, -0.9497, 0.2503, -0.2921],
    "latents_std": [2.8184, 1.4541, 2.3275, 2.6558, 1.2196, 1.7708, 2.6052, 2.0743,
                    3.2687, 2.1526, 2.8652, 1.5579, 1.6382, 1.1253, 2.8251, 1.916],
    "num_res_blocks": 2,
    "temperal_downsample": [False, True, True],
    "z_dim": 16,
}

# text_encoder/config.json: google/umt5-xxl's encoder.
UMT5_CONFIG = {
    "architectures": ["UMT5EncoderModel"],
    "classifier_dropout": 0.0,
    "d_ff": 10240,
    "d_kv": 64,
    "d_model": 4096,
    "decoder_start_token_id": 0,
    "dense_act_fn": "gelu_new",
    "dropout_rate": 0.1,
    "eos_token_id": 1,
    "feed_forward_proj": "gated-gelu",
    "initializer_factor": 1.0,
    "is_encoder_decoder": True,
    "is_gated_act": True,
    "layer_norm_epsilon": 1e-06,
    "model_type": "umt5",
    "num_decoder_layers": 24,
    "num_heads": 64,
    "num_layers": 24,
    "output_past": True,
    "pad_token_id": 0,
    "relative_attention_max_distance": 128,
    "relative_attention_num_buckets": 32,
    "scalable_attention": True,
    "tie_word_embeddings": False,
    "tokenizer_class": "T5Tokenizer",
    "torch_dtype": "bfloat16",
    "use_cache": True,
    "vocab_size": 256384,
}

MODEL_INDEX = {
    "_class_name": "WanPipeline",
    "_diffusers_version": "0.35.2",
    "scheduler": ["diffusers", "UniPCMultistepScheduler"],
    "text_encoder": ["transformers", "UMT5EncoderModel"],
    "tokenizer": ["transformers", "T5TokenizerFast"],
    "transformer": ["diffusers", "WanTransformer3DModel"],
    "vae": ["diffusers", "AutoencoderKLWan"],
}

SCHEDULER_CONFIG = {
    "_class_name": "UniPCMultistepScheduler",
    "_diffusers_version": "0.35.2",
    "beta_end": 0.02,
    "beta_schedule": "linear",
    "beta_start": 0.0001,
    "flow_shift": 3.0,
    "num_train_timesteps": 1000,
    "prediction_type": "flow_prediction",
    "solver_order": 2,
    "solver_type": "bh2",
    "use_flow_sigmas": True,
}

TOKENIZER_CONFIG = {
    "tokenizer_class": "T5Tokenizer",
    "model_max_length": 512,
    "eos_token": "</s>",
    "pad_token": "<pad>",
    "unk_token": "<unk>",
    "extra_ids": 0,
    "note": "a small sentencepiece model standing in for umt5-xxl's (bench/cli/make_random_models.py)",
}
SPECIAL_TOKENS = {"eos_token": "</s>", "pad_token": "<pad>", "unk_token": "<unk>"}


# ---------------------------------------------------------------------------------------------
# Self-test against the tiny golden files (no torch).
# ---------------------------------------------------------------------------------------------


def read_safetensors(path):
    """(header without __metadata__, byte offset of the data section)."""
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
    header.pop("__metadata__", None)
    return header, 8 + n


def tensor_bytes(path, header, offset, name):
    b, e = header[name]["data_offsets"]
    with open(path, "rb") as f:
        f.seek(offset + b)
        return f.read(e - b)


def check_mapping(label, src_path, dst_path, mapping, expected_shapes, dst_prefix=""):
    """Every tensor of src (diffusers / transformers names) must be in dst under
    dst_prefix + mapping(name) with the same dtype, shape and bytes, and dst must hold nothing
    else; src's shapes must be expected_shapes."""
    src, src_off = read_safetensors(src_path)
    dst, dst_off = read_safetensors(dst_path)
    errors = []
    shapes = {k: v["shape"] for k, v in src.items()}
    if shapes != expected_shapes:
        missing = sorted(set(expected_shapes) - set(shapes))[:5]
        extra = sorted(set(shapes) - set(expected_shapes))[:5]
        wrong = sorted(k for k in set(shapes) & set(expected_shapes)
                       if shapes[k] != expected_shapes[k])[:5]
        errors.append("%s: shapes from the config differ from %s: missing %s, extra %s, wrong %s"
                      % (label, os.path.basename(src_path), missing, extra,
                         [(k, shapes[k], expected_shapes[k]) for k in wrong]))
    mapped = {}
    for name in src:
        mapped.setdefault(dst_prefix + mapping(name), []).append(name)
    if set(mapped) != set(dst):
        errors.append("%s: mapped names differ from %s: missing %s, unexpected %s"
                      % (label, os.path.basename(dst_path), sorted(set(dst) - set(mapped))[:5],
                         sorted(set(mapped) - set(dst))[:5]))
    for dname, snames in mapped.items():
        if dname not in dst:
            continue
        for sname in snames:
            if src[sname]["dtype"] == dst[dname]["dtype"]:
                if src[sname]["shape"] != dst[dname]["shape"] or tensor_bytes(
                        src_path, src, src_off, sname) != tensor_bytes(dst_path, dst, dst_off, dname):
                    errors.append("%s: %s -> %s: different tensor" % (label, sname, dname))
            elif src[sname]["shape"] != dst[dname]["shape"]:
                errors.append("%s: %s -> %s: different shape" % (label, sname, dname))
    print("self-test %-32s %3d -> %3d names: %s" % (label, len(src), len(dst),
                                                    "ok" if not errors else "FAILED"))
    return errors


def self_test(golden):
    g = lambda n: os.path.join(golden, n)  # noqa: E731
    with open(g("dit_tiny.config.json")) as f:
        dit_cfg = json.load(f)
    with open(g("vae_tiny.config.json")) as f:
        vae_cfg = json.load(f)
    with open(g("umt5_tiny.config.json")) as f:
        umt5_cfg = json.load(f)
    errors = []
    errors += check_mapping("DiT -> original (ComfyUI prefix)", g("dit_tiny.diffusers.safetensors"),
                            g("dit_tiny.original.safetensors"), wan_dit_original_name,
                            dit_shapes(dit_cfg), "model.diffusion_model.")
    errors += check_mapping("DiT -> original bf16", g("dit_tiny.diffusers.safetensors"),
                            g("dit_tiny.original.bf16.safetensors"), wan_dit_original_name,
                            dit_shapes(dit_cfg))
    with open(g("dit_tiny.keymap.json")) as f:
        keymap = json.load(f)
    bad = [(o, d) for o, d in keymap.items() if wan_dit_original_name(d) != o]
    print("self-test %-32s %3d pairs: %s" % ("DiT keymap.json", len(keymap),
                                            "ok" if not bad else "FAILED"))
    errors += ["DiT keymap: %s -> %s expected, got %s" % (d, o, wan_dit_original_name(d))
               for o, d in bad[:5]]
    R = vae_cfg.get("num_res_blocks", 2)
    errors += check_mapping("VAE -> original", g("vae_tiny.diffusers.safetensors"),
                            g("vae_tiny.original.safetensors"),
                            lambda n: wan_vae_original_name(n, R), vae_shapes(vae_cfg))
    errors += check_mapping("UMT5 -> original", g("umt5_tiny.hf.safetensors"),
                            g("umt5_tiny.original.safetensors"), umt5_original_name,
                            umt5_shapes(umt5_cfg, embed_tokens=True))
    # The real configurations: every name maps, and the sizes are the published ones.
    real = {
        "DiT 1.3B": (dit_shapes(DIT_DIFFUSERS_CONFIG), wan_dit_original_name, 1_418_996_800),
        "VAE": (vae_shapes(VAE_CONFIG), lambda n: wan_vae_original_name(n, 2), 126_892_531),
        "UMT5-XXL encoder": (umt5_shapes(UMT5_CONFIG), umt5_original_name, 5_680_910_336),
    }
    for label, (shapes, mapping, params) in real.items():
        names = [mapping(n) for n in shapes]
        n = sum(prod(s) for s in shapes.values())
        ok = len(set(names)) == len(names) and n == params
        print("self-test %-32s %3d tensors, %d parameters: %s"
              % (label + " (real shapes)", len(shapes), n, "ok" if ok else "FAILED"))
        if not ok:
            errors.append("%s: %d parameters (expected %d) or names collide" % (label, n, params))
    sp = g("spiece_tiny.model")
    if not os.path.isfile(sp):
        errors.append("no %s" % sp)
    for e in errors:
        print("  " + e)
    print("self-test: %s" % ("PASSED" if not errors else "FAILED (%d)" % len(errors)))
    return 0 if not errors else 1


def prod(shape):
    n = 1
    for d in shape:
        n *= d
    return n


# ---------------------------------------------------------------------------------------------
# Writing (torch, on the GPU machine).
# ---------------------------------------------------------------------------------------------


def meta_state_dict_shapes(kind):
    """Shapes from the reference classes built on the meta device, or None (with the reason)
    when they cannot be imported or built here."""
    import torch

    try:
        with torch.device("meta"):
            if kind == "dit":
                from diffusers import WanTransformer3DModel

                cfg = {k: v for k, v in DIT_DIFFUSERS_CONFIG.items() if not k.startswith("_")}
                model = WanTransformer3DModel(**cfg)
            elif kind == "vae":
                from diffusers import AutoencoderKLWan

                model = AutoencoderKLWan()
            else:
                from transformers import UMT5Config, UMT5EncoderModel

                keys = ("vocab_size", "d_model", "d_kv", "d_ff", "num_layers", "num_heads",
                        "relative_attention_num_buckets", "relative_attention_max_distance",
                        "feed_forward_proj", "layer_norm_epsilon", "tie_word_embeddings",
                        "pad_token_id", "eos_token_id", "decoder_start_token_id")
                model = UMT5EncoderModel(UMT5Config(**{k: UMT5_CONFIG[k] for k in keys}))
        return {k: list(v.shape) for k, v in model.state_dict().items()}, None
    except Exception as e:  # noqa: BLE001 - any failure only skips the cross-check
        return None, "%s: %s" % (type(e).__name__, str(e).splitlines()[0] if str(e) else "")


def cross_check(kind, shapes):
    ref, why = meta_state_dict_shapes(kind)
    if ref is None:
        print("  %s: reference class not built on the meta device (%s); shapes from the config"
              % (kind, why))
        return
    if kind == "umt5":
        # transformers ties encoder.embed_tokens.weight to shared.weight; a saved checkpoint
        # holds one of them (shared.weight, as written here).
        tied = ref.pop("encoder.embed_tokens.weight", None)
        if tied is not None:
            ref.setdefault("shared.weight", tied)
    if ref != shapes:
        missing = sorted(set(ref) - set(shapes))[:5]
        extra = sorted(set(shapes) - set(ref))[:5]
        wrong = [(k, shapes[k], ref[k]) for k in sorted(set(ref) & set(shapes))
                 if ref[k] != shapes[k]][:5]
        # Not fatal: the engine's loader checks every name and shape it needs when it loads the
        # folder; this says where the folder differs from what the reference class would save.
        print("  WARNING: %s: shapes from the config differ from the reference class's state "
              "dict: missing %s, extra %s, wrong %s" % (kind, missing, extra, wrong))
        return
    print("  %s: %d tensors, shapes match the reference class built on the meta device"
          % (kind, len(ref)))


class Generator:
    """Random tensors on the GPU, each from a generator seeded by (seed, diffusers name), so a
    tensor has the same values in both layouts."""

    def __init__(self, seed, device):
        import torch

        self.torch = torch
        self.seed = seed
        self.device = device
        self.gen = torch.Generator(device=device)

    def tensor(self, name, shape, dtype, kind):
        torch = self.torch
        self.gen.manual_seed((self.seed * 1_000_003 + zlib.crc32(name.encode())) % (2 ** 63))
        u = torch.rand(shape, generator=self.gen, device=self.device, dtype=torch.float32)
        u.mul_(2).sub_(1)  # uniform(-1, 1)
        leaf = name.rsplit(".", 1)[-1]
        if leaf == "gamma":  # VAE RMS norms
            u.mul_(0.2).add_(1)
        elif leaf == "bias":
            u.mul_(0.05 if kind == "vae" else 0.02)
        elif "scale_shift_table" in name:
            u.mul_(0.1)
        elif len(shape) == 1:  # norm weights (DiT norm_q / norm_k / norm2, UMT5 layer norms)
            u.mul_(0.1).add_(1)
        else:
            u.mul_(1.0 / (prod(shape[1:]) ** 0.5))  # 1 / sqrt(fan_in)
        return u.to(dtype).cpu()


def write_json(path, obj):
    with open(path, "w") as f:
        json.dump(obj, f, indent=2, sort_keys=True)
        f.write("\n")


def file_gib(path):
    return os.path.getsize(path) / 2 ** 30


class Writer:
    def __init__(self, args):
        import torch

        self.torch = torch
        self.args = args
        device = "cuda" if torch.cuda.is_available() and not args.cpu else "cpu"
        self.gen = Generator(args.seed, device)
        self.device = device
        self.dtypes = {"f32": torch.float32, "bf16": torch.bfloat16}
        self.shapes = {
            "dit": dit_shapes(DIT_DIFFUSERS_CONFIG),
            "vae": vae_shapes(VAE_CONFIG),
            "umt5": umt5_shapes(UMT5_CONFIG),
        }
        print("make_random_models: tensors drawn on %s%s" % (
            device, " (%s)" % torch.cuda.get_device_name() if device == "cuda" else ""))
        if not args.no_cross_check:
            for kind, shapes in self.shapes.items():
                cross_check(kind, shapes)

    def tensors(self, kind, dtype, rename=None, names=None):
        """name (renamed) -> CPU tensor, for the tensors of `kind` (all, or `names`)."""
        out = {}
        for name, shape in self.shapes[kind].items():
            if names is not None and name not in names:
                continue
            out[rename(name) if rename else name] = self.gen.tensor(name, shape, dtype, kind)
        return out

    def save_safetensors(self, tensors, path):
        from safetensors.torch import save_file

        t0 = time.time()
        save_file(tensors, path, metadata={"format": "pt"})
        print("  %-60s %6.2f GiB  %5.1f s" % (os.path.relpath(path, self.args.out), file_gib(path),
                                              time.time() - t0))

    def save_pth(self, tensors, path):
        t0 = time.time()
        self.torch.save(tensors, path)
        print("  %-60s %6.2f GiB  %5.1f s" % (os.path.relpath(path, self.args.out), file_gib(path),
                                              time.time() - t0))

    def tokenizer(self, folder):
        os.makedirs(folder, exist_ok=True)
        shutil.copyfile(self.args.spiece, os.path.join(folder, "spiece.model"))
        write_json(os.path.join(folder, "tokenizer_config.json"), TOKENIZER_CONFIG)
        write_json(os.path.join(folder, "special_tokens_map.json"), SPECIAL_TOKENS)

    def diffusers(self, root):
        a = self.args
        for sub in ("transformer", "vae", "text_encoder", "scheduler"):
            os.makedirs(os.path.join(root, sub), exist_ok=True)
        write_json(os.path.join(root, "model_index.json"), MODEL_INDEX)
        write_json(os.path.join(root, "scheduler", "scheduler_config.json"), SCHEDULER_CONFIG)
        write_json(os.path.join(root, "transformer", "config.json"), DIT_DIFFUSERS_CONFIG)
        self.save_safetensors(self.tensors("dit", self.dtypes[a.dit_dtype]),
                              os.path.join(root, "transformer", "diffusion_pytorch_model.safetensors"))
        write_json(os.path.join(root, "vae", "config.json"), VAE_CONFIG)
        self.save_safetensors(self.tensors("vae", self.torch.float32),
                              os.path.join(root, "vae", "diffusion_pytorch_model.safetensors"))
        cfg = dict(UMT5_CONFIG, torch_dtype={"bf16": "bfloat16", "f32": "float32"}[a.t5_dtype])
        write_json(os.path.join(root, "text_encoder", "config.json"), cfg)
        # Sharded as transformers' save_pretrained does, with an index.
        names = list(self.shapes["umt5"])
        shards = max(1, a.t5_shards)
        per = (len(names) + shards - 1) // shards
        weight_map, total = {}, 0
        for k in range(shards):
            part = names[k * per:(k + 1) * per]
            fname = "model-%05d-of-%05d.safetensors" % (k + 1, shards)
            t = self.tensors("umt5", self.dtypes[a.t5_dtype], names=set(part))
            total += sum(v.numel() * v.element_size() for v in t.values())
            self.save_safetensors(t, os.path.join(root, "text_encoder", fname))
            del t
            weight_map.update({n: fname for n in part})
        write_json(os.path.join(root, "text_encoder", "model.safetensors.index.json"),
                   {"metadata": {"total_size": total}, "weight_map": weight_map})
        self.tokenizer(os.path.join(root, "tokenizer"))

    def original(self, root):
        a = self.args
        os.makedirs(root, exist_ok=True)
        write_json(os.path.join(root, "config.json"), DIT_ORIGINAL_CONFIG)
        self.save_safetensors(self.tensors("dit", self.dtypes[a.dit_dtype], wan_dit_original_name),
                              os.path.join(root, "diffusion_pytorch_model.safetensors"))
        self.save_pth(self.tensors("vae", self.torch.float32,
                                   lambda n: wan_vae_original_name(n, VAE_CONFIG["num_res_blocks"])),
                      os.path.join(root, "Wan2.1_VAE.pth"))
        self.save_pth(self.tensors("umt5", self.dtypes[a.t5_dtype], umt5_original_name),
                      os.path.join(root, "models_t5_umt5-xxl-enc-bf16.pth"))
        self.tokenizer(os.path.join(root, "google", "umt5-xxl"))


def use_14b_configs():
    """Turns the module's DiT and scheduler configs into those of Wan-AI/Wan2.1-T2V-14B(-Diffusers):
    40 heads of 128 (dim 5120), 40 layers, ffn 13824, flow shift 5 (its native 1280x720)."""
    DIT_DIFFUSERS_CONFIG.update(num_attention_heads=40, num_layers=40, ffn_dim=13824)
    DIT_ORIGINAL_CONFIG.update(dim=5120, num_heads=40, num_layers=40, ffn_dim=13824)
    SCHEDULER_CONFIG.update(flow_shift=5.0)


def default_spiece():
    here = os.path.dirname(os.path.abspath(__file__))
    for cand in (os.path.join(here, "..", "..", "..", "shared", "golden"),
                 os.path.join(here, "..", "..", ".carry", "golden"), "/tmp/carry/golden"):
        p = os.path.join(cand, "spiece_tiny.model")
        if os.path.isfile(p):
            return os.path.normpath(p)
    return None


def default_golden():
    p = default_spiece()
    return os.path.dirname(p) if p else None


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out", nargs="?", help="folder to write OUT/diffusers and/or OUT/original into")
    ap.add_argument("--layout", choices=["diffusers", "original", "both"], default="both")
    ap.add_argument("--self-test", action="store_true",
                    help="check the name maps and shapes against the tiny golden files (no torch)")
    ap.add_argument("--golden", default=None, help="golden folder (default: ../shared/golden, "
                    ".carry/golden or /tmp/carry/golden)")
    ap.add_argument("--spiece", default=None, help="sentencepiece model for the tokenizer "
                    "(default: spiece_tiny.model of the golden folder)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--variant", choices=["1.3B", "14B"], default="1.3B",
                    help="Wan2.1-T2V-1.3B (default) or -14B (dim 5120, 40 heads, 40 layers, ffn "
                    "13824; give --dit-dtype bf16 for a 28.6 GB DiT file instead of 57 GB)")
    ap.add_argument("--dit-dtype", choices=["f32", "bf16"], default="f32",
                    help="DiT storage (the releases store f32; default f32)")
    ap.add_argument("--t5-dtype", choices=["f32", "bf16"], default="bf16",
                    help="UMT5 storage (default bf16, as models_t5_umt5-xxl-enc-bf16.pth)")
    ap.add_argument("--t5-shards", type=int, default=3, help="safetensors shards of text_encoder/")
    ap.add_argument("--no-cross-check", action="store_true",
                    help="skip building the reference classes on the meta device")
    ap.add_argument("--cpu", action="store_true", help="draw on the CPU even when a GPU is present")
    ap.add_argument("--force", action="store_true", help="rewrite a layout that is complete")
    args = ap.parse_args()

    if args.self_test:
        golden = args.golden or default_golden()
        if not golden:
            sys.exit("--self-test: no golden folder found; give --golden DIR")
        return self_test(golden)
    if not args.out:
        ap.error("give OUT (or --self-test)")
    args.spiece = args.spiece or default_spiece()
    if not args.spiece or not os.path.isfile(args.spiece):
        sys.exit("no sentencepiece model: give --spiece PATH (e.g. ../shared/golden/spiece_tiny.model)")

    if args.variant == "14B":
        use_14b_configs()
    t_start = time.time()
    layouts = ["diffusers", "original"] if args.layout == "both" else [args.layout]
    settings = {"seed": args.seed, "dit_dtype": args.dit_dtype, "t5_dtype": args.t5_dtype,
                "t5_shards": args.t5_shards, "variant": args.variant, "script_version": 2}
    writer = None
    for layout in layouts:
        root = os.path.join(args.out, layout)
        marker = os.path.join(root, ".make_random_models.json")
        if not args.force and os.path.isfile(marker):
            with open(marker) as f:
                if json.load(f) == settings:
                    print("make_random_models: %s is complete already (%s)" % (root, marker))
                    continue
        if os.path.isdir(root):
            shutil.rmtree(root)
        if writer is None:
            writer = Writer(args)
        t0 = time.time()
        print("make_random_models: writing %s" % root)
        getattr(writer, layout)(root)
        write_json(marker, settings)
        size = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(root) for f in fs)
        print("make_random_models: %s: %.2f GiB in %.1f s" % (layout, size / 2 ** 30, time.time() - t0))
    print("make_random_models: done in %.1f s" % (time.time() - t_start))
    return 0


if __name__ == "__main__":
    sys.exit(main())
