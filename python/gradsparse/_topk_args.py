"""topk's arguments and its out=, written once for both of its routes: the direct path
(``selection.topk``: numpy arrays and plain tensors) and the torch op (``_torch_op.topk``:
autograd, ``torch.compile``, meta tensors).

:func:`check` runs while ``torch.compile`` traces the op route, so it stays plain Python on
ints, shapes and dtypes (a symbolic ``k`` is kept symbolic). torch is never imported here.
"""
from __future__ import annotations

import numbers
import sys
import warnings
from collections import namedtuple
from typing import Any, Tuple

import numpy as np

from ._convert import check_tensor, is_tensor, plain_tensor, torch_module
from .errors import ArgumentError, ArgumentTypeError, DimensionError

#: topk's result for numpy inputs (``gradsparse.TopK``; torch inputs get torch.return_types.topk)
TopK = namedtuple("TopK", ["values", "indices"], module="gradsparse")

#: KeyMode codes of _core.topk_axis, by (key, largest): magnitude, largest, smallest,
#: smallest magnitude
MODES = {("abs", True): 0, (None, True): 1, (None, False): 2, ("abs", False): 3}


# ----------------------------------------------------------------------------- arguments

def check(shape: Tuple[Any, ...], k: Any, dim: Any, largest: Any, sorted: Any, key: Any):
    """(k, dim in [0, ndim) -- 0 for a 0-d input --, KeyMode code) after checking every
    argument against the input's `shape`. k and dim may be Python or numpy integers or 0-d
    integer arrays/tensors; a symbolic k (``torch.SymInt``, under ``torch.compile``) stays
    symbolic. Errors name the argument: DimensionError for dim, ArgumentError for k and key,
    ArgumentTypeError for a wrong type."""
    k = _as_index(k, "k")
    dim = _as_index(dim, "dim")
    rank = max(len(shape), 1)  # a 0-d input has one dim of size 1, like in torch
    if not -rank <= dim < rank:
        raise DimensionError(f"dim: out of range (expected to be in range of [{-rank}, {rank - 1}], "
                             f"but got {dim}) for a {len(shape)}-D input")
    dim %= rank
    length = shape[dim] if shape else 1
    if k < 0 or k > length:
        raise ArgumentError(f"k: selected index k out of range: must be in [0, {length}] "
                            f"(the size of dim {dim}), got {k}")
    if not isinstance(largest, (bool, np.bool_)):
        raise ArgumentTypeError(f"largest: must be bool, got {type(largest).__name__}")
    if not isinstance(sorted, (bool, np.bool_)):
        raise ArgumentTypeError(f"sorted: must be bool, got {type(sorted).__name__}")
    if key is not None and not (isinstance(key, str) and key == "abs"):
        raise ArgumentError(f"key: must be None or \"abs\", got {key!r}")
    return k, dim, MODES[(key, bool(largest))]


def check_input(input: Any) -> None:
    """The op route's input checks (the direct path's ``as_flat`` makes the same ones): a
    dtype topk takes, on the CPU, a CUDA device or the meta device."""
    check_tensor(input, "input", integers=True, meta=True, cuda=True)


def _as_index(value: Any, name: str):
    """An integer argument that may also be a 0-d integer array or tensor (like torch), or
    a ``torch.SymInt`` (returned as it is)."""
    torch = torch_module()
    if torch is not None and isinstance(value, torch.SymInt):
        return value
    if isinstance(value, np.ndarray) and value.ndim == 0 and value.dtype.kind in "iu":
        return int(value)
    if is_tensor(value):
        if value.dim() != 0 or value.is_floating_point() or value.is_complex() or value.dtype == torch.bool:
            raise ArgumentTypeError(f"{name}: expected an integer or a 0-d integer tensor, "
                                    f"got a {value.dim()}-D {value.dtype} tensor")
        return int(value)
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise ArgumentTypeError(f"{name}: expected an integer, got {type(value).__name__}")
    return int(value)


# ----------------------------------------------------------------------------- out=

def write_out(out: Any, values: Any, indices: Any):
    """Writes the result (`values`, `indices`: torch tensors for a torch input, numpy arrays
    for a numpy one) into ``out=(values, indices)`` with torch.topk's rules, and returns the
    pair: a ``torch.return_types.topk_out`` for a torch input, a ``TopK`` for a numpy one.

    Every buffer is checked before either is written: tensors or numpy arrays; no autograd
    (torch refuses out= when an argument requires grad); the values buffer has the result's
    dtype (a numpy buffer for bfloat16 may hold ml_dtypes.bfloat16 or uint16 bit patterns),
    the indices buffer int64 (ArgumentError naming out, where torch raises RuntimeError). A
    tensor of another shape is resized (with torch's warning if it was not empty) and written
    through its strides; a numpy buffer must have the result's shape."""
    if not isinstance(out, (tuple, list)) or len(out) != 2:
        raise ArgumentTypeError("out: expected a (values, indices) pair")
    for buf in out:
        if not (is_tensor(buf) or isinstance(buf, np.ndarray)):
            raise ArgumentTypeError(f"out: expected numpy arrays or torch tensors, got {type(buf).__name__}")
    _no_autograd(values, out)
    pairs = tuple(zip(out, (values, indices), ("values", "indices")))
    for buf, result, what in pairs:
        _check_buffer(buf, result, what)
    for buf, result, what in pairs:
        if is_tensor(buf):
            _write_tensor(buf, _as_tensor(result), what)
        else:
            np.copyto(buf.view(np.uint16) if buf.dtype.name == "bfloat16" else buf, _as_array(result))
    if is_tensor(values):
        return torch_module().return_types.topk_out((out[0], out[1]))
    return TopK(out[0], out[1])


