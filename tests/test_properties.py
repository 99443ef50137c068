"""Property tests (hypothesis, profile "ci" from conftest): invariants that hold for any
input, checked on arrays with NaN, infinities, signed zeros and subnormals."""
from __future__ import annotations

import numpy as np
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import gradsparse
from inputs import is_tensor, requires_torch, torch
from inputs import bits, to_f64
from reference import cwmp_scores, magnitude_order, signed_order, sparsify_many_ref

WIDTH = {np.float16: 16, np.float32: 32, np.float64: 64}


@st.composite
def arrays(draw, dtypes=(np.float32, np.float64, np.float16), max_side=70, allow_bf16=True):
    """A 1-D or 2-D float array (numpy, or a torch bfloat16 tensor) with special values."""
    choices = list(dtypes) + (["bfloat16"] if allow_bf16 and torch is not None else [])
    dtype = draw(st.sampled_from(choices))
    shape = draw(hnp.array_shapes(min_dims=1, max_dims=2, min_side=1, max_side=max_side))
    np_dtype = np.float32 if dtype == "bfloat16" else dtype
    pool = st.sampled_from([0.0, -0.0, 1.0, -1.0, 2.0, np.inf, -np.inf, np.nan])
    elements = st.one_of(pool, st.floats(width=WIDTH[np_dtype], allow_subnormal=True))
    a = draw(hnp.arrays(np_dtype, shape, elements=elements))
    if dtype == "bfloat16":
        return torch.from_numpy(a).to(torch.bfloat16)
    return a


@st.composite
def costs_like(draw, n):
    cdt = draw(st.sampled_from([np.float32, np.float64]))
    lo, hi = (float(np.float32(1e-30)), float(np.float32(1e30))) if cdt == np.float32 else (1e-200, 1e200)
    return draw(hnp.arrays(cdt, n, elements=st.floats(lo, hi, width=WIDTH[cdt]) | st.sampled_from([1.0, 2.0])))


def _idx(a):
    return a.numpy() if is_tensor(a) else np.asarray(a)


def rank_keys(scores):
    """A float64 key per element in which larger ranks first: NaN above everything."""
    s = np.abs(np.asarray(scores, dtype=np.float64))
    return np.where(np.isnan(s), np.inf, s), np.isnan(s)


def assert_kept_dominate(scores, kept_idx):
    """Every kept score ranks >= every dropped one; equal keys: kept has the lower index."""
    n = len(scores)
    kept = np.zeros(n, bool)
    kept[kept_idx] = True
    if kept.all() or not kept.any():
        return
    key, nan = rank_keys(scores)
    # compare (nan, key) lexicographically
    worst_kept = min(zip(nan[kept], key[kept], -np.flatnonzero(kept)))
    best_dropped = max(zip(nan[~kept], key[~kept], -np.flatnonzero(~kept)))
    assert worst_kept > best_dropped, (worst_kept, best_dropped)


def check_sparse_basics(res, x, n, k=None):
    idx = _idx(res.indices)
    assert idx.dtype == np.int64
    assert np.all(np.diff(idx) > 0), "indices unique and ascending"
    if idx.size:
        assert 0 <= idx[0] and idx[-1] < n
    if k is not None:
        assert idx.size == k
    flat = x.reshape(-1)
    want = flat[torch.from_numpy(idx)] if is_tensor(x) else flat[idx]
    np.testing.assert_array_equal(bits(res.values), bits(want))
    return idx


# ----------------------------------------------------------------------------- selection

@given(arrays(), st.data())
def test_magnitude_topk_invariants(x, data):
    n = int(np.prod(x.shape))
    k = data.draw(st.integers(1, n), label="k")
    res = gradsparse.sparsify(x, k)
    idx = check_sparse_basics(res, x, n, k)
    assert_kept_dominate(to_f64(x).reshape(-1), idx)
    # the kept set is the reference's
    np.testing.assert_array_equal(idx, np.sort(magnitude_order(to_f64(x))[:k]))


@given(arrays(allow_bf16=True), st.data())
def test_cwmp_invariants(x, data):
    n = int(np.prod(x.shape))
    c = data.draw(costs_like(n), label="cost")
    q = data.draw(st.sampled_from([2.0, 1.0, 0.5, 3.0]), label="q")
    alpha = data.draw(st.sampled_from([1.0, 0.0, 2.0, 0.5]), label="alpha")
    k = data.draw(st.integers(1, n), label="k")
    res = gradsparse.sparsify(x, k, cost=c, q=q, alpha=alpha)
    idx = check_sparse_basics(res, x, n, k)
    assert_kept_dominate(cwmp_scores(to_f64(x), c, q, alpha), idx)


