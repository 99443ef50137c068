"""Bad input raises ValueError/TypeError whose message names the offending argument
(never RuntimeError, never a crash); odd but valid input (non-contiguous, foreign byte
order, Python lists) works."""
from __future__ import annotations

import re

import numpy as np
import pytest

import gradsparse
from inputs import is_tensor, need_torch, requires_torch, torch, torch_params
from inputs import assert_sparse, make
from reference import sparsify_ref

X = np.array([3.0, -1.0, 2.0, 0.5], np.float32)


# The class each convention's exception is raised as (gradsparse.errors): also a
# RuntimeError, like torch's, but never a bare RuntimeError (an internal error).
_CLASS = {ValueError: gradsparse.errors.ArgumentError, TypeError: gradsparse.errors.ArgumentTypeError}


def raises(exc, arg, fn, *a, **kw):
    """fn(*a, **kw) raises `exc` as gradsparse's argument error class naming `arg`."""
    with pytest.raises(exc) as info:
        fn(*a, **kw)
    assert issubclass(type(info.value), _CLASS[exc]), f"{type(info.value).__name__}: {info.value}"
    assert re.search(rf"(^|\W){re.escape(arg)}(\W|$)", str(info.value)), str(info.value)


# ----------------------------------------------------------------------------- empty input

@requires_torch
@pytest.mark.parametrize("fn", [
    lambda x: gradsparse.sparsify(x, 1),
    lambda x: gradsparse.sparsify(x, ratio=0.5),
    lambda x: gradsparse.sparsify(x, budget=1.0),
    lambda x: gradsparse.threshold(x, 1.0),
    lambda x: gradsparse.random_k(x, 1, 0),
    lambda x: gradsparse.ErrorFeedback().compress("a", x, k=1),
], ids=["sparsify-k", "sparsify-ratio", "sparsify-budget", "threshold", "random_k", "feedback"])
@pytest.mark.parametrize("empty", [lambda: np.zeros(0, np.float32), lambda: np.zeros((3, 0)),
                                   lambda: (need_torch(), torch.zeros(0))[1],
                                   lambda: (need_torch(), torch.zeros(0, 5, dtype=torch.bfloat16))[1]],
                         ids=["f32", "f64-2d", "torch", "bf16-2d"])
def test_empty_input(fn, empty):
    raises(ValueError, "x", fn, empty())


@requires_torch
def test_empty_topk():
    # like torch.topk: empty inputs give empty results; k beyond the dim's size still raises
    raises(ValueError, "k", gradsparse.topk, np.zeros(0, np.float32), 1)
    assert gradsparse.topk(np.zeros((0, 4), np.float32), 1).values.shape == (0, 1)
    raises(ValueError, "k", gradsparse.topk, torch.zeros(3, 0), 1)
    assert tuple(gradsparse.topk(torch.zeros(3, 0), 0).indices.shape) == (3, 0)


# ----------------------------------------------------------------------------- k / ratio / budget

@pytest.mark.parametrize("k", [0, -1, -100, 5, 10**12])
def test_k_out_of_range(k):
    raises(ValueError, "k", gradsparse.sparsify, X, k)
    if k == 0:  # like torch.topk, k = 0 gives an empty result
        assert gradsparse.topk(X, k).values.shape == (0,)
    else:
        raises(ValueError, "k", gradsparse.topk, X, k)
    raises(ValueError, "k", gradsparse.random_k, X, k, 0)
    raises(ValueError, "k", gradsparse.sparsify_many, [X, X], 2 * k if k > 0 else k)
    raises(ValueError, "k", gradsparse.ErrorFeedback().compress, "a", X, k)


@pytest.mark.parametrize("k", [1.0, 2.5, "2", None, True, np.float64(2.0)])
def test_k_not_an_integer(k):
    if k is None:
        raises(ValueError, "k", gradsparse.sparsify, X)  # nothing given
        raises(TypeError, "k", gradsparse.topk, X, k)
        return
    raises(TypeError, "k", gradsparse.sparsify, X, k)
    raises(TypeError, "k", gradsparse.topk, X, k)
    raises(TypeError, "k", gradsparse.random_k, X, k, 0)
    raises(TypeError, "k", gradsparse.sparsify_many, [X], k)
    raises(TypeError, "k", gradsparse.StreamingSelector, k)


def test_numpy_integer_k_is_accepted():
    assert_sparse(gradsparse.sparsify(X, np.int64(2)), X, [0, 2])
    assert_sparse(gradsparse.sparsify(X, np.uint8(2)), X, [0, 2])
    np.testing.assert_array_equal(gradsparse.topk(X, np.int32(2)).indices, [0, 2])


