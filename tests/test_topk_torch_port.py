"""PyTorch's own topk test cases, rewritten for gradsparse: the ``test_topk*`` functions of
torch's test/test_sort_and_select.py and the OpInfo for ``topk`` (its ``sample_inputs_topk``,
dtypes and the generic out= checks) in torch/testing/_internal/common_methods_invocations.py.

Every case runs torch.topk and gradsparse.topk on the same input and requires them to agree:
values exactly; indices the way torch's own tests compare them (gathering the input at the
returned indices, since ties may pick other positions); with ``sorted=False`` as sets. On top
of that gradsparse's indices must follow its stricter documented rule (torch's *stable* sort:
equal entries by lower index; ``sorted=False`` in ascending index order). Inputs with a numpy
dtype run again as numpy arrays (the numpy twin) and must give the same answer. Where torch
raises, gradsparse raises an exception that torch's handler (``except RuntimeError`` /
``except IndexError``) catches, and that ``except ValueError`` / ``except TypeError`` catches
too, naming the argument.
"""
from __future__ import annotations

import re
import warnings

import numpy as np
import pytest

import gradsparse
from inputs import torch, torch_params

pytestmark = pytest.mark.skipif(torch is None, reason="compares against torch.topk (pip install torch==2.13.0)")

S, M = 5, 10  # the OpInfo sizes
#: the dtypes of the topk OpInfo on the CPU: all_types_and(bfloat16, float16)
DTYPE_NAMES = ["float32", "float64", "float16", "bfloat16", "uint8", "int8", "int16", "int32", "int64"]
INT_NAMES = ["uint8", "int8", "int16", "int32", "int64"]


def tdt(name):
    return getattr(torch, name)


def rand_tensor(shape, name, gen, low=-9, high=9):
    """Like torch's make_tensor: floats uniform in [low, high), integers in [low, high)
    (uint8 from 0), so integer inputs are full of ties."""
    dtype = tdt(name)
    if dtype.is_floating_point:
        return (torch.rand(shape, generator=gen, dtype=torch.float64) * (high - low) + low).to(dtype)
    return torch.randint(0 if dtype == torch.uint8 else low, high, shape, generator=gen, dtype=dtype)


# ----------------------------------------------------------------------------- agreement

def _np(t):
    """Exact numpy copy of a tensor's values (float64 for floats, NaN kept; ints exact)."""
    return t.double().numpy() if t.is_floating_point() else t.numpy()


def expected_indices(x, k, dim, largest, sorted_):
    """gradsparse's documented order: torch's stable sort (ties by lower index, NaN largest)."""
    if x.ndim == 0:
        return torch.zeros((), dtype=torch.int64)
    idx = torch.sort(x, dim=dim, descending=largest, stable=True).indices.narrow(dim, 0, k)
    return idx if sorted_ else torch.sort(idx, dim=dim).values


def agree(x, k, dim=-1, largest=True, sorted_=True, *, twin=True):
    """gradsparse.topk(x, ...) agrees with torch.topk(x, ...); returns gradsparse's result."""
    want = torch.topk(x, k, dim, largest, sorted_)
    got = gradsparse.topk(x, k, dim, largest, sorted_)
    assert type(got) is type(want)  # torch.return_types.topk
    gv, gi = got
    assert gv.dtype == x.dtype and gi.dtype == torch.int64
    assert gv.shape == want.values.shape and gi.shape == want.indices.shape
    assert gv.is_contiguous() and gi.is_contiguous()
    if sorted_:
        np.testing.assert_array_equal(_np(gv), _np(want.values))  # values exactly, in order
    else:  # as sets: the same values, whatever the order
        d = dim if x.ndim else 0
        srt = (lambda t: torch.sort(t, dim=d).values) if x.ndim else (lambda t: t)
        np.testing.assert_array_equal(_np(srt(gv)), _np(srt(want.values)))
    if x.ndim:  # ties: gather the input at gradsparse's indices (torch's compareTensors)
        np.testing.assert_array_equal(_np(x.gather(dim, gi)), _np(gv))
    np.testing.assert_array_equal(gi.numpy(), expected_indices(x, k, dim, largest, sorted_).numpy())
    if twin and x.dtype != torch.bfloat16:  # the numpy twin gives the same answer
        nv, ni = gradsparse.topk(x.numpy(), k, dim, largest, sorted_)
        assert isinstance(nv, np.ndarray) and nv.dtype == x.numpy().dtype and nv.flags.c_contiguous
        assert ni.dtype == np.int64 and ni.flags.c_contiguous
        np.testing.assert_array_equal(nv, gv.numpy())
        np.testing.assert_array_equal(ni, gi.numpy())
    return got


