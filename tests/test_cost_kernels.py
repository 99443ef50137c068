"""The float32 per-element cost kernels (q = 2, alpha = 1) called directly, at every SIMD
level: the fused filter must return exactly the elements whose exact key (bits of the
float64 x*x / c, NaN above +inf) reaches the threshold, with their keys, whatever its
float pre-test does; the sample's keys must be the same bits. Through sparsify() a filter
that drops a qualifying element near the threshold is usually hidden by the engine's
retries, so these tests pin the kernels themselves."""
from __future__ import annotations

import numpy as np
import pytest

from gradsparse import _core
from inputs import SIZES

ABS = np.uint64(0x7FFFFFFFFFFFFFFF)
NAN_KEY = 0x7FF0000000000001
INF_KEY = 0x7FF0000000000000


def ref_keys(x: np.ndarray, c: np.ndarray) -> np.ndarray:
    a = x.astype(np.float64)
    with np.errstate(all="ignore"):
        s = (a * a) / c.astype(np.float64)
    k = s.view(np.uint64) & ABS
    k[np.isnan(s)] = NAN_KEY
    return k


def thresholds(keys: np.ndarray, rng) -> list:
    """Thresholds on and next to element keys (the pre-test's margin), and the extremes."""
    ts = {0, 1, INF_KEY, NAN_KEY, NAN_KEY + 1, 0x3FF0000000000000, 2**64 - 1}
    finite = keys[keys < INF_KEY]
    if finite.size:
        for v in rng.choice(finite, min(8, finite.size), replace=False).tolist():
            ts.update({v - 1, v, v + 1})
        ts.update({int(finite.min()), int(finite.max()), int(np.median(finite))})
    return sorted(t for t in ts if 0 <= t < 2**64)


def check_filter(x: np.ndarray, c: np.ndarray, rng) -> None:
    x = np.ascontiguousarray(x, dtype=np.float32)
    c = np.ascontiguousarray(c, dtype=np.float32)
    keys = ref_keys(x, c)
    np.testing.assert_array_equal(_core._cost_keys_f32(x, c), keys)
    bad = bool(np.any(~(np.isfinite(c) & (c > 0))))
    for t in thresholds(keys, rng):
        idx, vals, got_keys, got_bad = _core._filter_cost_f32(x, c, t)
        want = np.flatnonzero(keys >= np.uint64(t))
        np.testing.assert_array_equal(idx, want, err_msg=f"threshold {t:#x}")
        np.testing.assert_array_equal(vals, x.view(np.uint32)[want])
        np.testing.assert_array_equal(got_keys, keys[want])
        assert got_bad == bad


def case(kind: str, n: int, rng):
    f32 = np.float32
    if kind == "random":
        return rng.standard_normal(n).astype(f32), np.exp(rng.uniform(-3, 3, n)).astype(f32)
    if kind == "ulp_cluster":  # scores a few ulps apart: everything sits at the pre-test margin
        x = (1.0 + rng.integers(-8, 9, n) * 2.0**-23).astype(f32)
        return x, (1.0 + rng.integers(-8, 9, n) * 2.0**-23).astype(f32)
    if kind == "ties":
        return (rng.choice([0.5, -1.0, 1.5, 2.0, -3.0], n).astype(f32),
                rng.choice([0.25, 1.0, 2.25, 4.0, 9.0], n).astype(f32))
    if kind == "tiny":  # x*x and t*c underflow in float32
        x = (rng.choice([-1, 1], n) * np.exp(rng.uniform(np.log(1e-44), np.log(1e-15), n))).astype(f32)
        return x, np.exp(rng.uniform(np.log(1e-45), np.log(1e-25), n)).astype(f32)
    if kind == "huge":  # x*x and t*c overflow in float32
        x = np.exp(rng.uniform(np.log(1e15), np.log(3e38), n)).astype(f32)
        return x, np.exp(rng.uniform(np.log(1e-3), np.log(3e38), n)).astype(f32)
    if kind == "subnormal_costs":
        c = (rng.integers(1, 1 << 23, n) * 2.0**-149).astype(f32)
        return rng.standard_normal(n).astype(f32), c
    if kind == "specials":  # NaN, inf and zero values, largest and smallest costs
        x = rng.choice(np.array([np.nan, -np.nan, np.inf, -np.inf, 0.0, -0.0, 1.0, 3e38, 1e-45], f32), n)
        c = rng.choice(np.array([1.0, 3.4028235e38, 1e-45, 0.5], f32), n)
        return x, c
    if kind == "bad_costs":  # the keys are then meaningless, but the bad flag must be set
        x = rng.standard_normal(n).astype(f32)
        c = np.exp(rng.uniform(-3, 3, n)).astype(f32)
        c[rng.integers(0, n)] = rng.choice(np.array([0.0, -0.0, -1.0, np.inf, np.nan], f32))
        return x, c
    raise ValueError(kind)


KINDS = ["random", "ulp_cluster", "ties", "tiny", "huge", "subnormal_costs", "specials", "bad_costs"]


@pytest.mark.parametrize("kind", KINDS)
def test_cost_filter_exact_at_every_threshold(simd, kind):
    rng = np.random.default_rng([16, len(kind)])
    for n in SIZES[:-1] + [2000]:
        x, c = case(kind, n, rng)
        check_filter(x, c, rng)


def test_cost_filter_dense_pass_groups(simd):
    # every lane of many 16-lane groups passing (the two-division path), then none
    rng = np.random.default_rng(17)
    x = np.concatenate([np.full(512, 4.0), rng.standard_normal(1000) * 1e-3, np.full(77, 4.0)]).astype(np.float32)
    c = (1.0 + rng.integers(-3, 4, x.size) * 2.0**-23).astype(np.float32)
    check_filter(x, c, rng)


def test_cost_filter_bad_cost_flag_with_every_lane_passing(simd):
    x = np.ones(100, np.float32)
    c = np.ones(100, np.float32)
    c[99] = 0.0
    idx, _, _, bad = _core._filter_cost_f32(x, c, 0)
    assert bad  # the cost check reads every cost, candidates or not
    np.testing.assert_array_equal(idx, np.arange(100))
