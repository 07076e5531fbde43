#!/bin/bash
# What was written after the 2026-12-02 session's device time ran out, to run on the GPU machine
# (one part per call; each fits the 10-minute limit). Expects .carry/pack.tar.xz made by
# scripts/device_pack.sh.
#   bench/device_pending.sh tests     GPU tests of --offload, the memory cap, the profile and the
#                                     GEMM autotuning path (CudaLinear* with it on)
#   bench/device_pending.sh autotune  bench_step with FREESWIM_GEMM_AUTOTUNE=0 and =1 in one call
#                                     (uncond first as the warm-up that autotunes every shape),
#                                     then the per-op profile with it on
#   bench/device_pending.sh whole     bench_generate's whole generate at 1088x1920x81 (~10 min:
#                                     give it the whole call)
set -u
OUT=${OUT:-/tmp/device_pending}
. "$(dirname "$0")/device_setup.sh"

case "${1:-tests}" in
  tests)
    timeout 120 "$B/cuda_backend_test" \
      --gtest_filter='CudaDitOffload*:CudaMemory*:CudaProfile*:CudaDit*' >"$OUT/offload.txt" 2>&1
    echo "offload / memory / profile / DiT: rc=$? $(grep -E '^\[  (PASSED|FAILED)' "$OUT/offload.txt" | tr '\n' ' ')" | log
    grep -E '^\[  FAILED|Failure' "$OUT/offload.txt" | head -10 | log
    FREESWIM_GEMM_AUTOTUNE=1 timeout 120 "$B/cuda_backend_test" \
      --gtest_filter='CudaLinear*:CudaOps.Linear*:CudaDit*' >"$OUT/autotune.txt" 2>&1
    echo "with GEMM autotuning: rc=$? $(grep -E '^\[  (PASSED|FAILED)' "$OUT/autotune.txt" | tr '\n' ' ')" | log
    grep -E '^\[  FAILED|Failure' "$OUT/autotune.txt" | head -10 | log
    ;;
  autotune)
    for a in 0 1; do
      echo "FREESWIM_GEMM_AUTOTUNE=$a" | log
      FREESWIM_GEMM_AUTOTUNE=$a timeout 150 "$B/bench_step" 21 68 120 uncond,guide,reuse,uncond \
        device 2>&1 | log
    done
    FREESWIM_GEMM_AUTOTUNE=1 FREESWIM_PROFILE=1 timeout 120 "$B/bench_step" 21 68 120 \
      uncond,uncond device 2>&1 | log
    ;;
  whole)
    timeout ${WHOLE_TIMEOUT:-580} "$B/bench_generate" 81 1920 1088 832 480 0 whole 2>&1 | log
    ;;
  *)
    echo "usage: $0 tests|autotune|whole" >&2
    exit 2
    ;;
esac
