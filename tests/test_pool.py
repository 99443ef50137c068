"""The engine's scratch/output buffer pool: bounded by default, readable and settable
(gradsparse.pool_bytes / get_pool_limit / set_pool_limit / GRADSPARSE_POOL_BYTES), and
released on request (gradsparse.release_memory) so freed memory leaves the process."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import gradsparse


def run_python(code: str, **env_extra) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GRADSPARSE_")}
    env.update(env_extra)
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                          env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_default_limit_is_bounded():
    """The pool used to keep up to 1 GiB per process; now 256 MiB at most by default."""
    got = run_python("import gradsparse, json; print(json.dumps(gradsparse.get_pool_limit()))")
    assert 0 < got <= 256 << 20


def test_env_var_sets_the_limit():
    code = "import gradsparse, json; print(json.dumps([gradsparse.get_pool_limit(), gradsparse.config()]))"
    limit, cfg = run_python(code, GRADSPARSE_POOL_BYTES="12345678")
    assert limit == 12345678 and cfg["pool_limit"] == 12345678 and "pool_env_error" not in cfg
    limit, cfg = run_python(code, GRADSPARSE_POOL_BYTES="lots")
    assert 0 < limit <= 256 << 20 and "GRADSPARSE_POOL_BYTES" in cfg["pool_env_error"]


def test_release_and_limit():
    before = gradsparse.get_pool_limit()
    x = np.random.default_rng(0).standard_normal(3_000_000).astype(np.float32)
    try:
        s = gradsparse.sparsify(x, ratio=0.05)
        del s
        assert 0 < gradsparse.pool_bytes() <= gradsparse.get_pool_limit()
        gradsparse.release_memory()
        assert gradsparse.pool_bytes() == 0
        gradsparse.sparsify(x, ratio=0.05)
        gradsparse.set_pool_limit(1 << 20)  # frees what no longer fits
        assert gradsparse.get_pool_limit() == 1 << 20
        assert gradsparse.pool_bytes() <= 1 << 20
        gradsparse.set_pool_limit(0)  # no pool: selections still work, nothing is kept
        ref = gradsparse.sparsify(x, ratio=0.05)
        assert gradsparse.pool_bytes() == 0
        gradsparse.set_pool_limit(before)
        again = gradsparse.sparsify(x, ratio=0.05)
        assert np.array_equal(ref.indices, again.indices) and np.array_equal(ref.values, again.values)
    finally:
        gradsparse.set_pool_limit(before)


def test_set_pool_limit_errors():
    with pytest.raises(ValueError, match="nbytes"):
        gradsparse.set_pool_limit(-1)
    for bad in (1.5, "1", True, None):
        with pytest.raises(TypeError, match="nbytes"):
            gradsparse.set_pool_limit(bad)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads VmRSS from /proc")
def test_release_memory_returns_it_to_the_system():
    """After one large call the kept buffers are resident memory; release_memory() frees
    them (RSS drops) and leaves the pool empty."""
    code = """
    import json
    import numpy as np
    import gradsparse as gs

    def rss():
        with open("/proc/self/status") as f:
            return next(int(l.split()[1]) * 1024 for l in f if l.startswith("VmRSS:"))

    gs.set_pool_limit(1 << 30)  # keep everything this call uses
    x = np.random.default_rng(0).standard_normal(20_000_000).astype(np.float32)
    s = gs.sparsify(x, ratio=0.3)
    del s
    kept, before = gs.pool_bytes(), rss()
    gs.release_memory()
    print(json.dumps({"kept": kept, "drop": before - rss(), "left": gs.pool_bytes()}))
    """
    got = run_python(code)
    assert got["kept"] > 50 << 20, got
    assert got["left"] == 0
    assert got["drop"] > got["kept"] // 2, got
