#!/usr/bin/env bash
# A/B of attention kernel builds in one GPU call: the method behind the alternating-round tables of
# docs/history/portable-window-2026-12-06.md and docs/measurements/2026-12-07_*.
#
#   bench/attention/ab.sh pack NAME=REV [NAME=REV ...]      (here, no GPU needed)
#       builds bench_attention and cuda_attention_test of each git revision for sm_90a only, in a
#       worktree per revision under build-ab-src/ with its build beside it (kept: a second pack of
#       the same revision is incremental), and writes .carry/ab.tar.xz: the binaries as
#       bin/NAME and t/NAME, Debian's fmt library they need, and this script.
#   bench/attention/ab.sh run                                (on the GPU machine, carry .carry/ab.tar.xz)
#       unpacks it, runs each build's portable attention tests, then ROUNDS rounds (default 3)
#       in which every build times the portable window and dense kernels in turn (bench_attention,
#       16384 dense queries, 4 heads at 4K), and prints per build and shape the mean window and
#       dense TFLOP/s, their ratio per useful FLOP (the issue's target) and every round's figure.
#       Alternating rounds, not one build after the other, because the H100's clock under its
#       700 W cap drifts within a call; compare builds only within one call.
#       Environment: OUT (results; default /tmp/ab-out), ROUNDS, DEADLINE (seconds for the rounds,
#       default 300), KERNELS (default portable-window,portable-dense), TESTS=0 to skip the tests,
#       HOLD (bench_attention's hold_s, default 0; builds from before it ignore it). The SM clock,
#       power and temperature are sampled meanwhile and joined with every row (clock_join.py).
set -euo pipefail
self=$(realpath "$0")
mode=${1:-}
case "$mode" in
  pack)
    shift
    [[ $# -gt 0 ]] || { echo "usage: $0 pack NAME=REV [NAME=REV ...]" >&2; exit 2; }
    root=$(git rev-parse --show-toplevel)
    cd "$root"
    stage=$(mktemp -d)
    trap 'rm -rf "$stage"' EXIT
    mkdir -p "$stage/bin" "$stage/t" "$stage/lib" build-ab-src .carry
    for spec in "$@"; do
      name=${spec%%=*}
      rev=${spec#*=}
      [[ "$name" =~ ^[A-Za-z0-9_.-]+$ && "$name" != "$spec" ]] ||
        { echo "$0: '$spec' is not NAME=REV" >&2; exit 2; }
      sha=$(git rev-parse --verify "$rev^{commit}")
      wt=build-ab-src/$name
      if [[ -d "$wt" ]]; then
        git -C "$wt" checkout -q --detach "$sha"
      else
        git worktree add -q --detach "$wt" "$sha"
      fi
      cmake -S "$wt" -B "$wt/build" -G Ninja -DCMAKE_BUILD_TYPE=Release \
        -DFREESWIM_CUDA_ARCHS=90a >/dev/null
      cmake --build "$wt/build" -j "${JOBS:-$(nproc)}" --target bench_attention cuda_attention_test
      cp "$wt/build/bench/attention/bench_attention" "$stage/bin/$name"
      cp "$wt/build/tests/cuda_attention/cuda_attention_test" "$stage/t/$name"
      ldd "$stage/bin/$name" | awk '/libfmt/ {print $3}' | xargs -r -I{} cp -L -n {} "$stage/lib/"
      echo "$name = $rev ($sha)" >>"$stage/builds.txt"
    done
    cp "$self" "$stage/ab.sh"
    cp "$(dirname "$self")/clock_join.py" "$stage/"
    tar -cJf .carry/ab.tar.xz -C "$stage" .
    echo "wrote .carry/ab.tar.xz ($(du -h .carry/ab.tar.xz | cut -f1)):"
    cat "$stage/builds.txt"
    ;;
  run)
    OUT=${OUT:-/tmp/ab-out}
    here=/tmp/ab-builds
    mkdir -p "$OUT" "$here"
    tar -xJf .carry/ab.tar.xz -C "$here"
    export LD_LIBRARY_PATH=$here/lib:${LD_LIBRARY_PATH:-}
    cat "$here/builds.txt"
    nvidia-smi --query-gpu=name,clocks.max.sm,power.limit --format=csv,noheader || true
    names=$(cut -d' ' -f1 "$here/builds.txt" | tr '\n' ' ')
    if [[ "${TESTS:-1}" != 0 ]]; then
      for v in $names; do
        rc=0
        timeout 120 "$here/t/$v" --gtest_filter='*ortable*' >"$OUT/attn_$v.txt" 2>&1 || rc=$?
        echo "tests $v rc=$rc $(grep -E '^\[  PASSED  \] [0-9]+ tests?\.|^\[  FAILED  \] [0-9]+ tests?, listed' \
          "$OUT/attn_$v.txt" | tr '\n' ' ')"
      done
    fi
    start=$(date +%s)
    nvidia-smi --query-gpu=timestamp,clocks.sm,power.draw,temperature.gpu \
      --format=csv,noheader,nounits --loop-ms=50 >"$OUT/clocks.csv" 2>/dev/null &
    smi=$!
    for r in $(seq 1 "${ROUNDS:-3}"); do
      for v in $names; do
        if (($(date +%s) - start > ${DEADLINE:-300})); then
          echo "deadline: stopped before round $r of $v"
          break 2
        fi
        timeout 120 "$here/bin/$v" "$OUT/$v-$r.jsonl" 4 16384 \
          "${KERNELS:-portable-window,portable-dense}" "${HOLD:-0}" >"$OUT/bench_$v-$r.txt" 2>&1 ||
          echo "bench $v round $r failed: $(tail -1 "$OUT/bench_$v-$r.txt")"
      done
    done
    kill "$smi" 2>/dev/null || true
    python3 "$here/clock_join.py" "$OUT/clocks.csv" "$OUT"/*.jsonl || true
    python3 - "$OUT" $names <<'PY'
import collections, json, os, sys
out, names = sys.argv[1], sys.argv[2:]
rates = collections.defaultdict(list)
for name in sorted(os.listdir(out)):
    if not name.endswith(".jsonl"):
        continue
    build = name[: -len(".jsonl")].rsplit("-", 1)[0]
    for line in open(os.path.join(out, name)):
        j = json.loads(line)
        rates[(build, j["shape"], j["kernel"])].append(j["tflops"])
print("build    shape        window  dense   window/dense  rounds (window | dense)")
for build in names:
    for shape in ("1.3B-1080p", "14B-4K"):
        w = rates.get((build, shape, "portable-window"), [])
        d = rates.get((build, shape, "portable-dense"), [])
        if w and d:
            mw, md = sum(w) / len(w), sum(d) / len(d)
            print(f"{build:8s} {shape:11s} {mw:7.1f} {md:7.1f}  {mw / md:.3f}        "
                  f"{' '.join(f'{x:.1f}' for x in w)} | {' '.join(f'{x:.1f}' for x in d)}")
PY
    ;;
  *)
    echo "usage: $0 pack NAME=REV [NAME=REV ...] | run" >&2
    exit 2
    ;;
esac
