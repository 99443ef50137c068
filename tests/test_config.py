"""SIMD levels, thread counts, the GRADSPARSE_SIMD / GRADSPARSE_NUM_THREADS environment
variables (in subprocesses: they are read once, at import) and import hygiene."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

import gradsparse

ORDER = ["scalar", "neon", "avx2", "avx512"]


def best_level():
    return max(gradsparse.available_simd_levels(), key=ORDER.index)


def run_python(code: str, **env_extra) -> dict:
    """Runs `code` (which prints one JSON line) in a fresh interpreter; returns the JSON."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GRADSPARSE_")}
    env.update(env_extra)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


# ----------------------------------------------------------------------------- SIMD levels

def test_levels_are_consistent():
    compiled = gradsparse.compiled_simd_levels()
    available = gradsparse.available_simd_levels()
    assert "scalar" in compiled and "scalar" in available
    assert set(available) <= set(compiled) <= {"scalar", "avx2", "avx512", "neon"}
    assert gradsparse.get_simd_level() in available


def test_default_level_is_the_best_available():
    got = run_python("import gradsparse, json; print(json.dumps(gradsparse.get_simd_level()))")
    assert got == best_level()


@pytest.mark.parametrize("level", gradsparse.available_simd_levels())
def test_simd_level_context_manager(level):
    before = gradsparse.get_simd_level()
    with gradsparse.simd_level(level):
        assert gradsparse.get_simd_level() == level
        assert gradsparse.config()["simd_level"] == level
    assert gradsparse.get_simd_level() == before
    with pytest.raises(RuntimeError, match="boom"):
        with gradsparse.simd_level(level):
            raise RuntimeError("boom")
    assert gradsparse.get_simd_level() == before


def test_set_simd_level_names():
    before = gradsparse.get_simd_level()
    try:
        gradsparse.set_simd_level("SCALAR")
        assert gradsparse.get_simd_level() == "scalar"
        if "avx512" in gradsparse.available_simd_levels():
            gradsparse.set_simd_level("avx-512")
            assert gradsparse.get_simd_level() == "avx512"
        gradsparse.set_simd_level("scalar")
        gradsparse.set_simd_level("auto")
        assert gradsparse.get_simd_level() == best_level()
    finally:
        gradsparse.set_simd_level(before)


def test_set_simd_level_errors():
    with pytest.raises(ValueError, match="level"):
        gradsparse.set_simd_level("sse9")
    with pytest.raises(TypeError, match="level"):
        gradsparse.set_simd_level(2)
    for level in {"scalar", "avx2", "avx512", "neon"} - set(gradsparse.available_simd_levels()):
        with pytest.raises(ValueError, match="level"):
            gradsparse.set_simd_level(level)
        with pytest.raises(ValueError, match="level"):
            with gradsparse.simd_level(level):
                pass


@pytest.mark.parametrize("level", gradsparse.available_simd_levels())
def test_env_var_selects_level(level):
    code = "import gradsparse, json; print(json.dumps([gradsparse.get_simd_level(), gradsparse.config()]))"
    got, cfg = run_python(code, GRADSPARSE_SIMD=level)
    assert got == level
    assert cfg["simd_env"] == level and "simd_env_error" not in cfg
    got, _ = run_python(code, GRADSPARSE_SIMD=level.upper())
    assert got == level


def test_env_var_caps_the_level():
    code = "import gradsparse, json; print(json.dumps(gradsparse.get_simd_level()))"
    available = gradsparse.available_simd_levels()
    want = "avx2" if "avx2" in available else "scalar"
    if "avx512" not in available:  # naming a level the CPU lacks gives the best one below it
        assert run_python(code, GRADSPARSE_SIMD="avx512") == want
    assert run_python(code, GRADSPARSE_SIMD="scalar") == "scalar"
    # the environment sets the initial level only: set_simd_level still works
    code2 = ("import gradsparse, json; gradsparse.set_simd_level('auto');"
             "print(json.dumps(gradsparse.get_simd_level()))")
    assert run_python(code2, GRADSPARSE_SIMD="scalar") == best_level()


