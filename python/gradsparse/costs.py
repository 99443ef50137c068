"""Prepared per-element costs for repeated CWMP selection.

Per-element costs (the energy of sending, storing or computing each coordinate) usually stay
the same from one round to the next while the update changes. Passing the raw array to
`sparsify` makes every call check every cost and read the whole cost array beside x — for
float32, twice the bytes of a plain top-k. `PreparedCost` does the check once and keeps a
private, read-only copy; for float32 costs it adds a one-byte lower bound per cost, so the
selection reads x and one byte per element and reads the cost itself only for the few
elements that might be selected. The result is exactly that of the raw array.
"""
from __future__ import annotations

import numbers
from typing import Any, Optional, Tuple

import numpy as np

from . import _core
from ._convert import F32, Flat, as_real, is_tensor, plain_tensor, tensor_to_numpy, torch_module
from .errors import ArgumentError, ArgumentTypeError


class PreparedCost:
    """Per-element costs, checked once (all finite and > 0) and kept for many selections.

    ``PreparedCost(cost)`` takes a numpy array, a torch CPU tensor or a nested sequence of
    positive finite numbers. float32 costs stay float32; any other real dtype becomes
    float64 (as it would when passed raw). The costs are copied, so changing the original
    array afterwards does not change the prepared costs; ``numpy()`` is a read-only view.

    Use it wherever a cost array is accepted: ``sparsify(x, k, cost=p)``,
    ``sparsify_many(xs, k, costs=[p, ...])``, ``StreamingSelector.push(x, cost=p)`` and
    ``ErrorFeedback.compress(name, x, k, cost=p)``. Selections are identical to those with
    the raw array. With float32 x, float32 costs and the default q = 2, alpha = 1 the cost
    filter tests each element against a one-byte lower bound of its cost and reads the cost
    only where the bound lets the element through (see docs/algorithms.md).

    Memory: the copy plus one byte per float32 cost. With CUDA inputs the costs are also
    copied to each device they are used on, once (kept as long as the PreparedCost).

    Thread safety: immutable once made, so one instance may be used by any number of threads.
    """

    __slots__ = ("_core", "_shape", "_devices")

    def __init__(self, cost: Any) -> None:
        self._devices: dict = {}  # str(device) -> the costs as a flat tensor there
        if isinstance(cost, PreparedCost):
            self._core, self._shape = cost._core, cost._shape
            return
        if is_tensor(cost):
            cost = tensor_to_numpy(cost, "cost")  # bfloat16 -> float32
            if cost.dtype == np.float16:
                cost = cost.astype(np.float32)  # half-precision costs are prepared as float32
        if cost is None or isinstance(cost, (bool, np.bool_, str, bytes)):
            raise ArgumentTypeError(f"cost: expected an array of costs, got {type(cost).__name__}")
        arr = np.asarray(cost)
        if arr.dtype.kind not in "fiu":
            raise ArgumentTypeError(f"cost: costs must be real numbers, got dtype {arr.dtype}")
        if arr.ndim == 0:
            raise ArgumentError("cost: a PreparedCost holds one cost per element; pass a scalar cost directly")
        if arr.size == 0:
            raise ArgumentError("cost: the cost array is empty")
        dtype = np.float32 if arr.dtype == np.float32 else np.float64
        self._shape: Tuple[int, ...] = tuple(int(d) for d in arr.shape)
        self._core = _core.PreparedCost(np.ascontiguousarray(arr, dtype=dtype).reshape(-1))

    @property
    def shape(self) -> Tuple[int, ...]:
        """Shape of the cost array given (a tensor of the same size is accepted too)."""
        return self._shape

    @property
    def size(self) -> int:
        return int(self._core.size)

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(self._core.dtype)

    @property
    def nbytes(self) -> int:
        """Bytes held: the copy of the costs and the one-byte bounds."""
        return int(self._core.nbytes)

    def numpy(self) -> np.ndarray:
        """The costs, as a read-only flat array (no copy)."""
        return np.asarray(self._core).reshape(self._shape)

    def on_device(self, device: Any) -> Any:
        """The costs as a flat tensor (float32 or float64, like `dtype`) on the torch
        `device`, copied there on first use and kept (torch must be loaded)."""
        key = str(device)
        t = self._devices.get(key)
        if t is None:
            torch = torch_module()
            t = torch.from_numpy(np.array(self._core, copy=True).reshape(-1)).to(device)
            self._devices[key] = t  # (a race makes a second copy; both are the same costs)
        return t

    def __array__(self, dtype=None, copy=None):
        a = self.numpy()
        if copy:
            a = a.copy()
        return a if dtype is None else a.astype(dtype)

    def __reduce__(self):
        # pickles as the costs themselves; unpickling checks and prepares them again
        return (PreparedCost, (self.numpy().copy(),))

    def __len__(self) -> int:
        return self._shape[0]

    def __repr__(self) -> str:
        return f"PreparedCost(shape={self._shape}, dtype={self._core.dtype})"


