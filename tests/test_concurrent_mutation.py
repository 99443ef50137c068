"""Another thread rewriting the input while a selection runs (the GIL is released) must
never crash or trip an internal assertion: each call returns a well-formed result or
raises ValueError ("x: changed during the call ...")."""
from __future__ import annotations

import json
import os
import subprocess
import sys

_SCRIPT = r"""
import json, sys, threading, time
import numpy as np
import gradsparse as gs

n = 1 << 20
rng = np.random.default_rng(5)
dtype = np.dtype(sys.argv[1])
x = rng.standard_normal(n).astype(dtype)
srcs = []
for j in range(6):
    s = rng.standard_normal(n) * rng.lognormal(0, 3, n // 4096).repeat(4096)
    s[rng.integers(0, n, 50)] = np.nan
    srcs.append(s.astype(dtype))
scales = [dtype.type(v) for v in (1e-30, 1e-3, 1.0, 1e3, 1e30, 0.0)]
stop = threading.Event()

def mutate():
    r = np.random.default_rng(9)
    while not stop.is_set():
        np.multiply(srcs[r.integers(len(srcs))], scales[r.integers(len(scales))], out=x)
        x[r.integers(0, n, 4)] = np.nan

cost = (rng.random(n) + 0.5).astype(np.float32)
prepared = gs.PreparedCost(cost)
rows = x.reshape(64, -1)

def sparse_ok(r, size):
    i = np.asarray(r.indices)
    return i.ndim == 1 and i.size == np.asarray(r.values).size and (i.size == 0 or (
        i[0] >= 0 and i[-1] < size and bool(np.all(np.diff(i) > 0))))

def topk_rows():
    t = gs.topk(rows, 100, sorted=False)
    i = np.asarray(t.indices)
    return i.shape == (64, 100) and i.min() >= 0 and i.max() < rows.shape[1]

def stream():
    sel = gs.StreamingSelector(5000)
    for c in np.split(x, 8):
        sel.push(c)
    return all(sparse_ok(r, n // 8) for r in sel.finish())

calls = {
    "k": lambda: sparse_ok(gs.sparsify(x, 1000), n),
    "ratio": lambda: sparse_ok(gs.sparsify(x, ratio=0.05), n),
    "cost": lambda: sparse_ok(gs.sparsify(x, 1000, cost=cost), n),
    "prepared": lambda: sparse_ok(gs.sparsify(x, 3000, cost=prepared), n),
    "budget": lambda: sparse_ok(gs.sparsify(x, budget=2000.0, cost=cost), n),
    "threshold": lambda: sparse_ok(gs.threshold(x, 1.0), n),
    "random_k": lambda: sparse_ok(gs.random_k(x, 1000, seed=3), n),
    "topk": topk_rows,
    "many": lambda: all(sparse_ok(r, n // 4) for r in gs.sparsify_many(np.split(x, 4), 2000)),
    "many_costs": lambda: all(sparse_ok(r, n // 2) for r in gs.sparsify_many(np.split(x, 2), 2000, costs=[1.0, 2.0])),
    "streaming": stream,
}
t = threading.Thread(target=mutate)
t.start()
out = {}
try:
    for name, fn in calls.items():
        ok = errors = 0
        end = time.monotonic() + float(sys.argv[2])
        while time.monotonic() < end:
            try:
                assert fn(), name
                ok += 1
            except ValueError as e:
                assert "changed during the call" in str(e) or "nan" in str(e).lower() or "inf" in str(e).lower(), (name, str(e))
                errors += 1
        out[name] = [ok, errors]
finally:
    stop.set()
    t.join()
print(json.dumps(out))
"""


def _run(dtype):
    env = {k: v for k, v in os.environ.items() if not k.startswith("GRADSPARSE_")}
    proc = subprocess.run([sys.executable, "-c", _SCRIPT, dtype, "1.0"], capture_output=True, text=True,
                          env=env, timeout=300)
    assert proc.returncode == 0, f"exit code {proc.returncode}\n{proc.stderr[-3000:]}"
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_input_rewritten_during_the_call_float32():
    res = _run("float32")
    assert all(ok + err > 0 for ok, err in res.values()), res


def test_input_rewritten_during_the_call_float64():
    res = _run("float64")
    assert all(ok + err > 0 for ok, err in res.values()), res
