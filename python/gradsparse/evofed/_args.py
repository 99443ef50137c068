"""Argument checks shared by the EvoFed modules: every failure names the argument."""
from __future__ import annotations

import math
import numbers
from typing import Any, Optional

import numpy as np

from .._convert import is_tensor, tensor_to_numpy
from ..errors import ArgumentError, ArgumentTypeError

U64 = 2**64


def integer(value: Any, name: str, lo: int, hi: int) -> int:
    """An int in [lo, hi] (bool and float refused)."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise ArgumentTypeError(f"{name}: expected an int, got {type(value).__name__}")
    if not lo <= int(value) <= hi:
        raise ArgumentError(f"{name}: must be in [{lo}, {hi}], got {value}")
    return int(value)


def real(value: Any, name: str, *, lo: float = -math.inf, hi: float = math.inf,
         lo_open: bool = False) -> float:
    """A finite real number in [lo, hi] ((lo, hi] with lo_open)."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise ArgumentTypeError(f"{name}: expected a number, got {type(value).__name__}")
    v = float(value)
    if not math.isfinite(v) or v < lo or v > hi or (lo_open and v == lo):
        interval = f"{'(' if lo_open else '['}{lo}, {hi}]"
        raise ArgumentError(f"{name}: must be finite and in {interval}, got {value!r}")
    return v


def flag(value: Any, name: str) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise ArgumentTypeError(f"{name}: expected a bool, got {type(value).__name__}")
    return bool(value)


def round_number(value: Any) -> int:
    return integer(value, "round", 0, U64 - 1)


def array(x: Any, name: str, *, ndims=(1,), dtype=np.float32, cols: Optional[int] = None,
          core_checks_finite: bool = False) -> np.ndarray:
    """`x` as a C-contiguous array of `dtype` with one of `ndims` dimensions, non-empty and
    finite; with `cols`, its last dimension must be `cols` (a float array of another float
    dtype is converted; integer and other dtypes are refused). `core_checks_finite`: the
    caller passes the array to a core function that refuses NaN and infinity itself (naming
    it), so an array used as given is not scanned twice (a converted one still is, to tell
    an overflow from a NaN)."""
    if is_tensor(x):
        x = tensor_to_numpy(x, name)
    if not isinstance(x, (np.ndarray, list, tuple)):
        raise ArgumentTypeError(f"{name}: expected an array, got {type(x).__name__}")
    arr = np.asarray(x)
    if arr.dtype.kind != "f":
        raise ArgumentTypeError(f"{name}: expected a floating-point array, got dtype {arr.dtype}")
    if arr.ndim not in ndims:
        want = " or ".join(f"{n}-D" for n in ndims)
        raise ArgumentError(f"{name}: expected a {want} array, got shape {arr.shape}")
    if arr.size == 0:
        raise ArgumentError(f"{name}: must be non-empty, got shape {arr.shape}")
    if cols is not None and arr.shape[-1] != cols:
        raise ArgumentError(f"{name}: expected last dimension {cols}, got shape {arr.shape}")
    with np.errstate(over="ignore"):
        out = np.ascontiguousarray(arr, dtype=dtype)  # no copy when already in shape
    if (out is not arr or not core_checks_finite) and not all_finite(out):
        if out is arr or not all_finite(np.ascontiguousarray(arr)):
            raise ArgumentError(f"{name}: contains NaN or infinity")
        raise ArgumentError(f"{name}: values overflow {np.dtype(dtype).name}")
    return out


def all_finite(a: np.ndarray, block: int = 1 << 16) -> bool:
    """No NaN or infinity in the C-contiguous `a`, checked in blocks (O(block) memory)."""
    flat = a.reshape(-1)
    return all(np.isfinite(flat[i:i + block]).all() for i in range(0, flat.size, block))


def mix(*words: int) -> int:
    """A 64-bit hash of non-negative ints (SplitMix64 output function, chained)."""
    h = 0x6A09E667F3BCC909
    for w in words:
        z = (h ^ (w % U64)) + 0x9E3779B97F4A7C15
        z %= U64
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) % U64
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) % U64
        h = z ^ (z >> 31)
    return h
