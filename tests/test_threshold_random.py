"""The baselines: threshold (|x| >= tau, NaN kept) and seeded random-k."""
from __future__ import annotations

import numpy as np
import pytest

import gradsparse
from inputs import is_tensor, requires_torch, torch
from inputs import DTYPES, KINDS, SIZES, assert_sparse, gen, make, to_f64
from reference import threshold_ref


def _taus(v):
    finite = np.abs(v[np.isfinite(v)])
    taus = [0.0, 1e-300, 0.5, 1.0, np.inf]
    if finite.size:
        # the middle element, not np.median (which averages and can overflow for huge values)
        taus += [float(np.sort(finite)[finite.size // 2]), float(finite.max()), float(finite.min()),
                 float(np.nextafter(finite.max(), np.inf)) if finite.max() < np.finfo(finite.dtype).max else np.inf]
    return taus


# ----------------------------------------------------------------------------- threshold

@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("dtype", DTYPES)
def test_threshold_sizes(engine, dtype, n):
    v = gen("random", n, dtype, seed=70)
    x = make(v, dtype)
    for tau in _taus(v):
        assert_sparse(gradsparse.threshold(x, tau), x, threshold_ref(v, tau))


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_threshold_adversarial(simd, dtype, kind):
    for n in (1, 16, 33, 64, 1000, 4097):
        v = gen(kind, n, dtype, seed=71)
        x = make(v, dtype)
        for tau in _taus(v):
            assert_sparse(gradsparse.threshold(x, tau), x, threshold_ref(v, tau))


@requires_torch
def test_threshold_boundaries():
    x = np.array([0.1, -0.1, np.nan, np.inf, -np.inf, 0.0, -0.0, 1e-45], np.float32)
    # 0.1 (float64) < float32(0.1) = 0.100000001490116...: |x| >= tau compares exactly
    assert_sparse(gradsparse.threshold(x, 0.1), x, [0, 1, 2, 3, 4])
    assert_sparse(gradsparse.threshold(x, float(np.float32(0.1))), x, [0, 1, 2, 3, 4])
    assert_sparse(gradsparse.threshold(x, float(np.nextafter(np.float32(0.1), np.float32(1)))), x, [2, 3, 4])
    assert_sparse(gradsparse.threshold(x, np.inf), x, [2, 3, 4])
    assert_sparse(gradsparse.threshold(x, 0.0), x, list(range(8)))
    assert_sparse(gradsparse.threshold(x, 1e-300), x, [0, 1, 2, 3, 4, 7])
    h = torch.tensor([0.1, 1.0, -2.0], dtype=torch.bfloat16)
    assert_sparse(gradsparse.threshold(h, 1.0), h, [1, 2])


def test_threshold_large_threads(engine):
    for dtype in ("float32", "float64", "float16"):
        v = gen("mixed", 300_003, dtype, seed=72)
        x = make(v, dtype)
        for tau in (1.0, 3.0):
            assert_sparse(gradsparse.threshold(x, tau), x, threshold_ref(v, tau))


def test_threshold_errors():
    x = np.ones(4, np.float32)
    for tau in (-1.0, np.nan, -np.inf):
        with pytest.raises(ValueError, match="tau"):
            gradsparse.threshold(x, tau)
    with pytest.raises(TypeError, match="tau"):
        gradsparse.threshold(x, True)
    with pytest.raises(TypeError, match="tau"):
        gradsparse.threshold(x, "1")
    with pytest.raises(ValueError, match="x"):
        gradsparse.threshold(np.ones(0, np.float32), 1.0)


# ----------------------------------------------------------------------------- random-k

@requires_torch
@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("dtype", DTYPES)
def test_random_k_basic(dtype, n):
    v = gen("mixed", n, dtype, seed=73)
    x = make(v, dtype)
    for k in sorted({1, max(1, n // 2), n}):
        res = gradsparse.random_k(x, k, seed=n)
        idx = res.indices.numpy() if is_tensor(x) else res.indices
        assert idx.size == k
        assert np.all(np.diff(idx) > 0)  # unique and ascending
        assert idx.min() >= 0 and idx.max() < n
        assert_sparse(res, x, idx)
    res = gradsparse.random_k(x, n, seed=1)
    assert_sparse(res, x, np.arange(n))


@requires_torch
def test_random_k_reproducible_and_invariant(engine):
    x = np.zeros(300_003, np.float32)
    for seed in (0, 1, 2**63, 2**64 - 1):
        a = gradsparse.random_k(x, 1000, seed)
        b = gradsparse.random_k(x, 1000, seed)
        np.testing.assert_array_equal(a.indices, b.indices)
    with gradsparse.simd_level("scalar"), gradsparse.num_threads(1):
        ref = gradsparse.random_k(x, 1000, 7).indices
    np.testing.assert_array_equal(gradsparse.random_k(x, 1000, 7).indices, ref)
    # the indices depend on (n, k, seed) only, not on the values or the dtype
    np.testing.assert_array_equal(gradsparse.random_k(np.ones(300_003), 1000, 7).indices, ref)
    t = torch.ones(300_003, dtype=torch.bfloat16)
    np.testing.assert_array_equal(gradsparse.random_k(t, 1000, 7).indices.numpy(), ref)


def test_random_k_golden_values():
    # reproducible across platforms and versions: pinned outputs
    x = np.arange(1000, dtype=np.float32)
    np.testing.assert_array_equal(gradsparse.random_k(x, 5, 0).indices, [104, 604, 740, 754, 765])
    np.testing.assert_array_equal(gradsparse.random_k(x, 5, 12345).indices, [302, 335, 530, 836, 843])
    np.testing.assert_array_equal(gradsparse.random_k(np.zeros(10**6, np.float32), 3, 2**64 - 1).indices,
                                  [125995, 446401, 959789])


def test_random_k_seeds_differ():
    x = np.zeros(10_000, np.float32)
    draws = {tuple(gradsparse.random_k(x, 20, s).indices.tolist()) for s in range(50)}
    assert len(draws) == 50


def test_random_k_uniform():
    # every index equally likely, every pair too (without replacement): chi-square tests on
    # fixed seeds, so the test is deterministic
    n, k, trials = 10, 3, 3000
    counts = np.zeros(n)
    pairs = np.zeros((n, n))
    x = np.zeros(n, np.float32)
    for s in range(trials):
        idx = gradsparse.random_k(x, k, s).indices
        counts[idx] += 1
        pairs[np.ix_(idx, idx)] += 1
    expected = trials * k / n
    chi2 = float(((counts - expected) ** 2 / expected).sum())
    assert chi2 < 35.0, (chi2, counts)  # 9 degrees of freedom: p < 1e-4
    off = pairs[~np.eye(n, dtype=bool)]
    exp_pair = trials * k * (k - 1) / (n * (n - 1))
    chi2p = float(((off - exp_pair) ** 2 / exp_pair).sum()) / 2
    assert chi2p < 100.0, chi2p  # 44 degrees of freedom: p < 1e-5
    # a large n: every decile gets its share
    big = gradsparse.random_k(np.zeros(1_000_000, np.float32), 100_000, 99).indices
    hist = np.bincount(big // 100_000, minlength=10)
    assert np.all(np.abs(hist - 10_000) < 600), hist


@requires_torch
@pytest.mark.parametrize("dtype", DTYPES)
def test_random_k_scale(dtype):
    for n, k in ((1000, 10), (64, 4), (1000, 3), (7, 7)):
        v = gen("random", n, dtype, seed=74)
        x = make(v, dtype)
        plain = gradsparse.random_k(x, k, 5)
        scaled = gradsparse.random_k(x, k, 5, scale=True)
        idx = plain.indices.numpy() if is_tensor(x) else plain.indices
        np.testing.assert_array_equal(scaled.indices.numpy() if is_tensor(x) else scaled.indices, idx)
        assert scaled.values.dtype == x.dtype
        exact = v[idx] * (n / k)
        got = to_f64(scaled.values)
        eps = float(torch.finfo({"float32": torch.float32, "float64": torch.float64, "float16": torch.float16,
                                 "bfloat16": torch.bfloat16}[dtype]).eps)
        np.testing.assert_allclose(got, exact, rtol=1.01 * eps, atol=0)  # about one rounding
        ratio = n / k
        if ratio.is_integer() and (int(ratio) & (int(ratio) - 1)) == 0:  # a power of two: exact
            np.testing.assert_array_equal(got, exact)


def test_random_k_errors():
    x = np.ones(10, np.float32)
    with pytest.raises(ValueError, match="k"):
        gradsparse.random_k(x, 0, 1)
    with pytest.raises(ValueError, match="k"):
        gradsparse.random_k(x, 11, 1)
    with pytest.raises(TypeError, match="k"):
        gradsparse.random_k(x, 2.0, 1)
    with pytest.raises(ValueError, match="seed"):
        gradsparse.random_k(x, 2, -1)
    with pytest.raises(ValueError, match="seed"):
        gradsparse.random_k(x, 2, 2**64)
    with pytest.raises(TypeError, match="seed"):
        gradsparse.random_k(x, 2, 1.5)
    with pytest.raises(ValueError, match="x"):
        gradsparse.random_k(np.ones(0, np.float32), 1, 1)
    with pytest.raises(TypeError, match="x"):
        gradsparse.random_k(np.ones(4, np.int32), 1, 1)
