"""gradsparse.topk inside torch's machinery: autograd, forward-mode AD, torch.compile,
vmap, meta and fake tensors.

``selection.topk`` hands a torch input here when the call needs more than numbers
(:func:`wants_op`); everything else takes the direct path, which never enters torch's
dispatcher. Here the selection is the custom op ``torch.ops.gradsparse.topk``:

* its CPU and CUDA kernels are ``selection._topk_direct`` (the direct path itself: the C++
  engine for CPU tensors, the CUDA backend for CUDA tensors), which selection plugs in
  (:func:`set_kernels`);
* its arguments are checked and ``out=`` is written by ``_topk_args``, like on the direct
  path (the same errors, the same out= rules);
* its fake kernel gives the result's shape and dtypes (meta tensors, ``torch.compile``);
* its backward scatters the incoming gradient to the selected indices along `dim`, zeros
  elsewhere (``torch.topk``'s backward), written with differentiable torch ops, so double
  backward works;
* its vmap rule moves the batch dimension to the front and selects along the shifted dim.

In eager mode the op is called through an ``autograd.Function`` that adds forward-mode AD
(the tangent gathered at the selected indices), which custom ops cannot register (called
directly on a dual tensor, a custom op drops the tangent). Under ``torch.compile`` the op is
called directly (its registered backward serves ``backward()``) -- unless a forward-AD level
is open: a traced Function loses its custom ``jvp``, so then the Function is called behind
``torch.compiler.disable``: dynamo breaks the graph there (an error with ``fullgraph=True``)
and runs it eagerly, rather than lose the tangent.

What works (tests/test_topk_autograd.py, tests/test_topk_compile.py): ``backward()``,
gradcheck and gradgradcheck; forward AD (``forward_ad`` dual tensors, ``torch.func.jvp``);
``torch.func.grad``, ``vmap`` (any ``in_dims``, nested, 0-d examples), ``vmap`` of
``grad``, ``jacfwd``/``jacrev``/``hessian``; ``torch.compile(fullgraph=True)`` with the
inductor and aot_eager backends, static or dynamic shapes, k from a (symbolic) size;
``torch.library.opcheck``; meta tensors and ``FakeTensorMode``; CUDA tensors (the op's CUDA
kernel runs the CUDA backend on the input's device). ``out=`` with a tensor that
requires grad is refused like torch refuses it. Not inside one compiled graph: forward AD
(see above; it runs eagerly at a graph break instead).

torch is never imported here: the op is registered on the first call that needs it,
reading torch from ``sys.modules`` like ``_convert`` does -- also when that first call is
traced by ``torch.compile`` (see ``_op_ready``).
"""
from __future__ import annotations

import sys
import threading
from typing import Any

from . import _topk_args
from . import cuda as _cuda

#: set once the op, its kernels and the eager autograd.Function exist
_Function: Any = None
#: _Function.apply behind torch.compiler.disable: dynamo runs it eagerly at a graph break
_eager_apply: Any = None
#: the op's CPU and CUDA kernels, selection._topk_direct, plugged in by selection when it is
#: imported (selection imports this module, so the dependency points one way)
_cpu_kernel: Any = None
_cuda_kernel: Any = None
_lock = threading.Lock()

_SCHEMA = "(Tensor input, SymInt k, int dim, bool largest, bool sorted, str? key) -> (Tensor, Tensor)"


def wants_op(input: Any) -> bool:
    """True when a call on the tensor `input` needs torch's machinery: `input` requires grad
    with grad mode on, carries a forward-AD tangent, is wrapped by a functorch transform
    (vmap, grad, jvp), is a meta or fake tensor (or a dispatch mode is active), or the call
    is being traced by ``torch.compile``."""
    torch = sys.modules["torch"]
    if torch.compiler.is_compiling():
        return True
    if input.requires_grad and torch.is_grad_enabled():
        return True
    if input.device.type == "meta" or torch._C._len_torch_dispatch_stack() > 0:
        return True
    if type(input).__torch_dispatch__ is not torch.Tensor.__torch_dispatch__:
        return True  # FakeTensor, FunctionalTensor and other dispatch subclasses
    if torch._C._functorch.is_functorch_wrapped_tensor(input):
        return True
    fwd = torch.autograd.forward_ad
    return fwd._current_level >= 0 and fwd.unpack_dual(input).tangent is not None


def topk(input: Any, k: Any, dim: Any, largest: Any, sorted: Any, key: Any, out: Any):
    """``gradsparse.topk`` for an input :func:`wants_op` accepted: checks the arguments
    (the same errors as the direct path), selects through the op, returns a
    ``torch.return_types.topk`` (or fills `out`)."""
    torch = sys.modules["torch"]
    _topk_args.check_input(input)
    k, dim, _ = _topk_args.check(input.shape, k, dim, largest, sorted, key)
    if input.device.type == "cuda" and not torch.compiler.is_compiling():
        _cuda.require("input")  # before the op: its error, not one from inside the dispatcher
    if torch.compiler.is_compiling():
        _op_ready()  # run by dynamo while tracing (see below), not traced
        if torch.autograd.forward_ad._current_level >= 0:  # (see the module docstring)
            values, indices = _eager_apply(input, k, dim, bool(largest), bool(sorted), key)
        else:
            values, indices = torch.ops.gradsparse.topk(input, k, dim, bool(largest), bool(sorted), key)
    else:
        values, indices = register().apply(input, k, dim, bool(largest), bool(sorted), key)
    if out is not None:
        return _topk_args.write_out(out, values, indices)
    return torch.return_types.topk((values, indices))


