#!/usr/bin/env bash
# Packs what bench/device_check.sh needs on the GPU machine into .carry/pack.tar.xz: the GPU test
# and benchmark binaries of build/, the shared libraries they need that a bare CUDA image may
# lack (Debian's fmt, OpenBLAS, sentencepiece, FFmpeg, libpng and their dependencies; glibc, the
# C++ runtime and the CUDA libraries are left out), and the golden data (../shared/golden does not
# travel with the working tree).
#
#   scripts/device_pack.sh       -> .carry/pack.tar.xz (tests and benchmarks, ~22 MB)
#   scripts/device_pack.sh cli   -> .carry/cli.tar.xz: the freeswim binary (stripped) with its
#                                   FFmpeg closure and the golden data, at xz -9e (~62 MiB, just
#                                   under the 64 MiB a call may carry; carry it alone), for
#                                   `freeswim check --golden /tmp/carry/golden --device cuda`
set -euo pipefail
cd "$(dirname "$0")/.."
golden=${FREESWIM_GOLDEN_DIR:-../shared/golden}
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
mkdir -p "$stage/bin" "$stage/lib" .carry
out=.carry/pack.tar.xz
bins=(build/tests/cuda_attention/cuda_attention_test build/bench/attention/bench_attention
  build/tests/cuda_backend/cuda_backend_test build/bench/step/bench_step
  build/bench/generate/bench_generate)
if [[ "${1:-}" == cli ]]; then
  out=.carry/cli.tar.xz
  bins=(build/src/cli/freeswim)
  export XZ_OPT=-9e
fi
for bin in "${bins[@]}"; do
  if [[ "$out" == .carry/cli.tar.xz ]]; then
    strip -o "$stage/bin/$(basename "$bin")" "$bin"
  else
    cp "$bin" "$stage/bin/"  # symbols kept for compute-sanitizer's reports
  fi
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
tar -cJf "$out" -C "$stage" bin lib golden
du -sh "$out"
