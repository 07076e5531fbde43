#!/bin/bash
# Memory on consumer cards (issue 16), on the GPU machine, from the repository root, with
# .carry/cli.tar.xz carried (scripts/device_pack.sh cli): real-size random models through the CLI
# under the memory a consumer card leaves one process, with the schedule shortened so that both
# runs fit one 10-minute call. Peak memory does not depend on the step count once every kind of
# step has run: the base stage's CFG step, and in the FreeSwim stage a guide step (full and window
# branches, cache written) and a reuse step (cache read); --steps 3 runs int(3 * 0.7) = 2 FreeSwim
# steps, one of each with --cache-every 2.
#
#   1. Wan2.1-1.3B, 1920x1080x81, FREESWIM_GPU_MEMORY_LIMIT=14.9 (a 16 GB card)
#   2. Wan2.1-14B, 1920x1080x81, FREESWIM_GPU_MEMORY_LIMIT=22.35 (a 24 GB card); its base stage is
#      the 14B's native 1280x720x81 generation, so it also shows 720p's memory
#
#   bench/cli/device_memory_runs.sh [13b|14b|both]   (default both; one run a call when the two
#                                                     together would pass 10 minutes)
#
# Environment: OUT (default /tmp/memory_runs), DEADLINE (seconds for the whole script, default 560),
# BASE_STEPS (default 2; the 14B's 720p base steps are ~10x the 1.3B's).
set -u
which=${1:-both}
case "$which" in 13b | 14b | both) ;; *) echo "usage: $0 [13b|14b|both]" >&2; exit 2 ;; esac
OUT=${OUT:-/tmp/memory_runs}
DEADLINE=${DEADLINE:-560}
mkdir -p "$OUT"
start=$(date +%s)
left() { echo $((DEADLINE - ($(date +%s) - start))); }
short=(--base-steps "${BASE_STEPS:-2}" --steps 3)
: >"$OUT/summary.txt"
if [[ $which != 14b ]]; then
  echo "== 1.3B at 14.9 GiB" | tee -a "$OUT/summary.txt"
  OUT=$OUT/13b GPU_LIMIT=14.9 MODELS=/tmp/models_13b timeout "$(left)" \
    bash bench/cli/run_real_size.sh diffusers "${short[@]}" 2>&1 | tail -45 | tee -a "$OUT/summary.txt"
  rm -rf /tmp/models_13b
fi
if [[ $which != 13b ]]; then
  echo "== 14B at 22.35 GiB ($(left) s left)" | tee -a "$OUT/summary.txt"
  OUT=$OUT/14b GPU_LIMIT=22.35 VARIANT=14B MODELS=/tmp/models_14b timeout "$(left)" \
    bash bench/cli/run_real_size.sh diffusers "${short[@]}" 2>&1 | tail -45 | tee -a "$OUT/summary.txt"
fi
echo "whole script: $(($(date +%s) - start)) s" | tee -a "$OUT/summary.txt"