def test_env_var_invalid_is_reported_and_ignored():
    code = ("import gradsparse, json, io, contextlib; buf = io.StringIO()\n"
            "with contextlib.redirect_stdout(buf): gradsparse.show_config()\n"
            "print(json.dumps([gradsparse.get_simd_level(), gradsparse.config(), buf.getvalue()]))")
    level, cfg, shown = run_python(code, GRADSPARSE_SIMD="fastest-please")
    assert level == best_level()
    assert "GRADSPARSE_SIMD" in cfg["simd_env_error"]
    assert "warning" in shown and "fastest-please" in shown


# ----------------------------------------------------------------------------- threads

def test_num_threads_context_manager():
    before = gradsparse.get_num_threads()
    with gradsparse.num_threads(1):
        assert gradsparse.get_num_threads() == 1
        with gradsparse.num_threads(7):
            assert gradsparse.get_num_threads() == 7
            assert gradsparse.config()["num_threads"] == 7
        assert gradsparse.get_num_threads() == 1
    assert gradsparse.get_num_threads() == before


def test_num_threads_errors():
    for bad in (0, -1, 1025):
        with pytest.raises(ValueError, match="n"):
            gradsparse.set_num_threads(bad)
    for bad in (True, 2.0, "2"):
        with pytest.raises(TypeError, match="n"):
            gradsparse.set_num_threads(bad)


def test_default_threads_and_env_var():
    code = "import gradsparse, json; print(json.dumps(gradsparse.get_num_threads()))"
    default = run_python(code)
    assert 1 <= default <= 1024
    assert run_python(code, GRADSPARSE_NUM_THREADS="3") == 3
    for bad in ("0", "abc", "-2", "99999", ""):
        assert run_python(code, GRADSPARSE_NUM_THREADS=bad) == default


def test_more_threads_than_cores_give_identical_results():
    x = np.random.default_rng(80).standard_normal(1_000_003).astype(np.float32)
    with gradsparse.num_threads(1):
        ref = gradsparse.sparsify(x, 5000).indices
    for n in (3, 7, 16):
        with gradsparse.num_threads(n):
            np.testing.assert_array_equal(gradsparse.sparsify(x, 5000).indices, ref)


# ----------------------------------------------------------------------------- config and imports

def test_config_contents(capsys):
    cfg = gradsparse.config()
    assert cfg["version"] == gradsparse.__version__
    assert cfg["simd_compiled"] == gradsparse.compiled_simd_levels()
    assert cfg["simd_available"] == gradsparse.available_simd_levels()
    assert cfg["simd_level"] == gradsparse.get_simd_level()
    assert cfg["num_threads"] == gradsparse.get_num_threads()
    assert cfg["cuda_built"] is False or cfg["cuda_built"] is True
    gradsparse.show_config()
    out = capsys.readouterr().out
    assert out.startswith(f"gradsparse {gradsparse.__version__}")
    for word in ("SIMD compiled", "SIMD available", "SIMD in use", "threads", "CUDA", "torch"):
        assert word in out


def test_import_does_not_import_torch():
    code = (
        "import sys, json, numpy as np\n"
        "import gradsparse\n"
        "seen = ['torch' in sys.modules]\n"
        "x = np.arange(100, dtype=np.float32)\n"
        "gradsparse.sparsify(x, 5); gradsparse.topk(x, 3); gradsparse.threshold(x, 50.0)\n"
        "gradsparse.sparsify_many([x, x], 5); gradsparse.random_k(x, 3, 1)\n"
        "s = gradsparse.StreamingSelector(k=2); s.push(x); s.finish()\n"
        "ef = gradsparse.ErrorFeedback(); ef.compress('a', x, k=3); ef.state_dict()\n"
        "gradsparse.config()\n"
        "import io, contextlib\n"
        "with contextlib.redirect_stdout(io.StringIO()): gradsparse.show_config()\n"
        "seen.append('torch' in sys.modules)\n"
        "print(json.dumps(seen))\n"
    )
    assert run_python(code) == [False, False]


def test_public_api():
    for name in gradsparse.__all__:
        assert hasattr(gradsparse, name), name
    for name in ("topk", "sparsify", "sparsify_many", "threshold", "random_k", "StreamingSelector",
                 "ErrorFeedback", "available_simd_levels", "simd_level", "num_threads", "config",
                 "show_config"):
        assert name in gradsparse.__all__
        assert getattr(gradsparse, name).__doc__, name
