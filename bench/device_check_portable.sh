#!/bin/bash
# One call on a Hopper GPU machine (H100/H200) that checks and measures the portable kernels
# (issue 16: mma.sync / cp.async attention for compute capability 8.0 and later), forced on the
# Hopper GPU, each part under its own time limit and all of it inside a deadline (DEADLINE seconds,
# default 470) so that a slow or hung part cannot starve the rest. Run from the repository root,
# carrying .carry/portable.tar.xz alone (made here by `scripts/device_pack.sh portable`):
#
#   OUT=$OUT bash bench/device_check_portable.sh [parts...]     (default: all, in this order)
#
# Parts (each writes its log to $OUT/logs/<part>.txt; the lines to read go to $OUT/summary.txt,
# the first file under $OUT, as the device returns only the first 8):
#   attn      cuda_attention_test: every case on both paths (Hopper and portable kernels, window
#             and dense, head_dim 64 and 128, odd grids, windows wider than the grid), against the
#             CPU oracle; PortableKernels.FitEveryTarget prints each portable kernel's registers and
#             shared memory and fails where a block would not launch on sm_86/89/120
#   bench     bench_attention at 1.3B-1080p and 14B-4K (4 of 40 heads; each row's mean SM clock,
#             power and temperature from nvidia-smi while it was timed): the engine's window and
#             dense (Hopper here), the portable ones forced, cuDNN's SDPA; the portable rows again
#             held (1.5 s untimed, then >= 1.5 s timed: every row at the clock the GPU holds under
#             it, as in a denoising step); then PyTorch's SDPA flash (FlashAttention-2) and cuDNN
#             back-ends on the same problems (FlexAttention skipped)
#   step      bench_step at 1.3B-1080p: guide, reuse, uncond forwards with the Hopper kernels, then
#             with the portable kernels (wide blocks, then narrow), on one model; the CFG step with the cross-attention cache
#             every 2 steps for each
#   backend   cuda_backend_test --gpu-kernels=portable (every op, the DiT's step kinds, the golden
#             DiT cases, VAE, cache, memory, offload, profile; attention on the portable kernels)
#   check     freeswim --gpu-kernels portable check --golden ... --device cuda
#   generate  freeswim --gpu-kernels portable generate --model tiny --device cuda (192x128, 9
#             frames, 2 + 4 steps; the tiny model's heads of 32 take the plain attention kernel)
#   whole     bench_generate's whole generate with the portable kernels: Wan2.1-1.3B shapes
#             (heads of 128, random weights), 9 frames 448x256 from 224x128, 50 base + 35 FreeSwim
#             CFG steps, VAE decodes; says how many decoded values are not finite (0 expected)
#   jit       the compute_80-PTX build (every portable kernel and every other backend kernel JIT-
#             compiled by the driver for this GPU): cuda_attention_test_jit (portable cases,
#             kernel attributes, paths)
#   memcheck  compute-sanitizer memcheck on the portable kernels, small shapes (window d128/d64,
#             dense d128/d64)
#   jit_backend  cuda_backend_test_jit --gpu-kernels=portable (the compute_80-PTX build)
#   nccl      parallel_nccl_test: NcclGroup on this one GPU (collectives, Ulysses attention with
#             one rank against the unsplit op)
#   backend_narrow, check_narrow, generate_narrow, whole_narrow  the same as backend, check,
#             generate and whole with --gpu-kernels portable-narrow: the portable kernels with the
#             narrow blocks that GPUs of 100 or 164 KB of shared memory per SM run
set -u
OUT=${OUT:-/tmp/device_check_portable}
DEADLINE=${DEADLINE:-470}
L=$OUT/logs
mkdir -p "$OUT" "$L" /tmp/carry
start=$(date +%s)
if [[ -f .carry/portable.tar.xz ]]; then
  tar -xJf .carry/portable.tar.xz -C /tmp/carry
else
  echo "no .carry/portable.tar.xz: run scripts/device_pack.sh portable first" | tee "$OUT/summary.txt"
  exit 1
fi
B=/tmp/carry/bin
export LD_LIBRARY_PATH=/tmp/carry/lib:${LD_LIBRARY_PATH:-}
export FREESWIM_GOLDEN_DIR=/tmp/carry/golden
# cuDNN (the VAE's convolutions, the benchmark's baseline) may live only in PyTorch's wheel.
if ldd "$B/cuda_backend_test" | grep -q "libcudnn.*not found"; then
  cudnn=$(python3 -c 'import nvidia.cudnn, os; print(os.path.dirname(nvidia.cudnn.__file__))' \
    2>/dev/null)
  [[ -n "$cudnn" ]] && export LD_LIBRARY_PATH=$cudnn/lib:$LD_LIBRARY_PATH