def _no_autograd(values: Any, out: Any) -> None:
    """torch's rule: out= and automatic differentiation do not mix (the values of an input
    that requires grad carry a grad_fn; an out tensor may require grad itself)."""
    if not any(is_tensor(t) and t.requires_grad for t in (values,) + tuple(out)):
        return
    if not torch_module().is_grad_enabled():
        return
    which = "input" if is_tensor(values) and values.requires_grad else "out"
    raise ArgumentError(f"out: topk(): functions with out=... arguments don't support automatic "
                        f"differentiation, but {which} requires grad; drop out= or call it under "
                        "torch.no_grad()")


def _check_buffer(buf: Any, result: Any, what: str) -> None:
    """One out= buffer checked against the result (dtype, device, layout; numpy: shape,
    writable) before anything is written."""
    if is_tensor(buf):
        plain_tensor(buf, "out", writable=True)  # nested, sparse, negative views: refused
        device = result.device if is_tensor(result) else "cpu"
        if buf.device.type != getattr(device, "type", device) or (
                buf.device.type == "cuda" and buf.device != device):  # torch: the result's device
            raise ArgumentError(f"out: the {what} tensor is on {buf.device}; expected a tensor on {device}")
        want = _as_tensor(result).dtype
        if buf.dtype != want:
            raise ArgumentError(f"out: expected the {what} buffer to have dtype {want}, but got {buf.dtype} instead")
        return
    if is_tensor(result) and result.device.type != "cpu":
        raise ArgumentTypeError(f"out: numpy buffers take a CPU result, not one on {result.device}")
    shape = tuple(result.shape)
    if buf.shape != shape:
        raise ArgumentError(f"out: the {what} array has shape {buf.shape}, expected {shape} "
                            "(numpy arrays are not resized)")
    if not buf.flags.writeable:
        raise ArgumentError(f"out: the {what} array is read-only")
    want = _as_array(result).dtype
    if want == np.uint16 and _is_bfloat16(result):
        if buf.dtype == np.uint16 or buf.dtype.name == "bfloat16":
            return
        want = "bfloat16"
    if buf.dtype != want:
        raise ArgumentError(f"out: expected the {what} buffer to have dtype {want}, but got {buf.dtype} instead")


def _write_tensor(buf: Any, src: Any, what: str) -> None:
    """`src` copied into the tensor `buf`, resized like torch's out= (with torch's warning
    when a non-empty one changes shape) and written through its strides."""
    torch = torch_module()
    try:
        if buf.shape != src.shape:
            if buf.numel() != 0:
                warnings.warn(f"An output with one or more elements was resized since it had shape "
                              f"{list(buf.shape)}, which does not match the required output shape "
                              f"{list(src.shape)}. This behavior is deprecated (as in torch); resize "
                              "it to zero elements with t.resize_(0) to reuse it", UserWarning,
                              stacklevel=_caller_stacklevel())
            buf.resize_(src.shape)
        with torch.no_grad():
            buf.copy_(src)
    except RuntimeError as e:  # e.g. an expanded (self-overlapping) or non-resizable buffer
        raise ArgumentError(f"out: cannot write the {what}: {e}") from e


def _is_bfloat16(result: Any) -> bool:
    if is_tensor(result):
        return result.dtype == torch_module().bfloat16
    return result.dtype.name == "bfloat16"


def _as_tensor(result: Any) -> Any:
    """The result as a tensor (a numpy one shares its memory; bfloat16 from its bits)."""
    if is_tensor(result):
        return result
    torch = torch_module()
    if result.dtype.name == "bfloat16":
        return torch.from_numpy(result.view(np.uint16)).view(torch.bfloat16)
    return torch.from_numpy(result)


def _as_array(result: Any) -> np.ndarray:
    """The result as a numpy array (a CPU tensor shares its memory; bfloat16 as uint16 bits)."""
    if not is_tensor(result):
        return result.view(np.uint16) if result.dtype.name == "bfloat16" else result
    torch = torch_module()
    if result.dtype == torch.bfloat16:
        return result.detach().view(torch.int16).numpy().view(np.uint16)
    return result.detach().numpy()


def _caller_stacklevel() -> int:
    """The stacklevel of a warning that points at the first frame outside gradsparse."""
    frame, level = sys._getframe(1), 1
    while frame is not None and frame.f_globals.get("__name__", "").split(".")[0] == "gradsparse":
        frame, level = frame.f_back, level + 1
    return level
