#!/usr/bin/env bash
# Runs the safetensors fuzzer for a fixed time: fuzz/run.sh BUILD_DIR SECONDS
# BUILD_DIR is a build directory configured with clang and -DFREESWIM_FUZZ=ON; the target is
# built first if needed. The checked-in seeds are copied into a scratch corpus so that the
# run never modifies the repository. Exits non-zero when libFuzzer finds a crash; the
# reproducer is left in BUILD_DIR/fuzz/artifacts/.
set -euo pipefail

if [[ $# -ne 2 ]]; then
  echo "usage: $0 BUILD_DIR SECONDS" >&2
  exit 2
fi
build_dir=$1
seconds=$2
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

cmake --build "$build_dir" --target safetensors_fuzz
exe="$build_dir/fuzz/safetensors_fuzz"

work="$build_dir/fuzz/run"
rm -rf "$work/corpus"
mkdir -p "$work/corpus" "$build_dir/fuzz/artifacts"
cp "$here"/corpus/* "$work/corpus/"

"$exe" "$work/corpus" \
  -dict="$here/safetensors.dict" \
  -max_total_time="$seconds" \
  -max_len=65536 \
  -rss_limit_mb=2048 \
  -timeout=10 \
  -print_final_stats=1 \
  -artifact_prefix="$build_dir/fuzz/artifacts/"
