"""Global selection over many tensors: sparsify_many and StreamingSelector, against the
reference selection over the concatenation (ties by position in it)."""
from __future__ import annotations

import numpy as np
import pytest

import gradsparse
from inputs import is_tensor, requires_torch, torch
from inputs import DTYPES, KINDS, SIZES, assert_sparse, costs_for, gen, make, round_to, run_isolated
from reference import magnitude_order, many_order, many_select, sparsify_many_ref, top_count


def check_many(res, xs, expected):
    assert isinstance(res, list) and len(res) == len(xs)
    for r, x, e in zip(res, xs, expected):
        assert_sparse(r, x, e)


def _mixed_inputs(sizes, dtypes, kind="random", seed=0):
    vs = [gen(kind, n, dt, seed=seed + i) if n else np.zeros(0) for i, (n, dt) in enumerate(zip(sizes, dtypes))]
    xs = [make(v, dt) for v, dt in zip(vs, dtypes)]
    return vs, xs


# ----------------------------------------------------------------------------- sparsify_many

LAYOUTS = {
    "one": [1000],
    "small": [1, 2, 3, 7, 8, 9],
    "widths": [15, 16, 17, 31, 32, 33, 63, 64, 65],
    "with_empty": [0, 100, 0, 4097, 1],
    "big": [4097, 100003, 17],
}


