"""Threads, forks and process exit: the engine's fork-join under a thread limit, objects
shared between threads, daemon threads at interpreter exit, per-thread SIMD level and
thread count, and fork while other threads are inside gradsparse. Scenarios that crashed
or hung the interpreter run in a subprocess, so a regression fails the test instead of
killing pytest."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import threading

import numpy as np
import pytest

import gradsparse

ORDER = ["scalar", "neon", "avx2", "avx512"]


def run_script(code: str, timeout: float = 60.0, **env_extra) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GRADSPARSE_")}
    env.update(env_extra)
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                          env=env, timeout=timeout)


def last_json(proc: subprocess.CompletedProcess) -> dict:
    assert proc.returncode == 0, f"exit code {proc.returncode}\n{proc.stderr[-3000:]}"
    return json.loads(proc.stdout.strip().splitlines()[-1])


# ----------------------------------------------------------------------------- thread limit

# Lowers RLIMIT_NPROC so that only `extra` more threads can start, then selects with 4
# engine threads. As root the limit is not enforced, so root first becomes nobody.
_NPROC_SCRIPT = """
import json, os, resource, sys, threading, time
import numpy as np
import gradsparse as gs

x = np.random.default_rng(5).standard_normal(1 << 23).astype(np.float32)  # 4 engine threads
with gs.num_threads(1):
    ref = gs.sparsify(x, ratio=0.01)
    ref_many = gs.sparsify_many([x, -x], ratio=0.01)

if os.getuid() == 0:
    os.setgid(65534)
    os.setuid(65534)
uid = os.getuid()

def tasks_of(uid):
    n = 0
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/status") as f:
                st = dict(line.split(":", 1) for line in f if ":" in line)
        except OSError:
            continue
        if int(st["Uid"].split()[0]) == uid:
            n += int(st["Threads"])
    return n

def startable(limit=8):
    # how many threads can run at once now
    go = threading.Event()
    ts = []
    for _ in range(limit):
        t = threading.Thread(target=go.wait)
        try:
            t.start()
        except RuntimeError:
            break
        ts.append(t)
    go.set()
    for t in ts:
        t.join()
    time.sleep(0.05)
    return len(ts)

extra = int(sys.argv[1])
base = tasks_of(uid)
resource.setrlimit(resource.RLIMIT_NPROC, (base + extra, base + extra))
can = startable()
if can != extra:
    print(json.dumps({"skip": f"RLIMIT_NPROC not enforced as expected ({can} threads startable, wanted {extra})"}))
    sys.exit(0)
gs.set_num_threads(4)
got = gs.sparsify(x, ratio=0.01)
many = gs.sparsify_many([x, -x], ratio=0.01)
ok = (np.array_equal(got.indices, ref.indices) and np.array_equal(got.values, ref.values)
      and all(np.array_equal(a.indices, b.indices) and np.array_equal(a.values, b.values)
              for a, b in zip(many, ref_many)))
print(json.dumps({"ok": bool(ok), "startable": can}))
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="RLIMIT_NPROC per user: Linux")
@pytest.mark.parametrize("extra", [1, 0])
def test_thread_start_failure_falls_back_to_fewer_threads(extra):
    """A worker thread that cannot start (RLIMIT_NPROC, memory) must not abort the process
    (std::terminate on the joinable threads already started): its share runs on the
    threads that exist and the result is the single-thread result."""
    proc = subprocess.run([sys.executable, "-c", _NPROC_SCRIPT, str(extra)], capture_output=True, text=True,
                          timeout=120, env={k: v for k, v in os.environ.items() if not k.startswith("GRADSPARSE_")})
    out = last_json(proc)
    if "skip" in out:
        pytest.skip(out["skip"])
    assert out["ok"]


# ----------------------------------------------------------------------------- shared objects

