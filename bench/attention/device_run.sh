#!/bin/bash
# One call on the GPU machine for the attention kernels: the GPU tests of every variant named in
# VARIANTS, compute-sanitizer on the first variant (SANITIZE=1), then bench_attention for each
# variant and the PyTorch baselines against the first one (ratios printed last).
#
# Usage (repository root on the GPU machine, binaries built elsewhere and carried):
#   BIN=.carry/bin OUT=/some/dir VARIANTS="wide ws_ov_rq" FLEX_SKIP=14B-4K \
#     bench/attention/device_run.sh
# BIN holds cuda_attention_test and bench_attention; .carry/lib (if present) holds shared
# libraries the binaries need that the GPU image lacks.
set -u
here=$(dirname "$0")
BIN=${BIN:-build/bin}
OUT=${OUT:-/tmp/attention_out}
VARIANTS=${VARIANTS:-ws_ov_rq}
mkdir -p "$OUT"
if [[ -d .carry/lib ]]; then export LD_LIBRARY_PATH=$PWD/.carry/lib:${LD_LIBRARY_PATH:-}; fi
# cuDNN may live only in PyTorch's wheel on the GPU image.
if ldd "$BIN/bench_attention" | grep -q "libcudnn.*not found"; then
  cudnn=$(python3 -c 'import nvidia.cudnn, os; print(os.path.dirname(nvidia.cudnn.__file__))')
  export LD_LIBRARY_PATH=$cudnn/lib:${LD_LIBRARY_PATH:-}
fi
nvidia-smi --query-gpu=name,clocks.sm,clocks.max.sm,memory.total --format=csv,noheader
first=${VARIANTS%% *}

for v in $VARIANTS; do
  FREESWIM_ATTENTION_KERNEL=$v timeout ${TEST_TIMEOUT:-90} "$BIN/cuda_attention_test" >"$OUT/test_$v.txt" 2>&1
  echo "tests $v: rc=$? $(grep -E '^\[  (PASSED|FAILED)' "$OUT/test_$v.txt" | tr '\n' ' ')"
  grep -E '^\[  FAILED' "$OUT/test_$v.txt" | head -5
done >"$OUT/summary.txt"
cat "$OUT/summary.txt"

if [[ "${SANITIZE:-0}" == 1 ]]; then
  for t in '*T1_H5*' '*T21_*' '*T3_H40*' '*own_q257*'; do
    FREESWIM_ATTENTION_KERNEL=$first timeout 240 compute-sanitizer --tool memcheck \
      "$BIN/cuda_attention_test" --gtest_filter="$t" 2>&1 | grep -E "ERROR SUMMARY|PASSED|FAILED" |
      sed "s/^/memcheck $first $t: /"
  done | tee -a "$OUT/summary.txt"
  FREESWIM_ATTENTION_KERNEL=$first timeout 240 compute-sanitizer --tool racecheck \
    "$BIN/cuda_attention_test" --gtest_filter='*T1_H5*' 2>&1 |
    grep -E "RACECHECK SUMMARY|ERROR SUMMARY|PASSED|FAILED" | sed "s/^/racecheck $first: /" |
    tee -a "$OUT/summary.txt"
fi

for v in $VARIANTS; do
  FREESWIM_ATTENTION_KERNEL=$v "$BIN/bench_attention" "$OUT/bench_$v.jsonl" "${HEADS_4K:-4}" \
    "${DENSE_QUERIES:-16384}"
done 2>&1 | tee "$OUT/bench.txt"

if [[ "${TORCH:-1}" == 1 ]]; then
  PYTHONUNBUFFERED=1 timeout 420 python3 "$here/torch_attention.py" "$OUT/bench_$first.jsonl" \
    "${FLEX_SKIP:-}" 2>&1 | tee "$OUT/torch.txt"
fi
