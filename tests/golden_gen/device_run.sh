#!/usr/bin/env bash
# On the GPU machine, from the repository root: makes the DiT golden directories of
# make_dit_golden.py (the small presets after replaying the shipped golden set, then the
# Wan2.1-1.3B preset with the reference's own bf16 error) and runs `freeswim check --device cuda`
# on each. Carry: .carry/cli.tar.xz (scripts/device_pack.sh cli) and .carry/ref.tar.xz (diffusers
# 0.35.2's src/ folder, `git archive v0.35.2 src/diffusers | xz`).
#   tests/golden_gen/device_run.sh [small|wan13b|all]   (default all)
set -euo pipefail
what=${1:-all}
source bench/device_setup.sh
mkdir -p /tmp/ref && tar -xJf .carry/ref.tar.xz -C /tmp/ref
export PYTHONPATH=/tmp/ref/src PYTHONUNBUFFERED=1
gen=tests/golden_gen/make_dit_golden.py
small=(h3d16 h1d32 h12d8 h2d64 h1d128 h3d20 h2d22)
if [[ $what == small || $what == all ]]; then
  python3 $gen --out /tmp/gd --check-against /tmp/carry/golden "${small[@]/#/--preset=}" \
    2>&1 | tee "$OUT/gen_small.log"
  tar -czf "$OUT/dit_small.tar.gz" -C /tmp/gd .
  for p in "${small[@]}"; do
    $B/freeswim check --golden /tmp/gd/$p --device cuda 2>&1 | tee -a "$OUT/check_small_cuda.log" |
      tail -1
  done
fi
if [[ $what == wan13b || $what == all ]]; then
  python3 $gen --out /tmp/gd --preset wan13b --bf16-error 2>&1 | tee "$OUT/gen_wan13b.log"
  cp /tmp/gd/wan13b/dit_cases.json "$OUT/wan13b_cases.json"
  $B/freeswim check --golden /tmp/gd/wan13b --device cuda 2>&1 | tee "$OUT/check_wan13b_cuda.log"
fi
