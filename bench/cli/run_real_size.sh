#!/bin/bash
# The user's path at real size through the CLI (issue 14, part 4), on the GPU machine, from the
# repository root:
#
#   bench/cli/run_real_size.sh diffusers|original [extra freeswim generate flags...]
#   bench/cli/run_real_size.sh prepare     (steps 1 and 2 only, both layouts: ~80 s on an H100, so
#                                          that a later call spends its 10 minutes on the run)
#
# 1. unpacks .carry/cli.tar.xz (scripts/device_pack.sh cli: freeswim, bench_mp4, their libraries,
#    the golden data) to /tmp/carry unless that is done already;
# 2. writes a Wan2.1-T2V-1.3B model folder with random weights of the real shapes in the given
#    layout (bench/cli/make_random_models.py; kept in $MODELS across calls on a warm machine);
# 3. runs `freeswim generate --model <folder> -p ... --size 1920x1080 --frames 81 -o <mp4>` with
#    every other flag at its default (plus the extra flags given) under
#    FREESWIM_GPU_MEMORY_LIMIT=22.35 (what a 24 GB card leaves), logging to $OUT;
# 4. prints the CLI's own summary (stage times, total, peak memory) as a table and checks the mp4:
#    1920x1080 with 81 frames (ffprobe when present; else bench/cli/probe_mp4.py on its boxes and
#    `bench_mp4 --probe`, which decodes every frame with the engine's FFmpeg reader). The mp4 is
#    copied to $OUT only when it is at most 16 MB.
#
# Optional: diffusers' sources as .carry/ref/src or .carry/ref.tar.xz (ref/src/diffusers inside) let
# make_random_models.py check its shapes against the reference classes built on the meta device.
# Environment: OUT (default /tmp/real_size), MODELS (default /tmp/freeswim_models), FRAMES/SIZE
# (default 81 / 1920x1080), PROMPT, GPU_LIMIT (the FREESWIM_GPU_MEMORY_LIMIT in GiB, default 22.35;
# 14.9 for a 16 GB card), VARIANT (1.3B, default, or 14B: its DiT written in bf16, 28.6 GB).
set -u
layout=${1:?usage: bench/cli/run_real_size.sh diffusers|original|prepare [extra generate flags...]}
shift
case "$layout" in diffusers | original | prepare) ;; *) echo "layout must be diffusers, original or prepare" >&2; exit 2 ;; esac
prepare_only=0
if [[ $layout == prepare ]]; then prepare_only=1 layout=both; fi
OUT=${OUT:-/tmp/real_size}
MODELS=${MODELS:-/tmp/freeswim_models}
FRAMES=${FRAMES:-81}
SIZE=${SIZE:-1920x1080}
PROMPT=${PROMPT:-"a red fox trotting through fresh snow at dawn, cinematic, shallow depth of field"}
GPU_LIMIT=${GPU_LIMIT:-22.35}
VARIANT=${VARIANT:-1.3B}
variant_args=(--variant "$VARIANT")
[[ $VARIANT == 14B ]] && variant_args+=(--dit-dtype bf16)
mkdir -p "$OUT" /tmp/carry
log=$OUT/generate_$layout.log
summary=$OUT/summary_$layout.txt
say() { echo "$*" | tee -a "$summary"; }
: >"$summary"

# 1. The CLI pack.
if [[ ! -x /tmp/carry/bin/freeswim ]]; then
  [[ -f .carry/cli.tar.xz ]] || { echo "no .carry/cli.tar.xz (scripts/device_pack.sh cli)" >&2; exit 2; }
  tar -xJf .carry/cli.tar.xz -C /tmp/carry || exit 2
fi
export LD_LIBRARY_PATH=/tmp/carry/lib:${LD_LIBRARY_PATH:-}
FS=/tmp/carry/bin/freeswim
golden=/tmp/carry/golden
[[ -d "$golden" ]] || golden=.carry/golden
say "card: $(nvidia-smi --query-gpu=name,memory.total --format=csv,noheader 2>/dev/null | head -1)"

# 2. The model folder. diffusers' sources, when carried, enable the meta-device shape check.
pypath=${PYTHONPATH:-}
if [[ -d .carry/ref/src/diffusers ]]; then
  pypath=.carry/ref/src:$pypath
elif [[ -f .carry/ref.tar.xz ]]; then
  mkdir -p /tmp/carry_ref && tar -xJf .carry/ref.tar.xz -C /tmp/carry_ref && pypath=/tmp/carry_ref/ref/src:$pypath
fi
# A layout takes 17.6 GiB: when the disk has less than 20 GiB free, the other layout's folder
# (from an earlier call on this machine) goes first.
mkdir -p "$MODELS"
other=$MODELS/$([[ $layout == diffusers ]] && echo original || echo diffusers)
if [[ $layout != both && ! -f "$MODELS/$layout/.make_random_models.json" && -d "$other" ]] &&
  (($(df -k --output=avail "$MODELS" | tail -1) < 20 * 1024 * 1024)); then
  say "removing $other for disk space"
  rm -rf "$other"
