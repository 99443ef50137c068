"""sparsify: magnitude top-k, CWMP (cost-weighted) count and energy budgets, against the
numpy reference, at every SIMD level and thread count, every dtype and size."""
from __future__ import annotations

import functools

import numpy as np
import pytest

import gradsparse
from inputs import requires_torch, torch
from inputs import DTYPES, KINDS, SIZES, assert_sparse, costs_for, gen, make
from reference import cwmp_scores, energy_prefix, magnitude_order, score_order, sparsify_ref, top_count


def _ks(n):
    return sorted({1, 2, max(1, n // 3), max(1, n - 1), n} & set(range(1, n + 1)))


# ----------------------------------------------------------------------------- magnitude

@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("dtype", DTYPES)
def test_magnitude_topk_sizes(engine, dtype, n):
    v = gen("random", n, dtype, seed=1)
    x = make(v, dtype)
    order = magnitude_order(v)
    for k in _ks(n):
        assert_sparse(gradsparse.sparsify(x, k), x, top_count(order, k))


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_magnitude_topk_adversarial(engine, dtype, kind):
    for n in (1, 9, 33, 65, 1000, 4097):
        v = gen(kind, n, dtype, seed=2)
        x = make(v, dtype)
        for k in _ks(n):
            assert_sparse(gradsparse.sparsify(x, k), x, sparsify_ref(v, k))


@pytest.mark.parametrize("dtype", ["float32", "float64", "float16"])
def test_magnitude_torch_input(simd, dtype):
    v = gen("mixed", 777, dtype, seed=3)
    x = make(v, dtype, torch_input=True)
    assert_sparse(gradsparse.sparsify(x, 100), x, sparsify_ref(v, 100))


def test_nan_ranks_above_inf_and_signed_zeros_tie(simd):
    x = np.array([0.0, -np.inf, 1.0, np.nan, -0.0, np.inf, -np.nan, 0.0], dtype=np.float32)
    assert_sparse(gradsparse.sparsify(x, 1), x, [3])
    assert_sparse(gradsparse.sparsify(x, 2), x, [3, 6])
    assert_sparse(gradsparse.sparsify(x, 4), x, [1, 3, 5, 6])
    # -0.0 and +0.0 tie: the lower index wins
    assert_sparse(gradsparse.sparsify(x, 6), x, [0, 1, 2, 3, 5, 6])
    assert_sparse(gradsparse.sparsify(x, 7), x, [0, 1, 2, 3, 4, 5, 6])


def test_ties_by_lower_index(engine):
    x = np.array([1, -2, 2, -1, 2, -2, 1], dtype=np.float64)
    assert_sparse(gradsparse.sparsify(x, 1), x, [1])
    assert_sparse(gradsparse.sparsify(x, 3), x, [1, 2, 4])
    assert_sparse(gradsparse.sparsify(x, 5), x, [0, 1, 2, 4, 5])


@pytest.mark.parametrize("shape", [(5, 7), (2, 3, 4), (1,), (4, 1, 9)])
def test_any_shape_flat_indices(shape):
    v = gen("random", int(np.prod(shape)), "float32", seed=4).reshape(shape)
    x = make(v, "float32")
    k = min(3, x.size)
    res = gradsparse.sparsify(x, k)
    assert_sparse(res, x, sparsify_ref(v, k))
    dense = res.to_dense()
    assert dense.shape == shape
    keep = np.zeros(x.size, dtype=bool)
    keep[res.indices] = True
    np.testing.assert_array_equal(dense.reshape(-1), np.where(keep, x.reshape(-1), 0))


@requires_torch
def test_non_contiguous_input_is_copied():
    v = gen("random", 200, "float32", seed=5).reshape(10, 20)
    x = make(v, "float32")
    xt = x.T  # not C-contiguous
    assert not xt.flags.c_contiguous
    assert_sparse(gradsparse.sparsify(xt, 7), np.ascontiguousarray(xt), sparsify_ref(v.T, 7))
    xs = x.reshape(-1)[::3]
    assert_sparse(gradsparse.sparsify(xs, 5), np.ascontiguousarray(xs), sparsify_ref(v.reshape(-1)[::3], 5))
    tt = torch.from_numpy(x).t()
    assert not tt.is_contiguous()
    assert_sparse(gradsparse.sparsify(tt, 7), tt.contiguous(), sparsify_ref(v.T, 7))


def test_sparsify_does_not_modify_input(simd):
    v = gen("mixed", 5000, "float32", seed=6)
    x = make(v, "float32")
    before = x.copy()
    gradsparse.sparsify(x, 100)
    gradsparse.sparsify(x, 100, cost=costs_for(5000, dtype=np.float32))
    np.testing.assert_array_equal(x.view(np.int32), before.view(np.int32))


# ----------------------------------------------------------------------------- ratio / k edges

@pytest.mark.parametrize("n", [1, 2, 3, 10, 1000, 4097])
@pytest.mark.parametrize("ratio", [1e-9, 0.001, 0.01, 0.1, 0.25, 0.5, 0.999, 1.0])
def test_ratio(n, ratio):
    v = gen("random", n, "float32", seed=7)
    x = make(v, "float32")
    res = gradsparse.sparsify(x, ratio=ratio)
    k = min(n, max(1, int(np.floor(ratio * n + 0.5))))
    assert gradsparse.k_from_ratio(ratio, n) == k
    assert_sparse(res, x, sparsify_ref(v, k))


def test_ratio_rounding_half_up():
    assert gradsparse.k_from_ratio(0.5, 5) == 3  # floor(2.5 + 0.5)
    assert gradsparse.k_from_ratio(0.25, 10) == 3  # floor(2.5 + 0.5)
    assert gradsparse.k_from_ratio(0.24, 10) == 2
    assert gradsparse.k_from_ratio(1e-6, 10) == 1  # never 0
    assert gradsparse.k_from_ratio(1.0, 10) == 10


@pytest.mark.parametrize("dtype", DTYPES)
def test_k_equals_n_keeps_everything(engine, dtype):
    for n in (1, 17, 4097):
        v = gen("mixed", n, dtype, seed=8)
        x = make(v, dtype)
        assert_sparse(gradsparse.sparsify(x, n), x, np.arange(n))
        assert_sparse(gradsparse.sparsify(x, ratio=1.0), x, np.arange(n))


# ----------------------------------------------------------------------------- CWMP, count budget

@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("cost_dtype", [np.float32, np.float64])
@pytest.mark.parametrize("dtype", DTYPES)
def test_cwmp_count_per_element_costs(engine, dtype, cost_dtype, n):
    v = gen("random", n, dtype, seed=9)
    x = make(v, dtype)
    c = costs_for(n, seed=9, dtype=cost_dtype)
    order = score_order(cwmp_scores(v, c))
    for k in _ks(n):
        assert_sparse(gradsparse.sparsify(x, k, cost=c), x, top_count(order, k))


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("cost_kind", ["random", "ties"])
@pytest.mark.parametrize("dtype", DTYPES)
def test_cwmp_count_adversarial(simd, dtype, kind, cost_kind):
    for n in (7, 64, 1000):
        v = gen(kind, n, dtype, seed=10)
        x = make(v, dtype)
        for cdt in (np.float32, np.float64):
            c = costs_for(n, seed=10, dtype=cdt, kind=cost_kind)
            for k in _ks(n):
                assert_sparse(gradsparse.sparsify(x, k, cost=c), x, sparsify_ref(v, k, cost=c))


def _f32_cost_case(kind: str, n: int, seed: int):
    """float32 values and float32 per-element costs (the fused SIMD cost filter's input)
    whose scores x*x/c stress its float32 pre-test and the exact keys behind it."""
    rng = np.random.default_rng([seed, n])
    f32 = np.float32
    if kind == "ulp_cluster":  # scores within a few ulps of each other: the pre-test margin
        x = (1.0 + rng.integers(-8, 9, n) * 2.0**-23).astype(f32)
        c = (1.0 + rng.integers(-8, 9, n) * 2.0**-23).astype(f32)
    elif kind == "ties":  # few distinct scores: ties at K* by the lower index
        x = rng.choice([0.5, -1.0, 1.5, 2.0, -3.0], n).astype(f32)
        c = rng.choice([0.25, 1.0, 2.25, 4.0, 9.0], n).astype(f32)
    elif kind == "tiny":  # x*x and t*c underflow float32
        x = (rng.choice([-1, 1], n) * np.exp(rng.uniform(np.log(1e-30), np.log(1e-15), n))).astype(f32)
        c = np.exp(rng.uniform(np.log(1e-38), np.log(1e-25), n)).astype(f32)
    elif kind == "huge":  # x*x and t*c overflow float32
        x = np.exp(rng.uniform(np.log(1e15), np.log(3e38), n)).astype(f32)
        c = np.exp(rng.uniform(np.log(1e20), np.log(3e38), n)).astype(f32)
    elif kind == "subnormal_costs":
        x = rng.standard_normal(n).astype(f32)
        c = (rng.integers(1, 1 << 23, n) * 2.0**-149).astype(f32)
        c[::3] = rng.uniform(0.5, 2.0, c[::3].size)
    elif kind == "nan_inf":
        x = rng.standard_normal(n).astype(f32)
        c = np.exp(rng.uniform(-3, 3, n)).astype(f32)
        x[rng.integers(0, n, 40)] = np.nan
        x[rng.integers(0, n, 40)] = np.inf
        x[rng.integers(0, n, 40)] = -np.inf
    else:
        raise ValueError(kind)
    return x, c


@pytest.mark.parametrize("n", [32768 + 31, 40000, 100003])
@pytest.mark.parametrize("kind", ["ulp_cluster", "ties", "tiny", "huge", "subnormal_costs", "nan_inf"])
def test_cwmp_f32_per_element_cost_kernel(engine, kind, n):
    # sampled sizes (the filter threshold is a sampled key, not 0), tails of every width
    x, c = _f32_cost_case(kind, n, seed=14)
    v = x.astype(np.float64)
    for k in (1, 37, n // 100, n // 3, n - 1):
        assert_sparse(gradsparse.sparsify(x, k, cost=c), x, sparsify_ref(v, k, cost=c))


@functools.lru_cache(maxsize=3)
def _threaded_cost_case(kind: str):
    """(x, c, k, expected selection): built once per kind and shared by every engine."""
    n = (1 << 22) + 37
    x, c = _f32_cost_case(kind, n, seed=15)
    k = n // 100
    return x, c, k, sparsify_ref(x.astype(np.float64), k, cost=c)


@pytest.mark.parametrize("kind", ["ulp_cluster", "ties", "nan_inf"])
def test_cwmp_f32_per_element_cost_kernel_threaded(engine, kind):
    # large enough for two filter threads; every SIMD level must give the same selection
    x, c, k, exp = _threaded_cost_case(kind)
    assert_sparse(gradsparse.sparsify(x, k, cost=c), x, exp)


@pytest.mark.parametrize("q,alpha", [(2.0, 1.0), (1.0, 1.0), (1.0, 0.0), (2.0, 0.0), (3.0, 0.5),
                                     (0.5, 2.0), (1.5, 1.0), (2.0, 0.75)])
@pytest.mark.parametrize("dtype", ["float32", "float64", "float16"])
def test_cwmp_q_alpha(simd, dtype, q, alpha):
    n = 3000
    v = gen("mixed", n, dtype, seed=11)
    x = make(v, dtype)
    for cdt in (np.float32, np.float64):
        c = costs_for(n, seed=11, dtype=cdt)
        for k in (1, 50, 1500, n):
            exp = sparsify_ref(v, k, cost=c, q=q, alpha=alpha)
            assert_sparse(gradsparse.sparsify(x, k, cost=c, q=q, alpha=alpha), x, exp)


@pytest.mark.parametrize("cost", [1.0, 0.5, 3, 1e-30, 1e30])
@pytest.mark.parametrize("q,alpha", [(2.0, 1.0), (1.0, 0.0), (3.0, 2.5)])
def test_scalar_cost_is_plain_magnitude(engine, cost, q, alpha):
    # equal costs everywhere: the ranking is |x| even where |x|**q / c**alpha rounds to ties
    v = np.concatenate([gen("mixed", 500, "float64", seed=12), [1e-200, 3e-200, 1e200, 2e200]])
    x = make(v, "float64")
    for k in (1, 3, 250, v.size):
        exp = top_count(magnitude_order(v), k)
        assert_sparse(gradsparse.sparsify(x, k, cost=cost, q=q, alpha=alpha), x, exp)


def test_score_underflow_ties_by_index_with_per_element_costs():
    # the CWMP score is computed in float64: 1e-200**2 underflows to 0, so these tie
    x = np.array([1e-200, 3e-200, 2e-200], dtype=np.float64)
    c = np.ones(3)
    assert_sparse(gradsparse.sparsify(x, 1, cost=c), x, [0])
    assert_sparse(gradsparse.sparsify(x, 1), x, [1])  # magnitude: no score, no tie


@requires_torch
def test_cost_array_shapes_and_types():
    v = gen("random", 60, "float32", seed=13).reshape(6, 10)
    x = make(v, "float32")
    c = costs_for(60, seed=13).reshape(6, 10)
    exp = sparsify_ref(v, 9, cost=c)
    assert_sparse(gradsparse.sparsify(x, 9, cost=c), x, exp)
    assert_sparse(gradsparse.sparsify(x, 9, cost=c.reshape(-1)), x, exp)  # same size, flat
    assert_sparse(gradsparse.sparsify(x, 9, cost=torch.from_numpy(c)), x, exp)
    assert_sparse(gradsparse.sparsify(x, 9, cost=c.T.copy().T), x, exp)  # Fortran order
    ci = np.arange(1, 61).reshape(6, 10)  # integer costs are accepted
    assert_sparse(gradsparse.sparsify(x, 9, cost=ci), x, sparsify_ref(v, 9, cost=ci))


# ----------------------------------------------------------------------------- energy budget

@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("dtype", DTYPES)
def test_energy_budget_sizes(engine, dtype, n):
    v = gen("random", n, dtype, seed=14)
    x = make(v, dtype)
    c32 = costs_for(n, seed=14, dtype=np.float32)
    c64 = costs_for(n, seed=14, dtype=np.float64)
    for budget in (0.5, 1.0, 2.5, n / 3, float(n), 1e300):
        assert_sparse(gradsparse.sparsify(x, budget=budget), x, sparsify_ref(v, budget=budget))
        assert_sparse(gradsparse.sparsify(x, budget=budget, cost=0.75), x,
                      sparsify_ref(v, budget=budget, cost=0.75))
        for c in (c32, c64):
            exp = sparsify_ref(v, budget=budget, cost=c)
            assert_sparse(gradsparse.sparsify(x, budget=budget, cost=c), x, exp)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_energy_budget_adversarial(simd, dtype, kind):
    for n in (9, 65, 1000):
        v = gen(kind, n, dtype, seed=15)
        x = make(v, dtype)
        for cost in (None, 2.0, costs_for(n, 15, np.float32), costs_for(n, 15, np.float64, "ties")):
            for budget in (1.0, n / 4, n * 0.9):
                exp = sparsify_ref(v, budget=budget, cost=cost)
                assert_sparse(gradsparse.sparsify(x, budget=budget, cost=cost), x, exp)


def test_energy_budget_exact_boundaries():
    x = np.array([4.0, 3.0, 2.0, 1.0])
    c = np.array([1.0, 2.0, 3.0, 4.0])
    # best first 0,1,2,3 with cumulative costs 1, 3, 6, 10
    assert_sparse(gradsparse.sparsify(x, budget=0.99, cost=c), x, [])
    assert_sparse(gradsparse.sparsify(x, budget=1.0, cost=c), x, [0])
    assert_sparse(gradsparse.sparsify(x, budget=5.99, cost=c), x, [0, 1])
    assert_sparse(gradsparse.sparsify(x, budget=6.0, cost=c), x, [0, 1, 2])
    assert_sparse(gradsparse.sparsify(x, budget=10.0, cost=c), x, [0, 1, 2, 3])
    # a prefix, not a knapsack: a cheap element after the first one that does not fit stays out
    # scores 16, 2.25, 4, 2 -> order 0, 2, 1, 3 with cumulative costs 1, 2, 6, 6.5: element 3
    # would still fit into 3.0 but comes after element 1, which does not
    c2 = np.array([1.0, 4.0, 1.0, 0.5])
    assert_sparse(gradsparse.sparsify(x, budget=3.0, cost=c2), x, [0, 2])
    # without costs the budget counts elements
    assert_sparse(gradsparse.sparsify(x, budget=2.5), x, [0, 1])


def test_energy_budget_uses_cumsum_in_rank_order():
    # 0.1 + 0.2 + ... in float64 is not the exact decimal sum; the kept prefix must be the
    # one np.cumsum (sequential, in rank order) gives
    n = 1000
    v = np.arange(n, 0, -1, dtype=np.float64)
    c = np.full(n, 0.1)
    for budget in (0.3, 0.6, 1.0, 10.0, 33.3, 50.0):
        assert_sparse(gradsparse.sparsify(v, budget=budget, cost=c), v,
                      energy_prefix(magnitude_order(v), c, budget, n))
        assert_sparse(gradsparse.sparsify(v, budget=budget, cost=0.1), v,
                      energy_prefix(magnitude_order(v), 0.1, budget, n))


def test_cwmp_rank_order_is_score_order():
    # |x|^2 / c: 16/4 = 4, 9/1 = 9, 4/4 = 1, 1/0.5 = 2
    x = np.array([4.0, -3.0, 2.0, 1.0], dtype=np.float32)
    c = np.array([4.0, 1.0, 4.0, 0.5], dtype=np.float32)
    assert_sparse(gradsparse.sparsify(x, 1, cost=c), x, [1])
    assert_sparse(gradsparse.sparsify(x, 2, cost=c), x, [0, 1])
    assert_sparse(gradsparse.sparsify(x, 3, cost=c), x, [0, 1, 3])
    np.testing.assert_array_equal(score_order(cwmp_scores(x, c)), [1, 0, 3, 2])
