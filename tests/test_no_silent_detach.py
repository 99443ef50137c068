"""No public function drops autograd silently: every function that takes tensors (other
than topk, which supports autograd) refuses a tensor that requires grad while grad mode is
on -- ArgumentError naming the argument and the function, torch's rule for
``Tensor.numpy()`` -- and reads it under ``torch.no_grad()`` / ``torch.inference_mode()``,
with the same result as for ``x.detach()``. torch-only."""
from __future__ import annotations

import numpy as np
import pytest

import gradsparse as gs
from gradsparse import atomo
from gradsparse.compress import available_compressors, make_compressor
from gradsparse.errors import ArgumentError
from inputs import requires_torch, torch, torch_params

pytestmark = requires_torch

N = 64


def _x(seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(8, N // 8, generator=g).requires_grad_()


def _plain(result):
    """A comparable form of any result (Sparse, payload bytes, dicts, atomo updates...)."""
    if isinstance(result, gs.Sparse):
        return ("sparse", _plain(result.indices), _plain(result.values), tuple(result.shape))
    if isinstance(result, dict):
        return {k: _plain(v) for k, v in result.items()}
    if isinstance(result, (list, tuple)):
        return [_plain(v) for v in result]
    if torch.is_tensor(result):
        return result.detach().numpy().tolist()
    if isinstance(result, np.ndarray):
        return result.tolist()
    if hasattr(result, "payload"):  # compress.Compressed
        return result.payload
    if isinstance(result, gs.PreparedCost):
        return result.numpy().tolist()
    if hasattr(result, "to_dense"):  # atomo updates
        return result.to_dense().tolist()
    return result


def _streaming(x):
    s = gs.StreamingSelector(k=5)
    s.push(x)
    return s.finish()


def _ef(method):
    def call(x):
        ef = gs.ErrorFeedback()
        if method == "compress":
            return ef.compress("w", x, ratio=0.1)
        if method == "compress_many":
            return ef.compress_many({"w": x}, ratio=0.1)
        return ef.apply({"w": x}, lambda acc: ({n: a.copy() for n, a in acc.items()}, {n: a for n, a in acc.items()}))
    return call


# (id, function of the tensor, the argument name its message must carry)
CALLS = [
    ("sparsify", lambda x: gs.sparsify(x, 5), "x"),
    ("sparsify-cost", lambda x: gs.sparsify(x.detach(), 5, cost=x.abs() + 1), "cost"),
    ("sparsify_many", lambda x: gs.sparsify_many([x.detach(), x], k=5), "xs[1]"),
    ("sparsify_many-costs", lambda x: gs.sparsify_many([x.detach()], k=5, costs=[x.abs() + 1]), "costs[0]"),
    ("PreparedCost", lambda x: gs.PreparedCost(x.abs() + 1), "cost"),
    ("threshold", lambda x: gs.threshold(x, 0.5), "x"),
    ("random_k", lambda x: gs.random_k(x, 5, seed=1), "x"),
    ("StreamingSelector.push", _streaming, "x"),
    ("encode-dense", lambda x: gs.encode(x), "update"),
    ("encode-sparse", lambda x: gs.encode(gs.Sparse(torch.arange(3), x.reshape(-1)[:3], (N,))), "update.values"),
    ("encode-dict", lambda x: gs.encode({"w": x}), "w"),
    ("encoded_size", lambda x: gs.encoded_size(x), "update"),
    ("atomo.sample", lambda x: atomo.sample(x, budget=4.0, seed=1), "x"),
    ("atomo.qsgd", lambda x: atomo.qsgd(x, 4, seed=1), "x"),
    ("atomo.terngrad", lambda x: atomo.terngrad(x, seed=1), "x"),
    ("ErrorFeedback.compress", _ef("compress"), "x"),
    ("ErrorFeedback.compress_many", _ef("compress_many"), "w"),
    ("ErrorFeedback.apply", _ef("apply"), "w"),
] + [(f"compressor-{name}", (lambda name: lambda x: make_compressor(
        name, {"tau": 0.5} if name == "threshold" else {}).compress({"w": x}, seed=3, costs={"w": 1.0}))(name), "w")
     for name in available_compressors()]


@pytest.mark.parametrize("case", torch_params(lambda: [pytest.param((f, a), id=i) for i, f, a in CALLS]))
def test_requires_grad_is_refused_and_read_under_no_grad(case):
    call, arg = case
    x = _x()
    with pytest.raises(ArgumentError, match="requires grad") as e:
        call(x)
    msg = str(e.value)
    assert arg in msg and "gradsparse" in msg and "does not propagate gradients" in msg
    assert "detach()" in msg and "torch.no_grad()" in msg
    assert isinstance(e.value, RuntimeError)  # torch's class for the same refusal (Tensor.numpy())
    want = _plain(call(x.detach()))
    with torch.no_grad():
        assert _plain(call(x)) == want
    with torch.inference_mode():
        assert _plain(call(x)) == want


def test_message_names_the_public_function():
    x = _x()
    for call, name in [(lambda: gs.sparsify(x, 5), "gradsparse.sparsify"),
                       (lambda: gs.ErrorFeedback().compress("w", x, k=3), "gradsparse.ErrorFeedback.compress"),
                       (lambda: atomo.qsgd(x, 4), "gradsparse.atomo.qsgd")]:
        with pytest.raises(ArgumentError, match=name.replace(".", r"\.") + " does not propagate"):
            call()


def test_topk_is_the_exception_it_supports_autograd():
    x = _x()
    res = gs.topk(x, 3)
    assert res.values.requires_grad and res.values.grad_fn is not None


def test_tensors_that_do_not_require_grad_are_unaffected():
    x = _x().detach()
    assert _plain(gs.sparsify(x, 5)) == _plain(gs.sparsify(x.numpy(), 5))
    p = torch.nn.Parameter(torch.ones(4), requires_grad=False)
    assert gs.sparsify(p, 2).indices.tolist() == [0, 1]
    p.requires_grad_()
    with pytest.raises(ArgumentError, match="x: requires grad"):
        gs.sparsify(p, 2)
    # a .grad tensor (what gradient sparsification normally gets) does not require grad
    p.sum().backward()
    assert not p.grad.requires_grad and gs.sparsify(p.grad, 2).indices.tolist() == [0, 1]
