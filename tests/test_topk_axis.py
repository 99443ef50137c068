"""_core.topk_axis, the row engine of top-k along an axis, against a plain numpy
reference (a stable sort of the ranking), for every dtype code and ranking mode, sorted and
unsorted, k from 0 to n, rows short and long, inner sizes 1/3/17, special values, every
SIMD level and 1/2 threads (bit-identical results), and its argument errors."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import gradsparse
from gradsparse import _core
from gradsparse.errors import ArgumentError, ArgumentTypeError

from conftest import SIMD_LEVELS

# code -> numpy storage dtype (bfloat16 travels as uint16 bit patterns, code 3)
CODES = {0: np.float32, 1: np.float64, 2: np.float16, 3: np.uint16, 4: np.int8, 5: np.uint8, 6: np.int16,
         7: np.int32, 8: np.int64, 9: np.uint16, 10: np.uint32, 11: np.uint64}
FLOAT_CODES = (0, 1, 2, 3)
MAGNITUDE, LARGEST, SMALLEST, SMALLEST_MAGNITUDE = 0, 1, 2, 3
MODES = (MAGNITUDE, LARGEST, SMALLEST, SMALLEST_MAGNITUDE)


def as_f64(x: np.ndarray, code: int) -> np.ndarray:
    with np.errstate(invalid="ignore"):  # signalling NaN bit patterns
        if code == 3:
            return (x.astype(np.uint32) << 16).view(np.float32).astype(np.float64)
        return x.astype(np.float64)


def rank_order(row: np.ndarray, code: int, mode: int) -> np.ndarray:
    """Indices of a 1-D row in rank order (best first, ties by the lower index)."""
    if code in FLOAT_CODES:
        v = as_f64(row, code)
        nan = np.isnan(v)
        v0 = np.where(nan, 0.0, v) + 0.0  # -0 == +0
        if mode == LARGEST:
            return np.lexsort((-v0, ~nan))
        if mode == SMALLEST:
            return np.lexsort((v0, nan))
        if mode == MAGNITUDE:
            return np.lexsort((-np.abs(v0), ~nan))
        return np.lexsort((np.abs(v0), nan))
    v = [int(e) for e in row]  # exact, INT_MIN included
    key = {LARGEST: lambda i: -v[i], SMALLEST: lambda i: v[i], MAGNITUDE: lambda i: -abs(v[i]),
           SMALLEST_MAGNITUDE: lambda i: abs(v[i])}[mode]
    return np.array(sorted(range(len(v)), key=key), dtype=np.int64)  # sorted() is stable


def reference(x3: np.ndarray, code: int, k: int, mode: int, sorted_: bool):
    outer, _, inner = x3.shape
    vals = np.empty((outer, k, inner), x3.dtype)
    idx = np.empty((outer, k, inner), np.int64)
    for o in range(outer):
        for i in range(inner):
            row = x3[o, :, i]
            top = rank_order(row, code, mode)[:k]
            if not sorted_:
                top = np.sort(top)
            idx[o, :, i] = top
            vals[o, :, i] = row[top]
    return vals, idx


def run(x3: np.ndarray, code: int, k: int, mode: int, sorted_: bool):
    outer, _, inner = x3.shape
    vals = np.empty((outer, k, inner), x3.dtype)
    idx = np.empty((outer, k, inner), np.int64)
    _core.topk_axis(x3, code, k, mode, sorted_, vals, idx)
    return vals, idx


def check(x3, code, k, mode, sorted_):
    vals, idx = run(x3, code, k, mode, sorted_)
    ev, ei = reference(x3, code, k, mode, sorted_)
    np.testing.assert_array_equal(idx, ei, err_msg=f"code={code} mode={mode} k={k} sorted={sorted_}")
    assert vals.tobytes() == ev.tobytes()  # bit-exact values (NaN payloads, -0)


def data(code: int, shape, kind: str, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    dt = np.dtype(CODES[code])
    n = int(np.prod(shape))
    if code in FLOAT_CODES:
        if kind == "random":
            v = rng.standard_normal(n)
        elif kind == "ties":
            v = rng.integers(-3, 4, n).astype(np.float64)
        elif kind == "equal":
            v = np.full(n, 1.5)
        elif kind in ("sorted", "reverse"):
            v = np.sort(rng.standard_normal(n))
            v = v if kind == "sorted" else v[::-1].copy()
        elif kind == "tiny":  # subnormals and huge values
            lo, hi = (1e-7, 1e4) if code == 2 else (1e-41, 1e37)
            v = rng.standard_normal(n) * np.where(rng.random(n) < 0.5, lo, hi)
        else:  # special values mixed in
            v = rng.standard_normal(n)
            pool = np.array([np.nan, -np.nan, np.inf, -np.inf, 0.0, -0.0, 1.0, -1.0])
            pick = rng.random(n) < 0.3
            v[pick] = pool[rng.integers(0, len(pool), int(pick.sum()))]
        if code == 3:
            f = v.astype(np.float32)
            return (f.view(np.uint32) >> 16).astype(np.uint16).reshape(shape)
        return v.astype(dt).reshape(shape)
    info = np.iinfo(dt)
    if kind == "random":
        v = rng.integers(info.min, info.max, n, dtype=dt, endpoint=True)
    elif kind == "ties":
        v = rng.integers(max(info.min, -3), 4, n).astype(dt)
    elif kind == "equal":
        v = np.full(n, 7, dt)
    elif kind in ("sorted", "reverse", "tiny"):
        v = np.sort(rng.integers(info.min, info.max, n, dtype=dt, endpoint=True))
        v = v if kind != "reverse" else v[::-1].copy()
    else:
        v = rng.integers(max(info.min, -100), 100, n).astype(dt)
        pool = np.array([info.min, info.max, 0, 1, -1 if info.min < 0 else 2, info.min + 1], dtype=object)
        pick = rng.random(n) < 0.3
        v[pick] = np.array([int(pool[j]) for j in rng.integers(0, len(pool), int(pick.sum()))], dtype=dt)
    return v.reshape(shape)


@pytest.mark.parametrize("code", sorted(CODES))
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("kind", ["random", "ties", "equal", "special", "sorted", "reverse", "tiny"])
def test_small_shapes(code, mode, kind):
    for outer, n, inner in [(1, 1, 1), (2, 2, 1), (1, 3, 2), (2, 7, 1), (1, 8, 1), (1, 9, 1), (1, 15, 3),
                            (1, 16, 1), (1, 17, 16), (1, 31, 1), (1, 32, 1), (3, 33, 3), (1, 63, 1),
                            (1, 64, 1), (1, 65, 17), (2, 130, 1), (1, 300, 33)]:
        x3 = data(code, (outer, n, inner), kind, seed=n)
        for k in sorted({0, 1, 2, n // 2, n - 1, n} & set(range(n + 1))):
            for sorted_ in (True, False):
                check(x3, code, k, mode, sorted_)


@pytest.mark.parametrize("code", sorted(CODES))
@pytest.mark.parametrize("mode", MODES)
def test_medium_rows(code, mode):
    x3 = data(code, (3, 1001, 1), "special" if code in FLOAT_CODES else "random", seed=code)
    for k in (1, 10, 31, 32, 33, 100, 500, 1001):
        for sorted_ in (True, False):
            check(x3, code, k, mode, sorted_)


@pytest.mark.parametrize("code", [0, 3, 1, 7])
@pytest.mark.parametrize("mode", MODES)
def test_columns(code, mode):
    x3 = data(code, (2, 301, 17), "ties", seed=3)
    for k in (1, 5, 150):
        for sorted_ in (True, False):
            check(x3, code, k, mode, sorted_)


@pytest.mark.parametrize("code", [0, 3, 2, 8])
@pytest.mark.parametrize("mode", [LARGEST, MAGNITUDE, SMALLEST_MAGNITUDE])
def test_long_rows(code, mode):
    # 1e5-element rows: the threshold scan, the radix select and (floats, one row) select()
    x1 = data(code, (1, 100003, 1), "special" if code in FLOAT_CODES else "random", seed=5)
    x2 = data(code, (3, 100003, 1), "ties", seed=6)
    for x3 in (x1, x2):
        for k in (1, 100, 3000, 10000):
            for sorted_ in (True, False):
                check(x3, code, k, mode, sorted_)


@pytest.mark.parametrize("code", [0, 1, 3, 8])
@pytest.mark.parametrize("threads", [1, 2])
def test_many_sorted_winners(code, threads):
    # k >= 2^17 sorted winners: the radix sort runs on several threads and takes several
    # passes over the key bytes (each pass must count what every thread's part then holds)
    x3 = data(code, (1, 300007, 1), "ties" if code in (3, 8) else "random", seed=7)
    with gradsparse.num_threads(threads):
        for k in (140000, 300007):
            check(x3, code, k, LARGEST, True)
            check(x3, code, k, SMALLEST_MAGNITUDE, True)


def test_empty_and_zero_k():
    for shape, k in [((0, 5, 3), 2), ((2, 5, 0), 2), ((2, 0, 3), 0), ((2, 5, 3), 0)]:
        x3 = np.zeros(shape, np.float32)
        vals, idx = run(x3, 0, k, LARGEST, True)
        assert vals.shape == (shape[0], k, shape[2]) and idx.shape == vals.shape


@pytest.mark.parametrize("code", [0, 3, 1, 2, 4, 8, 11])
def test_same_result_every_level_and_thread_count(code):
    cases = [(data(code, (40, 1000, 1), "ties", 1), 10), (data(code, (40, 1000, 1), "random", 2), 150),
             (data(code, (2, 200, 40), "special" if code in FLOAT_CODES else "random", 3), 7),
             (data(code, (1, 300000, 1), "random", 4), 30000),
             (data(code, (1, 2000, 40), "ties", 5), 5)]  # one outer: column blocks split for 2 threads
    for x3, k in cases:
        for mode in MODES:
            for sorted_ in (True, False):
                want = None
                for level in SIMD_LEVELS:
                    for threads in (1, 2):
                        with gradsparse.simd_level(level), gradsparse.num_threads(threads):
                            got = run(x3, code, k, mode, sorted_)
                        if want is None:
                            want = got
                            ev, ei = reference(x3[:1], code, k, mode, sorted_)  # spot check row 0
                            np.testing.assert_array_equal(got[1][:1], ei)
                        else:
                            assert got[0].tobytes() == want[0].tobytes(), (level, threads)
                            np.testing.assert_array_equal(got[1], want[1], err_msg=f"{level} {threads}")


def test_argument_errors():
    x = np.zeros((2, 5, 3), np.float32)
    v = np.empty((2, 2, 3), np.float32)
    i = np.empty((2, 2, 3), np.int64)
    with pytest.raises(ArgumentTypeError, match="code"):
        _core.topk_axis(x, 12, 2, 1, True, v, i)
    with pytest.raises(ArgumentTypeError, match="code"):
        _core.topk_axis(x, -1, 2, 1, True, v, i)
    with pytest.raises(ArgumentError, match="x"):
        _core.topk_axis(x.reshape(10, 3), 0, 2, 1, True, v, i)
    with pytest.raises(ArgumentError, match="x"):
        _core.topk_axis(np.zeros((2, 3, 5), np.float32).transpose(0, 2, 1), 0, 2, 1, True, v, i)
    with pytest.raises(ArgumentTypeError, match="x"):
        _core.topk_axis(x, 1, 2, 1, True, v, i)  # float64 code, float32 data
    with pytest.raises(ArgumentError, match="mode"):
        _core.topk_axis(x, 0, 2, 4, True, v, i)
    with pytest.raises(ArgumentError, match="k"):
        _core.topk_axis(x, 0, 6, 1, True, np.empty((2, 6, 3), np.float32), np.empty((2, 6, 3), np.int64))
    with pytest.raises(ArgumentError, match="k"):
        _core.topk_axis(x, 0, -1, 1, True, v, i)
    with pytest.raises(ArgumentError, match="values"):
        _core.topk_axis(x, 0, 2, 1, True, np.empty((2, 3, 3), np.float32), i)
    with pytest.raises(ArgumentError, match="values"):
        _core.topk_axis(x, 0, 2, 1, True, np.empty((2, 3, 2), np.float32).transpose(0, 2, 1), i)
    ro = np.empty((2, 2, 3), np.float32)
    ro.flags.writeable = False
    with pytest.raises(ArgumentError, match="values"):
        _core.topk_axis(x, 0, 2, 1, True, ro, i)
    with pytest.raises(ArgumentTypeError, match="values"):
        _core.topk_axis(x, 0, 2, 1, True, np.empty((2, 2, 3), np.float64), i)
    with pytest.raises(ArgumentError, match="indices"):
        _core.topk_axis(x, 0, 2, 1, True, v, np.empty((2, 2, 2), np.int64))
    with pytest.raises(ArgumentTypeError, match="indices"):
        _core.topk_axis(x, 0, 2, 1, True, v, np.empty((2, 2, 3), np.int32))


def test_float_only_paths_refuse_integer_codes():
    x = np.arange(10, dtype=np.int32)
    with pytest.raises(ArgumentTypeError, match="dtype"):
        _core.select([x], [7], [None], 1, 2.0, 1.0, 0, 3, 0.0, 0.0)
    with pytest.raises(ArgumentTypeError, match="dtype"):
        _core.StreamingCore(0, 3, 0.0, 2.0, 1.0).push(x, 7, None)


@settings(max_examples=60, deadline=None)
@given(data=st.data(), code=st.sampled_from(sorted(CODES)), mode=st.sampled_from(MODES), sorted_=st.booleans())
def test_property_kept_rank_above_dropped(data, code, mode, sorted_):
    """Every kept element ranks above every dropped one; indices unique; unsorted output
    ascending; the values are x at the indices."""
    outer = data.draw(st.integers(1, 3))
    n = data.draw(st.integers(1, 600))
    inner = data.draw(st.integers(1, 20))
    k = data.draw(st.integers(0, n))
    raw = data.draw(st.binary(min_size=outer * n * inner * np.dtype(CODES[code]).itemsize,
                              max_size=outer * n * inner * np.dtype(CODES[code]).itemsize))
    x3 = np.frombuffer(raw, dtype=CODES[code]).reshape(outer, n, inner).copy()
    vals, idx = run(x3, code, k, mode, sorted_)
    ev, ei = reference(x3, code, k, mode, sorted_)
    np.testing.assert_array_equal(idx, ei)
    assert vals.tobytes() == ev.tobytes()
