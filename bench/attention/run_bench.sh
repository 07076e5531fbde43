#!/bin/bash
# Runs bench_attention, then the PyTorch baselines on the same shapes (ratios printed last).
# Usage: run_bench.sh BENCH_BINARY OUT_DIR [shapes to skip in FlexAttention, comma separated]
set -e
here=$(dirname "$0")
"$1" "$2/attention_bench.jsonl" "${HEADS_4K:-4}" "${DENSE_QUERIES:-16384}" | tee "$2/bench.txt"
PYTHONUNBUFFERED=1 python3 "$here/torch_attention.py" "$2/attention_bench.jsonl" "${3:-}" |
  tee "$2/torch.txt"