@pytest.mark.parametrize("ratio", [0.0, -0.1, 1.0000001, 2.0, np.nan, np.inf, -np.inf])
def test_ratio_out_of_range(ratio):
    raises(ValueError, "ratio", gradsparse.sparsify, X, ratio=ratio)
    raises(ValueError, "ratio", gradsparse.sparsify_many, [X], ratio=ratio)
    raises(ValueError, "ratio", gradsparse.StreamingSelector, ratio=ratio, total=4)
    raises(ValueError, "ratio", gradsparse.k_from_ratio, ratio, 10)


def test_ratio_not_a_number():
    raises(TypeError, "ratio", gradsparse.sparsify, X, ratio="0.5")
    raises(TypeError, "ratio", gradsparse.sparsify, X, ratio=True)


@pytest.mark.parametrize("budget", [0.0, -1.0, np.nan, np.inf, -np.inf])
def test_budget_out_of_range(budget):
    raises(ValueError, "budget", gradsparse.sparsify, X, budget=budget)
    raises(ValueError, "budget", gradsparse.sparsify, X, budget=budget, cost=np.ones(4))
    raises(ValueError, "budget", gradsparse.sparsify_many, [X], budget=budget)
    raises(ValueError, "budget", gradsparse.StreamingSelector, budget=budget)


def test_exactly_one_budget():
    for kw in ({"k": 2, "ratio": 0.5}, {"k": 2, "budget": 1.0}, {"ratio": 0.5, "budget": 1.0},
               {"k": 1, "ratio": 0.5, "budget": 1.0}, {}):
        for fn in (lambda **kw: gradsparse.sparsify(X, **kw),
                   lambda **kw: gradsparse.sparsify_many([X], **kw),
                   lambda **kw: gradsparse.ErrorFeedback().compress("a", X, **kw)):
            with pytest.raises(ValueError) as info:
                fn(**kw)
            msg = str(info.value)
            assert "k" in msg and "ratio" in msg and "budget" in msg, msg


@pytest.mark.parametrize("q,alpha,arg", [(0.0, 1.0, "q"), (-1.0, 1.0, "q"), (np.inf, 1.0, "q"), (np.nan, 1.0, "q"),
                                         (2.0, -0.5, "alpha"), (2.0, np.inf, "alpha"), (2.0, np.nan, "alpha")])
def test_q_alpha_out_of_range(q, alpha, arg):
    raises(ValueError, arg, gradsparse.sparsify, X, 2, cost=np.ones(4), q=q, alpha=alpha)
    raises(ValueError, arg, gradsparse.sparsify_many, [X], 2, q=q, alpha=alpha)
    raises(ValueError, arg, gradsparse.StreamingSelector, k=2, q=q, alpha=alpha)


# ----------------------------------------------------------------------------- costs

BAD_COSTS = [0.0, -1.0, np.nan, np.inf, -np.inf, -0.0]


@pytest.mark.parametrize("bad", BAD_COSTS)
def test_bad_scalar_cost(bad):
    raises(ValueError, "cost", gradsparse.sparsify, X, 2, cost=bad)
    raises(ValueError, "cost", gradsparse.sparsify, X, budget=2.0, cost=bad)
    raises(ValueError, "cost", gradsparse.sparsify, X, 2, cost=np.float32(bad))
    raises(ValueError, "costs[1]", gradsparse.sparsify_many, [X, X], 2, costs=[1.0, bad])
    sel = gradsparse.StreamingSelector(k=2)
    raises(ValueError, "cost", sel.push, X, bad)


@pytest.mark.parametrize("bad", BAD_COSTS)
@pytest.mark.parametrize("cost_dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n,where", [(4, 2), (4, 0), (4, 3), (1000, 999), (1000, 500), (100_003, 77_777), (100_003, 100_002)])
def test_bad_cost_inside_array(simd, bad, cost_dtype, n, where):
    x = np.linspace(-1, 1, n).astype(np.float32)
    c = np.ones(n, cost_dtype)
    c[where] = bad
    raises(ValueError, "cost", gradsparse.sparsify, x, 1, cost=c)
    raises(ValueError, "cost", gradsparse.sparsify, x, n, cost=c)
    raises(ValueError, "cost", gradsparse.sparsify, x, budget=3.0, cost=c)
    raises(ValueError, "cost", gradsparse.sparsify, x.astype(np.float64), 1, cost=c)
    raises(ValueError, "cost", gradsparse.sparsify_many, [x, x], 2, costs=[None, c])
    sel = gradsparse.StreamingSelector(k=1)
    raises(ValueError, "cost", sel.push, x, c)


