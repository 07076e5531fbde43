#!/usr/bin/env bash
# Install the missing Debian packages (scripts/deps.sh), build, and run every test that this
# machine can run: the unit and golden-parity tests (ctest; tests labelled `gpu` need a GPU and
# run on the GPU machine instead), then `freeswim check` on the golden directory. CUDA code is
# compiled whenever nvcc is present.
#   scripts/test.sh [CMAKE_ARGS...]   extra CMake arguments go to the build (scripts/build.sh):
#   .ci/run passes -DFREESWIM_CUDA_ARCHS=80 -DFREESWIM_HOPPER_KERNELS=ON (docs/gpus.md)
set -euo pipefail
cd "$(dirname "$0")/.."
golden=${FREESWIM_GOLDEN_DIR:-../shared/golden}
scripts/deps.sh
scripts/build.sh release "$@"
ctest --test-dir build -LE gpu --output-on-failure -j "$(nproc)"
./build/src/cli/freeswim check --golden "$golden"
