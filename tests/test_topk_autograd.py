"""gradsparse.topk under autograd: values carry a grad_fn whose backward is torch.topk's
(the gradient scattered to the selected indices, zeros elsewhere), forward-mode AD (the
tangent gathered at the indices), gradcheck and gradgradcheck in float64, torch.func
transforms, and no autograd at all under no_grad / inference_mode. torch-only."""
from __future__ import annotations

import pytest

import gradsparse
from gradsparse.errors import ArgumentError, DimensionError
from inputs import requires_torch, torch, torch_params

pytestmark = [
    requires_torch,
    # torch's first forward-AD call loads its jvp decompositions through torch.jit.script,
    # which warns that it is deprecated (torch's own code, not ours)
    pytest.mark.filterwarnings("ignore:`torch.jit.script:DeprecationWarning"),
]


def _input(shape, dtype=None, seed=0):
    """Values with distinct magnitudes (no ties in x or |x|, so every selection is unique)
    that require grad."""
    g = torch.Generator().manual_seed(seed)
    n = 1
    for s in shape:
        n *= s
    x = (torch.randperm(max(n, 1), generator=g)[:n].to(torch.float64) - n // 2 + 0.25) / 3
    return x.reshape(shape).to(dtype or torch.float64).requires_grad_()


def _reference(x, k, dim, largest, sorted, key):
    """torch's answer: torch.topk itself, or (key="abs") x gathered at topk(|x|)'s indices."""
    if key == "abs":
        idx = torch.topk(x.abs(), k, dim, largest, sorted).indices
        return torch.return_types.topk((x.gather(dim, idx), idx))
    return torch.topk(x, k, dim, largest, sorted)


# (shape, k, dim): 1-D, 2-D both dims, 3-D/4-D along dim=1 and negative dims, k=0, 0-d
CASES = [((20,), 5, -1), ((20,), 20, 0), ((6, 9), 3, -1), ((6, 9), 2, 0), ((3, 7, 5), 4, 1),
         ((2, 3, 4, 5), 2, 1), ((2, 3, 4, 5), 3, -1), ((5, 4), 0, 1), ((), 1, 0), ((), 0, -1)]


def _ids(case):
    shape, k, dim = case
    return f"{'x'.join(map(str, shape)) or '0d'}-k{k}-dim{dim}"


@pytest.mark.parametrize("case", CASES, ids=_ids)
@pytest.mark.parametrize("largest", [True, False])
@pytest.mark.parametrize("key", [None, "abs"])
def test_backward_equals_torch(case, largest, key):
    shape, k, dim = case
    for sorted in (True, False):
        x = _input(shape)
        res = gradsparse.topk(x, k, dim, largest, sorted, key=key)
        assert isinstance(res, torch.return_types.topk)
        assert res.values.grad_fn is not None and not res.indices.requires_grad
        ref = _reference(x, k, dim, largest, sorted, key)
        assert torch.equal(res.values, ref.values) or not sorted  # sorted=False: order may differ
        # an order-independent loss for sorted=False, position weights for sorted=True
        w = torch.arange(1.0, res.values.numel() + 1, dtype=x.dtype).reshape(res.values.shape)
        loss = (lambda v: (v * w).sum()) if sorted else (lambda v: (v * v + v).sum())
        (got,) = torch.autograd.grad(loss(res.values), x)
        (want,) = torch.autograd.grad(loss(ref.values), x)
        assert torch.equal(got, want)


def test_loss_mixing_values_and_input():
    """The issue's case: a loss using the top-k values and x itself; a silent detach gave
    wrong gradients in 5 of 20 entries."""
    x = _input((20,))
    loss = gradsparse.topk(x, 5).values.sum() * 3 + (x * x).sum()
    loss.backward()
    x2 = x.detach().clone().requires_grad_()
    (torch.topk(x2, 5).values.sum() * 3 + (x2 * x2).sum()).backward()
    assert torch.equal(x.grad, x2.grad)
    assert int((x.grad != 2 * x.detach()).sum()) == 5


@pytest.mark.parametrize("dtype", torch_params(lambda: [torch.float32, torch.float16, torch.bfloat16]),
                         ids=str)
def test_backward_low_precision(dtype):
    x = _input((4, 33), dtype)
    res = gradsparse.topk(x, 7, dim=1)
    assert res.values.dtype == dtype
    res.values.sum().backward()
    assert x.grad.dtype == dtype
    expect = torch.zeros(4, 33, dtype=dtype).scatter(1, torch.topk(x.detach(), 7, dim=1).indices, 1.0)
    assert torch.equal(x.grad, expect)


@pytest.mark.parametrize("case", CASES, ids=_ids)
@pytest.mark.parametrize("key", [None, "abs"])
def test_forward_ad_gathers_the_tangent(case, key):
    import torch.autograd.forward_ad as fwAD

    shape, k, dim = case
    x = _input(shape).detach()
    tangent = torch.randn(shape, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    with fwAD.dual_level():
        res = gradsparse.topk(fwAD.make_dual(x, tangent), k, dim, key=key)
        values, jvp = fwAD.unpack_dual(res.values)
        ref = _reference(fwAD.make_dual(x, tangent), k, dim, True, True, key)
        ref_values, ref_jvp = fwAD.unpack_dual(ref.values)
    assert torch.equal(values, ref_values) and torch.equal(res.indices, ref.indices)
    assert torch.equal(jvp, ref_jvp)


def test_torch_func_transforms():
    x = _input((5, 8)).detach()
    f = lambda t: (gradsparse.topk(t, 3, dim=1).values ** 2).sum()  # noqa: E731
    g = lambda t: (torch.topk(t, 3, dim=1).values ** 2).sum()  # noqa: E731
    assert torch.equal(torch.func.grad(f)(x), torch.func.grad(g)(x))
    t = torch.ones_like(x)
    assert torch.equal(torch.func.jvp(f, (x,), (t,))[1], torch.func.jvp(g, (x,), (t,))[1])
    # per-example gradients: grad under vmap
    assert torch.equal(torch.func.vmap(torch.func.grad(f))(x.reshape(5, 1, 8)),
                       torch.func.vmap(torch.func.grad(g))(x.reshape(5, 1, 8)))


@pytest.mark.parametrize("case", CASES, ids=_ids)
@pytest.mark.parametrize("key", [None, "abs"])
def test_gradcheck_and_gradgradcheck(case, key):
    shape, k, dim = case
    x = _input(shape)
    f = lambda t: gradsparse.topk(t, k, dim, key=key).values  # noqa: E731
    assert torch.autograd.gradcheck(f, (x,), check_forward_ad=True)
    assert torch.autograd.gradgradcheck(f, (x,))


def test_zero_dim_gradient_passes_through_like_torch():
    for k in (0, 1):
        x = torch.tensor(2.5, dtype=torch.float64, requires_grad=True)
        v = gradsparse.topk(x, k).values
        assert v.shape == () and v.item() == 2.5
        (g,) = torch.autograd.grad(v * 3, x)
        x2 = x.detach().clone().requires_grad_()
        (g2,) = torch.autograd.grad(torch.topk(x2, k).values * 3, x2)
        assert torch.equal(g, g2)


@pytest.mark.parametrize("mode", ["no_grad", "inference_mode"])
def test_no_autograd_under_no_grad_and_inference_mode(mode):
    x = _input((6, 10))
    ctx = torch.no_grad() if mode == "no_grad" else torch.inference_mode()
    with ctx:
        res = gradsparse.topk(x, 4, dim=1)
        assert not gradsparse._torch_op.wants_op(x)  # the direct path, no dispatcher
    assert res.values.grad_fn is None and not res.values.requires_grad
    ref = torch.topk(x.detach(), 4, dim=1)
    assert torch.equal(res.values, ref.values) and torch.equal(res.indices, ref.indices)
    # a plain input takes the direct path too
    assert not gradsparse._torch_op.wants_op(x.detach())


def test_integer_inputs_cannot_require_grad():
    """Only float tensors can require grad (torch's rule), so integer inputs never need the
    backward; they still go through the op under other transforms (here: forward AD level
    active but no tangent -> direct path; meta -> the op)."""
    with pytest.raises(RuntimeError, match="floating point"):
        torch.arange(5).requires_grad_()
    res = gradsparse.topk(torch.arange(10, device="meta"), 3)
    assert res.values.dtype == torch.int64 and res.values.shape == (3,)


def test_out_with_autograd_is_refused_like_torch():
    x = _input((4, 6))
    out = (torch.empty(0, dtype=torch.float64), torch.empty(0, dtype=torch.int64))
    with pytest.raises(RuntimeError, match="out=") as torch_err:
        torch.topk(x, 2, out=out)
    with pytest.raises(ArgumentError, match="out") as ours:
        gradsparse.topk(x, 2, out=out)
    assert isinstance(ours.value, RuntimeError) and "requires grad" in str(torch_err.value)


def test_out_through_the_op_without_autograd():
    """out= on the op route (a meta input: no numbers) is resized and filled like torch's."""
    x = torch.empty(3, 8, device="meta")
    vals, idx = torch.empty(0, device="meta"), torch.empty(0, dtype=torch.int64, device="meta")
    res = gradsparse.topk(x, 2, dim=1, out=(vals, idx))
    assert res.values is vals and res.indices is idx and vals.shape == idx.shape == (3, 2)
    with pytest.raises(ArgumentError, match="out"):
        gradsparse.topk(x, 2, out=(torch.empty(0, dtype=torch.int32, device="meta"), idx))


def test_errors_on_the_op_route_are_the_direct_paths():
    x = _input((4, 6))
    with pytest.raises(ArgumentError, match="k:"):
        gradsparse.topk(x, 7)
    with pytest.raises(ArgumentError, match="k:"):
        gradsparse.topk(x, -1)
    with pytest.raises(DimensionError, match="dim:") as e:
        gradsparse.topk(x, 1, dim=2)
    assert isinstance(e.value, IndexError)
    with pytest.raises(ArgumentError, match="key:"):
        gradsparse.topk(x, 1, key="square")
    with pytest.raises(TypeError, match="k:"):
        gradsparse.topk(x, 1.5)
    # k as a 0-d integer tensor or a numpy integer is accepted
    import numpy as np
    assert torch.equal(gradsparse.topk(x, torch.tensor(2)).indices, gradsparse.topk(x, np.int64(2)).indices)


def test_numpy_scalars_as_arguments():
    import numpy as np

    x = _input((4, 6))
    res = gradsparse.topk(x, np.int32(2), np.int64(1), np.bool_(False), np.bool_(True))
    ref = torch.topk(x, 2, 1, False, True)
    assert torch.equal(res.values, ref.values) and torch.equal(res.indices, ref.indices)
    with pytest.raises(TypeError, match="largest"):
        gradsparse.topk(x, 2, largest=1)
