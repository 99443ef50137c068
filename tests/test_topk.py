"""topk: torch.topk semantics on 1-D and 2-D inputs, against the numpy reference and
against torch.topk itself, at every SIMD level, thread count, dtype and size (N-D inputs,
integer dtypes, k = 0 and torch's own test cases: test_topk_torch_port.py)."""
from __future__ import annotations

import numpy as np
import pytest

import gradsparse
from inputs import is_tensor, requires_torch, torch
from inputs import DTYPES, KINDS, SIZES, bits, gen, make, to_f64
from reference import signed_order, topk_ref, topk_rows_ref


def _ks(n):
    return sorted({1, 2, max(1, n // 2), n} & set(range(1, n + 1)))


def _idx(t):
    return t.numpy() if is_tensor(t) else t


def check_topk(x, v, k, largest=True, sorted=True, dim=-1, orders=None):
    """gradsparse.topk(x) equals the reference on float64 values `v` (x's values).
    orders: optional {largest: signed_order(v, largest)} precomputed for a 1-D `v`."""
    res = gradsparse.topk(x, k, dim=dim, largest=largest, sorted=sorted)
    is_torch = is_tensor(x)
    assert isinstance(res, torch.return_types.topk if is_torch else gradsparse.TopK)
    values, indices = res
    assert isinstance(values, torch.Tensor if is_torch else np.ndarray)
    assert isinstance(indices, torch.Tensor if is_torch else np.ndarray)
    assert values.dtype == x.dtype
    assert indices.dtype == (torch.int64 if is_torch else np.int64)
    if v.ndim == 1:
        if orders is None:
            exp = topk_ref(v, k, largest, sorted)
        else:
            exp = orders[largest][:k] if sorted else np.sort(orders[largest][:k])
        np.testing.assert_array_equal(_idx(indices), exp)
        np.testing.assert_array_equal(bits(values), bits(x[torch.from_numpy(exp)] if is_torch else x[exp]))
        return res
    d = dim % 2
    vv = v if d == 1 else v.T
    xx = x if d == 1 else x.T
    exp = topk_rows_ref(vv, k, largest, sorted)  # (rows, k)
    assert np.array_equal(exp[0], topk_ref(vv[0], k, largest, sorted))
    got_i = _idx(indices) if d == 1 else _idx(indices).T
    got_v = values if d == 1 else values.T
    np.testing.assert_array_equal(got_i, exp)
    rows = np.arange(exp.shape[0])[:, None]
    want = xx[torch.from_numpy(rows), torch.from_numpy(exp)] if is_torch else xx[rows, exp]
    np.testing.assert_array_equal(bits(got_v), bits(want))
    return res


# ----------------------------------------------------------------------------- 1-D sweep

@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("dtype", DTYPES)
def test_topk_sizes(engine, dtype, n):
    v = gen("random", n, dtype, seed=21)
    x = make(v, dtype)
    orders = {True: signed_order(v, True), False: signed_order(v, False)}
    for k in _ks(n):
        for largest in (True, False):
            for sorted_ in (True, False):
                check_topk(x, v, k, largest, sorted_, orders=orders)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_topk_adversarial(simd, dtype, kind):
    for n in (1, 8, 17, 63, 1000, 4097):
        v = gen(kind, n, dtype, seed=22)
        x = make(v, dtype)
        orders = {True: signed_order(v, True), False: signed_order(v, False)}
        for k in _ks(n):
            for largest in (True, False):
                for sorted_ in (True, False):
                    check_topk(x, v, k, largest, sorted_, orders=orders)


def test_topk_special_values_order():
    x = np.array([1.0, np.nan, -np.inf, -0.0, 0.0, np.inf, -1.0, np.nan], dtype=np.float32)
    vals, idx = gradsparse.topk(x, 8)
    np.testing.assert_array_equal(idx, [1, 7, 5, 0, 3, 4, 6, 2])  # NaN > +inf; -0 == +0
    vals, idx = gradsparse.topk(x, 8, largest=False)
    np.testing.assert_array_equal(idx, [2, 6, 3, 4, 0, 5, 1, 7])  # NaN last
    vals, idx = gradsparse.topk(x, 3, largest=False, sorted=False)
    np.testing.assert_array_equal(idx, [2, 3, 6])
    np.testing.assert_array_equal(bits(vals), bits(x[[2, 3, 6]]))


def test_topk_signed_zero_values_are_the_inputs():
    x = np.array([-0.0, 0.0, -0.0, -1.0], dtype=np.float64)
    vals, idx = gradsparse.topk(x, 2)
    np.testing.assert_array_equal(idx, [0, 1])
    np.testing.assert_array_equal(bits(vals), bits(x[[0, 1]]))  # the sign of zero is kept


# ----------------------------------------------------------------------------- 2-D

@pytest.mark.parametrize("shape", [(1, 1), (3, 1), (1, 33), (5, 17), (17, 5), (64, 65), (2, 4097)])
@pytest.mark.parametrize("dtype", DTYPES)
def test_topk_2d(simd, dtype, shape):
    v = gen("mixed", int(np.prod(shape)), dtype, seed=23).reshape(shape)
    x = make(v, dtype)
    for dim in (-1, 1, 0, -2):
        length = shape[dim]
        for k in sorted({1, max(1, length // 2), length}):
            for largest in (True, False):
                check_topk(x, v, k, largest, True, dim)
                check_topk(x, v, k, largest, False, dim)


def test_topk_2d_many_rows_threads(engine):
    # rows * cols large enough that rows are spread over threads
    v = gen("ties", 300 * 400, "float32", seed=24).reshape(300, 400)
    x = make(v, "float32")
    check_topk(x, v, 37, True, True)
    check_topk(x, v, 37, False, False)
    check_topk(x, v, 20, True, True, dim=0)


@requires_torch
def test_topk_non_contiguous():
    v = gen("random", 30 * 40, "float64", seed=25).reshape(30, 40)
    x = make(v, "float64")
    check_topk(np.ascontiguousarray(x.T), v.T, 5)
    vals, idx = gradsparse.topk(x.T, 5)  # non-contiguous view: copied
    np.testing.assert_array_equal(idx, np.stack([topk_ref(r, 5) for r in v.T]))
    t = torch.from_numpy(x)[:, ::2]
    vals, idx = gradsparse.topk(t, 4, dim=0)
    ref = np.stack([topk_ref(r, 4) for r in v[:, ::2].T]).T
    np.testing.assert_array_equal(idx.numpy(), ref)


# ----------------------------------------------------------------------------- vs torch.topk

@requires_torch
@pytest.mark.parametrize("n", [1, 7, 16, 33, 65, 1000, 4097, 40000])
@pytest.mark.parametrize("dtype", DTYPES)
def test_agrees_with_torch_topk(dtype, n):
    rng = np.random.default_rng(n)
    tdt = {"float32": torch.float32, "float64": torch.float64, "float16": torch.float16,
           "bfloat16": torch.bfloat16}[dtype]
    for kind in ("random", "ties", "mixed", "nan", "inf", "signed_zeros"):
        v = gen(kind, n, dtype, seed=26)
        t = torch.from_numpy(v).to(tdt)
        for k in _ks(n):
            for largest in (True, False):
                want_v, want_i = torch.topk(t, k, largest=largest, sorted=True)
                got_v, got_i = gradsparse.topk(t, k, largest=largest, sorted=True)
                np.testing.assert_array_equal(to_f64(got_v), to_f64(want_v))  # values exactly
                if len(np.unique(v[~np.isnan(v)] + 0.0)) == np.count_nonzero(~np.isnan(v)) and \
                        np.count_nonzero(np.isnan(v)) <= 1:
                    np.testing.assert_array_equal(got_i.numpy(), want_i.numpy())  # no ties
                else:  # ties: the same multiset of values, each index pointing to its value
                    np.testing.assert_array_equal(to_f64(t[got_i]), to_f64(got_v))
    # distinct values: identical index sets, sorted and unsorted
    v = np.unique(rng.standard_normal(n))
    v = v[np.unique(torch.from_numpy(v).to(tdt).double().numpy(), return_index=True)[1]]
    rng.shuffle(v)
    t = torch.from_numpy(v).to(tdt)
    for k in _ks(v.size):
        for largest in (True, False):
            want = torch.topk(t, k, largest=largest, sorted=False).indices.numpy()
            got = gradsparse.topk(t, k, largest=largest, sorted=False).indices.numpy()
            np.testing.assert_array_equal(got, np.sort(want))


@requires_torch
@pytest.mark.parametrize("dtype", DTYPES)
def test_agrees_with_torch_topk_2d(dtype):
    tdt = {"float32": torch.float32, "float64": torch.float64, "float16": torch.float16,
           "bfloat16": torch.bfloat16}[dtype]
    v = gen("mixed", 40 * 70, dtype, seed=27).reshape(40, 70)
    t = torch.from_numpy(v).to(tdt)
    for dim in (0, 1):
        for largest in (True, False):
            want = torch.topk(t, 9, dim=dim, largest=largest)
            got = gradsparse.topk(t, 9, dim=dim, largest=largest)
            np.testing.assert_array_equal(to_f64(got.values), to_f64(want.values))
            assert got.indices.shape == want.indices.shape


# ----------------------------------------------------------------------------- out=

@requires_torch
@pytest.mark.parametrize("dtype", DTYPES)
def test_out_buffers(dtype):
    v = gen("random", 6 * 50, dtype, seed=28).reshape(6, 50)
    x = make(v, dtype)
    want = gradsparse.topk(x, 7)
    if is_tensor(x):
        ov, oi = torch.empty((6, 7), dtype=x.dtype), torch.empty((6, 7), dtype=torch.int64)
    else:
        ov, oi = np.empty((6, 7), dtype=x.dtype), np.empty((6, 7), dtype=np.int64)
    got = gradsparse.topk(x, 7, out=(ov, oi))
    assert got.values is ov and got.indices is oi
    np.testing.assert_array_equal(bits(ov), bits(want.values))
    np.testing.assert_array_equal(_idx(oi), _idx(want.indices))
    # 1-D
    x1 = x[2]
    ov1 = ov[0].clone() if is_tensor(ov) else ov[0].copy()
    oi1 = oi[0].clone() if is_tensor(oi) else oi[0].copy()
    gradsparse.topk(x1, 7, out=(ov1, oi1))
    np.testing.assert_array_equal(_idx(oi1), _idx(want.indices)[2])
    np.testing.assert_array_equal(bits(ov1), bits(want.values[2]))


def test_out_buffer_errors():
    # a wrong out= dtype is a RuntimeError in torch: an ArgumentError (ValueError too) here
    x = np.arange(20, dtype=np.float32).reshape(4, 5)
    with pytest.raises(ValueError, match="out"):  # numpy buffers are not resized
        gradsparse.topk(x, 2, out=(np.empty((4, 3), np.float32), np.empty((4, 3), np.int64)))
    with pytest.raises(RuntimeError, match="out"):
        gradsparse.topk(x, 2, out=(np.empty((4, 2), np.float64), np.empty((4, 2), np.int64)))
    with pytest.raises(ValueError, match="out"):
        gradsparse.topk(x, 2, out=(np.empty((4, 2), np.float32), np.empty((4, 2), np.int32)))
    # dim=0 writes through: the out buffers have the result's shape (2, 5)
    ov, oi = np.empty((2, 5), np.float32), np.empty((2, 5), np.int64)
    gradsparse.topk(x, 2, dim=0, out=(ov, oi))
    np.testing.assert_array_equal(oi, [[3] * 5, [2] * 5])
    np.testing.assert_array_equal(ov, x[[3, 2]])


# ----------------------------------------------------------------------------- key="abs"

def _ref_order(values, largest, magnitude):
    """Python reference of the tie rule on exact Python numbers: best first, equal keys by
    lower index, NaN above +inf (largest) / last (smallest)."""
    def rank(i):
        v = values[i]
        if isinstance(v, float) and v != v:
            return (0 if largest else 1, 0, i)
        v = abs(v) if magnitude else v
        return (1 if largest else 0, -v if largest else v, i)
    return sorted(range(len(values)), key=rank)


@pytest.mark.parametrize("dtype", ["uint8", "int8", "int16", "int32", "int64", "uint16", "uint32", "uint64"])
def test_integer_numpy_dtypes(dtype):
    info = np.iinfo(dtype)
    rng = np.random.default_rng(31)
    x = rng.integers(info.min, info.max, size=(3, 40), dtype=dtype, endpoint=True)
    x[:, :6] = np.array([info.min, info.max, 0, 1, info.min, info.max], dtype=dtype)
    x[1, 10:20] = x[1, 0]  # ties
    for key in (None, "abs"):
        for largest in (True, False):
            for sorted_ in (True, False):
                for k in (0, 1, 7, 40):
                    vals, idx = gradsparse.topk(x, k, largest=largest, sorted=sorted_, key=key)
                    assert vals.dtype == x.dtype and idx.dtype == np.int64
                    for r in range(3):
                        want = _ref_order([int(v) for v in x[r]], largest, key == "abs")[:k]
                        np.testing.assert_array_equal(idx[r], want if sorted_ else np.sort(want))
                        np.testing.assert_array_equal(vals[r], x[r][idx[r]])


def test_integer_magnitude_is_mathematical():
    x = np.array([5, -128, 127, -5, 0, -127], np.int8)
    np.testing.assert_array_equal(gradsparse.topk(x, 6, key="abs").indices, [1, 2, 5, 0, 3, 4])
    np.testing.assert_array_equal(gradsparse.topk(x, 6, key="abs", largest=False).indices, [4, 0, 3, 2, 5, 1])
    np.testing.assert_array_equal(gradsparse.topk(x, 2, key="abs").values, [-128, 127])  # signed values


def test_key_abs_floats_special_values():
    x = np.array([1.0, np.nan, -np.inf, -0.0, 0.0, np.inf, -1.0, -2.0], dtype=np.float32)
    vals, idx = gradsparse.topk(x, 8, key="abs")
    np.testing.assert_array_equal(idx, [1, 2, 5, 7, 0, 6, 3, 4])  # NaN, |inf| by index, ...
    np.testing.assert_array_equal(bits(vals), bits(x[idx]))  # signs kept
    np.testing.assert_array_equal(gradsparse.topk(x, 8, key="abs", largest=False).indices,
                                  [3, 4, 0, 6, 7, 2, 5, 1])  # NaN last
    np.testing.assert_array_equal(gradsparse.topk(x, 3, key="abs", sorted=False).indices, [1, 2, 5])


@requires_torch
@pytest.mark.parametrize("dtype", ["float32", "float64", "float16", "bfloat16", "int8", "int16", "int32", "int64"])
def test_key_abs_matches_torch_topk_of_abs(dtype):
    gen = torch.Generator().manual_seed(32)
    tdt = getattr(torch, dtype)
    if tdt.is_floating_point:
        x = (torch.randn(4, 30, 5, generator=gen) * 3).round().to(tdt)  # many |x| ties, both signs
        x[0, 3, :] = float("nan")
        x[1, 4, :] = -0.0
        x[2, 5, :] = -float("inf")
    else:
        x = torch.randint(-9, 9, (4, 30, 5), generator=gen, dtype=tdt)
    for dim in (0, 1, 2, -1):
        for largest in (True, False):
            for sorted_ in (True, False):
                k = x.size(dim) // 2
                got = gradsparse.topk(x, k, dim, largest, sorted_, key="abs")
                want = torch.topk(x.abs(), k, dim, largest, sorted_)
                assert isinstance(got, torch.return_types.topk)
                raw = {1: torch.int8, 2: torch.int16, 4: torch.int32, 8: torch.int64}[x.element_size()]
                np.testing.assert_array_equal(got.values.view(raw).numpy(),  # x's own signed values
                                              x.view(raw).gather(dim, got.indices).numpy())
                if sorted_:
                    np.testing.assert_array_equal(to_f64(got.values.abs()), to_f64(want.values))
                order = torch.sort(x.abs(), dim=dim, descending=largest, stable=True).indices.narrow(dim, 0, k)
                np.testing.assert_array_equal(got.indices.numpy(), (order if sorted_ else order.sort(dim).values).numpy())
                if dtype != "bfloat16":  # numpy twin
                    n = gradsparse.topk(x.numpy(), k, dim, largest, sorted_, key="abs")
                    np.testing.assert_array_equal(n.indices, got.indices.numpy())


def test_key_errors():
    x = np.ones(4, np.float32)
    for bad in ("ABS", "square", 1, abs):
        with pytest.raises(ValueError, match="^key"):
            gradsparse.topk(x, 1, key=bad)
