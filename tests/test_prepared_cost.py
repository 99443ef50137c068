"""gradsparse.PreparedCost: per-element costs checked once and kept, with one-byte bounds
for the float32 cost filter.

The kernel is pinned directly at every SIMD level (the exact keys it must keep, and the
rule for the kSureKey shortcut); every public entry point is checked against the plain
numpy reference and against the same call with the raw cost array; and the object's
contract (copy, read-only view, argument errors) is tested."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, strategies as st

import gradsparse as gs
from gradsparse import _core
from inputs import requires_torch, torch
from inputs import SIZES, assert_sparse
from reference import sparsify_many_ref, sparsify_ref
from test_cost_kernels import case, ref_keys, thresholds

SURE = np.uint64(2**64 - 1)
F32_MAX_BITS = 0x7F7FFFFF


def bounds_of(p: gs.PreparedCost):
    """(L, U) of every float32 cost: the smallest and largest float with its code."""
    codes, base, shift = p._core.bounds
    lo_bits = np.uint64(base) + (codes.astype(np.uint64) << np.uint64(shift))
    hi_bits = lo_bits + np.uint64((1 << shift) - 1)
    return lo_bits, hi_bits


# ----------------------------------------------------------------------------- the bounds

COST_KINDS = {
    "uniform": lambda rng, n: rng.uniform(0.5, 2.0, n),
    "wide": lambda rng, n: np.exp(rng.uniform(-80, 80, n)),
    "equal": lambda rng, n: np.full(n, 0.37),
    "two": lambda rng, n: rng.choice([1e-3, 7.0], n),
    "subnormal": lambda rng, n: rng.integers(1, 1 << 23, n) * 2.0**-149,
    "full_range": lambda rng, n: np.concatenate([[2.0**-149, 3.4028234663852886e38], np.exp(rng.uniform(-100, 88, n))])[:n],
    "near_max": lambda rng, n: 3.4028234663852886e38 * rng.uniform(0.25, 1.0, n),
}


@pytest.mark.parametrize("kind", sorted(COST_KINDS))
@pytest.mark.parametrize("n", [1, 17, 5000])
def test_bounds_enclose_every_cost(simd, kind, n):
    rng = np.random.default_rng([len(kind), n])
    c = COST_KINDS[kind](rng, n).astype(np.float32)
    p = gs.PreparedCost(c)
    codes, base, shift = p._core.bounds
    cb = c.view(np.uint32).astype(np.uint64)
    lo, hi = bounds_of(p)
    assert codes.dtype == np.uint8 and codes.size == c.size and not codes.flags.writeable
    assert base == int(cb.min())  # the smallest cost is its own bound
    assert np.all(lo <= cb) and np.all(cb <= hi)
    # the shift is the smallest that fits the range into a byte
    span = int(cb.max()) - int(cb.min())
    assert span >> shift <= 255 and (shift == 0 or span >> (shift - 1) > 255)
    if kind == "equal" or n == 1:
        assert shift == 0 and np.all(codes == 0)


def test_preparing_is_the_same_at_every_level_and_thread_count(engine):
    # 2^21 + 3 costs: split over threads; the first bad cost is found in any part
    rng = np.random.default_rng(75)
    c = np.exp(rng.uniform(-30, 30, (1 << 21) + 3)).astype(np.float32)
    codes, base, shift = gs.PreparedCost(c)._core.bounds
    cb = c.view(np.uint32).astype(np.int64)
    assert base == cb.min()
    np.testing.assert_array_equal(codes, (cb - base) >> shift)
    for at in (0, 1 << 20, c.size - 1):
        bad = c.copy()
        bad[at] = -2.0
        if at < c.size - 1:
            bad[-1] = np.nan  # a later bad cost: the first one is named
        with pytest.raises(ValueError, match=f"got -2 at index {at}$"):
            gs.PreparedCost(bad)


# ----------------------------------------------------------------------------- the kernel

def check_bound_filter(x: np.ndarray, c: np.ndarray, rng) -> None:
    x = np.ascontiguousarray(x, dtype=np.float32)
    c = np.ascontiguousarray(c, dtype=np.float32)
    p = gs.PreparedCost(c)
    keys = ref_keys(x, c)
    ts = thresholds(keys, rng)
    sures = [2**64 - 1, 0] + [ts[i] for i in rng.choice(len(ts), min(4, len(ts)), replace=False)]
    for t in ts:
        for t_sure in sures:
            idx, vals, got = _core._filter_cost_bound_f32(x, p._core, t, t_sure)
            want = np.flatnonzero(keys >= np.uint64(t))
            msg = f"t {t:#x}, t_sure {t_sure:#x}"
            np.testing.assert_array_equal(idx, want, err_msg=msg)
            np.testing.assert_array_equal(vals, x.view(np.uint32)[want], err_msg=msg)
            exact = keys[want]
            sure = got == SURE
            np.testing.assert_array_equal(got[~sure], exact[~sure], err_msg=msg)
            # kSureKey only for keys proven above max(t, t_sure)
            assert np.all(exact[sure] > np.uint64(max(t, t_sure))), msg
            if t_sure == 2**64 - 1:
                assert not sure.any(), msg


KERNEL_KINDS = ["random", "ulp_cluster", "ties", "tiny", "huge", "subnormal_costs", "specials"]


@pytest.mark.parametrize("kind", KERNEL_KINDS)
def test_bound_filter_exact_at_every_threshold(simd, kind):
    rng = np.random.default_rng([61, len(kind)])
    for n in SIZES[:-1] + [2000]:
        x, c = case(kind, n, rng)
        check_bound_filter(x, c, rng)


@pytest.mark.parametrize("kind", sorted(COST_KINDS))
def test_bound_filter_with_every_cost_range(simd, kind):
    # the bounds' extremes: shift 0, the full float range, upper bounds past the largest float
    rng = np.random.default_rng([62, len(kind)])
    for n in (1, 33, 1000):
        x = (rng.standard_normal(n) * np.exp(rng.uniform(-20, 20, n))).astype(np.float32)
        c = COST_KINDS[kind](rng, n).astype(np.float32)
        check_bound_filter(x, c, rng)


def test_bound_filter_sure_shortcut_is_taken(simd):
    # far above t_sure every lane is proven without its cost; just above it none may be
    rng = np.random.default_rng(63)
    x = rng.standard_normal(4096).astype(np.float32)
    c = rng.uniform(0.5, 2.0, x.size).astype(np.float32)
    keys = ref_keys(x, c)
    t = int(np.quantile(keys, 0.5))
    t_sure = int(np.quantile(keys, 0.9))
    idx, _, got = _core._filter_cost_bound_f32(x, gs.PreparedCost(c)._core, t, t_sure)
    sure = got == SURE
    far = keys[idx] > np.uint64(np.quantile(keys, 0.95))
    assert sure[far].mean() > 0.9  # bounds within 1/128 of the cost
    assert not sure[keys[idx] <= np.uint64(t_sure)].any()


# ----------------------------------------------------------------------------- public API

def gradient_like(n: int, rng) -> np.ndarray:
    """Normal values with a lognormal scale per block of 4096 (clustered large values)."""
    x = rng.standard_normal(n).astype(np.float32)
    scales = np.exp(rng.standard_normal(n // 4096 + 1)).astype(np.float32)
    return x * np.repeat(scales, 4096)[:n]


@pytest.mark.parametrize("n", [40_000, 300_001])
@pytest.mark.parametrize("ratio", [0.001, 0.01, 0.2])
def test_sparsify_prepared_equals_reference(engine, n, ratio):
    rng = np.random.default_rng([64, n, int(ratio * 1000)])
    x = gradient_like(n, rng)
    c = rng.uniform(0.5, 2.0, n).astype(np.float32)
    p = gs.PreparedCost(c)
    want = sparsify_ref(x, ratio=ratio, cost=c)
    assert_sparse(gs.sparsify(x, ratio=ratio, cost=p), x, want)
    assert_sparse(gs.sparsify(x, ratio=ratio, cost=c), x, want)


def test_sparsify_prepared_when_the_sample_misses_high(engine):
    # every large value sits between the sampled blocks: the sample's bracket lies far too
    # low, so most candidates are proven above it without their costs ("sure") and K* is
    # above the bracket — the engine must then compute those keys after all.
    n = 1 << 20
    rng = np.random.default_rng(65)
    x = (rng.standard_normal(n) * 1e-3).astype(np.float32)
    pos = np.arange(n)
    hidden = (pos % 1024) < 400  # sampled blocks sit around the middle of each 1024 stretch
    x[hidden] = rng.uniform(1.0, 2.0, int(hidden.sum())).astype(np.float32)
    c = rng.uniform(0.5, 2.0, n).astype(np.float32)
    p = gs.PreparedCost(c)
    for k in (1000, 50_000, 400_000):
        want = sparsify_ref(x, k, cost=c)
        assert_sparse(gs.sparsify(x, k, cost=p), x, want)


def test_sparsify_prepared_ties_and_specials(simd):
    rng = np.random.default_rng(66)
    n = 70_000
    x = rng.choice(np.array([0.5, -1.0, 1.5, 2.0, -3.0, 0.0, -0.0, np.inf, np.nan], np.float32), n)
    c = rng.choice(np.array([0.25, 1.0, 2.25, 4.0, 9.0], np.float32), n)
    p = gs.PreparedCost(c)
    for k in (1, 7, 1000, 35_000, n):
        assert_sparse(gs.sparsify(x, k, cost=p), x, sparsify_ref(x, k, cost=c))


@requires_torch
@pytest.mark.parametrize("dtype", ["float64", "float16", "bfloat16"])
@pytest.mark.parametrize("cost_dtype", [np.float32, np.float64])
def test_prepared_costs_with_other_dtypes(simd, dtype, cost_dtype):
    rng = np.random.default_rng(67)
    n = 50_000
    vals = rng.standard_normal(n).astype(np.float32).astype(np.float64)
    x = torch.from_numpy(vals).to(torch.bfloat16) if dtype == "bfloat16" else vals.astype(dtype)
    c = rng.uniform(0.5, 2.0, n).astype(cost_dtype)
    p = gs.PreparedCost(c)
    assert p.dtype == np.dtype(cost_dtype)
    xv = x.to(torch.float64).numpy() if dtype == "bfloat16" else x.astype(np.float64)
    for k in (10, 5000):
        assert_sparse(gs.sparsify(x, k, cost=p), x, sparsify_ref(xv, k, cost=c))


def test_prepared_energy_budget_and_q_alpha(simd):
    rng = np.random.default_rng(68)
    n = 60_000
    x = gradient_like(n, rng)
    c = rng.uniform(0.5, 2.0, n).astype(np.float32)
    p = gs.PreparedCost(c)
    for budget in (1.0, 300.0, 1e9):
        assert_sparse(gs.sparsify(x, budget=budget, cost=p), x, sparsify_ref(x, budget=budget, cost=c))
    for q, alpha in ((1.0, 1.0), (2.0, 0.5), (3.0, 2.0)):
        assert_sparse(gs.sparsify(x, 600, cost=p, q=q, alpha=alpha), x,
                      sparsify_ref(x, 600, cost=c, q=q, alpha=alpha))


def test_sparsify_many_mixes_prepared_raw_and_scalar_costs(engine):
    rng = np.random.default_rng(69)
    xs = [gradient_like(n, rng) for n in (30_000, 5, 120_000, 64)]
    cs = [rng.uniform(0.5, 2.0, x.size).astype(np.float32) for x in xs]
    costs = [gs.PreparedCost(cs[0]), cs[1], 0.7, gs.PreparedCost(cs[3].astype(np.float64))]
    ref_costs = [cs[0], cs[1], 0.7, cs[3].astype(np.float64)]
    for kw in (dict(k=1500), dict(ratio=0.05), dict(budget=50.0)):
        got = gs.sparsify_many(xs, costs=costs, **kw)
        want = sparsify_many_ref(xs, costs=ref_costs, **kw)
        for g, x, w in zip(got, xs, want):
            assert_sparse(g, x, w)


def test_streaming_with_prepared_costs(simd):
    rng = np.random.default_rng(70)
    xs = [gradient_like(n, rng) for n in (50_000, 3000, 80_000)]
    cs = [rng.uniform(0.5, 2.0, x.size).astype(np.float32) for x in xs]
    sel = gs.StreamingSelector(2000)
    for x, c in zip(xs, cs):
        sel.push(x, cost=gs.PreparedCost(c))
    for g, x, w in zip(sel.finish(), xs, sparsify_many_ref(xs, 2000, costs=cs)):
        assert_sparse(g, x, w)


def test_error_feedback_with_prepared_costs(simd):
    rng = np.random.default_rng(71)
    c = rng.uniform(0.5, 2.0, 40_000).astype(np.float32)
    p = gs.PreparedCost(c)
    ef_raw, ef_prep = gs.ErrorFeedback(), gs.ErrorFeedback()
    for _ in range(3):
        x = gradient_like(c.size, rng)
        a = ef_raw.compress("w", x, 400, cost=c)
        b = ef_prep.compress("w", x, 400, cost=p)
        np.testing.assert_array_equal(a.indices, b.indices)
        np.testing.assert_array_equal(a.values, b.values)
    np.testing.assert_array_equal(ef_raw.state_dict()["w"], ef_prep.state_dict()["w"])


@requires_torch
def test_torch_costs_and_inputs():
    rng = np.random.default_rng(72)
    c = rng.uniform(0.5, 2.0, (200, 300)).astype(np.float32)
    x = torch.from_numpy(gradient_like(c.size, rng).reshape(c.shape))
    p = gs.PreparedCost(torch.from_numpy(c))
    assert p.shape == (200, 300) and p.dtype == np.float32
    assert_sparse(gs.sparsify(x, 700, cost=p), x, sparsify_ref(x.numpy(), 700, cost=c))
    # a cost of the same size but another shape is accepted, as a raw array would be
    assert_sparse(gs.sparsify(x.reshape(-1), 700, cost=p), x.reshape(-1), sparsify_ref(x.numpy(), 700, cost=c))


@given(st.integers(1, 3000), st.integers(0, 2**32 - 1), st.floats(0.0001, 1.0))
def test_prepared_equals_raw_property(n, seed, ratio):
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal(n) * np.exp(rng.uniform(-5, 5, n))).astype(np.float32)
    c = np.exp(rng.uniform(-10, 10, n)).astype(np.float32)
    a = gs.sparsify(x, ratio=ratio, cost=c)
    b = gs.sparsify(x, ratio=ratio, cost=gs.PreparedCost(c))
    np.testing.assert_array_equal(a.indices, b.indices)
    np.testing.assert_array_equal(a.values.view(np.uint32), b.values.view(np.uint32))


# ----------------------------------------------------------------------------- the object

def test_prepared_cost_is_a_private_read_only_copy():
    rng = np.random.default_rng(73)
    c = rng.uniform(0.5, 2.0, 50_000).astype(np.float32)
    x = gradient_like(c.size, rng)
    p = gs.PreparedCost(c)
    want = sparsify_ref(x, 500, cost=c.copy())
    c[:] = 1e-9  # later writes to the caller's array change nothing
    assert_sparse(gs.sparsify(x, 500, cost=p), x, want)
    view = p.numpy()
    assert view.shape == (50_000,) and not view.flags.writeable
    with pytest.raises(ValueError):
        view.flags.writeable = True
    with pytest.raises(ValueError):
        view[0] = -1.0
    assert p.nbytes == 50_000 * 5 and p.size == 50_000 and len(p) == 50_000
    assert "PreparedCost" in repr(p)
    np.testing.assert_array_equal(np.asarray(p), view)
    assert gs.PreparedCost(p)._core is p._core  # no second copy


def test_prepared_cost_pickles():
    import pickle

    c = np.random.default_rng(74).uniform(0.5, 2.0, (30, 40)).astype(np.float32)
    p = pickle.loads(pickle.dumps(gs.PreparedCost(c)))
    assert p.shape == (30, 40) and p.dtype == np.float32
    np.testing.assert_array_equal(p.numpy(), c)
    codes, base, shift = p._core.bounds
    codes0, base0, shift0 = gs.PreparedCost(c)._core.bounds
    np.testing.assert_array_equal(codes, codes0)
    assert (base, shift) == (base0, shift0)


def test_integer_costs_become_float64():
    p = gs.PreparedCost(np.arange(1, 11, dtype=np.int32))
    assert p.dtype == np.float64
    x = np.linspace(-1, 1, 10).astype(np.float32)
    assert_sparse(gs.sparsify(x, 3, cost=p), x, sparsify_ref(x, 3, cost=np.arange(1, 11)))


@pytest.mark.parametrize("bad", [0.0, -0.0, -1.0, np.inf, -np.inf, np.nan])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_bad_costs_are_refused_once_naming_the_index(bad, dtype):
    c = np.ones(100, dtype)
    c[37] = bad
    with pytest.raises(ValueError, match=r"cost: costs must be finite and > 0, got .* at index 37"):
        gs.PreparedCost(c)


@pytest.mark.parametrize("arg, err, msg", [
    (np.array([], np.float32), ValueError, "empty"),
    (np.float32(2.0), ValueError, "scalar"),
    (np.array(["a", "b"]), TypeError, "real numbers"),
    (np.array([1 + 1j]), TypeError, "real numbers"),
    (None, TypeError, "expected an array"),
    ("costs", TypeError, "expected an array"),
])
def test_prepared_cost_argument_errors(arg, err, msg):
    with pytest.raises(err, match=f"cost: .*{msg}"):
        gs.PreparedCost(arg)


def test_prepared_cost_size_must_match():
    p = gs.PreparedCost(np.ones((10, 20), np.float32))
    with pytest.raises(ValueError, match=r"cost: shape \(10, 20\) does not match x of shape \(201,\)"):
        gs.sparsify(np.ones(201, np.float32), 5, cost=p)
    with pytest.raises(ValueError, match=r"costs\[1\]: shape"):
        gs.sparsify_many([np.ones(200, np.float32), np.ones(5, np.float32)], 5, costs=[p, p])
    sel = gs.StreamingSelector(3)
    with pytest.raises(ValueError, match="cost: shape"):
        sel.push(np.ones(7, np.float32), cost=p)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_cost_arrays_checked_in_one_pass(threads, dtype):
    # the check ErrorFeedback runs before it touches the residual (and PreparedCost's)
    c = np.random.default_rng(76).uniform(0.5, 2.0, (1 << 21) + 5).astype(dtype)
    _core.check_costs(c)
    for at, bad in ((0, 0.0), (1 << 20, np.nan), (c.size - 1, -np.inf)):
        b = c.copy()
        b[at] = bad
        with pytest.raises(ValueError, match=f"at index {at}$"):
            _core.check_costs(b)
    with pytest.raises(TypeError, match="cost: cost arrays must be float32 or float64"):
        _core.check_costs(np.ones(3, np.int64))
    ef = gs.ErrorFeedback()
    b = c.copy()
    b[7] = -1.0
    with pytest.raises(ValueError, match="at index 7$"):
        ef.compress("w", np.ones(c.size, np.float32), 10, cost=b)
    assert ef.state_dict() == {}


@pytest.mark.parametrize("cost, t_sure", [(1.0, 1e39), (10.0, 1e38), (1e-3, 1e42)])
def test_bound_filter_overflowing_bounds_prove_nothing(simd, cost, t_sure):
    # x*x overflows float32 (|x| = 2e19) and so does ts * U: inf >= inf must not make a lane
    # "sure" — the exact scores 4e38 / c lie below the sure threshold
    x = np.full(40, 2e19, np.float32)
    c = np.full(40, cost, np.float32)
    keys = ref_keys(x, c)
    key = lambda v: int(np.float64(v).view(np.uint64))
    assert np.all(keys < np.uint64(key(t_sure)))
    idx, _, got = _core._filter_cost_bound_f32(x, gs.PreparedCost(c)._core, key(1e30), key(t_sure))
    np.testing.assert_array_equal(idx, np.arange(40))
    np.testing.assert_array_equal(got, keys)
