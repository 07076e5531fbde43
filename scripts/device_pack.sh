#!/usr/bin/env bash
# Packs what bench/device_check.sh needs on the GPU machine into .carry/pack.tar.xz: the GPU test
# and benchmark binaries of build/, the shared libraries they need that a bare CUDA image may
# lack (Debian's fmt, OpenBLAS, sentencepiece, FFmpeg, libpng and their dependencies; glibc, the
# C++ runtime and the CUDA libraries are left out), and the golden data (../shared/golden does not
# travel with the working tree).
set -euo pipefail
cd "$(dirname "$0")/.."
golden=${FREESWIM_GOLDEN_DIR:-../shared/golden}
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
mkdir -p "$stage/bin" "$stage/lib" .carry
bins=(build/tests/cuda_attention/cuda_attention_test build/bench/attention/bench_attention
  build/tests/cuda_backend/cuda_backend_test build/bench/step/bench_step
  build/bench/generate/bench_generate)
# (the freeswim binary is left out: FFmpeg's dependency closure alone is over the 64 MiB a call
# may carry; cuda_backend_test runs the golden DiT cases on the GPU as `check --device cuda`
# does)
for bin in "${bins[@]}"; do
  cp "$bin" "$stage/bin/"
  ldd "$bin" | awk '/=> \// {print $3}' | while read -r lib; do
    case "$(basename "$lib")" in
      libc.so* | libm.so* | libdl.so* | librt.so* | libpthread.so* | ld-linux* | libgcc_s* | \
        libstdc++* | libcuda.so* | libcudart* | libcublas* | libcudnn* | libnccl* | libnvrtc* | \
        libnvJitLink*) ;;
      *) cp -L -n "$lib" "$stage/lib/" ;;
    esac
  done
done
cp -r "$golden" "$stage/golden"
tar -cJf .carry/pack.tar.xz -C "$stage" bin lib golden
du -sh .carry/pack.tar.xz
