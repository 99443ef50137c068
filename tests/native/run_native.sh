#!/usr/bin/env bash
# Builds check_neon for this machine (warnings as errors) and runs it: every SIMD level
# compiled in and supported here (x86-64: scalar, AVX2, AVX-512) against the scalar table.
# The "digest" line it prints must equal the one of run_aarch64.sh (same results on both).
#
# BUILD_DIR=... picks the build directory (default: a new temporary one), JOBS=N the
# compile jobs (default 2). Extra arguments go to check_neon (-v: list every check).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
build="${BUILD_DIR:-$(mktemp -d -t gradsparse-native.XXXXXX)}"
command -v cmake >/dev/null 2>&1 || { echo "run_native.sh: cmake not found" >&2; exit 2; }
generator=()
command -v ninja >/dev/null 2>&1 && generator=(-G Ninja)
echo "== configure + build (native, -Werror) in $build"
cmake -S "$root/tests/native" -B "$build" "${generator[@]}" -DCMAKE_BUILD_TYPE=Release -DGRADSPARSE_WERROR=ON >/dev/null
cmake --build "$build" -j"${JOBS:-2}"
echo "== run"
exec "$build/check_neon" "$@"