fi
nvidia-smi --query-gpu=name,memory.total,compute_cap,driver_version --format=csv,noheader |
  tee "$OUT/summary.txt"
log() { tee -a "$OUT/summary.txt"; }

# Seconds a part may take: its own limit, cut to what is left before the deadline (0: skip).
budget() {
  local left=$((DEADLINE - ($(date +%s) - start)))
  if ((left < 15)); then echo 0; elif (($1 < left)); then echo "$1"; else echo "$left"; fi
}
# name seconds command...: runs under the budget, output to $L/name.txt; rc in $rc.
part() {
  local name=$1 secs
  secs=$(budget "$2")
  shift 2
  if ((secs == 0)); then
    echo "$name: skipped (deadline)" | log
    rc=skipped
    return
  fi
  timeout "$secs" "$@" >>"$L/$name.txt" 2>&1
  rc=$?
  ((rc == 124)) && echo "$name: timed out after ${secs}s" | log
}
tests() {  # label file: gtest's pass / fail lines and the first failures
  echo "$1: $(grep -E '^\[  (PASSED|FAILED|SKIPPED) ' "$2" | tr '\n' ' ')" | log
  grep -E '^\[  FAILED  \].*\(|Failure' "$2" | head -8 | log
}

# name seconds hold_s kernels: bench_attention as part `name` ($L/name.txt, $L/name.jsonl), nvidia-smi
# sampling the SM clock and power every 50 ms meanwhile (each row's means printed by
# clock_join.py), then the window target of each block shape: portable window per useful FLOP
# >= 0.9 x portable dense.
bench_rows() {
  local rows=$1 smi
  nvidia-smi --query-gpu=timestamp,clocks.sm,power.draw,temperature.gpu \
    --format=csv,noheader,nounits --loop-ms=50 >"$L/clocks_$rows.csv" 2>/dev/null &
  smi=$!
  part "$rows" "$2" "$B/bench_attention" "$L/$rows.jsonl" 4 16384 "$4" "$3"
  kill "$smi" 2>/dev/null
  echo "bench_attention, hold $3 s: rc=$rc" | log
  grep -E "^(shape|1\.3B|14B|device)" "$L/$rows.txt" | log
  python3 bench/attention/clock_join.py "$L/clocks_$rows.csv" "$L/$rows.jsonl" 2>&1 | log
  awk -v hold="$3" '$2 ~ /^portable-(window|dense)(-narrow)?$/ {r[$1 " " $2] = $6}
    END {for (s in r) if (s ~ /window/) {d = s; sub(/window/, "dense", d); if (r[d] > 0)
      printf "target %s, hold %s s: portable window / portable dense = %.3f (>= 0.9)\n", s, hold, r[s] / r[d]}}' \
    "$L/$rows.txt" | sort | log
}

# The --gpu-kernels value of a part: portable-narrow for the *_narrow parts.
kernels_of() { [[ "$1" == *_narrow ]] && echo portable-narrow || echo portable; }