def raises_like_torch(arg, call):
    """call(torch.topk) raises; call(gradsparse.topk) raises an instance of torch's class
    and of ValueError/TypeError, naming `arg`."""
    with pytest.raises(Exception) as t_info:
        call(torch.topk)
    torch_cls = IndexError if isinstance(t_info.value, IndexError) else (
        TypeError if isinstance(t_info.value, TypeError) else RuntimeError)
    with pytest.raises(torch_cls) as g_info:
        call(gradsparse.topk)
    assert isinstance(g_info.value, (ValueError, TypeError)), type(g_info.value).__mro__
    assert re.match(rf"^{re.escape(arg)}\b", str(g_info.value)), str(g_info.value)
    # and the handlers of either convention catch it
    try:
        call(gradsparse.topk)
    except torch_cls:
        pass
    try:
        call(gradsparse.topk)
    except (ValueError, TypeError):
        pass
    return g_info.value


# ----------------------------------------------------------------------------- test_topk

@pytest.mark.parametrize("seed", range(3))
def test_topk(seed):
    """torch's test_topk: a random 3-D tensor, transposed or not, a random dim and k, both
    directions, compared with the first k of a sort."""
    gen = torch.Generator().manual_seed(seed)
    rng = np.random.default_rng(seed)
    t = torch.rand(*(int(rng.integers(1, 30)) for _ in range(3)), generator=gen)
    for _k_tries in range(3):
        for _dim_tries in range(3):
            for transpose in (True, False):
                for largest in (True, False):
                    x = t
                    if transpose:
                        d1, d2 = rng.choice(3, size=2, replace=False)
                        x = t.transpose(int(d1), int(d2))
                    dim = int(rng.integers(0, x.ndim))
                    k = int(rng.integers(1, x.size(dim) + 1))
                    res = agree(x, k, dim, largest)
                    via_sort = torch.sort(x, dim, largest).values.narrow(dim, 0, k)
                    np.testing.assert_array_equal(res.values.numpy(), via_sort.numpy())


@pytest.mark.parametrize("n", [100000, 10000])
def test_topk_long_rows_large_k(n):
    """torch's test_topk tail: (2, n) rows, k = 2000, both directions."""
    x = torch.randn((2, n), generator=torch.Generator().manual_seed(n))
    agree(x, 2000, 1, True)
    agree(x, 2000, 1, False)


def test_topk_arguments():
    """torch's test_topk_arguments: True is not taken as the dim (TypeError)."""
    q = torch.randn(10, 2, 10)
    raises_like_torch("dim", lambda f: f(q, 4, True))


def test_topk_1d_output_discontiguous():
    """torch's test_topk_1d_output_discontiguous: strided out= buffers are written through."""
    x = torch.randn(12, generator=torch.Generator().manual_seed(0))
    values = torch.empty_like(x)[::2]
    indices = torch.empty(18, dtype=torch.long)[::3]
    for sorted_ in (True, False):
        res = gradsparse.topk(x, 6, sorted=sorted_, out=(values, indices))
        assert res.values is values and res.indices is indices
        assert values.stride() == (2,) and indices.stride() == (3,)  # still the same views
        want = gradsparse.topk(x, 6, sorted=sorted_)
        assert torch.equal(values, want.values) and torch.equal(indices, want.indices)
        tv, ti = torch.topk(x, 6)  # distinct values: torch's sorted answer is the same set
        assert torch.equal(torch.sort(values).values, torch.sort(tv).values)


