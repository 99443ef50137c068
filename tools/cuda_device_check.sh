#!/usr/bin/env bash
# The CUDA backend's device check (issue 18): on a machine with a GPU, the CUDA toolkit and a
# Python that has torch (a CUDA build), numpy, pytest, hypothesis, pybind11 and
# scikit-build-core -- no network needed -- from the repository root:
#
#   tools/cuda_device_check.sh [--dry-run] [--stages LIST] [--out DIR]
#
# Stages, in this order (every one runs, whatever happened before; each is time-boxed):
#   preflight  what is here: GPU, driver, nvcc, cmake, compute-sanitizer, the Python modules
#   build      pip install --no-build-isolation --no-deps --no-index . with GRADSPARSE_CUDA=ON,
#              GRADSPARSE_WERROR=ON and CMAKE_CUDA_ARCHITECTURES=native (this GPU only); the
#              CMake tree stays in build/cuda-check, so a rerun on the same machine is incremental
#   tests      python -m pytest on tests/test_*cuda*.py (every CUDA test file, later ones too);
#              a CUDA test that skips for want of the backend or a device counts as a failure here
#   bench      python -m gradsparse.bench cuda --json OUT/bench-cuda.json (its targets are
#              reported; a target not met is not a failure of this script, a wrong result is)
#   memcheck   compute-sanitizer --tool memcheck on tools/cuda_smoke.py --size small
#   racecheck  compute-sanitizer --tool racecheck on tools/cuda_smoke.py --size tiny (optional:
#              runs only with the time left; a timeout there is reported, not a failure; a
#              hazard it finds is one)
# Everything is written under OUT ($OUT, else ./cuda-check-out): one log per stage, the
# pytest JUnit XML, the benchmark's JSON, summary.txt and summary.json. The whole run keeps
# within CHECK_BUDGET_S seconds (default 470, under 8 minutes). Exit status: 0 when every stage
# passed (racecheck may also have run out of time), 1 otherwise; 2 for a bad argument.
#
# Environment: PYTHON (default: python3 or python, the first that imports torch), OUT, CHECK_BUDGET_S, JOBS (build jobs, default nproc),
# CUDA_ARCHS (overrides "native", e.g. 90).
set -uo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root" || exit 1
if [[ -z "${PYTHON:-}" ]]; then  # the first of python3, python that has torch
  PYTHON=python3
  for c in python3 python; do
    if command -v "$c" >/dev/null 2>&1 && "$c" -c "import torch" >/dev/null 2>&1; then PYTHON="$c"; break; fi
  done
fi
# a system Python marked externally managed (PEP 668) would refuse the install; this machine is
# lent for the check, so install into whatever Python has torch
export PIP_BREAK_SYSTEM_PACKAGES=1 PIP_DISABLE_PIP_VERSION_CHECK=1
OUT="${OUT:-$root/cuda-check-out}"
BUDGET="${CHECK_BUDGET_S:-470}"
JOBS="${JOBS:-$(nproc 2>/dev/null || echo 4)}"
ALL_STAGES="preflight build tests bench memcheck racecheck"
stages="$ALL_STAGES"
dry=0

while [[ $# -gt 0 ]]; do
  case "$1" in
    --dry-run) dry=1 ;;
    --stages) stages="${2:?--stages needs a comma-separated list}"; stages="${stages//,/ }"; shift ;;
    --out) OUT="${2:?--out needs a directory}"; shift ;;
    -h|--help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "${BASH_SOURCE[0]}"; exit 0 ;;
    *) echo "cuda_device_check: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done
for s in $stages; do
  [[ " $ALL_STAGES " == *" $s "* ]] || { echo "cuda_device_check: unknown stage $s ($ALL_STAGES)" >&2; exit 2; }
done

# stage -> cap (seconds) and the time kept back for the essential stages after it
declare -A CAP=([preflight]=30 [build]=300 [tests]=200 [bench]=150 [memcheck]=150 [racecheck]=120)
declare -A RESERVE=([preflight]=200 [build]=180 [tests]=120 [bench]=60 [memcheck]=0 [racecheck]=0)
declare -A STATUS DETAIL SECS
OPTIONAL=" racecheck "