_SHARED_STREAMING = """
import json, threading
import numpy as np
import gradsparse as gs

rng = np.random.default_rng(1)
chunks = [rng.standard_normal(20_000 + j).astype(np.float32) for j in range(64)]  # size = identity
k = 5_000
sel = gs.StreamingSelector(k)
barrier = threading.Barrier(4)

def pusher(i):
    barrier.wait()
    for c in chunks[i::4]:
        sel.push(c)

ts = [threading.Thread(target=pusher, args=(i,)) for i in range(4)]
for t in ts: t.start()
for t in ts: t.join()
res = sel.finish()
by_size = {c.size: c for c in chunks}
ok = len(res) == len(chunks) and len({r.shape for r in res}) == len(chunks)
picked = []
for r in res:
    c = by_size[r.shape[0]]
    ok = ok and np.array_equal(c[r.indices], r.values)
    picked.append(np.abs(r.values))
allv = np.abs(np.concatenate(chunks))
want = np.sort(allv)[-k:]
ok = ok and np.array_equal(np.sort(np.concatenate(picked)), want)
print(json.dumps({"ok": bool(ok)}))
"""


def test_streaming_selector_shared_between_threads():
    """Pushes from several threads to one StreamingSelector are serialised (the core's push
    appended to shared state with the GIL released: heap corruption, segfault); each chunk
    comes back under its own shape and the selection over all chunks is exact."""
    for _ in range(2):
        assert last_json(run_script(_SHARED_STREAMING))["ok"]