@pytest.mark.parametrize("name", INT_NAMES + ["bfloat16", "float16"])
@pytest.mark.parametrize("size", [10, 4096, 8192])
def test_topk_dtype(name, size):
    """torch's test_topk_integral (integers over their whole range) and
    test_topk_lower_precision (bfloat16, float16): k = size // 2 against a sort."""
    gen = torch.Generator().manual_seed(size)
    dtype = tdt(name)
    if dtype.is_floating_point:
        a = torch.randn(size, generator=gen).to(dtype)
    else:
        info = torch.iinfo(dtype)
        a = torch.randint(info.min, info.max, (size,), generator=gen, dtype=dtype)
    res = agree(a, size // 2)
    sort_topk = a.sort()[0][-(size // 2):].flip(0)
    np.testing.assert_array_equal(_np(res.values), _np(sort_topk))
    np.testing.assert_array_equal(_np(a[res.indices]), _np(sort_topk))


@pytest.mark.parametrize("name", ["float32", "float64", "bfloat16", "float16"])
def test_topk_nonfinite(name):
    """torch's test_topk_nonfinite: NaN above +inf, then the finite values."""
    x = torch.tensor([float("nan"), float("inf"), 1e4, 0, -1e4, -float("inf")], dtype=tdt(name))
    val, idx = agree(x, 4)
    np.testing.assert_array_equal(_np(val), _np(torch.tensor([float("nan"), float("inf"), 1e4, 0], dtype=tdt(name))))
    assert idx.tolist() == [0, 1, 2, 3]
    val, idx = agree(x, 4, largest=False)
    np.testing.assert_array_equal(_np(val), _np(torch.tensor([-float("inf"), -1e4, 0, 1e4], dtype=tdt(name))))
    assert idx.tolist() == [5, 4, 3, 2]


@pytest.mark.parametrize("size", [128, 8192])
def test_topk_4d(size):
    """torch's test_topk_4d: dim=1 of a 4-D tensor of ones with two larger slices."""
    x = torch.ones(2, size, 2, 2)
    x[:, 1, :, :] *= 2.0
    x[:, 10, :, :] *= 1.5
    val, ind = agree(x, 2, 1)
    expected_ind = torch.ones(2, 2, 2, 2, dtype=torch.long)
    expected_ind[:, 1, :, :] = 10
    expected_val = torch.ones(2, 2, 2, 2)
    expected_val[:, 0, :, :] *= 2.0
    expected_val[:, 1, :, :] *= 1.5
    assert torch.equal(val, expected_val) and torch.equal(ind, expected_ind)


@pytest.mark.parametrize("name", DTYPE_NAMES)
def test_topk_zero(name):
    """torch's test_topk_zero: k = 0 gives empty (2, 0) results."""
    t = torch.rand(2, 2, generator=torch.Generator().manual_seed(0)).to(tdt(name))
    val, idx = agree(t, 0, largest=False)
    assert val.size() == torch.Size([2, 0]) and idx.size() == torch.Size([2, 0])


def test_topk_quantized_scalar_input():
    """torch's test_topk_quantized_scalar_input: quantized tensors are outside gradsparse's
    dtypes (by design): a TypeError naming the input, never a crash."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # quantized tensors are deprecated in torch 2.13
        x = torch.quantize_per_tensor(torch.randn(()), 0.1, 10, torch.qint8)
        torch.topk(x, 1)
    with pytest.raises(TypeError, match="^input"):
        gradsparse.topk(x, 1)


# ----------------------------------------------------------------------------- the OpInfo

def opinfo_samples(name, gen):
    """sample_inputs_topk: (input, args) pairs -- (S, M, S) and 0-d inputs with k, dim,
    largest, sorted given positionally."""
    for args in [(3,), (3, 1), (3, -2), (3, 1, True), (3, -2, True), (3, 1, True, True), (3, -2, True, True)]:
        yield rand_tensor((S, M, S), name, gen), args
    for args in [(1,), (1, 0), (1, -1), (1, 0, True), (1, -1, True), (1, 0, True, True), (1, -1, True, True)]:
        yield rand_tensor((), name, gen), args


def _call(x, args):
    """(k, dim, largest, sorted) of a sample's positional args, with torch's defaults."""
    return tuple(args) + (None, -1, True, True)[len(args):]


@pytest.mark.parametrize("name", DTYPE_NAMES)
def test_opinfo_samples(name):
    gen = torch.Generator().manual_seed(1)
    for x, args in opinfo_samples(name, gen):
        want = torch.topk(x, *args)
        got = gradsparse.topk(x, *args)
        assert type(got) is type(want)
        agree(x, *_call(x, args))
        # the OpInfo's non-contiguous variant of the sample (test_noncontiguous_samples)
        if x.ndim:
            nc = torch.repeat_interleave(x, 2, dim=-1)[..., ::2]
            assert not nc.is_contiguous()
            agree(nc, *_call(nc, args))
        # sorted=False and largest=False on the same sample
        k, dim, _, _ = _call(x, args)
        agree(x, k, dim, False, False)


@pytest.mark.parametrize("name", DTYPE_NAMES)
def test_opinfo_out(name):
    """The OpInfo's generic out= checks (test_out): a right-shaped out, a zero-element out
    (resized silently), a wrong-shaped non-empty out (resized with torch's warning), a
    non-contiguous out (written through), and an out of the wrong dtype (RuntimeError)."""
    gen = torch.Generator().manual_seed(2)
    x = rand_tensor((S, M, S), name, gen)
    want = gradsparse.topk(x, 3, 1)

    def check(ov, oi):
        res = gradsparse.topk(x, 3, 1, out=(ov, oi))
        assert res.values is ov and res.indices is oi
        assert type(res) is type(torch.topk(x, 3, 1, out=(ov.clone(), oi.clone())))
        assert torch.equal(ov, want.values) and torch.equal(oi, want.indices)

    check(torch.empty_like(want.values), torch.empty_like(want.indices))
    check(torch.empty(0, dtype=x.dtype), torch.empty(0, dtype=torch.long))
    with pytest.warns(UserWarning, match="resized"):
        check(torch.empty(7, dtype=x.dtype), torch.empty(7, dtype=torch.long))
    check(torch.empty(S, 3, 2 * S, dtype=x.dtype)[..., ::2], torch.empty(S, 6, S, dtype=torch.long)[:, ::2])
    wrong = torch.float64 if x.dtype != torch.float64 else torch.float32
    raises_like_torch("out", lambda f: f(x, 3, 1, out=(torch.empty(S, 3, S, dtype=wrong),
                                                        torch.empty(S, 3, S, dtype=torch.long))))
    raises_like_torch("out", lambda f: f(x, 3, 1, out=(torch.empty(S, 3, S, dtype=x.dtype),
                                                        torch.empty(S, 3, S, dtype=torch.int32))))


def test_out_edge_cases():
    x = torch.randn(4, 6, generator=torch.Generator().manual_seed(7))
    want = gradsparse.topk(x, 2)
    # a self-overlapping (expanded) out: torch refuses it with a RuntimeError
    raises_like_torch("out", lambda f: f(x, 2, out=(torch.empty(1, 2).expand(4, 2), torch.empty(4, 2, dtype=torch.long))))
    # nothing is written when the second buffer is refused
    ov = torch.empty(0)
    with pytest.raises(RuntimeError, match="^out"):
        gradsparse.topk(x, 2, out=(ov, torch.empty(4, 2, dtype=torch.int32)))
    assert ov.shape == (0,)
    with pytest.raises(TypeError, match="^out"):
        gradsparse.topk(x, 2, out=(torch.empty(4, 2),))
    # numpy twin: strided numpy buffers of the result's shape are written through
    nv, ni = np.empty((4, 4), np.float32)[:, ::2], np.empty((8, 2), np.int64)[::2]
    res = gradsparse.topk(x.numpy(), 2, out=(nv, ni))
    assert res.values is nv and res.indices is ni
    np.testing.assert_array_equal(nv, want.values.numpy())
    np.testing.assert_array_equal(ni, want.indices.numpy())
    with pytest.raises(RuntimeError, match="^out"):
        gradsparse.topk(x.numpy(), 2, out=(np.empty((4, 2), np.float64), ni))
    # tensor outs for a numpy input and numpy outs for a tensor input work too
    tv, ti = torch.empty(0), torch.empty(0, dtype=torch.long)
    gradsparse.topk(x.numpy(), 2, out=(tv, ti))
    assert torch.equal(tv, want.values) and torch.equal(ti, want.indices)


# ----------------------------------------------------------------------------- exceptions

@pytest.mark.parametrize("name", DTYPE_NAMES)
def test_exceptions_like_torch(name):
    x = rand_tensor((3, 4), name, torch.Generator().manual_seed(3))
    raises_like_torch("k", lambda f: f(x, 5))  # k > size of the dim
    raises_like_torch("k", lambda f: f(x, 4, dim=0))
    raises_like_torch("k", lambda f: f(x, -1))
    raises_like_torch("dim", lambda f: f(x, 1, dim=2))  # IndexError in torch
    raises_like_torch("dim", lambda f: f(x, 1, dim=-3))
    scalar = x[0, 0]
    raises_like_torch("k", lambda f: f(scalar, 2))
    raises_like_torch("dim", lambda f: f(scalar, 1, dim=1))
    if name != "bfloat16":  # the numpy twin raises the same classes
        raises_like_torch("k", lambda f: f(x.numpy(), 5) if f is gradsparse.topk else f(x, 5))
        raises_like_torch("dim", lambda f: f(x.numpy(), 1, dim=2) if f is gradsparse.topk else f(x, 1, dim=2))


@pytest.mark.parametrize("bad", torch_params(lambda: [
    torch.ones(3, dtype=torch.bool), torch.ones(3, dtype=torch.complex64), torch.ones(3, dtype=torch.uint16),
    torch.ones(3, dtype=torch.uint32), torch.ones(3, dtype=torch.uint64)]), ids=str)
def test_unsupported_dtypes_like_torch(bad):
    """torch.topk refuses these on the CPU (RuntimeError / NotImplementedError); so does
    gradsparse, as a TypeError that is a RuntimeError too."""
    err = raises_like_torch("input", lambda f: f(bad, 1))
    assert isinstance(err, TypeError)


def test_numpy_twin_errors():
    x = np.zeros((3, 4), np.int16)
    for call, cls in [(lambda: gradsparse.topk(x, 5), RuntimeError), (lambda: gradsparse.topk(x, 1, dim=2), IndexError),
                      (lambda: gradsparse.topk(np.ones(3, bool), 1), TypeError)]:
        with pytest.raises(cls):
            call()
        with pytest.raises(ValueError if cls is not TypeError else TypeError):
            call()


# ----------------------------------------------------------------------------- drop-in questions

@pytest.mark.parametrize("name", DTYPE_NAMES)
def test_every_dim_of_4d(name):
    x = rand_tensor((3, 5, 4, 6), name, torch.Generator().manual_seed(4))
    for dim in range(-4, 4):
        for k in (0, 1, x.size(dim) // 2, x.size(dim)):
            for largest in (True, False):
                for sorted_ in (True, False):
                    agree(x, k, dim, largest, sorted_)
    agree(x.permute(2, 0, 3, 1), 2, 1)  # a non-contiguous view


@pytest.mark.parametrize("shape,dim,k", [((0,), 0, 0), ((0, 3), 1, 2), ((0, 3), 0, 0), ((4, 0), 1, 0),
                                         ((2, 0, 3), 2, 1), ((2, 0, 3), 1, 0), ((), 0, 0), ((), -1, 1),
                                         ((1,), 0, 1), ((1, 1, 1), 1, 1)])
def test_empty_and_degenerate(shape, dim, k):
    for name in ("float32", "int64", "bfloat16"):
        agree(torch.zeros(shape, dtype=tdt(name)), k, dim)


def test_k_and_dim_as_0d_tensors_and_numpy_integers():
    x = torch.randn(4, 6, generator=torch.Generator().manual_seed(5))
    want = torch.topk(x, 3, dim=0)
    for k in (torch.tensor(3), np.int64(3), np.array(3, np.int32), torch.tensor(3, dtype=torch.int8)):
        for dim in (0, torch.tensor(0), np.int32(0)):
            got = gradsparse.topk(x, k, dim)
            assert torch.equal(got.values, want.values)
            got = gradsparse.topk(x.numpy(), k, dim)
            np.testing.assert_array_equal(got.values, want.values.numpy())
    for bad in (torch.tensor(3.0), np.array(3.0), torch.tensor([3, 1]), 3.0):
        with pytest.raises(TypeError, match="^k"):
            gradsparse.topk(x, bad)


def test_keywords_and_result_fields():
    x = torch.randn(5, 7, generator=torch.Generator().manual_seed(6))
    want = torch.topk(input=x, k=2, dim=0, largest=False, sorted=True)
    got = gradsparse.topk(input=x, k=2, dim=0, largest=False, sorted=True)
    assert torch.equal(got.values, want.values) and torch.equal(got.indices, want.indices)
    assert got.values.is_contiguous()  # dim=0: a contiguous result, like torch's
    v, i = got
    assert v is got[0] and i is got[1]


def test_ties_everywhere():
    """All-equal rows: torch may return any k positions; gradsparse the first k."""
    for name in DTYPE_NAMES:
        x = torch.zeros(3, 50, dtype=tdt(name))
        x[1, ::3] = 1
        for sorted_ in (True, False):
            got = agree(x, 20, 1, True, sorted_)
            assert got.indices[0].tolist() == list(range(20))
