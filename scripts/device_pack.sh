#!/usr/bin/env bash
# Packs what bench/device_check.sh needs on the GPU machine into .carry/pack.tar.xz: the GPU test
# and benchmark binaries of build/, the shared libraries they need that a bare CUDA image may
# lack (Debian's fmt, OpenBLAS, sentencepiece, FFmpeg, libpng and their dependencies; glibc, the
# C++ runtime and the CUDA libraries are left out), and the golden data (../shared/golden does not
# travel with the working tree).
#
#   scripts/device_pack.sh       -> .carry/pack.tar.xz (tests and benchmarks, ~22 MB)
#   scripts/device_pack.sh cli   -> .carry/cli.tar.xz: the freeswim and bench_mp4 binaries
#                                   (stripped) with their FFmpeg closure (ICU's data library replaced by a stand-in,
#                                   see below) and the golden data, at xz -9e (carry it alone), for
#                                   `freeswim check --golden /tmp/carry/golden --device cuda`,
#                                   and bench/cli/run_real_size.sh (`bench_mp4 --probe FILE` reads an
#                                   mp4 where the GPU machine has no ffprobe: ffprobe's own closure,
#                                   libavfilter/libavdevice and theirs, adds ~107 MB and would not fit)
#   scripts/device_pack.sh portable -> .carry/portable.tar.xz for bench/device_check_portable.sh
#                                   (carry it alone): builds what it needs first, in build/ (the
#                                   attention and backend tests, bench_attention, bench_step,
#                                   bench_generate, freeswim, parallel_nccl_test) and in
#                                   build-jit/, configured with FREESWIM_CUDA_ARCHS=compute_80
#                                   (every portable kernel as PTX that the driver compiles on the
#                                   GPU; the Hopper kernels as usual), the two test binaries as
#                                   *_jit; stripped but for the attention test (compute-sanitizer's
#                                   reports), xz -9e
set -euo pipefail
cd "$(dirname "$0")/.."
golden=${FREESWIM_GOLDEN_DIR:-../shared/golden}
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
mkdir -p "$stage/bin" "$stage/lib" .carry
out=.carry/pack.tar.xz
bins=(build/tests/cuda_attention/cuda_attention_test build/bench/attention/bench_attention
  build/tests/cuda_backend/cuda_backend_test build/bench/step/bench_step
  build/bench/generate/bench_generate build/bench/loaders/bench_load)
if [[ "${1:-}" == cli ]]; then
  out=.carry/cli.tar.xz
  bins=(build/src/cli/freeswim build/bench/video/bench_mp4)
  export XZ_OPT=-9e
fi
if [[ "${1:-}" == portable ]]; then
  out=.carry/portable.tar.xz
  export XZ_OPT=-9e
  jobs=${JOBS:-$(nproc)}
  if [[ ! -f build/CMakeCache.txt ]]; then
    cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release
  fi
  cmake --build build -j "$jobs" --target cuda_attention_test cuda_backend_test bench_attention \
    bench_step bench_generate freeswim parallel_nccl_test
  cmake -S . -B build-jit -G Ninja -DCMAKE_BUILD_TYPE=Release -DFREESWIM_CUDA_ARCHS=compute_80 \
    -DFREESWIM_HOPPER_KERNELS=ON -DFREESWIM_BENCH=OFF
  cmake --build build-jit -j "$jobs" --target cuda_attention_test cuda_backend_test
  strip -o "$stage/bin/cuda_attention_test_jit" build-jit/tests/cuda_attention/cuda_attention_test
  strip -o "$stage/bin/cuda_backend_test_jit" build-jit/tests/cuda_backend/cuda_backend_test
  bins=(build/tests/cuda_attention/cuda_attention_test build/tests/cuda_backend/cuda_backend_test
    build/bench/attention/bench_attention build/bench/step/bench_step
    build/bench/generate/bench_generate build/src/cli/freeswim build/tests/parallel/parallel_nccl_test)
fi
for bin in "${bins[@]}"; do
  if [[ "$out" == .carry/cli.tar.xz ||
    ("$out" == .carry/portable.tar.xz && "$(basename "$bin")" != cuda_attention_test) ]]; then
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
if [[ "$out" != .carry/pack.tar.xz && -f "$stage/lib/libicudata.so.72" ]]; then
  # Debian's libavcodec pulls in librsvg -> libxml2 -> ICU, whose 31 MB data library pushes the
  # carry past 64 MiB. freeswim never parses XML, so ICU's data is never read: a stand-in that
  # only defines the data symbol (unversioned in libicuuc) satisfies the loader. Test carry only;
  # nothing shipped uses it.
  printf 'const unsigned char icudt72_dat[64] __attribute__((aligned(16))) = {0};\n' \
    >"$stage/icudata_stub.c"
  gcc -shared -fPIC -Wl,-soname,libicudata.so.72 -o "$stage/lib/libicudata.so.72" \
    "$stage/icudata_stub.c"
  rm "$stage/icudata_stub.c"
fi
cp -r "$golden" "$stage/golden"
tar -cJf "$out" -C "$stage" bin lib golden
du -sh "$out"
