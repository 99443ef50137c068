#!/usr/bin/env python3
"""Checks the checks: builds check_engine against copies of cpp/src/cuda with one deliberate
bug each (a dropped barrier, an off-by-one in the tie rule, a BlockReduce result read in the
wrong thread, ...) and expects every one to be caught (a mismatch or an emulation error).

    python3 tests/cuda_emu/mutants.py [NAME...]

Slow (one rebuild of an engine source per mutant); not part of the test suite. Leaves
cpp/src/cuda untouched: the mutants are built from a temporary copy (EMU_CUDA_DIR).
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BUILD = Path(os.environ.get("BUILD_DIR", ROOT / "build" / "cuda-emu-mutants"))

# name: (file, old, new, check_engine group)
MUTANTS = {
    "write-no-barrier": ("pipeline.cuh",
                         "            Scan(tmp).ExclusiveSum(eq ? 1u : 0u, rank, ties);\n            __syncthreads();\n",
                         "            Scan(tmp).ExclusiveSum(eq ? 1u : 0u, rank, ties);\n", "count"),
    "scan-no-carry": ("pipeline.cuh", "const ull before = carry_eq + eq_before;", "const ull before = eq_before;", "many"),
    "band-sure-ge": ("pipeline.cuh", "nsure += k > hi;", "nsure += k >= hi;", "count"),
    "step-last-of-bin": ("pipeline.cuh", "if (above < rem && rem <= above + count)", "if (above < rem && rem < above + count)",
                         "count"),
    "counts-reduce-thread1": ("pipeline.cuh", "    if (threadIdx.x == 0) {\n        blk_gt[b] = sgt;",
                              "    if (threadIdx.x == 1) {\n        blk_gt[b] = sgt;", "count"),
    "band-base-no-barrier": ("pipeline.cuh",
                             "        base = total ? atomicAdd(&st->band, static_cast<ull>(total)) : 0;\n    }\n    __syncthreads();\n",
                             "        base = total ? atomicAdd(&st->band, static_cast<ull>(total)) : 0;\n    }\n", "count"),
    "hist-no-zero-barrier": ("pipeline.cuh", "    h[threadIdx.x] = 0;\n    __syncthreads();\n", "    h[threadIdx.x] = 0;\n",
                             "count"),
    "energy-ge": ("energy.cuh", "if (next > budget) stop = true;", "if (next >= budget) stop = true;", "many"),
    "energy-lane": ("energy.cuh", "__shfl_sync(0xFFFFFFFFu, mine, l)", "__shfl_sync(0xFFFFFFFFu, mine, (l + 1) & 31)", "many"),
    "feedback-nonfinite": ("pipeline.cuh", "e[i] = isfinite(a) ? a - bits_f32(static_cast<uint32_t>(h) << 16) : 0.0f;",
                           "e[i] = a - bits_f32(static_cast<uint32_t>(h) << 16);", "feedback"),
    "feedback-no-writeback": ("pipeline.cuh",
                              "            if constexpr (std::is_same<F, keys::F32>::value) {\n"
                              "                if (g) static_cast<float*>(const_cast<void*>(s.data))[local] = bits_f32(b);\n"
                              "            }\n", "", "feedback"),
    "rows-gather-row0": ("rows.cu", "        out_val[e] = x[r * n + c];", "        out_val[e] = x[c];", "other"),
    "scatter-check-gt": ("combine.cu", "if (i < -1 || i >= n) atomicMin", "if (i < -1 || i > n) atomicMin", "other"),
    "energy-emit-unsorted": ("energy.cuh",
                             '    throw_on(cub::DeviceRadixSort::SortKeys(ws_at<void>(ws, L.temp), temp, ib, ia, count, 0, 64, stream), "energy order");',
                             "    (void)temp;\n    ia = ib;", "many"),
    "threshold-strict": ("plan.cuh", "k_fixed)(st, tkey == 0 ? 0 : tkey - 1,", "k_fixed)(st, tkey,", "many"),
    "rows-ties-reversed": ("rows.cu", "cols[e] = static_cast<int32_t>(e % n);", "cols[e] = static_cast<int32_t>(n - 1 - e % n);",
                           "other"),
    "write-tie-le": ("pipeline.cuh", "take = gt || (eq && eq_seen + rank < teq);", "take = gt || (eq && eq_seen + rank <= teq);",
                     "count"),
}


def run(cmd, **kw):
    return subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **kw)


def main(names: list[str]) -> int:
    names = names or list(MUTANTS)
    src = ROOT / "cpp" / "src" / "cuda"
    results = []
    with tempfile.TemporaryDirectory(prefix="gs-mutant-") as tmp:
        work = Path(tmp) / "cuda"
        for name in names:
            fname, old, new, group = MUTANTS[name]
            shutil.rmtree(work, ignore_errors=True)
            shutil.copytree(src, work, copy_function=shutil.copy)  # new times: every source rebuilds
            text = (work / fname).read_text()
            if text.count(old) != 1:
                results.append((name, "STALE (the code it mutates changed)"))
                continue
            (work / fname).write_text(text.replace(old, new))
            gen = ["-G", "Ninja"] if shutil.which("ninja") else []
            r = run(["cmake", "-S", str(ROOT / "tests" / "cuda_emu"), "-B", str(BUILD), *gen,
                     "-DCMAKE_BUILD_TYPE=Release", f"-DEMU_CUDA_DIR={work}"])
            if r.returncode == 0:
                r = run(["cmake", "--build", str(BUILD), "-j", os.environ.get("JOBS", "2")])
            if r.returncode != 0:
                results.append((name, "DOES NOT BUILD"))
                print(r.stdout[-2000:])
                continue
            t0 = time.time()
            r = run([str(BUILD / "check_engine"), "--quick", "--only", group], timeout=900)
            out = r.stdout
            if r.returncode == 0:
                verdict = "SURVIVED"
            elif "CUDA EMULATION ERROR" in out:
                verdict = "caught (emulation error: " + out.split("CUDA EMULATION ERROR: ", 1)[1].splitlines()[0][:70] + ")"
            elif "MISMATCH" in out:
                verdict = "caught (" + out.split("MISMATCH ", 1)[1].splitlines()[0][:90] + ")"
            else:
                verdict = f"caught (exit {r.returncode})"
            results.append((name, verdict))
            print(f"{name:24s} {verdict}  [{time.time() - t0:.0f} s]", flush=True)
    survived = [n for n, v in results if not v.startswith("caught")]
    print(f"{len(results) - len(survived)} of {len(results)} mutants caught" + (f"; not caught: {survived}" if survived else ""))
    return 1 if survived else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
