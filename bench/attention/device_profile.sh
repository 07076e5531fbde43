#!/bin/bash
# Nsight Compute on the GPU machine: one launch of each bench_attention kernel in KERNELS, with
# the sections that say where the kernel's time goes (throughput against peak, memory hierarchy,
# L2 hit rate and DRAM bytes, warp stall reasons (the barrier's among them), instructions issued,
# and SourceCounters: the source lines, through the build's -lineinfo, that stall and issue the
# most, e.g. KERNELS="portable-window portable-dense" to compare the two). Clocks are left alone
# (--clock-control none).
#   BIN=/tmp/carry/bin OUT=dir KERNELS="window dense" SHAPE=1080p|4k bench/attention/device_profile.sh
# BENCH names the binary in BIN (default bench_attention); DENSE_QUERIES the dense runs' queries
# (default 16384, as the benchmark: fewer leave most SMs idle). The device returns 8 files of
# $OUT at most: two kernels a call keep their reports.
# SHAPE=1080p (default) profiles the Wan2.1-1.3B 1080p launch, SHAPE=4k the Wan2.1-14B 4K one (one
# head of 40): bench_attention runs each kernel 2 + 5 times (window) or 2 + 3 times (dense) per
# shape, so the 4K launch is found by skipping the 1080p ones.
set -u
BIN=${BIN:-/tmp/carry/bin}
OUT=${OUT:-/tmp/attention_profile}
SHAPE=${SHAPE:-1080p}
mkdir -p "$OUT"
if [[ -d /tmp/carry/lib ]]; then export LD_LIBRARY_PATH=/tmp/carry/lib:${LD_LIBRARY_PATH:-}; fi
for k in ${KERNELS:-window}; do
  skip=0
  if [[ $SHAPE == 4k ]]; then
    case "$k" in *dense* | cudnn) skip=5 ;; *) skip=7 ;; esac
  fi
  timeout 240 ncu --clock-control none \
    --kernel-name regex:'box_tiles_kernel|row_runs_kernel|dense_tma_kernel|attention_kernel' \
    --launch-skip "$skip" --launch-count 1 \
    --section SpeedOfLight --section MemoryWorkloadAnalysis --section WarpStateStats \
    --section ComputeWorkloadAnalysis --section LaunchStats --section InstructionStats \
    --section SourceCounters \
    --metrics dram__bytes_read.sum,lts__t_sector_hit_rate.pct,smsp__inst_executed.sum,sm__pipe_tensor_op_hmma_cycles_active.avg.pct_of_peak_sustained_active,smsp__issue_active.avg.pct_of_peak_sustained_active \
    "$BIN/${BENCH:-bench_attention}" "$OUT/ncu_bench_$k.jsonl" 1 "${DENSE_QUERIES:-16384}" "$k" >"$OUT/ncu_${k}_$SHAPE.txt" 2>&1
  echo "ncu $k $SHAPE rc=$?"
done