# ---------------------------------------------------------------------------- tools
nvcc_bin="$(command -v nvcc || true)"
[[ -z "$nvcc_bin" && -x /usr/local/cuda/bin/nvcc ]] && nvcc_bin=/usr/local/cuda/bin/nvcc
if [[ -n "$nvcc_bin" ]]; then
  export PATH="$(dirname "$nvcc_bin"):$PATH" CUDACXX="$nvcc_bin"
fi
sanitizer="$(command -v compute-sanitizer || true)"
# (nvcc may be a wrapper script elsewhere: look in the toolkits too)
for c in "${nvcc_bin:+$(dirname "$nvcc_bin")/compute-sanitizer}" ${CUDA_HOME:+"$CUDA_HOME/bin/compute-sanitizer"} \
         /usr/local/cuda/bin/compute-sanitizer /usr/local/cuda/compute-sanitizer/compute-sanitizer \
         /usr/local/cuda-*/bin/compute-sanitizer /usr/local/cuda-*/compute-sanitizer/compute-sanitizer; do
  [[ -z "$sanitizer" && -n "$c" && -x "$c" ]] && sanitizer="$c"
done
archs="${CUDA_ARCHS:-native}"
if [[ "$archs" == native ]] && command -v cmake >/dev/null 2>&1; then
  # CMAKE_CUDA_ARCHITECTURES=native needs CMake >= 3.24; older: the GPU's compute capability
  cm="$(cmake --version 2>/dev/null | head -1 | grep -oE '[0-9]+\.[0-9]+' | head -1)"
  if [[ -n "$cm" ]] && [[ "$(printf '%s\n3.24\n' "$cm" | sort -V | head -1)" != 3.24 ]]; then
    cc="$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader 2>/dev/null | head -1 | tr -d ' .')"
    [[ -n "$cc" ]] && archs="$cc"
  fi
fi
tests_glob=(tests/test_*cuda*.py)
smoke=(tools/cuda_smoke.py)

build_cmd=("$PYTHON" -m pip install --no-build-isolation --no-deps --no-index -v
  -C build-dir=build/cuda-check -C cmake.build-type=Release
  -C cmake.define.GRADSPARSE_CUDA=ON -C cmake.define.GRADSPARSE_WERROR=ON
  -C "cmake.define.CMAKE_CUDA_ARCHITECTURES=$archs" .)
# the CPU emulation of the kernels (tests/test_cuda_emulation.py) needs no GPU: CI runs it
tests_cmd=("$PYTHON" -m pytest -q -rs -p no:cacheprovider --junitxml="$OUT/pytest.xml"
           --ignore=tests/test_cuda_emulation.py "${tests_glob[@]}")
bench_cmd=("$PYTHON" -m gradsparse.bench cuda --json "$OUT/bench-cuda.json")
memcheck_cmd=("${sanitizer:-compute-sanitizer}" --tool memcheck --error-exitcode 99 --print-limit 50
  "$PYTHON" "${smoke[@]}" -v --size small)
racecheck_cmd=("${sanitizer:-compute-sanitizer}" --tool racecheck --error-exitcode 99 --print-limit 50
  "$PYTHON" "${smoke[@]}" -v --size tiny)

describe() {
  case "$1" in
    preflight) echo "nvidia-smi, nvcc/cmake/compute-sanitizer versions, $PYTHON: torch (CUDA), numpy, pytest, hypothesis, pybind11, scikit_build_core" ;;
    build) echo "CMAKE_BUILD_PARALLEL_LEVEL=$JOBS ${build_cmd[*]}" ;;
    tests) echo "${tests_cmd[*]}" ;;
    bench) echo "${bench_cmd[*]}" ;;
    memcheck) echo "${memcheck_cmd[*]}" ;;
    racecheck) echo "${racecheck_cmd[*]}   (optional, with the time left)" ;;
  esac
}