@pytest.mark.parametrize("layout", list(LAYOUTS))
@pytest.mark.parametrize("dtype", DTYPES)
def test_many_magnitude(engine, dtype, layout):
    sizes = LAYOUTS[layout]
    vs, xs = _mixed_inputs(sizes, [dtype] * len(sizes), "mixed", seed=31)
    total = sum(sizes)
    order = magnitude_order(np.concatenate(vs))
    ranked = many_order(vs)
    for k in sorted({1, 2, total // 3 or 1, total}):
        exp = many_select(ranked, k)
        check_many(gradsparse.sparsify_many(xs, k), xs, exp)
        # the same as one selection over the concatenation
        glob = top_count(order, k)
        starts = np.cumsum([0] + sizes)
        for j, e in enumerate(exp):
            np.testing.assert_array_equal(e + starts[j], glob[(glob >= starts[j]) & (glob < starts[j + 1])])


@pytest.mark.parametrize("layout", list(LAYOUTS))
@pytest.mark.parametrize("dtype", DTYPES)
def test_many_costs(engine, dtype, layout):
    sizes = LAYOUTS[layout]
    vs, xs = _mixed_inputs(sizes, [dtype] * len(sizes), "random", seed=32)
    total = sum(sizes)
    variants = [
        [2.0] * len(sizes),                                       # equal scalars: magnitude
        [None] * len(sizes),
        [0.5 + i for i in range(len(sizes))],                     # different scalars: CWMP
        [costs_for(n, seed=i, dtype=np.float32 if i % 2 else np.float64) for i, n in enumerate(sizes)],
        [None if i % 3 == 0 else (2.0 if i % 3 == 1 else costs_for(n, seed=i)) for i, n in enumerate(sizes)],
    ]
    for costs in variants:
        ranked = many_order(vs, costs)
        for k in sorted({1, total // 4 or 1, total}):
            check_many(gradsparse.sparsify_many(xs, k, costs=costs), xs, many_select(ranked, k))
        for budget in (1.0, total / 5, 10.0 * total):
            check_many(gradsparse.sparsify_many(xs, budget=budget, costs=costs), xs,
                       many_select(ranked, budget=budget))
        for ratio in (0.01, 0.5, 1.0):
            check_many(gradsparse.sparsify_many(xs, ratio=ratio, costs=costs), xs, many_select(ranked, ratio=ratio))


def test_many_ties_by_position_in_concatenation(simd):
    xs = [np.array([1.0, 2.0], np.float32), np.array([2.0, -2.0, 1.0], np.float32), np.array([-2.0], np.float32)]
    check_many(gradsparse.sparsify_many(xs, 1), xs, [[1], [], []])
    check_many(gradsparse.sparsify_many(xs, 3), xs, [[1], [0, 1], []])
    check_many(gradsparse.sparsify_many(xs, 4), xs, [[1], [0, 1], [0]])
    check_many(gradsparse.sparsify_many(xs, 5), xs, [[0, 1], [0, 1], [0]])


@pytest.mark.parametrize("kind", ["random", "ties", "mixed", "denormal", "huge", "tiny"])
def test_many_mixed_dtypes(engine, kind):
    dtypes = ["float32", "float64", "float16", "float32", "float64"]
    sizes = [300, 17, 1000, 64, 5]
    vs, xs = _mixed_inputs(sizes, dtypes, kind, seed=33)
    total = sum(sizes)
    for k in (1, 50, total // 2, total):
        check_many(gradsparse.sparsify_many(xs, k), xs, sparsify_many_ref(vs, k))
    costs = [costs_for(n, seed=n, dtype=np.float32) for n in sizes]
    for k in (1, 50, total // 2):
        check_many(gradsparse.sparsify_many(xs, k, costs=costs), xs, sparsify_many_ref(vs, k, costs=costs))


def test_many_16bit_with_32bit_dtypes(simd):
    # float16/bfloat16 tensors next to float32 ones (and no float64): this has corrupted the
    # heap, so it runs in its own interpreter (at the level of the `simd` fixture)
    run_isolated("test_global", "many_16bit_with_32bit_body", args=(simd,))


def many_16bit_with_32bit_body(level: str):
    with gradsparse.simd_level(level):
        for d16 in ("float16", "bfloat16") if torch is not None else ("float16",):
            a = make(np.array([1.0, 2.0, 3.0]), d16)
            b = make(np.array([4.0, 0.5]), "float32", torch_input=is_tensor(a))
            for k, exp in ((3, [[1, 2], [0]]), (4, [[0, 1, 2], [0]]), (5, [[0, 1, 2], [0, 1]])):
                check_many(gradsparse.sparsify_many([a, b], k), [a, b], exp)
                check_many(gradsparse.sparsify_many([b, a], k), [b, a], exp[::-1])
        if torch is not None:
            many_torch_and_bf16_body()


def many_torch_and_bf16_body():
    sizes = [100, 7, 33]
    dtypes = ["bfloat16", "float32", "bfloat16"]
    vs = [gen("mixed", n, dt, seed=34) for n, dt in zip(sizes, dtypes)]
    xs = [make(v, dt, torch_input=True) for v, dt in zip(vs, dtypes)]
    for k in (1, 20, 140):
        check_many(gradsparse.sparsify_many(xs, k), xs, sparsify_many_ref(vs, k))
    xs = [torch.from_numpy(v.astype(np.float32)).reshape(-1, 1) for v in vs]  # 2-D shapes
    res = gradsparse.sparsify_many(xs, 30)
    assert [r.shape for r in res] == [(100, 1), (7, 1), (33, 1)]


def test_many_equal_costs_rank_by_magnitude_even_with_mixed_dtypes():
    # Without costs the ranking is |x| whatever the dtypes: 1e-200**2 underflows in float64,
    # which must not turn 1e-200 and 3e-200 into a tie.
    xs = [np.array([1e-200, 3e-200]), np.array([0.0], np.float32)]
    check_many(gradsparse.sparsify_many(xs, 1), xs, [[1], []])
    xs = [np.array([1e200, 2e200]), np.array([1.0], np.float32)]
    check_many(gradsparse.sparsify_many(xs, 1), xs, [[1], []])
    # same dtype: also magnitude
    xs = [np.array([1e-200, 3e-200]), np.array([0.0])]
    check_many(gradsparse.sparsify_many(xs, 1), xs, [[1], []])


def test_many_matches_sparsify_for_one_tensor(engine):
    v = gen("mixed", 5000, "float32", seed=35)
    x = make(v, "float32")
    c = costs_for(5000, seed=35, dtype=np.float32)
    for kw in ({"k": 77}, {"ratio": 0.3}, {"budget": 99.5}):
        a = gradsparse.sparsify(x, **kw)
        [b] = gradsparse.sparsify_many([x], **kw)
        np.testing.assert_array_equal(a.indices, b.indices)
        a = gradsparse.sparsify(x, cost=c, **kw)
        [b] = gradsparse.sparsify_many([x], costs=[c], **kw)
        np.testing.assert_array_equal(a.indices, b.indices)


# ----------------------------------------------------------------------------- streaming

def stream(chunks, costs=None, **kw):
    sel = gradsparse.StreamingSelector(**kw)
    for i, x in enumerate(chunks):
        if costs is None:
            sel.push(x)
        else:
            sel.push(x, costs[i])
    return sel.finish()


def stream_ref(vs, costs=None, **kw):
    """The streaming result: exactly sparsify_many over the chunks (by |x| while every chunk
    has one cost, else by the CWMP score)."""
    return sparsify_many_ref(vs, costs=costs, **kw)


STREAMS = {
    "single": [1000],
    "widths": SIZES[:-1],
    "with_empty": [5, 0, 64, 0, 7],
    "long": [70000] + SIZES[:-1] + [33],  # the first chunk fills the buffer: later ones are filtered
    "many_blocks": [140001, 65536, 65537, 3],
}


@pytest.mark.parametrize("layout", list(STREAMS))
@pytest.mark.parametrize("dtype", DTYPES)
def test_streaming_count(simd, dtype, layout):
    sizes = STREAMS[layout]
    vs, xs = _mixed_inputs(sizes, [dtype] * len(sizes), "random", seed=41)
    total = sum(sizes)
    for k in sorted({1, 10, min(total, 1000), total}):
        check_many(stream(xs, k=k), xs, stream_ref(vs, k=k))
    for budget in (0.5, 10.5, 1000.0, float(total)):  # no costs: the budget counts elements
        check_many(stream(xs, budget=budget), xs, stream_ref(vs, budget=budget))


@pytest.mark.parametrize("layout", list(STREAMS))
@pytest.mark.parametrize("cost_dtype", [np.float32, np.float64, "scalar"])
@pytest.mark.parametrize("dtype", ["float32", "float64", "bfloat16"])
def test_streaming_costs(simd, dtype, cost_dtype, layout):
    sizes = STREAMS[layout]
    vs, xs = _mixed_inputs(sizes, [dtype] * len(sizes), "random", seed=42)
    if cost_dtype == "scalar":
        costs = [0.5 + (i % 4) for i in range(len(sizes))]
    else:
        costs = [costs_for(n, seed=i, dtype=cost_dtype) for i, n in enumerate(sizes)]
    total = sum(sizes)
    for k in sorted({1, 10, min(total, 1000)}):
        check_many(stream(xs, costs, k=k), xs, stream_ref(vs, costs, k=k))
    for budget in (3.0, 500.0):
        check_many(stream(xs, costs, budget=budget), xs, stream_ref(vs, costs, budget=budget))


@pytest.mark.parametrize("kind", KINDS)
def test_streaming_adversarial(simd, kind):
    sizes = [70000, 9, 1000, 64, 4097]
    for dtype in ("float32", "float16"):
        vs, xs = _mixed_inputs(sizes, [dtype] * len(sizes), kind, seed=43)
        for k in (1, 100, 5000):
            check_many(stream(xs, k=k), xs, stream_ref(vs, k=k))
        costs = [costs_for(n, seed=n, dtype=np.float32, kind="ties") for n in sizes]
        check_many(stream(xs, costs, k=100), xs, stream_ref(vs, costs, k=100))
        check_many(stream(xs, costs, budget=250.0), xs, stream_ref(vs, costs, budget=250.0))


@pytest.mark.parametrize("q,alpha", [(1.0, 1.0), (3.0, 0.5), (2.0, 0.0)])
def test_streaming_q_alpha(q, alpha):
    sizes = [70000, 100, 3000]
    vs, xs = _mixed_inputs(sizes, ["float32", "float64", "float16"], "mixed", seed=44)
    costs = [costs_for(n, seed=n) for n in sizes]
    for k in (1, 77, 2000):
        check_many(stream(xs, costs, k=k, q=q, alpha=alpha), xs, stream_ref(vs, costs, k=k, q=q, alpha=alpha))
        check_many(stream(xs, k=k, q=q, alpha=alpha), xs, stream_ref(vs, k=k, q=q, alpha=alpha))


def test_streaming_ranks_by_magnitude_without_costs():
    # as sparsify_many: without costs the order is |x| itself, so squares that would
    # underflow to 0 do not tie (tests/test_streaming_extremes.py has more)
    xs = [np.array([1e-200, 3e-200])]
    check_many(stream(xs, k=1), xs, [[1]])
    f32 = [np.array([1e-20, 3e-20], np.float32)]  # exact in float64: no tie
    check_many(stream(f32, k=1), f32, [[1]])


def test_streaming_equals_sparsify_many_for_float32(simd):
    sizes = [70000, 1, 4097, 33]
    vs, xs = _mixed_inputs(sizes, ["float32"] * 4, "ties", seed=45)
    costs = [costs_for(n, seed=n, dtype=np.float32) for n in sizes]
    for k in (1, 500, 20000):
        a = stream(xs, k=k)
        b = gradsparse.sparsify_many(xs, k)
        for r, s in zip(a, b):
            np.testing.assert_array_equal(r.indices, s.indices)
        a = stream(xs, costs, k=k)
        b = gradsparse.sparsify_many(xs, k, costs=costs)
        for r, s in zip(a, b):
            np.testing.assert_array_equal(r.indices, s.indices)


@requires_torch
def test_streaming_chunk_reuse_after_push(simd):
    rng = np.random.default_rng(46)
    buf = np.empty(5000, np.float32)
    tbuf = torch.empty(300, dtype=torch.bfloat16)
    sel = gradsparse.StreamingSelector(k=400)
    vs, xs = [], []
    for i in range(6):
        v = round_to(rng.standard_normal(5000) * (i + 1), "float32")
        buf[:] = v
        sel.push(buf)  # the same buffer every time
        vs.append(v)
        xs.append(buf.copy())
        tv = round_to(rng.standard_normal(300) * 3, "bfloat16")
        tbuf.copy_(torch.from_numpy(tv))
        sel.push(tbuf)
        vs.append(tv)
        xs.append(tbuf.clone())
    buf[:] = 1e30  # changing the buffer after the last push changes nothing
    tbuf.fill_(1e30)
    check_many(sel.finish(), xs, stream_ref(vs, k=400))


def test_streaming_cost_buffer_reuse_after_push():
    x = np.arange(1, 2001, dtype=np.float32)
    c = np.ones(2000, np.float32)
    sel = gradsparse.StreamingSelector(k=10)
    sel.push(x, c)
    c[:] = 1e30  # a cost array changed after push must not matter
    sel.push(x[:5].copy(), np.ones(5, np.float32))
    res = sel.finish()
    assert_sparse(res[0], x, np.arange(1990, 2000))
    assert res[1].nnz == 0


@pytest.mark.parametrize("ratio", [1e-6, 0.01, 0.3, 1.0])
def test_streaming_ratio_and_total(ratio):
    sizes = [1000, 33, 70000, 1]
    vs, xs = _mixed_inputs(sizes, ["float32"] * 4, "random", seed=47)
    total = sum(sizes)
    res = stream(xs, ratio=ratio, total=total)
    check_many(res, xs, stream_ref(vs, ratio=ratio))
    k = max(1, int(np.floor(ratio * total + 0.5)))
    assert sum(r.nnz for r in res) == k


@requires_torch
def test_streaming_values_and_types():
    sel = gradsparse.StreamingSelector(k=3)
    a = np.array([[1.0, -5.0], [2.0, 0.5]], np.float64)
    b = torch.tensor([4.0, -3.0], dtype=torch.float16)
    sel.push(a)
    sel.push(b)
    ra, rb = sel.finish()
    assert ra.shape == (2, 2) and rb.shape == (2,)
    assert isinstance(ra.values, np.ndarray) and ra.values.dtype == np.float64
    assert is_tensor(rb.values) and rb.values.dtype == torch.float16
    np.testing.assert_array_equal(ra.indices, [1])
    np.testing.assert_array_equal(rb.indices.numpy(), [0, 1])
    np.testing.assert_array_equal(ra.to_dense(), [[0, -5.0], [0, 0]])


def test_streaming_errors():
    sel = gradsparse.StreamingSelector(k=5)
    sel.push(np.ones(3, np.float32))
    with pytest.raises(ValueError, match="k"):
        sel.finish()  # 5 > 3 elements pushed
    sel = gradsparse.StreamingSelector(k=1)
    sel.push(np.ones(3, np.float32))
    sel.finish()
    with pytest.raises(ValueError, match="finish"):
        sel.finish()
    with pytest.raises(ValueError, match="push"):
        sel.push(np.ones(3, np.float32))
    with pytest.raises(ValueError, match="finish"):
        gradsparse.StreamingSelector(k=1).finish()  # nothing pushed
    with pytest.raises(ValueError, match="total"):
        gradsparse.StreamingSelector(ratio=0.1)
    with pytest.raises(ValueError, match="ratio"):
        gradsparse.StreamingSelector(ratio=1.5, total=10)
    with pytest.raises(ValueError, match="k, ratio, budget"):
        gradsparse.StreamingSelector(k=3, ratio=0.1, total=10)
    with pytest.raises(ValueError, match="k, ratio, budget"):
        gradsparse.StreamingSelector()
    with pytest.raises(ValueError, match="k"):
        gradsparse.StreamingSelector(k=0)
    with pytest.raises(TypeError, match="k"):
        gradsparse.StreamingSelector(k=2.0)
    with pytest.raises(ValueError, match="budget"):
        gradsparse.StreamingSelector(budget=0.0)
    sel = gradsparse.StreamingSelector(k=1)
    with pytest.raises(ValueError, match="cost"):
        sel.push(np.ones(3, np.float32), np.array([1.0, 0.0, 1.0]))
    with pytest.raises(ValueError, match="cost"):
        sel.push(np.ones(3, np.float32), -1.0)
    with pytest.raises(ValueError, match="cost"):
        sel.push(np.ones(3, np.float32), np.ones(4))
    with pytest.raises(TypeError, match="x"):
        sel.push(np.ones(3, np.int32))


def test_many_errors():
    x = np.ones(4, np.float32)
    with pytest.raises(TypeError, match="xs"):
        gradsparse.sparsify_many(x, 1)
    with pytest.raises(ValueError, match="xs"):
        gradsparse.sparsify_many([], 1)
    with pytest.raises(ValueError, match="xs"):
        gradsparse.sparsify_many([np.zeros(0, np.float32)], 1)
    with pytest.raises(ValueError, match="k"):
        gradsparse.sparsify_many([x, x], 9)
    with pytest.raises(ValueError, match="costs"):
        gradsparse.sparsify_many([x, x], 1, costs=[None])
    with pytest.raises(TypeError, match="costs"):
        gradsparse.sparsify_many([x, x], 1, costs=np.ones(8))
    with pytest.raises(ValueError, match=r"costs\[1\]"):
        gradsparse.sparsify_many([x, x], 1, costs=[1.0, 0.0])
    with pytest.raises(ValueError, match=r"costs\[0\]"):
        gradsparse.sparsify_many([x, x], 1, costs=[np.ones(3), None])
    with pytest.raises(TypeError, match=r"xs\[1\]"):
        gradsparse.sparsify_many([x, np.ones(4, np.int64)], 1)
    with pytest.raises(ValueError, match="cost"):
        gradsparse.sparsify_many([x, x], 1, costs=[None, np.array([1, 1, np.nan, 1.0])])
