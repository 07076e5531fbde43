#!/usr/bin/env bash
# Runs the fuzzers for a fixed total time: fuzz/run.sh BUILD_DIR SECONDS [TARGET...]
# BUILD_DIR is a build directory configured with clang and -DFREESWIM_FUZZ=ON; the targets
# (default: all of them) are built first if needed and SECONDS is split evenly between them.
# Each target's checked-in seeds (fuzz/<corpus>/) are copied into a scratch corpus so that the
# run never modifies the repository. Exits non-zero when libFuzzer finds a crash; the reproducer
# is left in BUILD_DIR/fuzz/artifacts/.
set -euo pipefail

if [[ $# -lt 2 ]]; then
  echo "usage: $0 BUILD_DIR SECONDS [TARGET...]" >&2
  exit 2
fi
build_dir=$1
seconds=$2
shift 2
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

# target:seed folder:dictionary
all=(safetensors_fuzz:corpus:safetensors.dict gguf_fuzz:corpus_gguf:gguf.dict
     lora_fuzz:corpus_lora:lora.dict)
selected=()
if [[ $# -eq 0 ]]; then
  selected=("${all[@]}")
else
  for want in "$@"; do
    for entry in "${all[@]}"; do
      [[ ${entry%%:*} == "$want" ]] && selected+=("$entry")
    done
  done
fi
per_target=$((seconds / ${#selected[@]}))
(( per_target >= 1 )) || per_target=1

for entry in "${selected[@]}"; do
  IFS=: read -r target corpus dict <<<"$entry"
  cmake --build "$build_dir" --target "$target"
  work="$build_dir/fuzz/run/$target"
  rm -rf "$work"
  mkdir -p "$work/corpus" "$build_dir/fuzz/artifacts"
  cp "$here/$corpus"/* "$work/corpus/"
  echo "== $target for $per_target s"
  "$build_dir/fuzz/$target" "$work/corpus" \
    -dict="$here/$dict" \
    -max_total_time="$per_target" \
    -max_len=65536 \
    -rss_limit_mb=2048 \
    -timeout=10 \
    -print_final_stats=1 \
    -artifact_prefix="$build_dir/fuzz/artifacts/$target-"
done