def prepared_core(cost: Any, size: int, shape: Tuple[int, ...], name: str):
    """The core object of a PreparedCost matching an input of `size` elements, or None if
    `cost` is not a PreparedCost."""
    if not isinstance(cost, PreparedCost):
        return None
    if cost.shape != shape and cost.size != size:
        raise ArgumentError(f"{name}: shape {cost.shape} does not match x of shape {shape}")
    if cost.size != size:
        raise ArgumentError(f"{name}: has {cost.size} elements, x has {size}")
    return cost._core


def _scalar_cost(cost: Any, name: str) -> Optional[float]:
    """A scalar cost (a number, or a 0-d array or tensor) as a float checked finite and > 0;
    None if `cost` is not a scalar."""
    if isinstance(cost, numbers.Real) or (isinstance(cost, np.ndarray) and cost.ndim == 0) or (
        is_tensor(cost) and cost.ndim == 0
    ):
        c = as_real(cost, name)
        if not (c > 0.0 and np.isfinite(c)):
            raise ArgumentError(f"{name}: costs must be finite and > 0, got {c}")
        return c
    return None


def as_cost(cost: Any, flat: Flat, name: str = "cost") -> Optional[object]:
    """None, a positive finite float, a contiguous float32/float64 array of flat.size, or the
    core object of a matching PreparedCost. For a CUDA input (flat.kind "cuda") see
    :func:`_device_cost`."""
    if cost is None:
        return None
    if flat.kind == "cuda":
        return _device_cost(cost, flat, name)
    core = prepared_core(cost, flat.size, flat.shape, name)
    if core is not None:
        return core
    c = _scalar_cost(cost, name)
    if c is not None:
        return c
    if is_tensor(cost):
        cost = tensor_to_numpy(cost, name)  # bfloat16 -> float32
    arr = np.asarray(cost)
    if arr.dtype.kind not in "fiu":
        raise ArgumentTypeError(f"{name}: costs must be real numbers, got dtype {arr.dtype}")
    if arr.shape != flat.shape and arr.size != flat.size:
        raise ArgumentError(f"{name}: shape {arr.shape} does not match x of shape {flat.shape}")
    if arr.size != flat.size:
        raise ArgumentError(f"{name}: has {arr.size} elements, x has {flat.size}")
    if arr.dtype == np.float32 and flat.code == F32:
        return np.ascontiguousarray(arr).reshape(-1)
    return np.ascontiguousarray(arr, dtype=np.float64).reshape(-1)


def _device_cost(cost: Any, flat: Flat, name: str) -> Optional[object]:
    """The cost of a CUDA input as gradsparse.cuda._ops takes it: a positive finite float, a
    matching PreparedCost itself, or a flat contiguous float32 (float32 x and costs) or
    float64 tensor on x's device, checked to be finite and > 0 here (one synchronisation;
    a PreparedCost is checked once, when it is made). Costs on another device, numpy arrays
    and lists are refused (ArgumentError naming `name`): x's device decides where the
    selection runs, and costs are not copied there silently on every call."""
    if isinstance(cost, PreparedCost):
        prepared_core(cost, flat.size, flat.shape, name)
        return cost
    c = _scalar_cost(cost, name)
    if c is not None:
        return c
    device = flat.array.device
    if not is_tensor(cost):
        raise ArgumentError(f"{name}: x is a tensor on {device}; give per-element costs as a tensor on that "
                            f"device, a scalar or a PreparedCost (got {type(cost).__name__})")
    torch = torch_module()
    t = plain_tensor(cost, name)
    if t.device != device:
        raise ArgumentError(f"{name}: is on {t.device}, but x is on {device}; move the costs to x's device "
                            "or use a PreparedCost")
    if t.is_complex() or t.dtype == torch.bool:
        raise ArgumentTypeError(f"{name}: costs must be real numbers, got dtype {t.dtype}")
    shape = tuple(t.shape)
    if shape != flat.shape and t.numel() != flat.size:
        raise ArgumentError(f"{name}: shape {shape} does not match x of shape {flat.shape}")
    if t.numel() != flat.size:
        raise ArgumentError(f"{name}: has {t.numel()} elements, x has {flat.size}")
    # as on the CPU, where a bfloat16 tensor of costs is read as float32
    dtype = torch.float32 if t.dtype in (torch.float32, torch.bfloat16) and flat.code == F32 else torch.float64
    t = t.to(dtype).contiguous().reshape(-1)
    if not bool(torch.all((t > 0) & torch.isfinite(t))):
        raise ArgumentError(f"{name}: costs must be finite and > 0")
    return t
