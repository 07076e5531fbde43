# Sourced by the device scripts (device_check.sh, device_pending.sh) on the GPU machine, with OUT
# set: unpacks .carry/pack.tar.xz (scripts/device_pack.sh: binaries, libraries, golden data) to
# /tmp/carry, points the loader and the tests at it (B = the binaries), starts
# $OUT/summary.txt with the GPU's name and defines `log` (tee into it).
mkdir -p "$OUT" /tmp/carry
# Whichever pack came (pack.tar.xz, or cli.tar.xz with the freeswim binary: device_pack.sh cli).
for p in .carry/pack.tar.xz .carry/cli.tar.xz; do
  if [[ -f "$p" ]]; then tar -xJf "$p" -C /tmp/carry; fi
done
B=/tmp/carry/bin
export LD_LIBRARY_PATH=/tmp/carry/lib:${LD_LIBRARY_PATH:-}
export FREESWIM_GOLDEN_DIR=/tmp/carry/golden
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | tee "$OUT/summary.txt"
log() { tee -a "$OUT/summary.txt"; }
