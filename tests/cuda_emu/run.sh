#!/usr/bin/env bash
# Builds check_engine -- the CUDA engine's kernels (cpp/src/cuda) compiled as C++ against the
# emulated CUDA runtime and CUB in emu/, run on the CPU -- and runs it: bit-for-bit equal to
# the CPU engine or it fails. No GPU and no CUDA toolkit needed: a C++20 compiler and CMake.
#
#   BUILD_DIR=...   build directory (default: build/cuda-emu in the repository)
#   EMU_SANITIZE=0  build without -fsanitize=address,undefined (default 1: with, when the
#                   compiler can link it)
#   JOBS=N          compile jobs (default 2)
# Extra arguments go to check_engine (--quick, --seed N, --only GROUP).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
build="${BUILD_DIR:-$root/build/cuda-emu}"
command -v cmake >/dev/null 2>&1 || { echo "run.sh: cmake not found" >&2; exit 2; }
generator=()
command -v ninja >/dev/null 2>&1 && generator=(-G Ninja)
sanitize=OFF
if [ "${EMU_SANITIZE:-1}" != 0 ]; then
  probe="$(mktemp -d)"
  echo 'int main() { return 0; }' > "$probe/p.cpp"
  if "${CXX:-c++}" -fsanitize=address,undefined "$probe/p.cpp" -o "$probe/p" >/dev/null 2>&1; then
    sanitize=ON
  else
    echo "run.sh: ${CXX:-c++} cannot link -fsanitize=address,undefined; building without" >&2
  fi
  rm -rf "$probe"
fi
echo "== configure + build (sanitizers: $sanitize) in $build"
cmake -S "$root/tests/cuda_emu" -B "$build" "${generator[@]}" -DCMAKE_BUILD_TYPE=Release \
  -DEMU_SANITIZE="$sanitize" -DEMU_CUDA_DIR="$root/cpp/src/cuda" >/dev/null
cmake --build "$build" -j"${JOBS:-2}"
echo "== run"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1}"
exec "$build/check_engine" "$@"