@given(arrays(), st.data())
def test_energy_budget_invariants(x, data):
    n = int(np.prod(x.shape))
    use_cost = data.draw(st.booleans(), label="use_cost")
    c = data.draw(costs_like(n), label="cost") if use_cost else None
    budget = data.draw(st.floats(1e-3, 2.0 * n, allow_nan=False), label="budget")
    res = gradsparse.sparsify(x, budget=budget, cost=c)
    idx = check_sparse_basics(res, x, n)
    scores = cwmp_scores(to_f64(x), c) if use_cost else to_f64(x).reshape(-1)
    assert_kept_dominate(scores, idx)
    costs = np.ones(n) if c is None else c.astype(np.float64)
    # the kept elements are a best-first prefix within the budget, and the next one breaks it
    order = magnitude_order(scores)
    m = idx.size
    np.testing.assert_array_equal(np.sort(order[:m]), idx)
    cum = np.cumsum(costs[order])
    if m:
        assert cum[m - 1] <= budget
    if m < n:
        assert cum[m] > budget


@given(arrays(), st.data())
def test_topk_invariants(x, data):
    if x.ndim == 2:
        x = x.reshape(-1) if data.draw(st.booleans(), label="flatten") else x
    length = x.shape[-1]
    k = data.draw(st.integers(1, length), label="k")
    largest = data.draw(st.booleans(), label="largest")
    values, indices = gradsparse.topk(x, k, largest=largest)
    v = to_f64(x)
    rows = v.reshape(-1, length)
    got = _idx(indices).reshape(-1, k)
    for r in range(rows.shape[0]):
        order = signed_order(rows[r], largest)
        np.testing.assert_array_equal(got[r], order[:k])
    unsorted = gradsparse.topk(x, k, largest=largest, sorted=False)
    np.testing.assert_array_equal(_idx(unsorted.indices).reshape(-1, k), np.sort(got, axis=1))


@given(arrays(), st.floats(0.0, 1e10) | st.sampled_from([0.0, np.inf, 1.0]))
def test_threshold_invariants(x, tau):
    res = gradsparse.threshold(x, tau)
    n = int(np.prod(x.shape))
    idx = check_sparse_basics(res, x, n)
    v = to_f64(x).reshape(-1)
    np.testing.assert_array_equal(idx, np.flatnonzero(np.isnan(v) | (np.abs(v) >= tau)))


