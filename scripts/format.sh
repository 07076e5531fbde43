#!/usr/bin/env bash
# Apply clang-format to the project's C++/CUDA sources, or check them (--check).
set -euo pipefail
cd "$(dirname "$0")/.."
files=$(git ls-files '*.h' '*.cpp' '*.cu' '*.cuh')
if [[ "${1:-}" == "--check" ]]; then
  clang-format --dry-run -Werror $files
else
  clang-format -i $files
fi
