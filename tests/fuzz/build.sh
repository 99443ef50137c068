#!/usr/bin/env bash
# Builds the wire-decoder fuzzers under ASan + UBSan into build/fuzz/ (gitignored):
#   build/fuzz/fuzz_driver            standalone mutation driver (gcc or clang)
#   build/fuzz/fuzz_decode_libfuzzer  libFuzzer binary (only when clang++ is available)
# Uses one compile job at a time (JOBS=N to change). CXX=... picks the compiler; by
# default clang++ when installed (for libFuzzer), else g++.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
build="${BUILD_DIR:-$root/build/fuzz}"
if [[ -z "${CXX:-}" ]]; then
  if command -v clang++ >/dev/null 2>&1; then CXX=clang++; else CXX=g++; fi
fi
cmake -S "$root/tests/fuzz" -B "$build" -DCMAKE_CXX_COMPILER="$CXX" >/dev/null
cmake --build "$build" -j"${JOBS:-1}"
echo "built in $build:"
ls -1 "$build" | grep -E '^fuzz_(driver|decode_libfuzzer)$' | sed "s|^|  $build/|"
