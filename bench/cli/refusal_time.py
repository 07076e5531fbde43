#!/usr/bin/env python3
"""How long `freeswim` takes to refuse a real-size checkpoint of a Wan model it does not run.

Writes, as sparse files (the header is real, the tensor data holes of zeros, so a 33 GB file
costs no disk), Wan2.1-I2V-14B-720P's DiT (diffusers names: the T2V-14B tensors, 36 input
channels and the CLIP image embedder) in bf16 and Wan2.2-TI2V-5B's, then times `freeswim info FILE`
and `freeswim generate --dit FILE` on each. Both must end in well under a second with a message
naming the file and what it is: the kind is known from the header alone, before any weight is
read.

    python3 bench/cli/refusal_time.py [path/to/freeswim] [scratch dir] [golden dir]

(`generate` is given the golden tiny VAE and UMT5 so that only the DiT is wrong. `freeswim --help`
is timed first as the process's start-up alone: a CUDA build loads the CUDA libraries before
main, which on a busy 2-core machine is itself close to a second.)
"""
import json
import os
import struct
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_random_models import dit_shapes  # noqa: E402


def i2v_14b_shapes():
    cfg = {"num_attention_heads": 40, "attention_head_dim": 128, "in_channels": 36,
           "out_channels": 16, "ffn_dim": 13824, "num_layers": 40, "text_dim": 4096}
    s = dit_shapes(cfg)
    D = 5120
    for i in range(40):  # the image branch of cross-attention
        b = "blocks.%d.attn2." % i
        s[b + "add_k_proj.weight"] = [D, D]
        s[b + "add_k_proj.bias"] = [D]
        s[b + "add_v_proj.weight"] = [D, D]
        s[b + "add_v_proj.bias"] = [D]
        s[b + "norm_added_k.weight"] = [D]
    e = "condition_embedder.image_embedder."
    s[e + "norm1.weight"] = [1280]
    s[e + "norm1.bias"] = [1280]
    s[e + "ff.net.0.proj.weight"] = [1280, 1280]
    s[e + "ff.net.0.proj.bias"] = [1280]
    s[e + "ff.net.2.weight"] = [D, 1280]
    s[e + "ff.net.2.bias"] = [D]
    s[e + "norm2.weight"] = [D]
    s[e + "norm2.bias"] = [D]
    return s


def ti2v_5b_shapes():
    cfg = {"num_attention_heads": 24, "attention_head_dim": 128, "in_channels": 48,
           "out_channels": 48, "ffn_dim": 14336, "num_layers": 30, "text_dim": 4096}
    return dit_shapes(cfg)


def write_sparse(path, shapes):
    header, offset = {}, 0
    for name in sorted(shapes):
        n = 2
        for d in shapes[name]:
            n *= d
        header[name] = {"dtype": "BF16", "shape": shapes[name], "data_offsets": [offset, offset + n]}
        offset += n
    blob = json.dumps(header, separators=(",", ":")).encode()
    blob += b" " * (-len(blob) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(blob)))
        f.write(blob)
        f.truncate(8 + len(blob) + offset)
    return 8 + len(blob) + offset


def timed(cmd):
    t0 = time.perf_counter()
    r = subprocess.run(cmd, capture_output=True, text=True)
    return time.perf_counter() - t0, r.returncode, (r.stdout + r.stderr).strip()


def main():
    fs = sys.argv[1] if len(sys.argv) > 1 else "build/src/cli/freeswim"
    scratch = sys.argv[2] if len(sys.argv) > 2 else tempfile.mkdtemp(prefix="refusal_")
    golden = sys.argv[3] if len(sys.argv) > 3 else "../shared/golden"
    os.makedirs(scratch, exist_ok=True)
    if os.path.exists(os.path.join(scratch, "x.mp4")):
        os.remove(os.path.join(scratch, "x.mp4"))
    startup, _, _ = timed([fs, "--help"])
    print("start-up (freeswim --help): %.3f s" % startup)
    worst = 0.0
    for label, shapes in (("Wan2.1-I2V-14B", i2v_14b_shapes()), ("Wan2.2-TI2V-5B", ti2v_5b_shapes())):
        path = os.path.join(scratch, label + ".safetensors")
        size = write_sparse(path, shapes)
        print("%s: %s, %d tensors, %.1f GB (sparse)" % (label, path, len(shapes), size / 1e9))
        for what, cmd in (("info", [fs, "info", path]),
                          ("generate", [fs, "generate", "--device", "cpu", "--dit", path,
                                        "--vae", golden + "/vae_tiny.diffusers.safetensors",
                                        "--t5", golden + "/umt5_tiny.hf.safetensors",
                                        "--tokenizer", golden + "/spiece_tiny.model", "-p", "x",
                                        "--size", "96x64", "--frames", "5",
                                        "-o", os.path.join(scratch, "x.mp4")])):
            secs, rc, out = timed(cmd)
            worst = max(worst, secs)
            line = [ln for ln in out.splitlines() if "error" in ln or "what:" in ln][:1]
            print("  %-8s %.3f s (%.3f s after start-up)  exit %d  %s"
                  % (what, secs, secs - startup, rc, line[0] if line else out[:160]))
        os.remove(path)
    leftover = os.path.exists(os.path.join(scratch, "x.mp4"))
    print("slowest: %.3f s (%.3f s after start-up); partial output left: %s"
          % (worst, worst - startup, "yes" if leftover else "no"))
    return 0 if worst - startup < 1.0 and not leftover else 1


if __name__ == "__main__":
    sys.exit(main())
