"""ErrorFeedback.compress_into (the C++ feedback_select) and compress.scatter_mean against
plain numpy references: acc = e + g in float32, per region the selection of sparsify /
threshold, the residual update (bf16 rounding by bit operations), padding, overflow."""
from __future__ import annotations

import numpy as np
import pytest

import gradsparse
from gradsparse.compress import ErrorFeedback, scatter_mean
from gradsparse.errors import ArgumentError, ArgumentTypeError
from reference import sparsify_ref, threshold_ref

_BF16_MAX_BITS = 0x7F7F0000


def _bf16_bits(a: np.ndarray) -> np.ndarray:
    """float32 -> bfloat16 bits, nearest even; finite values saturate at the largest bf16."""
    u = np.ascontiguousarray(a, dtype=np.float32).view(np.uint32).copy()
    mag = u & 0x7FFFFFFF
    big = (mag > _BF16_MAX_BITS) & (mag < 0x7F800000)
    u[big] = (u[big] & 0x80000000) | _BF16_MAX_BITS
    out = ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype(np.uint16)
    nan = mag > 0x7F800000
    out[nan] = ((u[nan] >> 16) | 0x40).astype(np.uint16)
    return out


def _bf16_value(bits: np.ndarray) -> np.ndarray:
    return (bits.astype(np.uint32) << 16).view(np.float32)


