"""PyTorch baselines for bench_attention, on the same shapes, printed as ratios.

Reads the JSON lines bench_attention wrote (first argument), times PyTorch's FlexAttention
with a block mask built from FreeSwim's inward-window rule (what the reference does) and
torch SDPA with the cuDNN and flash back-ends on the same problems (same heads, same query
subset for dense), and prints our rate over each baseline's. sdpa-flash is FlashAttention-2
(PyTorch's build of its sm80 kernels: mma.sync, the design of the portable kernels).

Second argument: shapes to skip in FlexAttention, comma separated, or "all" (its block mask
takes 8 s at 1.3B-1080p and about 2 minutes at 14B-4K).
"""
import json
import sys
import time

import torch
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.nn.attention.flex_attention import create_block_mask, flex_attention


def median_ms(fn, reps):
    fn()
    fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(reps):
        a = torch.cuda.Event(enable_timing=True)
        b = torch.cuda.Event(enable_timing=True)
        a.record()
        fn()
        b.record()
        b.synchronize()
        times.append(a.elapsed_time(b))
    times.sort()
    return times[len(times) // 2]


def window_mask_mod(T, H, W, dh, dw):
    eh, ew = min(H, 2 * dh + 1), min(W, 2 * dw + 1)

    def start(i, n, d):
        if n <= 2 * d + 1:
            return torch.zeros_like(i)
        return torch.clamp(i - d, 0, n - (2 * d + 1))

    def mask_mod(b, h, q_idx, kv_idx):
        qh, qw = (q_idx // W) % H, q_idx % W
        kh, kw = (kv_idx // W) % H, kv_idx % W
        hs, ws = start(qh, H, dh), start(qw, W, dw)
        return (kh >= hs) & (kh < hs + eh) & (kw >= ws) & (kw < ws + ew)

    return mask_mod


def qkv(tokens, heads, d, n_q=None):
    # Our layout [tokens, heads, d], viewed as [1, heads, tokens, d] without a copy.
    def make(n):
        return torch.empty(n, heads, d, device="cuda", dtype=torch.bfloat16).uniform_(-2, 2)

    q = make(n_q or tokens).transpose(0, 1).unsqueeze(0)
    k = make(tokens).transpose(0, 1).unsqueeze(0)
    v = make(tokens).transpose(0, 1).unsqueeze(0)
    return q, k, v


def main():
    rows = [json.loads(line) for line in open(sys.argv[1])]
    # FlexAttention's block mask at 4K takes longest: measure it last, and print every ratio as
    # soon as it is known so a run cut short still reports the others.
    rows.sort(key=lambda r: (r["kernel"].endswith("window"), r["queries"]))
    skip_flex = set(sys.argv[2].split(",")) if len(sys.argv) > 2 else set()
    print(f"torch {torch.__version__}, {torch.cuda.get_device_name()}")
    flex = torch.compile(flex_attention, dynamic=False)
    out = []
    dense_base = {}
    flex_base = {}
    printed = 0
    for r in rows:
        if r["kernel"] not in ("window", "dense", "cudnn", "portable-window", "portable-dense"):
            continue  # a forced Hopper kernel (window-box, window-rows, dense-rows): no baseline row
        show(out[printed:], header=printed == 0 and len(out) > 0)
        printed = len(out)
        d = 128
        if r["kernel"].endswith("window"):
            T, H, W, dh, dw = r["T"], r["H"], r["W"], r["dh"], r["dw"]
            tokens, heads = r["queries"], r["heads"]
            kpq = T * min(H, 2 * dh + 1) * min(W, 2 * dw + 1)
            flops = 4.0 * tokens * kpq * d * heads
            if r["shape"] in skip_flex or "all" in skip_flex:
                out.append((r, "flex", None, None))
                continue
            if r["shape"] in flex_base:  # the Hopper and portable window rows share it
                out.append((r, "flex") + flex_base[r["shape"]])
                continue
            q, k, v = qkv(tokens, heads, d)
            t0 = time.time()
            bm = create_block_mask(window_mask_mod(T, H, W, dh, dw), None, None, tokens, tokens,
                                   device="cuda", _compile=True)
            mask_s = time.time() - t0
            ms = median_ms(lambda: flex(q, k, v, block_mask=bm, scale=r["scale"]), 3)
            print(f"  {r['shape']}: block mask built in {mask_s:.1f} s, "
                  f"{bm.sparsity():.1f}% of blocks skipped", flush=True)
            flex_base[r["shape"]] = (ms, flops / (ms * 1e-3) / 1e12)
            out.append((r, "flex") + flex_base[r["shape"]])
            del q, k, v, bm
        elif (r["shape"], r["queries"]) in dense_base:  # own kernel and cuDNN rows share it
            out.extend((r, name, ms, tf) for name, ms, tf in dense_base[(r["shape"], r["queries"])])
        else:
            n_q, tokens, heads = r["queries"], r["keys"], r["heads"]
            flops = 4.0 * n_q * tokens * d * heads
            q, k, v = qkv(tokens, heads, d, n_q)
            first = len(out)
            for name, backend in (("sdpa-cudnn", SDPBackend.CUDNN_ATTENTION),
                                  ("sdpa-flash", SDPBackend.FLASH_ATTENTION)):
                try:
                    with sdpa_kernel(backend):
                        fn = lambda: torch.nn.functional.scaled_dot_product_attention(
                            q, k, v, scale=r["scale"])
                        ms = median_ms(fn, 3)
                    out.append((r, name, ms, flops / (ms * 1e-3) / 1e12))
                except RuntimeError as e:  # a back-end that refuses this shape or layout
                    print(f"  {name} failed: {str(e).splitlines()[0]}")
                    out.append((r, name, None, None))
            dense_base[(r["shape"], r["queries"])] = [(n, m, t) for _, n, m, t in out[first:]]
            del q, k, v
        torch.cuda.empty_cache()
    print("summary:")
    show(out, header=True)


def show(out, header):
    if header:
        print(f"{'shape':11} {'ours':15} {'baseline':11} {'base_ms':>9} {'base_TF/s':>9} "
              f"{'ours_TF/s':>9} {'ours/base':>9}", flush=True)
    for r, name, ms, tf in out:
        if ms is None:
            print(f"{r['shape']:11} {r['kernel']:15} {name:11} {'-':>9} {'-':>9} "
                  f"{r['tflops']:9.1f} {'-':>9}")
        else:
            print(f"{r['shape']:11} {r['kernel']:15} {name:11} {ms:9.3f} {tf:9.1f} "
                  f"{r['tflops']:9.1f} {r['tflops'] / tf:9.2f}")


if __name__ == "__main__":
    main()
