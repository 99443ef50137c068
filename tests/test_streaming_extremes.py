"""StreamingSelector ranks exactly as sparsify/sparsify_many over the concatenation, also
for float64 magnitudes whose square underflows to 0 or overflows to inf (|x| < ~1e-162 or
> ~1e154): without costs (or with one cost everywhere) the order is |x| itself."""
from __future__ import annotations

import numpy as np
import pytest

import gradsparse


def _extreme(n, scale, seed):
    rng = np.random.default_rng(seed)
    v = rng.uniform(1.0, 2.0, n) * scale * rng.choice([-1.0, 1.0], n)
    return v.astype(np.float64)


def _stream(chunks, costs=None, **kw):
    sel = gradsparse.StreamingSelector(**kw)
    for j, c in enumerate(chunks):
        sel.push(c) if costs is None else sel.push(c, cost=costs[j])
    return sel.finish()


def _same(got, want):
    assert len(got) == len(want)
    for g, w in zip(got, want):
        np.testing.assert_array_equal(g.indices, w.indices)
        np.testing.assert_array_equal(g.values, w.values)


SCALES = [1e-200, 1e-170, 1e160, 1e250]
SIZES = [[7, 5, 9], [30_000, 50_000, 20_000]]  # the second prunes the buffer (2k + 65536)


@pytest.mark.parametrize("scale", SCALES)
@pytest.mark.parametrize("sizes", SIZES, ids=["small", "pruned"])
def test_count_matches_concatenation(scale, sizes):
    chunks = [_extreme(n, scale, seed=j) for j, n in enumerate(sizes)]
    total = sum(sizes)
    for k in sorted({1, 3, total // 10, total // 2}):
        got = _stream(chunks, k=k)
        _same(got, gradsparse.sparsify_many(chunks, k))
        whole = gradsparse.sparsify(np.concatenate(chunks), k)
        starts = np.cumsum([0] + sizes)
        idx = np.concatenate([g.indices + s for g, s in zip(got, starts)])
        np.testing.assert_array_equal(idx, whole.indices)


@pytest.mark.parametrize("scale", SCALES)
def test_equal_scalar_cost_matches(scale):
    chunks = [_extreme(n, scale, seed=10 + j) for j, n in enumerate([40_000, 60_000])]
    for k in (5, 20_000):
        _same(_stream(chunks, costs=[3.0, 3.0], k=k), gradsparse.sparsify_many(chunks, k, costs=[3.0, 3.0]))


@pytest.mark.parametrize("scale", SCALES)
def test_energy_matches(scale):
    chunks = [_extreme(n, scale, seed=20 + j) for j, n in enumerate([40_000, 60_000])]
    for budget in (3.0, 12_345.0):
        _same(_stream(chunks, budget=budget), gradsparse.sparsify_many(chunks, budget=budget))


@pytest.mark.parametrize("scale", [1e-200, 1e250])
def test_later_cost_array_switches_to_scores(scale):
    """A cost array in a later chunk makes every chunk rank by the CWMP score (as in
    sparsify_many), also after the buffer was pruned by |x| order."""
    sizes = [80_000, 60_000, 1000]
    chunks = [_extreme(n, scale, seed=30 + j) for j, n in enumerate(sizes)]
    costs = [None, None, np.full(1000, 2.0)]
    for k in (3, 10_000):
        _same(_stream(chunks, costs=costs, k=k), gradsparse.sparsify_many(chunks, k, costs=costs))
    costs = [None, 5.0, None]  # unequal scalar costs: scores as well
    for k in (3, 10_000):
        _same(_stream(chunks, costs=costs, k=k), gradsparse.sparsify_many(chunks, k, costs=costs))


def test_mixed_dtypes_tiny_float64():
    chunks = [_extreme(5000, 1e-200, 1), np.linspace(-1, 1, 3000).astype(np.float32), _extreme(4000, 1e-190, 2)]
    for k in (1, 3100, 6000):
        _same(_stream(chunks, k=k), gradsparse.sparsify_many(chunks, k))


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("budget", ["count", "energy"])
def test_runs_of_equal_values_are_not_buffered(dtype, budget):
    """Mostly-zero chunks (fewer non-zeros than k): the buffer keeps O(k) candidates, not
    every zero (exactness needs only score ties of a *smaller* magnitude kept), and the
    result still equals the one-shot selection."""
    rng = np.random.default_rng(5)
    k = 500
    chunks = []
    for _ in range(40):
        x = np.zeros(50_000, dtype)
        x[rng.integers(0, x.size, 5)] = rng.standard_normal(5)
        chunks.append(x)
    kw = {"k": k} if budget == "count" else {"budget": float(k)}
    sel = gradsparse.StreamingSelector(**kw)
    peak = 0
    for x in chunks:
        sel.push(x, cost=1.0 if budget == "energy" else None)
        peak = max(peak, sel.buffered)
    got = sel.finish()
    want = gradsparse.sparsify_many(chunks, **kw, **({"costs": [1.0] * len(chunks)} if budget == "energy" else {}))
    for g, w in zip(got, want):
        np.testing.assert_array_equal(g.indices, w.indices)
    assert peak <= 4 * k + 70_000, f"the selector held {peak} candidates for k = {k}"
