#!/usr/bin/env bash
# Cross-compiles the C++ core and check_neon for AArch64 (warnings as errors) and runs the
# check under qemu user-mode emulation: the NEON kernel table against the scalar table.
#
#   tests/native/run_aarch64.sh            needs qemu-aarch64 and aarch64-linux-gnu-g++
#   INSTALL=1 tests/native/run_aarch64.sh  installs them first (Debian/Ubuntu, as root):
#                                          apt-get install -y qemu-user g++-aarch64-linux-gnu
#
# BUILD_DIR=... picks the build directory (default: a new temporary one), JOBS=N the
# compile jobs (default 2). Extra arguments go to check_neon (-v: list every check).
# binfmt_misc need not be set up: the binary is run through qemu-aarch64 explicitly.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
sysroot="${AARCH64_SYSROOT:-/usr/aarch64-linux-gnu}"

if [[ "${INSTALL:-0}" == 1 ]]; then
  apt-get update
  apt-get install -y qemu-user g++-aarch64-linux-gnu
fi
missing=()
for tool in aarch64-linux-gnu-g++ qemu-aarch64 cmake; do
  command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
done
if (( ${#missing[@]} )); then
  echo "run_aarch64.sh: missing ${missing[*]}; install with" >&2
  echo "  apt-get install -y qemu-user g++-aarch64-linux-gnu   (and cmake)" >&2
  echo "or run with INSTALL=1" >&2
  exit 2
fi
if [[ ! -d "$sysroot/lib" ]]; then
  echo "run_aarch64.sh: no AArch64 runtime libraries in $sysroot (set AARCH64_SYSROOT)" >&2
  exit 2
fi

build="${BUILD_DIR:-$(mktemp -d -t gradsparse-aarch64.XXXXXX)}"
generator=()
command -v ninja >/dev/null 2>&1 && generator=(-G Ninja)
echo "== configure + build (aarch64, -Werror) in $build"
cmake -S "$root/tests/native" -B "$build" "${generator[@]}" \
  -DCMAKE_TOOLCHAIN_FILE="$root/tests/native/aarch64-linux-gnu.cmake" \
  -DCMAKE_BUILD_TYPE=Release -DGRADSPARSE_WERROR=ON >/dev/null
cmake --build "$build" -j"${JOBS:-2}"
echo "== run under qemu-aarch64"
exec qemu-aarch64 -L "$sysroot" "$build/check_neon" "$@"
