"""Large inputs: from 32768 elements on the engine samples the input, filters with SIMD
and falls back to a radix selection when the sample misses. Which path ran is not visible,
so the inputs are built to drive each one: plain random data (sample hits), many ties at
the k-th value, mostly zeros with k above the number of non-zeros, sorted data, the
largest values clustered in one region, and inputs laid out against evenly spread sample
blocks (the sample sees only large values -> too few candidates; or only small ones -> too
many). Every result is compared with the numpy reference at every SIMD level and at 1 and
2 threads (and more on the biggest input, to split it differently)."""
from __future__ import annotations

import functools

import numpy as np
import pytest

import gradsparse
from inputs import is_tensor, requires_torch, torch
from inputs import assert_sparse, at_engine, costs_for, make, round_to
from reference import (cwmp_scores, energy_prefix, magnitude_order, score_order, signed_order,
                       sparsify_many_ref, top_count)

LEVELS = gradsparse.available_simd_levels()


def engine_configs(threads=(1, 2)):
    """Every (level, threads) pair: these tests build one large reference and check every
    engine against it in one body (see at_engine: a failure names the engine)."""
    for level in LEVELS:
        for nt in threads:
            yield level, nt


def sample_positions(n: int) -> np.ndarray:
    """Positions of evenly spread contiguous sample blocks (blocks of 32 and of 64 elements,
    4096..65536 sampled elements): where a block sampler looks, whatever its constants."""
    m = min(65536, max(4096, n // 64))
    pos = []
    for block in (32, 64):
        blocks = max(1, m // block)
        centre = (2 * np.arange(blocks) + 1) * n // (2 * blocks)
        start = np.clip(centre - block // 2, 0, n - block)
        pos.append((start[:, None] + np.arange(block)[None, :]).reshape(-1))
    return np.unique(np.concatenate(pos))


@functools.lru_cache(maxsize=None)
def large_input(kind: str, n: int, dtype: str = "float32") -> np.ndarray:
    """float64 values exactly representable in dtype (cached: used by several tests)."""
    rng = np.random.default_rng([n, len(kind), sum(map(ord, kind))])
    if kind == "random":
        v = rng.standard_normal(n)
    elif kind == "ties":  # few distinct values: thousands tie at any k-th value
        v = rng.integers(-4, 5, n).astype(np.float64)
    elif kind == "rounded":  # N(0,1) rounded to 1e-3: ties everywhere near the k-th value
        v = np.round(rng.standard_normal(n), 3)
    elif kind == "mostly_zero":  # 50 non-zeros, the rest +0.0/-0.0
        v = np.where(rng.random(n) < 0.5, 0.0, -0.0)
        v[rng.choice(n, 50, replace=False)] = rng.standard_normal(50)
    elif kind == "sorted":
        v = np.sort(rng.standard_normal(n))
    elif kind == "reverse":
        v = np.sort(rng.standard_normal(n))[::-1].copy()
    elif kind == "clustered":  # the 5% largest all in one contiguous region
        v = rng.standard_normal(n)
        lo = n // 3
        v[lo:lo + n // 20] = 100.0 + rng.standard_normal(n // 20)
    elif kind == "sample_high":  # large exactly where the sample looks: it overestimates
        v = rng.standard_normal(n) * 1e-3
        p = sample_positions(n)
        v[p] = 1e3 * rng.standard_normal(p.size)
    elif kind == "sample_low":  # small where the sample looks: it underestimates
        v = 1e3 + rng.standard_normal(n)
        p = sample_positions(n)
        v[p] = rng.standard_normal(p.size)
    elif kind == "specials":
        v = rng.standard_normal(n)
        v[rng.random(n) < 0.02] = np.nan
        v[rng.random(n) < 0.02] = np.inf
        v[rng.random(n) < 0.02] = -np.inf
        v[rng.random(n) < 0.05] = -0.0
    elif kind == "constant":
        v = np.full(n, -2.5)
    elif kind == "denormal":
        v = rng.integers(-20, 21, n) * {"float32": 2.0**-149, "float64": 2.0**-1074,
                                       "float16": 2.0**-24, "bfloat16": 2.0**-133}[dtype]
    else:
        raise ValueError(kind)
    return round_to(v, dtype)


def ks_for(n: int):
    return sorted({1, 100, n // 1000, n // 100, n // 10, n // 2, n - 1, n} - {0})


def check_all(x, v, *, ks, threads=(1, 2), with_costs=True, with_topk=True, with_energy=True):
    """Every selection kind on x (values v) against the reference, at every engine config."""
    n = v.size
    mag = magnitude_order(v)
    cases = [(f"sparsify k={k}", lambda k=k: gradsparse.sparsify(x, k), top_count(mag, k)) for k in ks]
    if with_energy:
        for b in (n / 50, n / 3 + 0.5):
            cases.append((f"energy budget={b}", lambda b=b: gradsparse.sparsify(x, budget=b),
                          energy_prefix(mag, None, b, n)))
    if with_costs:
        for cdt in (np.float32, np.float64):
            c = costs_for(n, seed=3, dtype=cdt)
            sc = score_order(cwmp_scores(v, c))
            for k in (ks[len(ks) // 2], ks[1]):
                cases.append((f"cwmp {cdt.__name__} k={k}", lambda k=k, c=c: gradsparse.sparsify(x, k, cost=c),
                              top_count(sc, k)))
            b = float(np.sum(c[sc[: n // 20]]))  # about 5% of the elements
            cases.append((f"cwmp energy {cdt.__name__}", lambda b=b, c=c: gradsparse.sparsify(x, budget=b, cost=c),
                          energy_prefix(sc, c, b, n)))
    if with_topk:
        for largest in (True, False):
            order = signed_order(v, largest)
            for k in (ks[1], ks[-3]):
                cases.append((f"topk largest={largest} k={k}",
                              lambda k=k, largest=largest: gradsparse.topk(x, k, largest=largest),
                              order[:k]))
    for level, nt in engine_configs(threads):
        with at_engine(level, nt):
            for name, run, exp in cases:
                got = run()
                try:
                    if not isinstance(got, gradsparse.Sparse):  # a TopK or torch.return_types.topk
                        idx = got.indices.numpy() if is_tensor(got.indices) else got.indices
                        np.testing.assert_array_equal(idx, exp)
                    else:
                        assert_sparse(got, x, exp)
                except AssertionError as e:
                    raise AssertionError(f"{name} at simd={level} threads={nt}: {e}") from None


# ----------------------------------------------------------------------------- sizes

@pytest.mark.parametrize("n", [32767, 32768, 32769, 40_000])
def test_around_the_sampling_boundary(n):
    v = large_input("random", n)
    check_all(make(v, "float32"), v, ks=ks_for(n))


KINDS_40K = ["ties", "rounded", "mostly_zero", "sorted", "reverse", "clustered", "sample_high",
             "sample_low", "specials", "constant", "denormal"]


@pytest.mark.parametrize("kind", KINDS_40K)
def test_adversarial_40k_float32(kind):
    n = 40_000
    v = large_input(kind, n)
    check_all(make(v, "float32"), v, ks=ks_for(n))


@pytest.mark.parametrize("kind", ["random", "ties", "sample_high", "sample_low", "specials", "denormal"])
@pytest.mark.parametrize("dtype", ["float64", "float16", "bfloat16"])
def test_adversarial_40k_other_dtypes(dtype, kind):
    n = 40_017  # not a multiple of any vector width: the filters' tails run with a threshold
    v = large_input(kind, n, dtype)
    check_all(make(v, dtype), v, ks=ks_for(n), threads=(1,), with_energy=kind in ("ties", "specials"))


@pytest.mark.parametrize("kind", ["random", "ties", "mostly_zero", "clustered", "sample_high", "sample_low", "sorted"])
def test_adversarial_300k_threads(kind):
    n = 300_003  # above 2 x 2^17 elements: the work is split over threads
    v = large_input(kind, n)
    check_all(make(v, "float32"), v, ks=[1, 100, 3000, 30000, n], with_topk=kind in ("ties", "sample_low"),
              with_costs=kind in ("random", "ties", "sample_high"))


def test_300k_float64_ties():
    n = 300_003
    v = large_input("ties", n, "float64")
    check_all(make(v, "float64"), v, ks=[1, 1000, 150_000], with_costs=False, with_energy=False)


@pytest.mark.parametrize("kind", ["rounded", "sample_low", "clustered"])
def test_two_million_float32(kind):
    n = 2_000_000
    v = large_input(kind, n)
    check_all(make(v, "float32"), v, ks=[1, 2000, 20000, 200_000], threads=(1, 2, 5),
              with_topk=kind == "rounded", with_costs=kind == "rounded", with_energy=kind != "clustered")


def test_two_million_float32_sample_high():
    n = 2_000_000
    v = large_input("sample_high", n)
    check_all(make(v, "float32"), v, ks=[20000, 100_000], threads=(1, 2), with_topk=False, with_costs=False,
              with_energy=False)


@pytest.mark.parametrize("trap", ["cheap_where_sampled", "dear_where_sampled"])
@pytest.mark.parametrize("cost_dtype", [np.float32, np.float64])
def test_cost_sample_traps(trap, cost_dtype):
    # the CWMP score |x|^2 / c is high (cheap costs) or low (dear costs) exactly where the
    # sampler looks, so the sampled score threshold is too high or too low
    n = 300_003
    v = large_input("random", n)
    x = make(v, "float32")
    c = np.ones(n)
    c[sample_positions(n)] = 1e-6 if trap == "cheap_where_sampled" else 1e6
    c = c.astype(cost_dtype)
    sc = score_order(cwmp_scores(v, c))
    cases = {k: top_count(sc, k) for k in (100, 5000, 60_000)}
    budgets = {b: energy_prefix(sc, c, b, n) for b in (0.5, 2000.0, 50_000.0)}
    for level, nt in engine_configs():
        with at_engine(level, nt):
            for k, exp in cases.items():
                assert_sparse(gradsparse.sparsify(x, k, cost=c), x, exp)
            for b, exp in budgets.items():
                assert_sparse(gradsparse.sparsify(x, budget=b, cost=c), x, exp)


# ----------------------------------------------------------------------------- many tensors

def test_many_large_segments_across_thread_boundaries():
    sizes = [150_001, 7, 200_000, 0, 99_999, 33]
    kinds = ["random", "ties", "sample_low", "random", "clustered", "ties"]
    vs = [large_input(k, s) if s else np.zeros(0) for k, s in zip(kinds, sizes)]
    xs = [make(v, "float32") for v in vs]
    costs = [None, 2.0, costs_for(200_000, 1, np.float32), None, costs_for(99_999, 2), 0.5]
    total = sum(sizes)
    expected = {k: sparsify_many_ref(vs, k) for k in (1, 1000, 50_000, total)}
    expected_c = {k: sparsify_many_ref(vs, k, costs=costs) for k in (10, 20_000)}
    expected_b = sparsify_many_ref(vs, budget=12_345.5, costs=costs)
    for level, nt in engine_configs((1, 2, 3)):
        with at_engine(level, nt):
            for k, exp in expected.items():
                for r, x, e in zip(gradsparse.sparsify_many(xs, k), xs, exp):
                    assert_sparse(r, x, e)
            for k, exp in expected_c.items():
                for r, x, e in zip(gradsparse.sparsify_many(xs, k, costs=costs), xs, exp):
                    assert_sparse(r, x, e)
            for r, x, e in zip(gradsparse.sparsify_many(xs, budget=12_345.5, costs=costs), xs, expected_b):
                assert_sparse(r, x, e)


def test_streaming_large_chunks():
    sizes = [300_003, 40_000, 70_001, 5]
    kinds = ["random", "sample_high", "ties", "random"]
    vs = [large_input(k, s) for k, s in zip(kinds, sizes)]
    xs = [make(v, "float32") for v in vs]
    costs = [costs_for(s, seed=9, dtype=np.float32) for s in sizes]
    exp = {k: sparsify_many_ref(vs, k) for k in (100, 20_000)}
    exp_c = sparsify_many_ref(vs, 5000, costs=costs)
    for level in LEVELS:
        with at_engine(level):
            for k, e in exp.items():
                sel = gradsparse.StreamingSelector(k=k)
                for x in xs:
                    sel.push(x)
                for r, x, ee in zip(sel.finish(), xs, e):
                    assert_sparse(r, x, ee)
            sel = gradsparse.StreamingSelector(k=5000)
            for x, c in zip(xs, costs):
                sel.push(x, c)
            for r, x, ee in zip(sel.finish(), xs, exp_c):
                assert_sparse(r, x, ee)


def test_concurrent_calls_from_python_threads():
    # the engine releases the GIL: calls from several Python threads run at the same time
    # (and share the engine's scratch buffers)
    import threading

    inputs = [large_input(k, 300_003) for k in ("random", "ties", "sample_low", "sample_high")]
    xs = [make(v, "float32") for v in inputs]
    c = costs_for(300_003, seed=5, dtype=np.float32)
    want = [(top_count(magnitude_order(v), 3000), top_count(score_order(cwmp_scores(v, c)), 700),
             signed_order(v, True)[:100]) for v in inputs]
    errors = []

    def work(i):
        try:
            for _ in range(4):
                x = xs[i]
                np.testing.assert_array_equal(gradsparse.sparsify(x, 3000).indices, want[i][0])
                np.testing.assert_array_equal(gradsparse.sparsify(x, 700, cost=c).indices, want[i][1])
                np.testing.assert_array_equal(gradsparse.topk(x, 100).indices, want[i][2])
        except BaseException as e:  # reported on the main thread
            errors.append((i, e))

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(xs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors


def test_topk_2d_large_rows():
    v = large_input("rounded", 3 * 40_000).reshape(3, 40_000)
    x = make(v, "float32")
    exp = np.stack([signed_order(r, True)[:500] for r in v])
    for level, nt in engine_configs((1, 2, 3)):
        with at_engine(level, nt):
            np.testing.assert_array_equal(gradsparse.topk(x, 500).indices, exp)


@requires_torch
@pytest.mark.parametrize("dtype", ["float32", "float64", "float16", "bfloat16"])
def test_signed_ranking_thresholds_at_zero_and_nan(dtype):
    # the sampled filter thresholds of topk(largest/smallest) land on the key of +-0 (40% of
    # the values, both signs mixed: -0 must rank equal to +0) and NaNs of both signs must
    # rank first (largest) or last (smallest), with the SIMD filters of every level
    n = 50_003
    rng = np.random.default_rng(91)
    v = rng.choice(np.array([0.0, -0.0]), n)
    pos = rng.random(n)
    v[pos < 0.3] = rng.uniform(0.5, 4.0, int((pos < 0.3).sum()))
    v[pos > 0.7] = -rng.uniform(0.5, 4.0, int((pos > 0.7).sum()))
    v[rng.choice(n, 40, replace=False)] = np.nan
    v[rng.choice(n, 40, replace=False)] = np.copysign(np.nan, -1.0)
    v = round_to(v, dtype)
    x = make(v, dtype)
    if dtype == "bfloat16":  # the float -> bfloat16 conversion drops the sign of NaN: set it
        raw = x.view(torch.int16).numpy()
        raw[np.isnan(v) & (rng.random(n) < 0.5)] = np.int16(-64)  # 0xFFC0: -NaN
    for level, nt in engine_configs((1,)):
        with at_engine(level, nt):
            for largest in (True, False):
                order = signed_order(v, largest)
                for k in (20, 70, n // 2, int(0.6 * n)):
                    got = gradsparse.topk(x, k, largest=largest, sorted=False)
                    idx = got.indices.numpy() if is_tensor(got.indices) else got.indices
                    np.testing.assert_array_equal(idx, np.sort(order[:k]),
                                                  err_msg=f"{dtype} largest={largest} k={k} simd={level}")
