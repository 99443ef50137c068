"""Turning numpy arrays and torch tensors into flat contiguous views for the core.

torch is never imported here: a tensor is recognised only if torch is already loaded.
Contiguous inputs are used without copying (torch through ``Tensor.numpy()``, which
shares memory); non-contiguous inputs are copied to a contiguous buffer first. CUDA tensors
(:func:`is_cuda`) stay on their device: ``as_flat(..., cuda=True)`` gives a flat view whose
``array`` is the tensor itself, for the functions that hand them to ``gradsparse.cuda``.
"""
from __future__ import annotations

import numbers
import sys
from dataclasses import dataclass
from typing import Any, Tuple

import numpy as np
from . import cuda as _cuda
from .errors import ArgumentError, ArgumentTypeError

#: dtype codes understood by the C++ core (the integer codes only by topk)
F32, F64, F16, BF16 = 0, 1, 2, 3
I8, U8, I16, I32, I64, U16, U32, U64 = 4, 5, 6, 7, 8, 9, 10, 11
_NUMPY_CODES = {np.dtype(np.float32): F32, np.dtype(np.float64): F64, np.dtype(np.float16): F16}
_NUMPY_INT_CODES = {np.dtype(t): c for t, c in ((np.int8, I8), (np.uint8, U8), (np.int16, I16), (np.int32, I32),
                                                (np.int64, I64), (np.uint16, U16), (np.uint32, U32),
                                                (np.uint64, U64))}
SUPPORTED = "float32, float64, float16 or bfloat16"
SUPPORTED_INT = "float32, float64, float16, bfloat16, int8, uint8, int16, int32, int64, uint16, uint32 or uint64"


def torch_module():
    """The torch module if it is already imported, else None (never imports it)."""
    return sys.modules.get("torch")


def is_tensor(x: Any) -> bool:
    torch = torch_module()
    return torch is not None and isinstance(x, torch.Tensor)


#: device types whose tensors go to the CUDA backend (tests/cuda_fake.py adds "cpu" to run
#: the CUDA layer on CPU tensors against a CPU stand-in for gradsparse.cuda._ops)
CUDA_DEVICE_TYPES: Tuple[str, ...] = ("cuda",)


def is_cuda(x: Any) -> bool:
    """True for a torch tensor on a CUDA device (never imports torch)."""
    return is_tensor(x) and x.device.type in CUDA_DEVICE_TYPES


@dataclass
class Flat:
    """A flat, C-contiguous view of an input, as the core reads it."""

    array: Any  # 1-D numpy: float32/float64/float16, or uint16 holding bfloat16 bits;
    # for kind "cuda": the contiguous 1-D CUDA tensor itself, in its own dtype
    code: int
    shape: Tuple[int, ...]
    kind: str  # "numpy", "torch" (a CPU tensor) or "cuda" (a CUDA tensor)
    out_dtype: Any  # numpy dtype (numpy inputs) or torch dtype (torch inputs)

    @property
    def size(self) -> int:
        return int(self.array.numel()) if self.kind == "cuda" else int(self.array.size)

    @property
    def device(self) -> Any:
        """The torch device of a CUDA input, None for CPU inputs."""
        return self.array.device if self.kind == "cuda" else None

    def wrap(self, raw: Any):
        """Turns raw element values (the core's dtype) into the caller's array type (CUDA
        results are tensors already)."""
        if self.kind == "cuda":
            return raw
        if self.kind == "torch":
            torch = torch_module()
            t = torch.from_numpy(raw)
            if self.code == BF16:
                t = t.view(torch.bfloat16)
            return t
        if self.code == BF16:
            return raw.view(self.out_dtype)
        return raw

    def wrap_index(self, idx: Any):
        if self.kind == "cuda":
            return idx
        if self.kind == "torch":
            return torch_module().from_numpy(idx)
        return idx


def plain_tensor(t: Any, name: str, *, writable: bool = False) -> Any:
    """`t` detached, checked to be a dense (strided) tensor: nested and sparse tensors raise
    TypeError naming `name`. Negative and conjugate views (``x.neg()`` under some ops,
    ``Tensor.is_neg``/``is_conj``) are resolved into a plain copy -- or refused with
    ValueError when the tensor is to be written (`writable`).

    No silent detach: a tensor that requires grad while grad mode is on raises ArgumentError
    (torch's own rule for ``Tensor.numpy()``) -- gradsparse's results carry no gradient, so
    detaching quietly would cut the graph. Under ``torch.no_grad()`` / ``inference_mode`` it is
    read. (``gradsparse.topk`` supports autograd: it routes such tensors to its torch op first.)"""
    torch = torch_module()
    if t.requires_grad and torch.is_grad_enabled():
        raise ArgumentError(f"{name}: requires grad; {_public_caller()} does not propagate gradients; "
                            f"pass {name}.detach() or call it under torch.no_grad()")
    if getattr(t, "is_nested", False):
        raise ArgumentTypeError(f"{name}: nested tensors are not supported; pass a dense tensor")
    if t.is_sparse or t.layout != torch.strided:
        raise ArgumentTypeError(f"{name}: sparse tensors are not supported; pass a dense tensor (layout {t.layout})")
    t = t.detach()
    if t.is_neg() or t.is_conj():
        if writable:
            raise ArgumentError(f"{name}: a negative or conjugate view cannot be written in place; "
                             "pass a plain tensor (resolve_neg() / resolve_conj())")
        t = t.resolve_neg().resolve_conj()
    return t