@given(arrays())
def test_to_dense_round_trip(x):
    n = int(np.prod(x.shape))
    res = gradsparse.sparsify(x, n)
    dense = res.to_dense()
    assert tuple(dense.shape) == tuple(x.shape) and dense.dtype == x.dtype
    np.testing.assert_array_equal(bits(dense), bits(x))  # bit-exact, NaN and -0.0 included
    k = max(1, n // 3)
    res = gradsparse.sparsify(x, k)
    dense = res.to_dense()
    idx = _idx(res.indices)
    dflat = bits(dense).reshape(-1)
    np.testing.assert_array_equal(dflat[idx], bits(x).reshape(-1)[idx])
    rest = np.ones(n, bool)
    rest[idx] = False
    assert np.all(dflat[rest] == 0)  # +0.0 elsewhere
    assert res.nnz == k and res.numel == n and abs(res.density - k / n) < 1e-12


@given(st.lists(arrays(dtypes=(np.float32,), max_side=40, allow_bf16=False), min_size=1, max_size=5), st.data())
def test_many_equals_one_selection_over_the_concatenation(xs, data):
    flat = np.concatenate([x.reshape(-1) for x in xs])
    k = data.draw(st.integers(1, flat.size), label="k")
    res = gradsparse.sparsify_many(xs, k)
    glob = gradsparse.sparsify(flat, k).indices
    starts = np.cumsum([0] + [x.size for x in xs])
    for j, r in enumerate(res):
        np.testing.assert_array_equal(r.indices + starts[j], glob[(glob >= starts[j]) & (glob < starts[j + 1])])
    # and the streaming selector agrees (float32: |x|^2 ranks like |x|)
    sel = gradsparse.StreamingSelector(k=k)
    for x in xs:
        sel.push(x)
    for a, b in zip(sel.finish(), res):
        np.testing.assert_array_equal(a.indices, b.indices)
        np.testing.assert_array_equal(bits(a.values), bits(b.values))


@given(st.lists(arrays(max_side=30), min_size=1, max_size=4), st.data())
def test_streaming_matches_reference(xs, data):
    total = sum(int(np.prod(x.shape)) for x in xs)
    costs = [data.draw(st.none() | st.floats(0.1, 10.0) | costs_like(int(np.prod(x.shape))), label="cost")
             for x in xs]
    if data.draw(st.booleans(), label="energy"):
        kw = {"budget": data.draw(st.floats(0.5, 2.0 * total), label="budget")}
    else:
        kw = {"k": data.draw(st.integers(1, total), label="k")}
    sel = gradsparse.StreamingSelector(**kw)
    for x, c in zip(xs, costs):
        sel.push(x, c)
    # streaming ranks as sparsify_many does: by |x| while every chunk has one cost, else by score
    exp = sparsify_many_ref([to_f64(x) for x in xs], costs=costs, **kw)
    for r, x, e in zip(sel.finish(), xs, exp):
        check_sparse_basics(r, x, int(np.prod(x.shape)))
        np.testing.assert_array_equal(_idx(r.indices), e)


@given(arrays(dtypes=(np.float32, np.float64), allow_bf16=False), st.data())
def test_simd_and_threads_invariance(x, data):
    n = x.size
    k = data.draw(st.integers(1, n), label="k")
    c = data.draw(costs_like(n), label="cost")
    outs = {}
    for level in gradsparse.available_simd_levels():
        for nt in (1, 2):
            with gradsparse.simd_level(level), gradsparse.num_threads(nt):
                outs[level, nt] = (gradsparse.sparsify(x, k).indices, gradsparse.sparsify(x, k, cost=c).indices,
                                   gradsparse.topk(x.reshape(-1), k).indices,
                                   gradsparse.sparsify(x, budget=k / 2 + 0.25, cost=c).indices)
    first = next(iter(outs))
    for engine, o in outs.items():
        for what, a, b in zip(("sparsify", "sparsify cost", "topk", "sparsify budget"), o, outs[first]):
            np.testing.assert_array_equal(a, b, err_msg=f"{what}: simd, threads {engine} differ from {first}")


# ----------------------------------------------------------------------------- error feedback

@given(st.lists(hnp.arrays(np.float32, 50, elements=st.floats(-1e3, 1e3, width=32)), min_size=1, max_size=5),
       st.integers(1, 50))
def test_feedback_residual_plus_sent_is_input_plus_old_residual_f32(steps, k):
    ef = gradsparse.ErrorFeedback()
    e = np.zeros(50, np.float32)
    for x in steps:
        sent = ef.compress("w", x, k=k)
        new = ef.residual("w")
        acc = e + x  # float32
        np.testing.assert_array_equal(bits(new + sent.to_dense()), bits(acc))
        assert np.all(new[sent.indices] == 0)
        e = new


@requires_torch
@given(st.lists(hnp.arrays(np.float64, 40, elements=st.floats(-1e6, 1e6)), min_size=1, max_size=4),
       st.sampled_from(["float64", "float16", "bfloat16"]), st.integers(1, 40))
def test_feedback_residual_plus_sent_is_input_plus_old_residual(steps, dtype, k):
    ef = gradsparse.ErrorFeedback()
    for raw in steps:
        if dtype == "float64":
            x = raw
            xf = raw
        elif dtype == "float16":
            x = np.clip(raw, -1000, 1000).astype(np.float16)  # the float32 residual stays in float16 range
            xf = x.astype(np.float32)
        else:
            x = torch.from_numpy(raw.astype(np.float32)).to(torch.bfloat16)
            xf = x.float().numpy()
        old = ef.residual("w")
        old = np.zeros(40, np.float64 if dtype == "float64" else np.float32) if old is None else to_f64(old).astype(
            np.float64 if dtype == "float64" else np.float32)
        sent = ef.compress("w", x, k=k)
        new = to_f64(ef.residual("w"))
        acc = (old + xf)  # in the residual's precision
        np.testing.assert_array_equal(new + to_f64(sent.to_dense()), acc.astype(np.float64))
