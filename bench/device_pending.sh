#!/bin/bash
# Parts of a GPU-machine call, run in the order given (each under its own time limit, so a slow
# part cannot starve the rest). Expects .carry/pack.tar.xz made by scripts/device_pack.sh.
#   tests     every CUDA backend GPU test (ops, VAE, DiT, cache, memory, --offload, profile) and
#             the attention GPU tests
#   attn      bench_attention: every shipped kernel (window and dense rates) and cuDNN's SDPA
#   step      bench_step: every step kind (uncond first as the warm-up), then the per-op profile
#             of an uncond and a guide forward
#   capped    the step kinds of a cache-every-2 CFG step under FREESWIM_GPU_MEMORY_LIMIT=$CAP_GIB
#             (default 22.35 GiB = 24.0 GB, a 24 GB card's memory)
#   sanitize  compute-sanitizer memcheck and racecheck on the default kernels (window T1_H5, the
#             TMA dense kernel on q257_kv1000 and q130_kv512); every shipped kernel:
#             device_check_attention.sh
#   cli       the freeswim binary itself (carry .carry/cli.tar.xz from `scripts/device_pack.sh cli`
#             alone): `check --device cuda` on the golden directory, and a tiny-model generate
#             on cuda with and without --offload, then bench_mp4 (the mp4 write of 81 1080p frames
#             on that machine's CPUs)
# e.g. bench/device_pending.sh tests step vae
set -u
OUT=${OUT:-/tmp/device_pending}
. "$(dirname "$0")/device_setup.sh"

summary() {  # name file: pass / fail line and the first failures into the summary
  echo "$1: $(grep -E '^\[  (PASSED|FAILED)' "$2" | tr '\n' ' ')" | log
  grep -E '^\[  FAILED|Failure' "$2" | head -10 | log
}

for part in "${@:-tests}"; do
  echo "=== $part ($(date +%T))" | log
  case "$part" in
    tests)
      timeout ${BACKEND_TIMEOUT:-240} "$B/cuda_backend_test" >"$OUT/backend.txt" 2>&1
      summary "cuda_backend_test rc=$?" "$OUT/backend.txt"
      grep -E "fusion probes|GELU epilogue|linear_add_gated .*: " "$OUT/backend.txt" | head -12 | log
      timeout 120 "$B/cuda_attention_test" >"$OUT/attention.txt" 2>&1
      summary "cuda_attention_test rc=$?" "$OUT/attention.txt"
      ;;
    attn)
      timeout 90 "$B/bench_attention" "$OUT/a_default.jsonl" 4 16384 \
        window,window-box,window-rows,dense,dense-rows,cudnn 2>&1 | log
      ;;
    step)
      timeout ${STEP_TIMEOUT:-150} "$B/bench_step" 21 68 120 uncond,guide,reuse,uncond,dual device \
        2>&1 | log
      FREESWIM_PROFILE=1 timeout 100 "$B/bench_step" 21 68 120 uncond,guide device 2>&1 | log
      ;;
    capped)
      FREESWIM_GPU_MEMORY_LIMIT=${CAP_GIB:-22.35} timeout ${STEP_TIMEOUT:-150} "$B/bench_step" 21 68 \
        120 uncond,guide,reuse,uncond device 2>&1 | log
      ;;
    vae)
      FREESWIM_PROFILE=1 timeout ${VAE_TIMEOUT:-150} "$B/bench_generate" 81 1920 1088 832 480 0 vae \
        2>&1 | log
      ;;
    whole)
      timeout ${WHOLE_TIMEOUT:-580} "$B/bench_generate" 81 1920 1088 832 480 0 whole 2>&1 | log
      ;;
    sanitize)
      for f in '*auto_T1_H5*' '*tma_q257_kv1000*' '*tma_q130_kv512*'; do
        timeout 40 compute-sanitizer --tool memcheck "$B/cuda_attention_test" --gtest_filter="$f" \
          2>&1 | grep -E "ERROR SUMMARY|PASSED|FAILED" | sed "s/^/memcheck $f: /" | log
        timeout 60 compute-sanitizer --tool racecheck "$B/cuda_attention_test" --gtest_filter="$f" \
          2>&1 | grep -E "RACECHECK SUMMARY|ERROR SUMMARY" | sed "s/^/racecheck $f: /" | log
      done
      ;;
    cli)
      timeout 300 "$B/freeswim" check --golden "$FREESWIM_GOLDEN_DIR" --device cuda 2>&1 | tail -40 |
        log
      echo "freeswim check --device cuda: rc=${PIPESTATUS[0]}" | log
      for extra in "" --offload; do
        timeout 120 "$B/freeswim" generate --model tiny --device cuda -p "a fox" --size 192x128 \
          --frames 9 --base-steps 2 --steps 4 $extra -o "$OUT/tiny${extra}.mp4" 2>&1 | tail -5 | log
        echo "tiny generate on cuda ${extra}: rc=${PIPESTATUS[0]}" | log
      done
      timeout 150 "$B/bench_mp4" 2>&1 | log
      ;;
    *)
      echo "unknown part $part (tests attn step capped vae whole sanitize cli)" | log
      ;;
  esac
done