def _public_caller() -> str:
    """The name of the gradsparse function the user called ("gradsparse.sparsify",
    "gradsparse.ErrorFeedback.compress"), found on the stack (only for error messages)."""
    frame, name = sys._getframe(1), "this gradsparse function"
    while frame is not None and frame.f_globals.get("__name__", "").split(".")[0] == "gradsparse":
        module = frame.f_globals["__name__"]
        qualname = getattr(frame.f_code, "co_qualname", frame.f_code.co_name)
        public = sys.modules.get("gradsparse")
        top = qualname.split(".")[0]
        if public is not None and getattr(public, top, None) is frame.f_globals.get(top, ""):
            module = "gradsparse"  # re-exported at the top level
        if not qualname.startswith("_") and "<" not in qualname:
            name = f"{module}.{qualname}"
        frame = frame.f_back
    return name


def tensor_to_numpy(t: Any, name: str, *, bfloat16: str = "float32", writable: bool = False,
                    contiguous: bool = True) -> np.ndarray:
    """The numpy array of a torch CPU tensor, sharing its memory where the layout allows.

    The one tensor -> numpy path of the package: `t` is checked with :func:`plain_tensor`
    (TypeError for nested/sparse tensors), must be on the CPU (ValueError naming `name`),
    and is made contiguous (a copy only if it is not) unless `contiguous` is False (then
    the view keeps its strides, for buffers written in place). bfloat16, which numpy lacks,
    becomes float32 (``bfloat16="float32"``, exact widening, a copy) or its raw bit
    patterns as uint16 (``bfloat16="bits"``, no copy)."""
    torch = torch_module()
    t = plain_tensor(t, name, writable=writable)
    if t.device.type != "cpu":
        raise ArgumentError(f"{name}: tensor must be on the CPU, got one on {t.device} (move it with .cpu())")
    if contiguous:
        t = t.contiguous()
    if t.dtype == torch.bfloat16:
        if bfloat16 == "bits":
            return t.view(torch.int16).numpy().view(np.uint16)
        return t.float().numpy()
    return t.numpy()


def as_flat(x: Any, name: str = "x", *, integers: bool = False, cuda: bool = False) -> Flat:
    """Validates `x` and returns its flat view; raises TypeError/ValueError naming `name`.
    With `integers`, integer dtypes are accepted too (torch: int8, uint8, int16, int32,
    int64 -- the ones torch.topk takes on the CPU; numpy: also uint16/32/64). With `cuda`,
    a CUDA tensor gives a flat view of kind "cuda" (the tensor, made contiguous) after
    ``gradsparse.cuda.require(name)``; without it a CUDA tensor is refused (ArgumentError)."""
    if is_tensor(x):
        if cuda and is_cuda(x):
            return _cuda_flat(x, name, integers)
        return _tensor_flat(x, name, integers)
    if isinstance(x, (bool, np.bool_)) or x is None:
        raise ArgumentTypeError(f"{name}: expected a numpy array or torch tensor, got {type(x).__name__}")
    arr = x if isinstance(x, np.ndarray) else np.asarray(x)
    if arr.dtype.kind == "V" and arr.dtype.names is not None:
        raise ArgumentTypeError(f"{name}: structured arrays are not supported")
    if arr.dtype.name == "bfloat16" and arr.dtype.itemsize == 2:  # ml_dtypes.bfloat16
        out_dtype = arr.dtype
        raw = np.ascontiguousarray(arr).reshape(-1).view(np.uint16)
        return Flat(raw, BF16, tuple(arr.shape), "numpy", out_dtype)
    dt = arr.dtype
    if dt.byteorder not in ("=", "|") and dt.newbyteorder("=") in _NUMPY_CODES:
        arr = arr.astype(dt.newbyteorder("="))
        dt = arr.dtype
    if dt.byteorder not in ("=", "|") and integers and dt.newbyteorder("=") in _NUMPY_INT_CODES:
        arr = arr.astype(dt.newbyteorder("="))
        dt = arr.dtype
    code = _NUMPY_CODES.get(dt)
    if code is None and integers:
        code = _NUMPY_INT_CODES.get(dt)
    if code is None:
        raise ArgumentTypeError(f"{name}: unsupported dtype {dt}; expected {SUPPORTED_INT if integers else SUPPORTED}")
    shape = tuple(arr.shape)  # before ascontiguousarray, which makes 0-d arrays 1-d
    arr = np.ascontiguousarray(arr)
    return Flat(arr.reshape(-1), code, shape, "numpy", dt)


