#!/usr/bin/env bash
# Copies built binaries and the shared libraries they need that a bare CUDA image may lack
# (Debian's fmt, OpenBLAS, sentencepiece, FFmpeg, libpng and their dependencies) into .carry/,
# so that a GPU machine without those packages can run them with LD_LIBRARY_PATH=.carry/lib.
# glibc, the C++ runtime and the CUDA libraries are left out: the GPU image has its own.
#   scripts/device_carry.sh build/bench/step/bench_step build/tests/cuda_backend/cuda_backend_test
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p .carry/bin .carry/lib
for bin in "$@"; do
  cp "$bin" .carry/bin/
  ldd "$bin" | awk '/=> \// {print $3}' | while read -r lib; do
    case "$(basename "$lib")" in
      libc.so* | libm.so* | libdl.so* | librt.so* | libpthread.so* | ld-linux* | libgcc_s* | \
        libstdc++* | libcuda.so* | libcudart* | libcublas* | libcudnn* | libnccl* | libnvrtc* | \
        libnvJitLink*) ;;
      *) cp -L -n "$lib" .carry/lib/ ;;
    esac
  done
done
du -sh .carry
