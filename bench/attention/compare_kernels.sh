#!/usr/bin/env bash
# Builds the attention kernels of a reference commit (default: the tag
# attention-experiments-2026-12, the last build measured with the experiments in it) and of the
# working tree as sm_90a cubins with the build's CUDA flags, and compares the shipped kernels'
# machine code section by section (compare_kernels.py: exit 0 when every shipped kernel is
# byte-identical). Needs nvcc only, no GPU.
#
#   bench/attention/compare_kernels.sh [REF]    (WORK=dir to keep the cubins elsewhere)
set -euo pipefail
cd "$(dirname "$0")/../.."
ref=${1:-attention-experiments-2026-12}
work=${WORK:-build/compare_kernels}
nvcc=${NVCC:-$(command -v nvcc || echo /usr/local/cuda/bin/nvcc)}
# FREESWIM_CUDA_FLAGS of CMakeLists.txt plus what a Release build adds.
flags=(-O3 -DNDEBUG -Xcompiler=-fPIC -gencode=arch=compute_90a,code=sm_90a
  --expt-relaxed-constexpr -lineinfo -std=c++17 -x cu -cubin)
mkdir -p "$work"
ref_id=$(git rev-parse "$ref^{commit}")
if [[ ! -f "$work/ref-$ref_id.cubin" ]]; then  # the reference's cubin is kept between runs
  rm -rf "$work/ref-src" && mkdir -p "$work/ref-src"
  git archive "$ref_id" src | tar -x -C "$work/ref-src"
  "$nvcc" -I"$work/ref-src/src" "${flags[@]}" "$work/ref-src/src/ops/cuda/attention/kernels.cu" \
    -o "$work/ref-$ref_id.cubin"
fi
"$nvcc" -Isrc "${flags[@]}" src/ops/cuda/attention/kernels.cu -o "$work/new.cubin"
python3 bench/attention/compare_kernels.py "$work/ref-$ref_id.cubin" "$work/new.cubin"