# ----------------------------------------------------------------------------- the op

def register():
    """Registers ``gradsparse::topk`` with torch (once; torch must be loaded) and returns
    the eager ``autograd.Function`` that calls it."""
    global _Function, _eager_apply
    if _Function is None:
        with _lock:
            if _Function is None:
                torch = sys.modules["torch"]
                function = _define(torch)
                _eager_apply = torch.compiler.disable(function.apply, reason=(
                    "gradsparse.topk under forward-mode AD: dynamo cannot trace the custom jvp"))
                _Function = function
    return _Function


def _op_ready() -> bool:
    """Registers the op (if needed); True."""
    register()
    return True


# The marker torch.compiler.assume_constant_result puts on a function (it cannot be called
# here: torch may not be loaded yet): dynamo runs _op_ready while tracing instead of tracing
# into it, so a first gradsparse.topk call inside a compiled function registers the op,
# without a graph break, before dynamo looks up torch.ops.gradsparse.topk.
_op_ready._dynamo_marked_constant = True  # type: ignore[attr-defined]


def _define(torch):
    op = torch.library.custom_op("gradsparse::topk", _topk_cpu, mutates_args=(),
                                 device_types="cpu", schema=_SCHEMA)
    op.register_kernel("cuda", _topk_cuda)  # (registering needs no CUDA build of torch)

    @op.register_fake
    def _fake(input, k, dim, largest, sorted, key):
        shape = list(input.shape)
        if shape:
            shape[dim] = k
        return input.new_empty(shape), input.new_empty(shape, dtype=torch.int64)

    def setup_context(ctx, inputs, output):
        ctx.shape, ctx.dim = inputs[0].shape, inputs[2]
        ctx.save_for_backward(output[1])

    def backward(ctx, grad_values, _grad_indices):
        (indices,) = ctx.saved_tensors
        return _scatter(grad_values, indices, ctx.shape, ctx.dim), None, None, None, None, None

    op.register_autograd(backward, setup_context=setup_context)

    @op.register_vmap
    def _vmap(info, in_dims, input, k, dim, largest, sorted, key):
        bdim = in_dims[0]
        if bdim is None:
            return op(input, k, dim, largest, sorted, key), (None, None)
        x = input.movedim(bdim, 0)
        if x.dim() == 1:  # 0-d examples: torch returns the element itself, index 0
            return (x.clone(), torch.zeros_like(x, dtype=torch.int64)), (0, 0)
        return op(x, k, dim + 1, largest, sorted, key), (0, 0)

    class TopK(torch.autograd.Function):
        """The op with forward-mode AD added (eager calls only)."""

        generate_vmap_rule = True

        @staticmethod
        def forward(input, k, dim, largest, sorted, key):
            return op(input, k, dim, largest, sorted, key)

        @staticmethod
        def setup_context(ctx, inputs, output):
            ctx.mark_non_differentiable(output[1])
            ctx.shape, ctx.dim = inputs[0].shape, inputs[2]
            ctx.save_for_backward(output[1])
            ctx.save_for_forward(output[1])

        @staticmethod
        def backward(ctx, grad_values, _grad_indices):
            return backward(ctx, grad_values, _grad_indices)

        @staticmethod
        def jvp(ctx, tangent, *_):
            (indices,) = ctx.saved_tensors
            return tangent.gather(ctx.dim, indices), None

    return TopK


def set_kernels(*, cpu: Any, cuda: Any) -> None:
    """Sets the op's CPU and CUDA kernels: ``kernel(input, k, dim, largest, sorted, key)``
    -> two fresh contiguous tensors on the input's device (``selection._topk_direct``)."""
    global _cpu_kernel, _cuda_kernel
    _cpu_kernel, _cuda_kernel = cpu, cuda


def _topk_cpu(input, k, dim, largest, sorted, key):
    return _cpu_kernel(input, k, dim, largest, sorted, key)


def _topk_cuda(input, k, dim, largest, sorted, key):
    return _cuda_kernel(input, k, dim, largest, sorted, key)


def _scatter(grad_values, indices, shape, dim):
    """torch.topk's backward: `grad_values` placed at `indices` along `dim` of a zero
    tensor of the input's `shape` (a 0-d input passes its gradient through, as torch's
    does for k in {0, 1})."""
    return grad_values.new_zeros(shape).scatter(dim, indices, grad_values)