if [[ $dry -eq 1 ]]; then
  echo "cuda_device_check (dry run): repository $root, output $OUT, budget ${BUDGET} s, build jobs $JOBS"
  for s in $stages; do
    printf '  %-10s cap %4ss: %s\n' "$s" "${CAP[$s]}" "$(describe "$s")"
  done
  exit 0
fi

mkdir -p "$OUT" || exit 1
t_start=$SECONDS
echo "cuda_device_check: repository $root, output $OUT, budget ${BUDGET} s, stages: $stages"

# ---------------------------------------------------------------------------- stage runner
# run_stage NAME LOG CMD...: time-boxed; sets STATUS/SECS; the log keeps stdout + stderr
run_stage() {
  local name="$1" log="$2"; shift 2
  local left=$(( BUDGET - (SECONDS - t_start) - ${RESERVE[$name]} ))
  local limit=${CAP[$name]}
  (( left < limit )) && limit=$left
  if (( limit < 15 )); then
    STATUS[$name]="SKIPPED"; DETAIL[$name]="no time left in the ${BUDGET} s budget"; SECS[$name]=0
    echo "=== $name: skipped (no time left)"; return 1
  fi
  echo "=== $name (limit ${limit} s): $*" | tee "$log"
  local t0=$SECONDS rc
  timeout --kill-after=10 "$limit" "$@" >>"$log" 2>&1
  rc=$?
  SECS[$name]=$(( SECONDS - t0 ))
  if (( rc == 124 || rc == 137 )); then
    STATUS[$name]="TIMEOUT"; DETAIL[$name]="stopped after ${limit} s"
  elif (( rc == 0 )); then
    STATUS[$name]="ok"; DETAIL[$name]=""
  else
    STATUS[$name]="FAIL"; DETAIL[$name]="exit status $rc"
  fi
  echo "    -> ${STATUS[$name]} in ${SECS[$name]} s ($(tail -n 1 "$log" | cut -c1-160))"
  return $rc
}

