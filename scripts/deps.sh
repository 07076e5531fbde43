#!/usr/bin/env bash
# The Debian 12 packages this project needs, in one place: scripts/run.sh, scripts/test.sh and
# .ci/run call this first. It installs only what is missing (apt-get update, then apt-get install
# of the missing ones: as root directly, else through sudo, else it stops with the exact command
# to run as root) and, when every package is present, runs no apt-get at all.
#   scripts/deps.sh           install what is missing
#   scripts/deps.sh --list    print the package list, one a line
#   scripts/deps.sh --check   exit 1, naming them, when packages are missing; installs nothing
set -euo pipefail

packages=(
  # build (scripts/build.sh: CMake with Ninja)
  cmake ninja-build g++ pkg-config
  # libraries (cmake/dependencies.cmake)
  libopenblas-dev nlohmann-json3-dev libcli11-dev libfmt-dev libgtest-dev libgmock-dev
  libbenchmark-dev libsentencepiece-dev libavformat-dev libavcodec-dev libswscale-dev
  libavutil-dev libpng-dev
  # tests: ffprobe reads the mp4s back
  ffmpeg
  # CI (.ci/run): the sanitizer and fuzz builds (clang, its runtime), the linker of the CI builds
  # (lld) and the format check
  clang libclang-rt-14-dev lld clang-format
)

case "${1:-}" in
  --list) printf '%s\n' "${packages[@]}"; exit 0 ;;
  --check | "") ;;
  *) echo "usage: $0 [--list|--check]" >&2; exit 2 ;;
esac

if ! command -v dpkg-query >/dev/null; then
  # Not a Debian system: nothing here can install them, and CMake names what it cannot find.
  echo "scripts/deps.sh: no dpkg-query (not Debian): not checking the packages; the build needs" \
    "the equivalents of: ${packages[*]}" >&2
  exit 0
fi

missing=()
for p in "${packages[@]}"; do
  # "install ok installed" only; a package removed with its configuration left ("deinstall ok
  # config-files") or never installed counts as missing.
  status=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
  [[ "$status" == "install ok installed" ]] || missing+=("$p")
done
[[ ${#missing[@]} -eq 0 ]] && exit 0

install="apt-get update && apt-get install -y --no-install-recommends ${missing[*]}"
if [[ "${1:-}" == --check ]]; then
  echo "scripts/deps.sh: missing Debian packages: ${missing[*]}" >&2
  exit 1
fi
if [[ $(id -u) -eq 0 ]]; then
  as_root=()
elif command -v sudo >/dev/null; then
  as_root=(sudo)
else
  echo "scripts/deps.sh: missing Debian packages: ${missing[*]}; not root and no sudo to" \
    "install them: run this as root, then this script again:" >&2
  echo "  $install" >&2
  exit 1
fi
echo "scripts/deps.sh: installing the missing Debian packages: ${missing[*]}" >&2
# `env` passes the variable through sudo, whose policy may refuse `sudo VAR=value`.
"${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update
"${as_root[@]}" env DEBIAN_FRONTEND=noninteractive \
  apt-get install -y --no-install-recommends "${missing[@]}"
