"""gradsparse.topk in torch's tracing machinery: torch.compile(fullgraph=True) (no graph
break), the first call made inside a compiled function, torch.library.opcheck of the
custom op, meta and fake tensors, and torch.func.vmap. torch-only; compiles are few and
small (compiling is slow on a 2-core machine)."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

import gradsparse
from inputs import requires_torch, torch

pytestmark = [
    requires_torch,
    # torch's inductor and forward-AD code still call torch.jit.script(_method), which warns
    # that it is deprecated (torch's own code, not ours)
    pytest.mark.filterwarnings("ignore:`torch.jit.script:DeprecationWarning"),
]


def _f(x):
    v, i = gradsparse.topk(x, 3, dim=1)
    w = gradsparse.topk(x, 2, dim=-1, largest=False, key="abs").values
    return v * 2, i, w


def _check_compiled(backend):
    torch._dynamo.reset()
    cf = torch.compile(_f, fullgraph=True, backend=backend)
    x = torch.randn(4, 6, 5, generator=torch.Generator().manual_seed(0))
    for got, want in zip(cf(x), _f(x)):
        assert torch.equal(got, want)
    # backward through the compiled function equals eager's
    xg = x.clone().requires_grad_()
    v, _, w = cf(xg)
    (v.sum() + (w * w).sum()).backward()
    xe = x.clone().requires_grad_()
    v, _, w = _f(xe)
    (v.sum() + (w * w).sum()).backward()
    assert torch.equal(xg.grad, xe.grad)


def test_compile_fullgraph_aot_eager():
    """dynamo traces gradsparse.topk into one graph (fullgraph=True raises on any graph
    break) holding the custom op; AOT autograd traces its backward."""
    _check_compiled("aot_eager")


@pytest.mark.skipif(shutil.which(os.environ.get("CXX", "g++")) is None,
                    reason="the inductor CPU backend needs a C++ compiler")
def test_compile_fullgraph_inductor():
    _check_compiled("inductor")


def test_first_call_inside_compile_registers_the_op():
    """gradsparse imported before torch, and topk's first call traced by dynamo: the op is
    registered during tracing, without a graph break (a fresh process)."""
    code = (
        "import gradsparse, torch\n"
        "f = torch.compile(lambda x: gradsparse.topk(x, 2).values, fullgraph=True, backend='aot_eager')\n"
        "x = torch.randn(3, 7)\n"
        "assert torch.equal(f(x), torch.topk(x, 2).values)\n"
        "print('ok')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.strip() == "ok"


def test_opcheck():
    """torch's own checks of a custom op: schema, fake kernel vs real kernel, autograd
    registration, AOT dispatch."""
    gradsparse._torch_op.register()
    x = torch.randn(5, 8, dtype=torch.float64, requires_grad=True)
    for args in [(x, 3, 1, True, True, None), (x, 2, 0, False, True, "abs"), (x, 0, 1, True, False, None)]:
        torch.library.opcheck(torch.ops.gradsparse.topk.default, args)


# (shape, k, dim, expected result shape)
META = [((10,), 3, 0, (3,)), ((4, 9), 2, -1, (4, 2)), ((4, 9), 1, 0, (1, 9)), ((2, 7, 3, 5), 4, 1, (2, 4, 3, 5)),
        ((3, 0, 4), 0, 1, (3, 0, 4)), ((0, 5), 2, 1, (0, 2)), ((), 1, 0, ()), ((), 0, -1, ())]


@pytest.mark.parametrize("shape, k, dim, want", META, ids=str)
def test_meta_tensors_give_torch_shapes(shape, k, dim, want):
    for dtype in (torch.float32, torch.bfloat16, torch.int32):
        x = torch.empty(shape, dtype=dtype, device="meta")
        res = gradsparse.topk(x, k, dim)
        ref = torch.topk(x, k, dim)
        assert res.values.shape == res.indices.shape == ref.values.shape == want
        assert res.values.dtype == dtype and res.indices.dtype == torch.int64
        assert res.values.device.type == res.indices.device.type == "meta"
        assert res.values.is_contiguous() and res.indices.is_contiguous()


def test_fake_tensors():
    from torch._subclasses.fake_tensor import FakeTensorMode

    with FakeTensorMode():
        x = torch.empty(6, 40, 3)
        res = gradsparse.topk(x, 5, dim=1)
    assert res.values.shape == (6, 5, 3) and res.indices.dtype == torch.int64


@pytest.mark.parametrize("in_dims", [0, 1, -1])
def test_vmap(in_dims):
    x = torch.randn(4, 6, 9, generator=torch.Generator().manual_seed(2))
    for dim in (0, -1):
        for key in (None, "abs"):
            f = lambda t: gradsparse.topk(t, 3, dim, key=key)  # noqa: E731
            got = torch.func.vmap(f, in_dims=in_dims)(x)
            want = torch.func.vmap(lambda t: (torch.topk(t.abs() if key else t, 3, dim)), in_dims=in_dims)(x)
            assert torch.equal(got.indices, want.indices)
            per = x.movedim(in_dims, 0)
            assert torch.equal(got.values, per.gather(dim if dim < 0 else dim + 1, got.indices))


def test_vmap_nested_and_zero_dim_examples():
    x = torch.randn(3, 4, 10, generator=torch.Generator().manual_seed(3))
    f = torch.func.vmap(torch.func.vmap(lambda t: gradsparse.topk(t, 2).values))
    assert torch.equal(f(x), torch.topk(x, 2).values)
    s = torch.randn(5)
    res = torch.func.vmap(lambda t: gradsparse.topk(t, 1))(s)  # every example is 0-d
    assert torch.equal(res.values, s) and torch.equal(res.indices, torch.zeros(5, dtype=torch.int64))


def test_forward_ad_under_compile_is_never_lost():
    """A traced call loses a custom jvp, so under forward AD topk runs eagerly at a graph
    break: the tangent is right without fullgraph, and fullgraph=True refuses loudly."""
    import torch.autograd.forward_ad as fwAD

    torch._dynamo.reset()
    x = torch.randn(3, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(4))
    t = torch.arange(15, dtype=torch.float64).reshape(3, 5)
    f = lambda u: gradsparse.topk(u, 2).values * 2  # noqa: E731
    cf = torch.compile(f, backend="aot_eager")
    assert torch.equal(cf(x), f(x))  # compiled first without forward AD: one graph, the op
    with fwAD.dual_level():
        got = fwAD.unpack_dual(cf(fwAD.make_dual(x, t))).tangent  # dynamo's guard recompiles
        assert torch.equal(got, 2 * t.gather(1, torch.topk(x, 2).indices))
        torch._dynamo.reset()  # (the cache would serve the graph-broken code again)
        with pytest.raises(RuntimeError, match="disable"):
            torch.compile(f, backend="aot_eager", fullgraph=True)(fwAD.make_dual(x, t))
