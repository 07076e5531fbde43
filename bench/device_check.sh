#!/bin/bash
# One call on the GPU machine that checks and measures the CUDA path end to end, most important
# first, each part under its own time limit so that a slow part cannot starve the rest:
#   attention GPU tests + bench_attention (default and wide variants), bench_step with the cache
#   on the device and in pinned host memory, the CUDA backend's GPU tests, the VAE stages of
#   bench_generate at 1088x1920x81, and compute-sanitizer on the default attention kernel.
# Expects .carry/pack.tar.xz made by scripts/device_pack.sh (binaries, libraries, golden data).
set -u
OUT=${OUT:-/tmp/device_check}
mkdir -p "$OUT" /tmp/carry
tar -xJf .carry/pack.tar.xz -C /tmp/carry
B=/tmp/carry/bin
export LD_LIBRARY_PATH=/tmp/carry/lib:${LD_LIBRARY_PATH:-}
export FREESWIM_GOLDEN_DIR=/tmp/carry/golden
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | tee "$OUT/summary.txt"
log() { tee -a "$OUT/summary.txt"; }

timeout 60 "$B/cuda_attention_test" >"$OUT/attention.txt" 2>&1
echo "attention tests (default kernel): rc=$? $(grep -E '^\[  (PASSED|FAILED)' "$OUT/attention.txt" | tr '\n' ' ')" | log
for v in ws_ov_rq wide; do
  FREESWIM_ATTENTION_KERNEL=$v timeout 60 "$B/bench_attention" "$OUT/a_$v.jsonl" 4 16384
done 2>&1 | log

timeout 130 "$B/bench_step" 21 68 120 guide,reuse,uncond,dual device 2>&1 | log
timeout 80 "$B/bench_step" 21 68 120 guide,reuse,uncond host 2>&1 | log

timeout 170 "$B/cuda_backend_test" >"$OUT/backend.txt" 2>&1
echo "cuda_backend_test: rc=$? $(grep -E '^\[  (PASSED|FAILED)' "$OUT/backend.txt" | tr '\n' ' ')" | log
grep -E '^\[  FAILED|fused|epilogue|tf32|TF32' "$OUT/backend.txt" | head -20 | log

timeout 130 "$B/bench_generate" 81 1920 1088 832 480 0 vae 2>&1 | tee "$OUT/vae.txt" | tail -15 | log


for t in '*T1_H5*' '*T3_H40*' '*own_q257*'; do
  timeout 40 compute-sanitizer --tool memcheck "$B/cuda_attention_test" --gtest_filter="$t" 2>&1 |
    grep -E "ERROR SUMMARY" | sed "s/^/memcheck $t: /"
done 2>&1 | log
timeout 40 compute-sanitizer --tool racecheck "$B/cuda_attention_test" --gtest_filter='*T1_H5*' \
  2>&1 | grep -E "RACECHECK SUMMARY|ERROR SUMMARY" | sed "s/^/racecheck: /" | log
