#!/bin/bash
# Nsight Compute on the GPU machine: one launch (1.3B-1080p shape) of each bench_attention kernel
# in KERNELS, with the sections that say where the kernel's time goes (throughput against peak,
# memory hierarchy, warp stall reasons). Clocks are left alone (--clock-control none).
#   BIN=/tmp/carry/bin OUT=dir KERNELS="window window-rows dense" bench/attention/device_profile.sh
set -u
BIN=${BIN:-/tmp/carry/bin}
OUT=${OUT:-/tmp/attention_profile}
mkdir -p "$OUT"
if [[ -d /tmp/carry/lib ]]; then export LD_LIBRARY_PATH=/tmp/carry/lib:${LD_LIBRARY_PATH:-}; fi
for k in ${KERNELS:-window}; do
  timeout 150 ncu --clock-control none \
    --kernel-name regex:'box_tiles_kernel|row_runs_kernel|dense_tma_kernel|attention_kernel' --launch-count 1 \
    --section SpeedOfLight --section MemoryWorkloadAnalysis --section WarpStateStats \
    --section ComputeWorkloadAnalysis --section LaunchStats \
    "$BIN/bench_attention" "$OUT/ncu_bench_$k.jsonl" 1 1024 "$k" >"$OUT/ncu_$k.txt" 2>&1
  echo "ncu $k rc=$?"
done
