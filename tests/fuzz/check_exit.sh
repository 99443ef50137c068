#!/usr/bin/env bash
# Regression check for the standalone driver's crash callback at process exit: with a
# target that leaks (exit_target.cpp), LeakSanitizer reports after main() has returned and
# calls the sanitizer death callback. The driver must not read the input it ran last (freed
# by then) nor save it as a crash artifact: only the leak report may appear. And an input
# that makes the target abort while it runs must still be saved.
#
#   tests/fuzz/check_exit.sh [BUILD_DIR]     (default build/fuzz, as built by build.sh)
set -uo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
build="${1:-${BUILD_DIR:-$root/build/fuzz}}"
bin="$build/fuzz_driver_exit_check"
[[ -x "$bin" ]] || { echo "check_exit.sh: $bin not found; run tests/fuzz/build.sh first" >&2; exit 2; }
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
printf 'L%.0s' {1..64} > "$work/input"
fail=0
run() {  # name, then driver arguments
  local name="$1"; shift
  mkdir -p "$work/$name"
  ASAN_OPTIONS="detect_leaks=1:${ASAN_OPTIONS:-}" "$bin" -artifact_prefix="$work/$name/" "$@" > "$work/$name.log" 2>&1
  local rc=$?
  local problems=()
  grep -q "LeakSanitizer: detected memory leaks" "$work/$name.log" || problems+=("no leak report")
  grep -Eq "heap-use-after-free|use-after|nested bug|SEGV|stack-use" "$work/$name.log" && problems+=("memory error in the exit path")
  grep -q "input saved to" "$work/$name.log" && problems+=("an input was saved at exit")
  compgen -G "$work/$name/crash-*" > /dev/null && problems+=("crash artifact written")
  (( rc != 0 )) || problems+=("exit status 0")
  if (( ${#problems[@]} )); then
    echo "FAIL $name (exit $rc): ${problems[*]}"
    sed 's/^/    /' "$work/$name.log" | head -40
    fail=1
  else
    echo "ok   $name (exit $rc: leak reported, nothing saved, no memory error)"
  fi
}
run file-mode "$work/input"
run fuzz-mode -runs=200 -seeds=20 -seed=1

# A crash during an execution: the input is saved, byte for byte.
printf 'A%.0s' {1..32} > "$work/abort-input"
mkdir -p "$work/abort"
{ "$bin" -artifact_prefix="$work/abort/" "$work/abort-input" > "$work/abort.log" 2>&1; rc=$?; } 2>/dev/null
saved=("$work"/abort/crash-*)
if (( rc != 0 )) && [[ -f "${saved[0]}" ]] && cmp -s "${saved[0]}" "$work/abort-input" && grep -q "input saved to" "$work/abort.log"; then
  echo "ok   abort-during-execution (exit $rc: input saved)"
else
  echo "FAIL abort-during-execution (exit $rc): the aborting input was not saved"
  sed 's/^/    /' "$work/abort.log" | head -20
  fail=1
fi
exit $fail