def test_error_feedback_shared_between_threads():
    """Concurrent compress() calls on one ErrorFeedback and one name lose no update: what
    was sent plus the final residual is exactly the sum of all inputs."""
    ef = gradsparse.ErrorFeedback()
    rng = np.random.default_rng(2)
    xs = [rng.integers(-8, 9, size=200_000).astype(np.float64) for _ in range(32)]
    sent = [np.zeros(200_000) for _ in range(4)]
    barrier = threading.Barrier(4)

    def worker(i):
        barrier.wait()
        for x in xs[i::4]:
            s = ef.compress("w", x, ratio=0.05)
            np.add.at(sent[i], s.indices, s.values)

    ts = [threading.Thread(target=worker, args=(i,)) for i in range(4)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    total = sum(sent) + ef.residual("w")
    assert np.array_equal(total, sum(xs))


def test_prepared_cost_shared_between_threads():
    """A PreparedCost is immutable: selections with it from several threads agree."""
    rng = np.random.default_rng(3)
    x = rng.standard_normal(300_000).astype(np.float32)
    p = gradsparse.PreparedCost(rng.uniform(0.5, 2.0, x.size).astype(np.float32))
    ref = gradsparse.sparsify(x, 3_000, cost=p)
    bad = []

    def worker():
        for _ in range(20):
            s = gradsparse.sparsify(x, 3_000, cost=p)
            if not np.array_equal(s.indices, ref.indices):
                bad.append(1)

    ts = [threading.Thread(target=worker) for _ in range(4)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert not bad


# ----------------------------------------------------------------------------- interpreter exit

_DAEMON_AT_EXIT = """
import threading, time
import numpy as np
import gradsparse as gs

x = np.random.default_rng(0).standard_normal(4_000_000).astype(np.float32)

def work():
    while True:
        gs.encode(gs.sparsify(x, ratio=0.1))

for _ in range(2):
    threading.Thread(target=work, daemon=True).start()
time.sleep(0.3)
print("main done")
"""


def test_daemon_thread_inside_call_at_exit():
    """The interpreter finalizing while daemon threads run engine code with the GIL released
    must not abort the process (the forced unwind of pthread_exit met the noexcept destructor
    of py::gil_scoped_release: std::terminate, exit code 134)."""
    for _ in range(3):
        proc = run_script(_DAEMON_AT_EXIT)
        assert proc.returncode == 0, f"exit code {proc.returncode}\n{proc.stderr[-2000:]}"
        assert "main done" in proc.stdout


# ----------------------------------------------------------------------------- per-thread settings

def test_context_managers_are_per_thread():
    """simd_level() / num_threads() from two threads, entered and left interleaved: each thread
    sees its own setting inside its context, and the process-wide level and thread count end
    as they began (interleaved save/restore used to leave the process at 'scalar', 1 thread)."""
    levels = gradsparse.available_simd_levels()
    best = max(levels, key=ORDER.index)
    level0, threads0 = gradsparse.get_simd_level(), gradsparse.get_num_threads()
    a_in, b_in, a_out = threading.Event(), threading.Event(), threading.Event()
    seen = {}

    def a():
        with gradsparse.simd_level("scalar"), gradsparse.num_threads(1):
            a_in.set()
            b_in.wait(10)
            seen["a"] = (gradsparse.get_simd_level(), gradsparse.get_num_threads())
        a_out.set()
        seen["a_after"] = (gradsparse.get_simd_level(), gradsparse.get_num_threads())

    def b():
        a_in.wait(10)
        with gradsparse.simd_level(best), gradsparse.num_threads(3):
            b_in.set()
            a_out.wait(10)
            seen["b"] = (gradsparse.get_simd_level(), gradsparse.get_num_threads())
            x = np.random.default_rng(4).standard_normal(100_000).astype(np.float32)
            seen["b_sel"] = gradsparse.sparsify(x, 100).indices

    ta, tb = threading.Thread(target=a), threading.Thread(target=b)
    ta.start()
    tb.start()
    ta.join()
    tb.join()
    assert seen["a"] == ("scalar", 1)
    assert seen["b"] == (best, 3)
    assert seen["a_after"] == (level0, threads0)
    assert gradsparse.get_simd_level() == level0
    assert gradsparse.get_num_threads() == threads0


def test_context_manager_does_not_leak_to_other_threads():
    """A context manager affects only the calling thread; set_* stay process-wide defaults."""
    threads0 = gradsparse.get_num_threads()
    seen = []
    with gradsparse.num_threads(1), gradsparse.simd_level("scalar"):
        t = threading.Thread(target=lambda: seen.append((gradsparse.get_num_threads(), gradsparse.get_simd_level())))
        t.start()
        t.join()
        assert gradsparse.get_num_threads() == 1
    assert seen == [(threads0, gradsparse.get_simd_level())]
    # the process-wide setter changes the default; the context still wins in its thread
    try:
        with gradsparse.num_threads(2):
            gradsparse.set_num_threads(5)
            assert gradsparse.get_num_threads() == 2
        assert gradsparse.get_num_threads() == 5
    finally:
        gradsparse.set_num_threads(threads0)


# ----------------------------------------------------------------------------- fork

_FORK_SCRIPT = """
import json, os, signal, sys, threading, time
import numpy as np
import gradsparse as gs

rng = np.random.default_rng(6)
small = rng.standard_normal(200_000).astype(np.float32)
stop = threading.Event()

def hammer(seed):
    # row-wise top-k: thousands of selections, each taking and returning scratch buffers,
    # in one call with the GIL released
    m = np.random.default_rng(seed).standard_normal((20_000, 64)).astype(np.float32)
    while not stop.is_set():
        gs.topk(m, 8, sorted=False)
        gs.decode(gs.encode(gs.sparsify(m, ratio=0.05)))

ts = [threading.Thread(target=hammer, args=(i,), daemon=True) for i in range(2)]
for t in ts: t.start()
time.sleep(0.05)
forks, hung, failed, done = int(sys.argv[1]), 0, 0, 0
for _ in range(forks):
    pid = os.fork()
    if pid == 0:
        try:
            s = gs.sparsify(small, ratio=0.2)
            gs.decode(gs.encode(s))
            gs.sparsify_many([small, small], ratio=0.1)
            os._exit(0)
        except BaseException:
            os._exit(3)
    deadline = time.monotonic() + 3.0
    while True:
        got, status = os.waitpid(pid, os.WNOHANG)
        if got:
            if not (os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0):
                failed += 1
            break
        if time.monotonic() > deadline:
            hung += 1
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            break
        time.sleep(0.0005)
    done += 1
    if hung:
        break  # one hang is enough
stop.set()
for t in ts: t.join()
print(json.dumps({"forks": done, "hung": hung, "failed": failed}))
"""


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_fork_while_other_threads_are_inside_gradsparse():
    """A child forked while other threads hold the engine's locks (scratch pool, FFT plans)
    must not deadlock: the locks are taken before fork and released in parent and child."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GRADSPARSE_")}
    proc = subprocess.run([sys.executable, "-W", "ignore::DeprecationWarning", "-c", _FORK_SCRIPT, "100"],
                          capture_output=True, text=True, timeout=240, env=env)
    out = last_json(proc)
    assert out["hung"] == 0 and out["failed"] == 0, out
