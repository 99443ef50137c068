"""The encoder against a caller that changes its arrays during the call.

`encode` validates and sizes every index section (planning), then writes the payload with
the GIL released, reading the caller's index array a second time. Another thread may
rewrite that array in between. Every writer is bounded by the planned section and checks
what it actually wrote, so such a call either raises ValueError ("changed during encoding")
or returns a payload that decodes to a valid message -- it never writes out of bounds.

The threaded runs are in a subprocess, so a heap overflow (a segfault or an abort from
the allocator) fails the test instead of killing pytest.
"""
from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np
import pytest

import gradsparse
from gradsparse import _core

THREAD_SCRIPT = textwrap.dedent(
    r"""
    import sys, threading, time
    import numpy as np
    import gradsparse as gs

    codec = sys.argv[1]
    value_codec = sys.argv[2]
    seconds = float(sys.argv[3])
    gs.set_simd_level(sys.argv[4])
    k = 100_000
    numel = 1 << 24
    good = np.arange(0, 8 * k, 8, dtype=np.int64)           # small gaps: a short section
    huge = np.arange(k, dtype=np.int64)[::-1] * (1 << 40)  # decreasing, huge
    wide = np.arange(k, dtype=np.int64) * (numel // k)     # valid, much larger gaps
    idx = good.copy()
    vals = np.ones(k, np.float32)
    stop = threading.Event()

    def mutate():
        pats = (huge, good, wide, good)
        j = 0
        while not stop.is_set():
            idx[:] = pats[j % len(pats)]
            if value_codec == "qsgd":
                vals[5] = np.nan if j % 2 else 1.0
            j += 1

    t = threading.Thread(target=mutate)
    t.start()
    ok = err = 0
    end = time.time() + seconds
    try:
        while time.time() < end:
            try:
                p = gs.encode(gs.Sparse(idx, vals, (numel,)), index_codec=codec, value_codec=value_codec, seed=1)
            except ValueError:
                err += 1
                continue
            d = gs.decode(p)  # must be a valid payload: any ValueError here fails the test
            ii = np.asarray(d.indices)
            assert ii.size == k and np.all(np.diff(ii) > 0) and ii[0] >= 0 and ii[-1] < numel
            ok += 1
    finally:
        stop.set()
        t.join()
    print("ok", ok, "err", err)
    """
)


def run_script(*args: str, timeout: float = 60.0) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", THREAD_SCRIPT, *args], capture_output=True, text=True,
                          timeout=timeout)


LEVELS = [lv for lv in gradsparse.available_simd_levels()]
CASES = [(c, LEVELS[-1]) for c in ("rice", "varint", "bitmap", "raw32", "raw64", "auto")]
CASES += [(c, lv) for c in ("rice", "varint") for lv in LEVELS[:-1]]  # the kernels of every level


@pytest.mark.parametrize("codec,level", CASES)
def test_encode_while_indices_change_never_crashes(codec, level):
    r = run_script(codec, "float32", "1.0", level)
    assert r.returncode == 0, f"rc={r.returncode}\nstdout:\n{r.stdout[-2000:]}\nstderr:\n{r.stderr[-4000:]}"
    assert r.stdout.startswith("ok ")


def test_encode_while_values_change_qsgd():
    r = run_script("rice", "qsgd", "1.0", LEVELS[-1])
    assert r.returncode == 0, f"rc={r.returncode}\nstdout:\n{r.stdout[-2000:]}\nstderr:\n{r.stderr[-4000:]}"


# ---------------------------------------------------------------- deterministic: plan A, write B

K, NUMEL = 4000, 1 << 20
GOOD = np.arange(0, 4 * K, 4, dtype=np.int64)


def variants():
    """Index arrays written after GOOD was planned; none fits GOOD's plan exactly."""
    rng = np.random.default_rng(5)
    wide = np.sort(rng.choice(NUMEL, K, replace=False)).astype(np.int64)
    return {
        "wider gaps": wide,
        "narrower gaps": np.arange(K, dtype=np.int64),
        "decreasing": GOOD[::-1].copy(),
        "huge": np.arange(K, dtype=np.int64) * (1 << 45),
        "negative": GOOD - 10 ** 6,
        "out of range": GOOD + NUMEL,
        "duplicate": np.concatenate([GOOD[:1], GOOD[:-1]]),
        "last too large": np.concatenate([GOOD[:-1], [NUMEL + 5]]),
    }


@pytest.mark.parametrize("codec", ["rice", "varint", "bitmap", "raw32", "raw64"])
@pytest.mark.parametrize("name", list(variants()))
def test_writer_refuses_indices_that_changed_after_planning(codec, name):
    actual = variants()[name]
    # The hook plans the section for GOOD, writes `actual` into exactly the planned bytes
    # (guard bytes after it are checked in C++) and raises if it does not fit the plan.
    try:
        sec = _core._index_write_replanned(codec, GOOD, actual, NUMEL)
    except ValueError as e:
        assert "changed during encoding" in str(e)
        return
    # Accepted: it must be a valid section of `actual` (same size as planned).
    np.testing.assert_array_equal(_core.index_decode(codec, sec, K, NUMEL), actual)


@pytest.mark.parametrize("codec", ["rice", "varint", "bitmap", "raw32", "raw64"])
def test_writer_replanned_same_indices_matches_encoder(codec):
    sec = _core._index_write_replanned(codec, GOOD, GOOD.copy(), NUMEL)
    assert sec == _core.index_encode(codec, GOOD, NUMEL)


def test_qsgd_nan_between_passes_is_harmless():
    # NaN values are refused up front; the clamp in the coding pass keeps even a value that
    # turns NaN later inside the code range (checked here only through the normal path).
    with pytest.raises(ValueError, match="values"):
        gradsparse.encode(gradsparse.Sparse(np.array([1]), np.array([np.nan], np.float32), (4,)),
                          value_codec="qsgd", seed=0)