@requires_torch
def test_bad_cost_in_torch_tensor():
    c = torch.ones(4)
    c[1] = float("nan")
    raises(ValueError, "cost", gradsparse.sparsify, X, 2, cost=c)


@pytest.mark.parametrize("shape", [(3,), (5,), (2, 3), (4, 1, 2)])
def test_cost_shape_mismatch(shape):
    c = np.ones(shape)
    if c.size == X.size:
        pytest.skip("same size: accepted")
    raises(ValueError, "cost", gradsparse.sparsify, X, 2, cost=c)
    raises(ValueError, "cost", gradsparse.sparsify, X, budget=2.0, cost=c)
    raises(ValueError, "costs[0]", gradsparse.sparsify_many, [X], 2, costs=[c])
    raises(ValueError, "cost", gradsparse.StreamingSelector(k=1).push, X, c)
    raises(ValueError, "cost", gradsparse.ErrorFeedback().compress, "a", X, k=2, cost=c)


def test_cost_wrong_type():
    raises(TypeError, "cost", gradsparse.sparsify, X, 2, cost="cheap")
    raises(TypeError, "cost", gradsparse.sparsify, X, 2, cost=np.array(["a", "b", "c", "d"]))
    raises(TypeError, "cost", gradsparse.sparsify, X, 2, cost=np.ones(4, np.complex64))


# ----------------------------------------------------------------------------- dtypes / shapes

@pytest.mark.parametrize("bad", [
    np.arange(4, dtype=np.int32), np.arange(4, dtype=np.int64), np.ones(4, np.complex64),
    np.ones(4, np.complex128), np.ones(4, bool), np.array(["a", "b"]), np.ones(4, np.uint8),
    np.ones(4, np.longdouble) if np.dtype(np.longdouble).itemsize > 8 else np.ones(4, np.int16),
    *torch_params(lambda: [torch.arange(4, dtype=torch.int32), torch.ones(4, dtype=torch.complex64),
                           torch.ones(4, dtype=torch.bool), torch.ones(4, dtype=torch.int64)])],
    ids=lambda a: str(a.dtype))
def test_unsupported_dtype(bad):
    raises(TypeError, "x", gradsparse.sparsify, bad, 1)
    integer = (not bad.dtype.is_floating_point and not bad.dtype.is_complex and bad.dtype != torch.bool
               if is_tensor(bad) else bad.dtype.kind in "iu")
    if not integer:
        raises(TypeError, "input", gradsparse.topk, bad, 1)
    else:  # topk alone takes integers, like torch.topk
        assert gradsparse.topk(bad, 1).indices.shape == (1,)
    raises(TypeError, "x", gradsparse.threshold, bad, 1.0)
    raises(TypeError, "x", gradsparse.random_k, bad, 1, 0)
    raises(TypeError, "xs[1]", gradsparse.sparsify_many, [X, bad], 1)
    raises(TypeError, "x", gradsparse.StreamingSelector(k=1).push, bad)
    raises(TypeError, "x", gradsparse.ErrorFeedback().compress, "a", bad, k=1)


@pytest.mark.parametrize("bad", [None, True, "abc", object()])
def test_not_an_array(bad):
    with pytest.raises(TypeError) as info:
        gradsparse.sparsify(bad, 1)
    assert "x" in str(info.value)


@requires_torch
def test_topk_3d_and_bad_dim():
    x3 = np.ones((2, 3, 4), np.float32)
    assert gradsparse.topk(x3, 1).values.shape == (2, 3, 1)  # N-D inputs work, like torch.topk
    assert tuple(gradsparse.topk(torch.ones(2, 2, 2), 1, dim=1).values.shape) == (2, 1, 2)
    x2 = np.ones((3, 4), np.float32)
    # a dim out of range is a DimensionError: ValueError, and IndexError like torch's
    for exc in (ValueError, IndexError):
        with pytest.raises(exc, match="^dim"):
            gradsparse.topk(x2, 1, dim=2)
    raises(ValueError, "dim", gradsparse.topk, x2, 1, dim=-3)
    raises(ValueError, "dim", gradsparse.topk, X, 1, dim=1)
    raises(TypeError, "dim", gradsparse.topk, x2, 1, dim=1.0)
    raises(ValueError, "k", gradsparse.topk, x2, 4, dim=0)  # dim 0 has 3 entries
    raises(TypeError, "largest", gradsparse.topk, X, 1, largest=1)
    raises(TypeError, "sorted", gradsparse.topk, X, 1, sorted="yes")