for p in "${@:-attn bench step backend check generate whole jit memcheck jit_backend nccl backend_narrow check_narrow generate_narrow whole_narrow}"; do
  for part_name in $p; do
    echo "=== $part_name ($(date +%T), $(($(date +%s) - start)) s)" | log
    case "$part_name" in
      attn)
        part attn 150 "$B/cuda_attention_test"
        tests "cuda_attention_test (both paths) rc=$rc" "$L/attn.txt"
        grep -E "^(window|dense)_d(64|128) |compute capability" "$L/attn.txt" | log
        ;;
      bench)
        bench_rows bench 120 0 \
          window,portable-window,portable-window-1,portable-window-narrow,dense,portable-dense,portable-dense-1,portable-dense-narrow,cudnn
        # Against the wide blocks this H100 runs two to an SM: wide blocks one to an SM (-1, what
        # a wide D = 128 block gets on sm_80/86/89/120) and the narrow blocks those GPUs run.
        awk '$2 ~ /^portable-(window|dense)(-1|-narrow)?$/ {r[$1 " " $2] = $6}
          END {for (k in r) if (k ~ /-(1|narrow)$/) {b = k; sub(/-(1|narrow)$/, "", b); if (r[b] > 0)
            printf "%s: %s / wide two per SM = %.3f\n", k, (k ~ /-1$/ ? "wide one per SM" : "narrow"),
              r[k] / r[b]}}' "$L/bench.txt" | sort | log
        # The same rows held: each kernel run untimed for 1.5 s, then timed for 1.5 s or more, so
        # that every row is timed at the clock the GPU holds under it (bench_attention's hold_s).
        bench_rows bench_hold 150 1.5 \
          portable-window,portable-window-narrow,portable-dense,portable-dense-narrow
        part torch 150 env PYTHONUNBUFFERED=1 python3 bench/attention/torch_attention.py \
          "$L/bench.jsonl" all
        echo "torch_attention rc=$rc" | log
        sed -n '/^summary:/,$p' "$L/torch.txt" | grep -v -i deprecat | log
        # portable dense >= FlashAttention-2 (PyTorch's SDPA flash back-end) in the same call.
        awk '$2 == "portable-dense" && $3 == "sdpa-flash" {printf "target %s: portable dense / FlashAttention-2 = %s (>= 1)\n", $1, $7}' \
          "$L/torch.txt" | sort -u | log
        ;;
      step)
        part step 300 "$B/bench_step" 21 68 120 guide,reuse,uncond device hopper,portable,portable-narrow
        echo "bench_step rc=$rc" | log
        grep -E "^\| (guide|reuse|uncond)|^CFG|attention on|built in" "$L/step.txt" | log
        awk '/^CFG step, cache every 2, hopper/ {h = $(NF-5)} /^CFG step, cache every 2, portable /
          {p = $(NF-5)} /^CFG step, cache every 2, portable-narrow/ {n = $(NF-5)}
          END {if (h > 0) printf "target: CFG step cache every 2, portable / hopper = %.3f (<= 2); portable-narrow / hopper = %.3f\n", p / h, n / h}' \
          "$L/step.txt" | log
        ;;
      backend | backend_narrow)
        k=$(kernels_of "$part_name")
        part "$part_name" 150 "$B/cuda_backend_test" --gpu-kernels=$k
        tests "cuda_backend_test --gpu-kernels=$k rc=$rc" "$L/$part_name.txt"
        ;;
      check | check_narrow)
        k=$(kernels_of "$part_name")
        part "$part_name" 150 "$B/freeswim" --gpu-kernels $k check --golden "$FREESWIM_GOLDEN_DIR" \
          --device cuda
        echo "freeswim check --device cuda --gpu-kernels $k: rc=$rc, $(grep -c ' PASS' "$L/$part_name.txt") PASS, $(grep -c ' FAIL' "$L/$part_name.txt") FAIL" | log
        grep -E " FAIL|rror" "$L/$part_name.txt" | head -10 | log
        tail -3 "$L/$part_name.txt" | log
        ;;
      generate | generate_narrow)
        k=$(kernels_of "$part_name")
        part "$part_name" 90 "$B/freeswim" --gpu-kernels $k generate --model tiny --device cuda \
          -p "a fox" --size 192x128 --frames 9 --base-steps 2 --steps 4 -o "$L/tiny_$k.mp4"
        echo "tiny generate on cuda, $k kernels: rc=$rc, mp4 $(stat -c %s "$L/tiny_$k.mp4" 2>/dev/null || echo missing) bytes" | log
        grep -E "device|rror" "$L/$part_name.txt" | head -5 | log
        ;;
      whole | whole_narrow)
        k=$(kernels_of "$part_name")
        part "$part_name" 100 "$B/bench_generate" 9 448 256 224 128 0 whole default $k
        echo "bench_generate whole, $k kernels: rc=$rc" | log
        grep -E "^device:|^\| |not finite|whole generate:" "$L/$part_name.txt" | log
        ;;
      jit)
        part jit 150 "$B/cuda_attention_test_jit" \
          --gtest_filter='*portable*:PortableKernels.*:AttentionPaths.*:AttentionErrors.*'
        tests "cuda_attention_test_jit (compute_80 PTX, portable cases) rc=$rc" "$L/jit.txt"
        grep -E "^(window|dense)_d(64|128) |compute capability" "$L/jit.txt" | log
        ;;
      jit_backend)
        part jit_backend 180 "$B/cuda_backend_test_jit" --gpu-kernels=portable
        tests "cuda_backend_test_jit --gpu-kernels=portable rc=$rc" "$L/jit_backend.txt"
        ;;
      memcheck)
        part memcheck 120 compute-sanitizer --tool memcheck "$B/cuda_attention_test" \
          --gtest_filter='*portable_*_auto_T1_H5_*:*portable_*_auto_T7_H19_*:*portable_*_auto_q257_kv1000*:*portable_*_auto_q300_kv77*'
        echo "memcheck (portable, small shapes) rc=$rc: $(grep -E '^\[  (PASSED|FAILED)|ERROR SUMMARY' "$L/memcheck.txt" | tr '\n' ' ')" | log
        ;;
      nccl)
        part nccl 60 "$B/parallel_nccl_test"
        tests "parallel_nccl_test (NcclGroup, one GPU) rc=$rc" "$L/nccl.txt"
        ;;
      *)
        echo "unknown part $part_name (attn bench step backend check generate whole jit memcheck jit_backend nccl backend_narrow check_narrow generate_narrow whole_narrow)" | log
        ;;
    esac
  done
done
echo "=== done ($(date +%T), $(($(date +%s) - start)) s)" | log