# ---------------------------------------------------------------------------- stages
stage_preflight() {
  local log="$OUT/preflight.log" problems=() py pm
  echo "=== preflight" | tee "$log"
  {
    echo "date: $(date -u +%FT%TZ)  host: $(hostname)  cores: $(nproc)  git: $(git -C "$root" rev-parse --short HEAD 2>/dev/null)" \
         "($(git -C "$root" status --porcelain 2>/dev/null | wc -l) changed file(s))"
    nvidia-smi --query-gpu=name,compute_cap,driver_version,memory.total,clocks.max.sm --format=csv 2>&1 || echo "nvidia-smi failed"
    if [[ -n "$nvcc_bin" ]]; then "$nvcc_bin" --version | tail -2; else echo "nvcc: NOT FOUND"; fi
    cmake --version 2>/dev/null | head -1 || echo "cmake: not on PATH"
    ninja --version 2>/dev/null | sed 's/^/ninja /' || echo "ninja: not found (make is used)"
    if [[ -n "$sanitizer" ]]; then "$sanitizer" --version | tail -1; else echo "compute-sanitizer: NOT FOUND"; fi
    echo "CUDA architectures for the build: $archs; build jobs: $JOBS"
  } >>"$log" 2>&1
  [[ -n "$nvcc_bin" ]] || problems+=(nvcc)
  command -v nvidia-smi >/dev/null 2>&1 || problems+=(nvidia-smi)
  [[ -n "$sanitizer" ]] || problems+=(compute-sanitizer)
  command -v cmake >/dev/null 2>&1 || "$PYTHON" -c "import cmake" >/dev/null 2>&1 || problems+=(cmake)
  py="$("$PYTHON" - 2>&1 <<'EOF'
import importlib, sys
print("python", sys.version.split()[0], sys.executable)
missing = []
for name in ("torch", "numpy", "pytest", "hypothesis", "pybind11", "scikit_build_core"):
    try:
        mod = importlib.import_module(name)
        print(f"{name} {getattr(mod, '__version__', '?')}")
    except Exception as exc:  # noqa: BLE001
        print(f"{name}: MISSING ({type(exc).__name__}: {exc})")
        missing.append(name)
try:
    import torch
    ok = torch.cuda.is_available()
    print(f"torch.version.cuda {torch.version.cuda}; torch.cuda.is_available() {ok}"
          + (f"; device {torch.cuda.get_device_name(0)}" if ok else ""))
    if not ok:
        missing.append("torch-with-a-usable-GPU")
except Exception:  # noqa: BLE001
    pass
try:
    importlib.import_module("scipy")
except Exception:  # noqa: BLE001
    print("scipy: missing (optional: only the CPU suite's DCT tests use it)")
print("MISSING:", " ".join(missing))
EOF
  )" || problems+=(python)
  echo "$py" >>"$log"
  pm="$(grep '^MISSING:' <<<"$py" | cut -d: -f2-)"
  for m in $pm; do problems+=("python:$m"); done
  SECS[preflight]=0
  sed 's/^/    /' "$log" | tail -n +2
  if (( ${#problems[@]} )); then
    STATUS[preflight]="FAIL"; DETAIL[preflight]="missing: ${problems[*]} (the later stages run anyway)"
  else
    STATUS[preflight]="ok"; DETAIL[preflight]="$(nvidia-smi --query-gpu=name,compute_cap --format=csv,noheader 2>/dev/null | head -1)"
  fi
  echo "    -> ${STATUS[preflight]} ${DETAIL[preflight]}"
}

stage_build() {
  if [[ -z "$nvcc_bin" ]]; then
    STATUS[build]="FAIL"; DETAIL[build]="nvcc not found"; SECS[build]=0
    echo "=== build: FAIL (nvcc not found)" | tee "$OUT/build.log"; return
  fi
  # (an assignment before a function call is in its environment, and so in pip's and cmake's)
  CMAKE_BUILD_PARALLEL_LEVEL="$JOBS" run_stage build "$OUT/build.log" "${build_cmd[@]}"
  if [[ "${STATUS[build]}" == ok ]]; then
    DETAIL[build]="$("$PYTHON" - 2>&1 <<'EOF' | tail -1
import gradsparse.cuda as c
i = c.info()
print("built {built}, devices {devices}, archs {archs}, runtime {runtime}, driver {driver} {reason}".format(**i))
EOF
    )"
    grep -q "built True, devices [1-9]" <<<"${DETAIL[build]}" || STATUS[build]="FAIL"
  else
    DETAIL[build]="${DETAIL[build]}; $(grep -m1 -iE 'error' "$OUT/build.log" | cut -c1-200)"
  fi
}

stage_tests() {
  if [[ ! -e "${tests_glob[0]}" ]]; then
    STATUS[tests]="FAIL"; DETAIL[tests]="no tests/test_*cuda*.py files"; SECS[tests]=0; return
  fi
  run_stage tests "$OUT/pytest.log" "${tests_cmd[@]}"
  local last skips
  last="$(grep -E '(passed|failed|error|skipped)' "$OUT/pytest.log" | tail -1 | sed 's/=//g;s/^ *//')"
  skips="$(grep -cE 'SKIPPED.*(CUDA backend not built|no CUDA device|cannot see the CUDA device)' "$OUT/pytest.log")"
  DETAIL[tests]="${last}${DETAIL[tests]:+; ${DETAIL[tests]}}"
  if (( skips > 0 )); then
    STATUS[tests]="FAIL"; DETAIL[tests]="${DETAIL[tests]}; ${skips} skip line(s) for want of the backend or the GPU"
  fi
}

stage_bench() {
  rm -f "$OUT/bench-cuda.json"
  run_stage bench "$OUT/bench.log" "${bench_cmd[@]}"
  local verdict
  verdict="$("$PYTHON" - "$OUT/bench-cuda.json" <<'EOF' 2>&1
import json, sys
try:
    r = json.load(open(sys.argv[1]))
except Exception as exc:  # noqa: BLE001
    print(f"no JSON ({type(exc).__name__})"); sys.exit(1)
s = r.get("summary", {})
met = sum(1 for v in s.values() if v.get("verdict") == "met")
miss = [k for k, v in s.items() if v.get("verdict") == "not met"]
na = sum(1 for v in s.values() if v.get("verdict") == "n/a")
print(f"status {r.get('status')}{': ' + r.get('reason', '') if r.get('status') == 'skipped' else ''}; "
      f"targets met {met}, not met {len(miss)}{' (' + ', '.join(miss) + ')' if miss else ''}, n/a {na}")
sys.exit(0 if r.get("status") == "ok" else 1)
EOF
  )"
  local rc=$?
  DETAIL[bench]="$verdict"
  [[ "${STATUS[bench]}" == ok && $rc -ne 0 ]] && STATUS[bench]="FAIL"
}