def _torch_int_codes(torch) -> dict:
    return {torch.int8: I8, torch.uint8: U8, torch.int16: I16, torch.int32: I32, torch.int64: I64}


def check_tensor(t: Any, name: str, *, integers: bool = False, meta: bool = False, cuda: bool = False) -> int:
    """The core's dtype code of the tensor `t` after checking its dtype (ArgumentTypeError
    naming `name`; with `integers`, the integer dtypes torch.topk takes on the CPU too) and
    its device (ArgumentError unless on the CPU -- or, with `meta`, a meta tensor, with
    `cuda`, a CUDA tensor). Reads only the dtype and the device, so ``torch.compile``
    traces it."""
    torch = torch_module()
    ok = t.device.type == "cpu" or (meta and t.device.type == "meta") or (cuda and is_cuda(t))
    if not ok:
        where = "takes CPU and CUDA tensors" if cuda else "takes CPU tensors only"
        raise ArgumentError(f"{name}: tensor is on {t.device}; {_public_caller()} {where} "
                            "(move it with .cpu())")
    codes = {torch.float32: F32, torch.float64: F64, torch.float16: F16, torch.bfloat16: BF16}
    if integers:
        codes.update(_torch_int_codes(torch))
    if t.dtype not in codes:
        expected = "float32, float64, float16, bfloat16, int8, uint8, int16, int32 or int64" if integers else SUPPORTED
        raise ArgumentTypeError(f"{name}: unsupported dtype {t.dtype}; expected {expected}")
    return codes[t.dtype]


def check_cuda(t: Any, name: str, *, integers: bool = False) -> Tuple[Any, int]:
    """(`t` as a plain tensor, its dtype code) for a CUDA tensor after the checks of
    :func:`plain_tensor`, ``gradsparse.cuda.require(name)`` (the backend is built and a
    device usable) and the dtype check of :func:`check_tensor`."""
    t = plain_tensor(t, name)
    _cuda.require(name)
    return t, check_tensor(t, name, integers=integers, cuda=True)


def _cuda_flat(t: Any, name: str, integers: bool) -> Flat:
    t, code = check_cuda(t, name, integers=integers)
    return Flat(t.contiguous().reshape(-1), code, tuple(t.shape), "cuda", t.dtype)


def _tensor_flat(t: Any, name: str, integers: bool = False) -> Flat:
    t = plain_tensor(t, name)
    code = check_tensor(t, name, integers=integers)
    raw = tensor_to_numpy(t, name, bfloat16="bits")
    return Flat(raw.reshape(-1), code, tuple(t.shape), "torch", t.dtype)


def as_count(value: Any, name: str) -> int:
    """An integer argument (bool and float rejected)."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise ArgumentTypeError(f"{name}: expected an integer, got {type(value).__name__}")
    return int(value)


def as_real(value: Any, name: str) -> float:
    """A real scalar argument (bool rejected)."""
    if isinstance(value, (bool, np.bool_)):
        raise ArgumentTypeError(f"{name}: expected a number, got bool")
    if isinstance(value, np.ndarray) and value.ndim == 0:
        value = value.item()
    if is_tensor(value) and value.ndim == 0:
        value = value.item()
    if not isinstance(value, numbers.Real):
        raise ArgumentTypeError(f"{name}: expected a number, got {type(value).__name__}")
    return float(value)


def bf16_to_f32(bits: np.ndarray) -> np.ndarray:
    """bfloat16 bit patterns (uint16) -> float32 values, exactly."""
    return (bits.astype(np.uint32) << 16).view(np.float32)


def f32_to_bf16(values: np.ndarray) -> np.ndarray:
    """float32 -> bfloat16 bit patterns, round to nearest even (NaN kept NaN)."""
    u = np.ascontiguousarray(values, dtype=np.float32).view(np.uint32)
    rounded = ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype(np.uint16)
    nan = np.isnan(values)
    if nan.any():
        rounded[nan] = ((u[nan] >> 16) | 0x40).astype(np.uint16)
    return rounded


def flat_buffer(a: Any, what: str, *, writable: bool = False) -> np.ndarray:
    """A flat C-contiguous numpy view of a caller-owned numpy array or torch CPU tensor
    (torch.bfloat16 as its bits), without a copy; `writable`: it must be writable."""
    if is_tensor(a):
        arr = tensor_to_numpy(a, what, bfloat16="bits", writable=writable, contiguous=False)
    elif isinstance(a, np.ndarray):
        arr = a
    else:
        raise ArgumentTypeError(f"{what}: expected a numpy array or torch tensor, got {type(a).__name__}")
    if not arr.flags.c_contiguous or (writable and not arr.flags.writeable):
        raise ArgumentError(f"{what}: must be C-contiguous" + (" and writable" if writable else ""))
    return arr.reshape(-1)