def test_errors_are_not_runtime_errors_for_huge_k():
    raises(ValueError, "k", gradsparse.sparsify, X, 2**70)
    raises(ValueError, "k", gradsparse.topk, X, 2**70)


# ----------------------------------------------------------------------------- valid odd inputs

@requires_torch
def test_non_contiguous_inputs_work():
    base = np.arange(60, dtype=np.float64).reshape(6, 10) * np.where(np.arange(60) % 3 == 0, -1, 1).reshape(6, 10)
    views = [base.T, base[:, ::3], base[::2], base.reshape(-1)[::-7]]
    for v in views:
        assert not v.flags.c_contiguous
        c = np.ascontiguousarray(v)
        k = min(4, v.size)
        assert_sparse(gradsparse.sparsify(v, k), c, sparsify_ref(c, k))
        cost = np.linspace(1, 2, 2 * v.size)[::2].reshape(v.shape)
        assert_sparse(gradsparse.sparsify(v, k, cost=cost), c, sparsify_ref(c, k, cost=cost))
        np.testing.assert_array_equal(gradsparse.topk(v, 1).values, gradsparse.topk(c, 1).values)
    t = torch.from_numpy(base).t()
    assert not t.is_contiguous()
    assert_sparse(gradsparse.sparsify(t, 5), t.contiguous(), sparsify_ref(base.T, 5))
    # non-contiguous cost arrays work too
    cost = np.linspace(1, 2, 120).reshape(12, 10)[::2]
    assert_sparse(gradsparse.sparsify(base, 5, cost=cost), base, sparsify_ref(base, 5, cost=cost))


@pytest.mark.parametrize("x", [lambda: np.array(-3.0, np.float32), lambda: np.float64(2.5),
                               lambda: (need_torch(), torch.tensor(1.5))[1]],
                         ids=["numpy-0d", "numpy-scalar", "torch-0d"])
def test_zero_dim_input_keeps_its_shape(x):
    x = x()
    res = gradsparse.sparsify(x, 1)
    assert res.shape == ()
    dense = res.to_dense()
    assert tuple(dense.shape) == ()
    assert float(dense) == float(x)


def test_non_contiguous_threshold():
    base = np.arange(60, dtype=np.float64).reshape(6, 10) - 30
    for v in (base.T, base[:, ::3]):
        c = np.ascontiguousarray(v)
        assert_sparse(gradsparse.threshold(v, 10.0), c, np.flatnonzero(np.abs(c.reshape(-1)) >= 10))


def test_byte_swapped_and_list_inputs():
    x = np.array([1.0, -4.0, 2.0], dtype=">f4")
    assert_sparse(gradsparse.sparsify(x, 1), x.astype(np.float32), [1])
    res = gradsparse.sparsify([1.0, -4.0, 2.0], 2)
    np.testing.assert_array_equal(res.indices, [1, 2])
    assert res.values.dtype == np.float64
    raises(TypeError, "x", gradsparse.sparsify, [1, 2, 3], 1)  # int64 list


@requires_torch
def test_feedback_non_contiguous_torch():
    ef = gradsparse.ErrorFeedback()
    t = torch.arange(20, dtype=torch.float32).reshape(4, 5).t()
    res = ef.compress("t", t, k=3)
    np.testing.assert_array_equal(res.indices.numpy(), [11, 15, 19])  # flat, in t's row-major order
    assert tuple(ef.residual("t").shape) == (5, 4)


@requires_torch
def test_tensor_requiring_grad_is_read_under_no_grad():
    # issue 14: no silent detach -- in grad mode, sparsify refuses it (test_no_silent_detach.py
    # covers every function); topk supports autograd (test_topk_autograd.py)
    t = torch.tensor([1.0, -3.0, 2.0], requires_grad=True)
    raises(ValueError, "x", gradsparse.sparsify, t, 1)
    with torch.no_grad():
        res = gradsparse.sparsify(t, 1)
    np.testing.assert_array_equal(res.indices.numpy(), [1])
    assert not res.values.requires_grad
    v, i = gradsparse.topk(t, 2)
    np.testing.assert_array_equal(i.numpy(), [2, 0])
    assert v.requires_grad


def test_make_helper_roundtrip():
    # guard for the helpers the other tests rely on
    v = np.array([1.5, -2.0, 0.0])
    for dt in ("float32", "float64", "float16", "bfloat16"):
        x = make(v, dt)
        assert np.array_equal(np.asarray(x.tolist(), dtype=np.float64), v)


def test_sparse_length_mismatch():
    raises(ValueError, "values", gradsparse.Sparse, np.array([0, 1]), np.array([1.0]), (3,))
