#!/bin/bash
# One call on the GPU machine for the attention kernels (issue 15's checks), each part under its
# own time limit; about 5 minutes in all. Run from the repository root with the binaries packed
# here first (scripts/device_pack.sh -> .carry/pack.tar.xz: built on a machine with the Debian
# -dev libraries, with the shared libraries a bare CUDA image lacks):
#
#   scripts/device_pack.sh                        (here)
#   OUT=$OUT bench/device_check_attention.sh      (GPU machine, carrying .carry)
#
# Writes $OUT/summary.txt (the lines to read) and one log per part:
#   attention.txt   cuda_attention_test: every shipped kernel forced (row runs, box tiles of each
#                   width, dense by TMA and by cp.async, head_dim 64 and 128) and the default path
#   backend.txt     cuda_backend_test: every op, the DiT's step kinds (head_dim 64 random models run
#                   the Hopper kernels; the tiny golden model head_dim 32 the plain kernel), cache,
#                   memory cap, --offload, profile
#   memcheck.txt, racecheck.txt   compute-sanitizer on one small case of each shipped kernel
#   bench.txt       bench_attention: window and dense TFLOP/s at 1.3B-1080p and 14B-4K, every
#                   kernel, cuDNN's SDPA as the dense baseline
#   step.txt        bench_step: the step kinds of a cache-every-2 CFG step (STEP=0 skips it)
set -u
OUT=${OUT:-/tmp/device_check_attention}
. "$(dirname "$0")/device_setup.sh"
# cuDNN (the benchmark's baseline, the VAE's convolutions) may live only in PyTorch's wheel.
if ldd "$B/bench_attention" | grep -q "libcudnn.*not found"; then
  cudnn=$(python3 -c 'import nvidia.cudnn, os; print(os.path.dirname(nvidia.cudnn.__file__))' 2>/dev/null)
  [[ -n "$cudnn" ]] && export LD_LIBRARY_PATH=$cudnn/lib:$LD_LIBRARY_PATH
fi

summary() {  # name file: pass / fail line and the first failures into the summary
  echo "$1: $(grep -E '^\[  (PASSED|FAILED)' "$2" | tr '\n' ' ')" | log
  grep -E '^\[  FAILED|Failure' "$2" | head -10 | log
}

echo "=== tests ($(date +%T))" | log
timeout 120 "$B/cuda_attention_test" >"$OUT/attention.txt" 2>&1
summary "cuda_attention_test rc=$?" "$OUT/attention.txt"
timeout 240 "$B/cuda_backend_test" >"$OUT/backend.txt" 2>&1
summary "cuda_backend_test rc=$?" "$OUT/backend.txt"

# One small case per shipped kernel: d128 window T1_H5 (default, rows, box 4/8/16), d64 window
# T21_H8 (rows, box 4/8/16), dense q257 (d128) and q300 (d64) by TMA and by cp.async.
filter='*_T1_H5_*:*_T21_H8_W12_*_d64:*q257_kv1000*:*q300_kv77*'
echo "=== sanitize ($(date +%T)), filter $filter" | log
timeout 150 compute-sanitizer --tool memcheck "$B/cuda_attention_test" --gtest_filter="$filter" \
  >"$OUT/memcheck.txt" 2>&1
echo "memcheck rc=$?: $(grep -E '^\[  (PASSED|FAILED)|ERROR SUMMARY' "$OUT/memcheck.txt" | tr '\n' ' ')" | log
timeout 240 compute-sanitizer --tool racecheck "$B/cuda_attention_test" --gtest_filter="$filter" \
  >"$OUT/racecheck.txt" 2>&1
echo "racecheck rc=$?: $(grep -E '^\[  (PASSED|FAILED)|RACECHECK SUMMARY|ERROR SUMMARY' "$OUT/racecheck.txt" | tr '\n' ' ')" | log

echo "=== bench ($(date +%T))" | log
timeout 90 "$B/bench_attention" "$OUT/bench.jsonl" 4 16384 \
  window,window-box,window-rows,dense,dense-rows,cudnn >"$OUT/bench.txt" 2>&1
echo "bench_attention rc=$?" | log
log <"$OUT/bench.txt"

if [[ "${STEP:-1}" == 1 ]]; then
  echo "=== step ($(date +%T))" | log
  timeout 150 "$B/bench_step" 21 68 120 uncond,guide,reuse,uncond device >"$OUT/step.txt" 2>&1
  echo "bench_step rc=$?" | log
  grep -E "^\| (uncond|guide|reuse)|^CFG" "$OUT/step.txt" | log
fi
echo "=== done ($(date +%T))" | log