fi
ms_since() { echo $((($(date +%s%N) - $1) / 1000000)); }
secs() { printf '%d.%03d' $(($1 / 1000)) $(($1 % 1000)); }
t0=$(date +%s%N)
PYTHONPATH=$pypath python3 bench/cli/make_random_models.py "$MODELS" --layout "$layout" \
  --spiece "$golden/spiece_tiny.model" "${variant_args[@]}" 2>&1 | tee "$OUT/make_models_$layout.log"
rc=${PIPESTATUS[0]}
say "make_random_models.py ($layout): rc=$rc, $(secs "$(ms_since "$t0")") s"
grep -E 'WARNING|shapes match' "$OUT/make_models_$layout.log" | tee -a "$summary"
[[ $rc == 0 ]] || exit 1
if ((prepare_only)); then
  du -sh "$MODELS"/* | tee -a "$summary"
  exit 0
fi
model=$MODELS/$layout
du -sh "$model" | tee -a "$summary"
"$FS" info --model "$model" 2>&1 | tee -a "$summary"

# 3. The run, every default but the size, frames, prompt and output (and the extra flags).
mp4=/tmp/real_size_$layout.mp4
rm -f "$mp4" "$mp4.resume.safetensors"
say "command: FREESWIM_GPU_MEMORY_LIMIT=$GPU_LIMIT freeswim generate --model $model -p \"$PROMPT\" --size $SIZE --frames $FRAMES -o $mp4 $*"
t0=$(date +%s%N)
FREESWIM_GPU_MEMORY_LIMIT=$GPU_LIMIT "$FS" generate --model "$model" -p "$PROMPT" --size "$SIZE" \
  --frames "$FRAMES" -o "$mp4" "$@" 2>&1 | tr '\r' '\n' | grep -v '^ *$' >"$log"
rc=${PIPESTATUS[0]}
say "freeswim generate ($layout): rc=$rc, process wall time $(secs "$(ms_since "$t0")") s"
if [[ $rc != 0 ]]; then
  tail -30 "$log" | tee -a "$summary"
  exit 1
fi

# 4. The CLI's table and the mp4.
grep -E '^freeswim: (device|model|FreeSwim stage|base stage|the DiT|.*GiB of DiT|text encoder|memory|.*cache|.*offload|VAE)' "$log" | cut -c1-220 | tee -a "$summary"
# The progress lines' last value per stage: steps and s/step.
grep -E '^ +(base|freeswim) +\[#+\] ([0-9]+)/\2 ' "$log" | sed 's/ETA.*//' | tee -a "$summary"
say "--- stage times from the CLI's log (freeswim: summary:) ---"
grep '^freeswim: summary:' "$log" | sed 's/^freeswim: summary: //' | tee -a "$summary"
grep -q '^freeswim: summary: total' "$log" || say "FAIL: no summary in the CLI's log"

width=${SIZE%x*} height=${SIZE#*x}
bytes=$(stat -c %s "$mp4")
# The two layouts hold the same weights (each tensor is drawn from its diffusers name): with the
# same flags their mp4s are the same file.
say "mp4: $mp4, $bytes bytes ($((bytes / 1000000)) MB), md5 $(md5sum "$mp4" | cut -c1-32)"
probe=""
if command -v ffprobe >/dev/null; then
  probe=$(ffprobe -v error -count_frames -select_streams v:0 \
    -show_entries stream=width,height,nb_read_frames -of csv=p=0 "$mp4")
  say "ffprobe: $probe (width,height,frames)"
  [[ "$probe" == "$width,$height,$FRAMES" ]] && probe=ok || probe=bad
else
  say "ffprobe: not on this machine; probe_mp4.py (boxes) and bench_mp4 --probe (decode) instead"
  boxes=$(python3 bench/cli/probe_mp4.py "$mp4")
  say "$boxes"
  decoded=$(/tmp/carry/bin/bench_mp4 --probe "$mp4" 2>&1)
  say "bench_mp4 $decoded"
  if [[ "$boxes" == "mp4: ${width}x${height}, $FRAMES frames,"* &&
    "$decoded" == "probe: ${width}x${height}, $FRAMES frames,"* ]]; then
    probe=ok
  else
    probe=bad
  fi
fi
[[ $probe == ok ]] && say "PASS: the mp4 is ${width}x${height} with $FRAMES frames" ||
  say "FAIL: the mp4 is not ${width}x${height} with $FRAMES frames"
if ((bytes <= 16000000)); then cp "$mp4" "$OUT/"; else say "(mp4 not copied to \$OUT: over 16 MB)"; fi
rm -f "$mp4"
[[ $probe == ok ]]
