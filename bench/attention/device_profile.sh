#!/bin/bash
# Nsight Compute on the GPU machine: one window launch (1.3B-1080p shape) of each variant in
# VARIANTS, with the sections that say where the kernel's time goes (throughput against peak,
# memory hierarchy, warp stall reasons). Clocks are left alone (--clock-control none).
#   BIN=.carry/bin OUT=dir VARIANTS="ws_ov_rq wide" bench/attention/device_profile.sh
set -u
BIN=${BIN:-build/bin}
OUT=${OUT:-/tmp/attention_profile}
mkdir -p "$OUT"
if [[ -d .carry/lib ]]; then export LD_LIBRARY_PATH=$PWD/.carry/lib:${LD_LIBRARY_PATH:-}; fi
for v in ${VARIANTS:-ws_ov_rq}; do
  FREESWIM_ATTENTION_KERNEL=$v timeout 150 ncu --clock-control none \
    --kernel-name regex:attention_ws_kernel --launch-count 1 \
    --section SpeedOfLight --section MemoryWorkloadAnalysis --section WarpStateStats \
    --section ComputeWorkloadAnalysis --section LaunchStats \
    "$BIN/bench_attention" "$OUT/ncu_bench_$v.jsonl" 1 1024 >"$OUT/ncu_$v.txt" 2>&1
  echo "ncu $v rc=$?"
done
