#!/usr/bin/env bash
# Install the missing Debian packages (scripts/deps.sh), build, then run the main job. Without
# weights it uses the built-in tiny random model, so it runs anywhere in seconds and writes a
# (noise-like) mp4: real video needs real Wan2.1 weights (see README). Extra arguments go to
# `freeswim generate`.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh
scripts/build.sh release >/dev/null
mkdir -p out
./build/src/cli/freeswim generate --model tiny -p "a red fox running through snow, cinematic" \
  --size 192x128 --frames 9 --steps 10 -o out/tiny.mp4 "$@"
