#!/bin/bash
# One call on the GPU machine that checks and measures the CUDA path end to end, each part under
# its own time limit so that a slow part cannot starve the rest: the attention GPU tests and
# bench_attention with the PyTorch baselines, compute-sanitizer on the default window kernel, the
# CUDA backend's DiT / cache / memory tests, and bench_step. (The attention kernels one by one,
# with the sanitizers on each: device_check_attention.sh.)
# (The VAE stages: `bench_generate 81 1920 1088 832 480 0 vae`; the host cache:
# `bench_step 21 68 120 guide,reuse,uncond host`.)
# Expects .carry/pack.tar.xz made by scripts/device_pack.sh (binaries, libraries, golden data).
set -u
OUT=${OUT:-/tmp/device_check}
. "$(dirname "$0")/device_setup.sh"

timeout 60 "$B/cuda_attention_test" >"$OUT/attention.txt" 2>&1
echo "attention tests: rc=$? $(grep -E '^\[  (PASSED|FAILED)' "$OUT/attention.txt" | tr '\n' ' ')" | log
# The kernels as the engine runs them, then PyTorch's FlexAttention (the reference's block mask)
# and SDPA on the same shapes, as ratios.
timeout 40 "$B/bench_attention" "$OUT/a_default.jsonl" 4 16384 2>&1 | log
PYTHONUNBUFFERED=1 timeout ${TORCH_TIMEOUT:-240} python3 bench/attention/torch_attention.py \
  "$OUT/a_default.jsonl" "${FLEX_SKIP:-}" 2>&1 | grep -v -i deprecat | grep -v create_block_mask | log

timeout 30 compute-sanitizer --tool memcheck "$B/cuda_attention_test" --gtest_filter='*auto_T1_H5*' 2>&1 |
  grep -E "ERROR SUMMARY" | sed "s/^/memcheck T1_H5: /" | log
timeout 40 compute-sanitizer --tool racecheck "$B/cuda_attention_test" --gtest_filter='*auto_T1_H5*' \
  2>&1 | grep -E "RACECHECK SUMMARY|ERROR SUMMARY" | sed "s/^/racecheck: /" | log

# The GPU DiT (golden cases at bf16 tolerance, every step kind against the CPU), the cache and
# the allocator.
timeout 80 "$B/cuda_backend_test" --gtest_filter='CudaDit*:CudaCache*:CudaMemory*:CudaAttention*' \
  >"$OUT/backend.txt" 2>&1
echo "cuda_backend_test (DiT, cache, memory, attention): rc=$? $(grep -E '^\[  (PASSED|FAILED)' "$OUT/backend.txt" | tr '\n' ' ')" | log
grep -E '^\[  FAILED' "$OUT/backend.txt" | head -10 | log

timeout ${STEP_TIMEOUT:-130} "$B/bench_step" 21 68 120 guide,reuse,uncond,dual device 2>&1 | log