def reference(e, g, regions, cap, *, k=None, tau=None, cost=None, q=2.0, alpha=1.0, bf16=False):
    """(values, indices, counts, new residual) of one compress_into call, in numpy."""
    acc = (e + g).astype(np.float32)
    n = acc.size
    m = -(-n // regions)
    vals = np.zeros(regions * cap, np.uint16 if bf16 else np.float32)
    idx = np.full(regions * cap, -1, np.int32)
    counts = []
    for r in range(regions):
        lo, hi = min(n, r * m), min(n, r * m + m)
        if hi == lo:
            counts.append(0)
            continue
        part = acc[lo:hi].astype(np.float64)
        if tau is not None:
            sel = threshold_ref(part, tau)
        else:
            c = cost[lo:hi] if isinstance(cost, np.ndarray) else cost
            sel = sparsify_ref(part, min(k, hi - lo), cost=c, q=q, alpha=alpha)
        counts.append(sel.size)
        if sel.size > cap:
            continue
        glob = sel + lo
        kept = acc[glob]
        idx[r * cap:r * cap + sel.size] = glob
        if bf16:
            b = _bf16_bits(kept)
            vals[r * cap:r * cap + sel.size] = b
            sent = _bf16_value(b)
            with np.errstate(invalid="ignore"):
                acc[glob] = np.where(np.isfinite(kept), kept - sent, 0)
        else:
            vals[r * cap:r * cap + sel.size] = kept
            acc[glob] = 0
    return vals, idx, counts, acc


def _run(ef, name, g, regions, cap, *, bf16=False, **kw):
    vals = np.full(regions * cap, 7, np.uint16 if bf16 else np.float32)  # stale contents: must be overwritten
    idx = np.full(regions * cap, 7, np.int32)
    counts = ef.compress_into(name, g, regions=regions, cap=cap, values=vals, indices=idx,
                              value_dtype="bfloat16" if bf16 else "float32", **kw)
    return vals, idx, counts


def _check_steps(g_steps, regions, cap, bf16=False, threads=None, **kw):
    ef = ErrorFeedback()
    e = np.zeros(g_steps[0].size, np.float32)
    for g in g_steps:
        vals, idx, counts = _run(ef, "b", g, regions, cap, bf16=bf16, threads=threads, **kw)
        rv, ri, rc, e = reference(e, g, regions, cap, bf16=bf16, **kw)
        assert counts == rc
        np.testing.assert_array_equal(idx, ri)
        np.testing.assert_array_equal(vals.view(np.uint16 if bf16 else np.uint32), rv.view(vals.dtype).view(
            np.uint16 if bf16 else np.uint32))
        np.testing.assert_array_equal(ef.residual("b").view(np.uint32), e.view(np.uint32))
    return ef


def _steps(n, steps=3, seed=0, scale=1.0):
    rng = np.random.default_rng(seed)
    return [(rng.standard_normal(n) * scale).astype(np.float32) for _ in range(steps)]


@pytest.mark.parametrize("bf16", [False, True], ids=["f32", "bf16"])
@pytest.mark.parametrize("n,regions,k", [(1000, 1, 10), (100003, 3, 1000), (70000, 1, 7)])
def test_count_matches_reference_every_engine(engine, n, regions, k, bf16):
    _check_steps(_steps(n), regions, k, bf16=bf16, k=k)


def test_ratio_is_per_region():
    g = _steps(1001, 1)[0]
    m = 334  # ceil(1001 / 3)
    k = max(1, int(np.floor(0.05 * m + 0.5)))
    got = _run(ErrorFeedback(), "b", g, 3, k, ratio=0.05)
    rv, ri, rc, _ = reference(np.zeros(g.size, np.float32), g, 3, k, k=k)
    assert got[2] == rc == [k, k, k]
    np.testing.assert_array_equal(got[1], ri)
    np.testing.assert_array_equal(got[0], rv)
    with pytest.raises(ArgumentError, match="cap"):
        _run(ErrorFeedback(), "b", g, 3, k - 1, ratio=0.05)


@pytest.mark.parametrize("n,regions", [(10, 4), (5, 8), (7, 7), (3, 1)])
def test_short_and_empty_regions(n, regions):
    # n not divisible by regions; regions past the end are empty (count 0, all padding)
    vals, idx, counts = _run(ErrorFeedback(), "b", _steps(n, 1)[0], regions, 2, k=2)
    m = -(-n // regions)
    for r in range(regions):
        length = max(0, min(n, r * m + m) - min(n, r * m))
        assert counts[r] == min(2, length)
        assert (idx[r * 2 + counts[r]:r * 2 + 2] == -1).all() and (vals[r * 2 + counts[r]:r * 2 + 2] == 0).all()
    _check_steps(_steps(n), regions, 3, k=2)


def test_ties_rank_by_lower_index(simd):
    rng = np.random.default_rng(3)
    g = rng.choice(np.array([-1.0, 1.0, 0.5, -0.5, 0.0], np.float32), 50000)
    _check_steps([g, g], 2, 4000, k=4000)
    vals, idx, _ = _run(ErrorFeedback(), "t", np.ones(100, np.float32), 2, 3, k=3)
    assert idx.tolist() == [0, 1, 2, 50, 51, 52]


@pytest.mark.parametrize("prepared", [False, True])
def test_cwmp_costs_match_reference(prepared):
    n = 40000
    rng = np.random.default_rng(5)
    cost = rng.uniform(0.5, 4.0, n).astype(np.float32)
    c = gradsparse.PreparedCost(cost) if prepared else cost
    ef = ErrorFeedback()
    e = np.zeros(n, np.float32)
    for g in _steps(n):
        vals, idx, counts = _run(ef, "c", g, 3, 500, k=500, cost=c)
        rv, ri, rc, e = reference(e, g, 3, 500, k=500, cost=cost.astype(np.float64))
        assert counts == rc
        np.testing.assert_array_equal(idx, ri)
        np.testing.assert_array_equal(vals, rv)
    _check_steps(_steps(5000), 2, 50, k=50, cost=2.0, q=1.5, alpha=0.5)


def test_threshold_and_overflow():
    n, regions, cap = 3000, 3, 40
    g = np.zeros(n, np.float32)
    g[::97] = 2.0       # 31 spread over the regions
    g[2000:2100] = 3.0  # region 2 gets 100 + its share: over cap
    ef = ErrorFeedback()
    vals, idx, counts = _run(ef, "h", g, regions, cap, tau=1.5)
    rv, ri, rc, e = reference(np.zeros(n, np.float32), g, regions, cap, tau=1.5)
    assert counts == rc and counts[2] > cap and counts[0] <= cap
    np.testing.assert_array_equal(idx, ri)
    np.testing.assert_array_equal(vals, rv)
    assert (idx[2 * cap:] == -1).all()
    res = ef.residual("h")
    np.testing.assert_array_equal(res, e)
    np.testing.assert_array_equal(res[2000:], g[2000:])  # the overflowing region only accumulated


def test_bf16_rounding_conserves_mass():
    rng = np.random.default_rng(9)
    g = (rng.standard_normal(20000) * np.exp(rng.uniform(-20, 20, 20000))).astype(np.float32)
    g[:4] = [3.4e38, -3.4e38, np.inf, np.nan]  # saturated, saturated, sent as is, sent as is
    ef = ErrorFeedback()
    vals, idx, counts = _run(ef, "r", g, 2, 300, bf16=True, k=300)
    _, _, _, e = reference(np.zeros(g.size, np.float32), g, 2, 300, k=300, bf16=True)
    res = ef.residual("r")
    np.testing.assert_array_equal(res.view(np.uint32), e.view(np.uint32))
    sel = idx[idx >= 0]
    assert {0, 1, 2, 3} <= set(sel.tolist())
    sent = _bf16_value(vals[idx >= 0])
    assert sent[0] == np.float32(3.3895313892515355e38) and sent[1] == -sent[0] and np.isinf(sent[2])
    finite = np.isfinite(g[sel])
    # sent + residual == accumulated, exactly (float64 holds both sums exactly)
    np.testing.assert_array_equal(sent[finite].astype(np.float64) + res[sel][finite], g[sel][finite])
    assert res[2] == 0 and res[3] == 0


def test_threads_and_simd_give_the_same_bits():
    n = (1 << 22) + 12345  # one region large enough for two engine threads
    g = _steps(n, 1, seed=11)[0]
    got = []
    for level in gradsparse.available_simd_levels():
        for threads in (1, 2):
            with gradsparse.simd_level(level), gradsparse.num_threads(2):
                ef = ErrorFeedback()
                vals, idx, counts = _run(ef, "x", g, 1, 4000, bf16=True, k=4000, threads=threads)
                got.append((vals.tobytes(), idx.tobytes(), ef.residual("x").tobytes()))
    assert all(x == got[0] for x in got)
    _, ri, _, _ = reference(np.zeros(n, np.float32), g, 1, 4000, k=4000)
    assert np.frombuffer(got[0][1], np.int32).tolist() == ri.tolist()


def test_energy_budget():
    g = _steps(5000, 1)[0]
    vals, idx, counts = _run(ErrorFeedback(), "en", g, 2, 2500, budget=30.0)
    assert counts == [30, 30]
    for r in range(2):
        lo = r * 2500
        expect = sparsify_ref(g[lo:lo + 2500].astype(np.float64), budget=30.0) + lo
        assert idx[r * 2500:r * 2500 + 30].tolist() == expect.tolist()


def test_bad_arguments_leave_the_residual_alone():
    ef = ErrorFeedback()
    g = _steps(100, 1)[0]
    _run(ef, "a", g, 2, 5, k=5)
    before = ef.residual("a")
    v, i = np.zeros(10, np.float32), np.zeros(10, np.int32)
    cases = [
        (ArgumentTypeError, "x", dict(x=g.astype(np.float64), k=5)),
        (ArgumentError, "k, ratio", dict(k=5, tau=1.0)),
        (ArgumentError, "k, ratio", dict()),
        (ArgumentError, "k:", dict(k=0)),
        (ArgumentError, "cap", dict(k=60, cap=5)),
        (ArgumentError, "regions", dict(k=5, regions=0)),
        (ArgumentError, "cap", dict(k=5, cap=4)),
        (ArgumentError, "values", dict(k=5, values=np.zeros(9, np.float32))),
        (ArgumentTypeError, "values", dict(k=5, values=np.zeros(10, np.float64))),
        (ArgumentTypeError, "values", dict(k=5, value_dtype="bfloat16")),
        (ArgumentError, "value_dtype", dict(k=5, value_dtype="float16")),
        (ArgumentTypeError, "indices", dict(k=5, indices=np.zeros(10, np.int64))),
        (ArgumentError, "values", dict(k=5, values=np.zeros(20, np.float32)[::2])),
        (ArgumentError, "threads", dict(k=5, threads=0)),
        (ArgumentError, "cost", dict(k=5, cost=np.full(100, -1.0, np.float32))),
        (ArgumentError, "cost", dict(tau=1.0, cost=2.0)),
        (ArgumentError, "tau", dict(tau=-1.0)),
        (ArgumentError, "x:", dict(x=g[:50], k=5)),
    ]
    for err, match, kw in cases:
        args = dict(x=g, regions=2, cap=5, values=v, indices=i)
        args.update(kw)
        x = args.pop("x")
        with pytest.raises(err, match=match):
            ef.compress_into("a", x, **args)
        np.testing.assert_array_equal(ef.residual("a"), before)


def test_torch_buffers():
    torch = pytest.importorskip("torch")
    g = torch.from_numpy(_steps(1000, 1)[0])
    ef = ErrorFeedback()
    vals = torch.zeros(20, dtype=torch.bfloat16)
    idx = torch.zeros(20, dtype=torch.int32)
    counts = ef.compress_into("t", g, k=10, regions=2, values=vals, indices=idx, value_dtype="bfloat16")
    rv, ri, rc, e = reference(np.zeros(1000, np.float32), g.numpy(), 2, 10, k=10, bf16=True)
    assert counts == rc
    assert idx.numpy().tolist() == ri.tolist()
    assert vals.view(torch.int16).numpy().view(np.uint16).tolist() == rv.tolist()
    np.testing.assert_array_equal(ef.residual("t").numpy(), e)
    out = torch.zeros(1000)
    scatter_mean(out, [(vals, idx)], 1)
    np.testing.assert_array_equal(out.numpy()[ri[ri >= 0]], _bf16_value(rv[ri >= 0]))


# ----------------------------------------------------------------------------- scatter_mean

def _scatter_ref(out, parts, world, clear):
    out = out.copy()
    if clear is not None:
        for i in clear:
            if i >= 0:
                out[i] = 0
    for v, ix in parts:
        v = _bf16_value(v) if v.dtype == np.uint16 else v
        for a, i in zip(v, ix):
            if i >= 0:
                out[i] = np.float32(out[i] + np.float32(a / np.float32(world)))
    return out


@pytest.mark.parametrize("bf16", [False, True])
def test_scatter_mean_matches_loop(bf16):
    rng = np.random.default_rng(2)
    n, parts, w = 500, [], 3
    for _ in range(w):
        ix = rng.choice(n, 40).astype(np.int32)  # repeats across and within parts
        ix[-5:] = -1
        v = rng.standard_normal(40).astype(np.float32)
        parts.append((_bf16_bits(v) if bf16 else v, ix))
    out = rng.standard_normal(n).astype(np.float32)
    clear = np.array([3, -1, 7, 499], np.int32)
    expect = _scatter_ref(out, parts, w, clear)
    got = out.copy()
    assert scatter_mean(got, parts, w, clear=clear) is got
    np.testing.assert_array_equal(got, expect)
    assert got[3] == 0 or 3 in np.concatenate([p[1] for p in parts])


def test_scatter_mean_errors_leave_out_untouched():
    out = np.arange(10, dtype=np.float32)
    good = (np.ones(3, np.float32), np.array([0, 1, -1], np.int32))
    for parts, clear, match in [
        ([good, (np.ones(3, np.float32), np.array([0, 10, 1], np.int32))], None, "payload"),
        ([good, (np.ones(3, np.float32), np.array([0, -2, 1], np.int32))], None, "payload"),
        ([good], np.array([0, 11], np.int32), "clear"),
        ([good, (np.ones(2, np.float32), np.array([0, 1], np.int32))], None, "parts"),
    ]:
        with pytest.raises(ArgumentError, match=match):
            scatter_mean(out, parts, 2, clear=clear)
        np.testing.assert_array_equal(out, np.arange(10, dtype=np.float32))
    with pytest.raises(ArgumentTypeError, match="out"):
        scatter_mean(out.astype(np.float64), [good], 2)
    with pytest.raises(ArgumentTypeError, match="indices"):
        scatter_mean(out, [(good[0], good[1].astype(np.int64))], 2)
    with pytest.raises(ArgumentError, match="world"):
        scatter_mean(out, [good], 0)


def _sampled_mask(total: int) -> np.ndarray:
    """The positions the engine samples to bracket the k-th key (sampling.cpp)."""
    m = min(65536, max(4096, total // 64))
    blocks = max(1, m // 16)
    mask = np.zeros(total, bool)
    for b in range(blocks):
        centre = (2 * b + 1) * total // (2 * blocks)
        start = min(max(centre - 8, 0), total - 16)
        mask[start:start + 16] = True
    return mask


@pytest.mark.parametrize("sample_large", [False, True], ids=["sample-low", "sample-high"])
def test_sample_misses_add_exactly_once(simd, sample_large):
    # The accumulate is fused into the first filter pass: when the sample misses (too many
    # candidates, or too few) the selection retries or falls back to the radix path, and
    # every element must still be accumulated exactly once.
    n, k = 300000, 3000
    rng = np.random.default_rng(4)
    mask = _sampled_mask(n)
    big = rng.uniform(10, 20, n).astype(np.float32)
    small = rng.uniform(0, 1, n).astype(np.float32)
    g = np.where(mask == sample_large, big, small).astype(np.float32)
    _check_steps([g, g[::-1].copy(), g], 1, k, k=k)
