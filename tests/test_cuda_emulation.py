"""The CUDA engine's kernels (cpp/src/cuda), compiled as C++ against an emulation of the CUDA
runtime and CUB (tests/cuda_emu) and run on the CPU, give the CPU engine's results bit for
bit: count, energy and threshold selection over one or many tensors and costs, fused error
feedback, top-k of rows, rank order and scatter_mean. Needs no GPU: a C++20 compiler and
CMake (skips without them). The build is kept in build/cuda-emu (BUILD_DIR overrides)."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
RUN = ROOT / "tests" / "cuda_emu" / "run.sh"


def _missing() -> str | None:
    if not sys.platform.startswith("linux"):
        return f"the CUDA emulation runs on Linux only (fibers), not {sys.platform}"
    for tool in ("cmake", "bash"):
        if shutil.which(tool) is None:
            return f"{tool} not found"
    cxx = os.environ.get("CXX", "c++")
    if shutil.which(cxx) is None and shutil.which("g++") is None:
        return "no C++ compiler (c++ / g++) found"
    return None


@pytest.mark.skipif(_missing() is not None, reason=_missing() or "")
def test_emulated_cuda_engine_equals_cpu_engine():
    env = dict(os.environ)
    env.setdefault("BUILD_DIR", str(ROOT / "build" / "cuda-emu"))
    r = subprocess.run(["bash", str(RUN)], cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       text=True, timeout=1200)
    tail = "\n".join(r.stdout.splitlines()[-60:])
    assert r.returncode == 0, f"tests/cuda_emu/run.sh failed (exit {r.returncode}):\n{tail}"
    assert "all equal" in r.stdout, tail