stage_sanitizer() {
  local tool="$1"
  if [[ -z "$sanitizer" ]]; then
    STATUS[$tool]="FAIL"; DETAIL[$tool]="compute-sanitizer not found"; SECS[$tool]=0
    echo "=== $tool: FAIL (compute-sanitizer not found)" | tee "$OUT/$tool.log"; return
  fi
  local -n cmd="${tool}_cmd"
  # no caching allocator: every tensor torch hands the extension (outputs, workspaces) is its own
  # cudaMalloc, so memcheck sees an access past its end
  PYTORCH_NO_CUDA_MEMORY_CACHING=1 run_stage "$tool" "$OUT/$tool.log" "${cmd[@]}"
  local errs smoke_line
  errs="$(grep -E 'ERROR SUMMARY|RACECHECK SUMMARY' "$OUT/$tool.log" | tail -1)"
  smoke_line="$(grep -E '^cuda_smoke: [0-9]+ cases|cannot run' "$OUT/$tool.log" | tail -1)"
  DETAIL[$tool]="${errs:-no sanitizer summary}; ${smoke_line:-no smoke summary}${DETAIL[$tool]:+; ${DETAIL[$tool]}}"
}

for s in $stages; do
  case "$s" in
    preflight) stage_preflight ;;
    build) stage_build ;;
    tests) stage_tests ;;
    bench) stage_bench ;;
    memcheck) stage_sanitizer memcheck ;;
    racecheck) stage_sanitizer racecheck ;;
  esac
done

# ---------------------------------------------------------------------------- summary
failed=0
for s in $stages; do
  st="${STATUS[$s]:-not run}"
  # an optional stage fails the run only when it ran and found something, not for want of time
  [[ "$st" == ok || ( "$OPTIONAL" == *" $s "* && ( "$st" == TIMEOUT || "$st" == SKIPPED ) ) ]] || failed=1
done
{
  echo
  echo "== cuda_device_check summary: $(( SECONDS - t_start )) s of ${BUDGET} s; logs in $OUT"
  for s in $stages; do
    note=""
    [[ "$OPTIONAL" == *" $s "* ]] && note=" (optional: a timeout or skip is not a failure)"
    printf '  %-10s %-8s %4ss  %s%s\n' "$s" "${STATUS[$s]:-not run}" "${SECS[$s]:-0}" "${DETAIL[$s]:-}" "$note"
  done
  if [[ -f "$OUT/bench.log" ]] && grep -q "^== summary" "$OUT/bench.log"; then
    echo "  benchmark targets:"
    sed -n '/^== summary/,$p' "$OUT/bench.log" | tail -n +2 | grep -vE '^$|results verified' | sed 's/^/  /'
  fi
  echo "  result: $([[ $failed -eq 0 ]] && echo PASS || echo FAIL)"
} | tee "$OUT/summary.txt"

"$PYTHON" - "$OUT/summary.json" "$failed" $(for s in $stages; do printf '%s=%s=%s ' "$s" "${STATUS[$s]:-not-run}" "${SECS[$s]:-0}"; done) <<'EOF' 2>/dev/null || true
import json, sys
path, failed, *items = sys.argv[1:]
stages = {}
for it in items:
    name, status, secs = it.split("=", 2)
    stages[name] = {"status": status, "seconds": int(secs)}
json.dump({"failed": failed == "1", "stages": stages}, open(path, "w"), indent=1)
EOF
exit $failed
