"""The `Sparse` result type: which coordinates were kept and their values."""
from __future__ import annotations

import numbers
from typing import Any, Tuple

import numpy as np

from ._convert import is_tensor, torch_module
from .errors import ArgumentError, ArgumentTypeError


class Sparse:
    """A sparse update: flat ``indices`` (int64, ascending) into an array of ``shape``,
    and the kept ``values`` (same dtype and array type — numpy or torch — as the input)."""

    __slots__ = ("indices", "values", "shape")

    def __init__(self, indices: Any, values: Any, shape: Tuple[int, ...]):
        for name, arr in (("indices", indices), ("values", values)):
            if is_tensor(arr) and (arr.is_nested or arr.layout != torch_module().strided):
                raise ArgumentTypeError(f"{name}: nested and sparse tensors are not supported; pass a dense tensor")
            try:
                len(arr)
            except TypeError:
                raise ArgumentTypeError(f"{name}: expected a 1-D array, got {type(arr).__name__}") from None
        if isinstance(shape, (str, bytes)) or not hasattr(shape, "__iter__"):
            raise ArgumentTypeError(f"shape: expected a tuple of ints, got {type(shape).__name__}")
        dims = []
        for s in shape:
            if isinstance(s, (bool, np.bool_)) or not isinstance(s, (numbers.Integral, np.integer)):
                # (a float dimension that is a whole number, e.g. from a float64 shape record, is kept)
                if not (isinstance(s, (float, np.floating)) and float(s).is_integer()):
                    raise ArgumentTypeError(f"shape: dimensions must be ints, got {s!r}")
            dims.append(int(s))
        self.indices = indices
        self.values = values
        self.shape = tuple(dims)
        if len(indices) != len(values):
            raise ArgumentError(f"indices, values: must have as many entries ({len(indices)} indices, {len(values)} values)")

    @property
    def nnz(self) -> int:
        """Number of kept coordinates."""
        return int(len(self.indices))

    @property
    def numel(self) -> int:
        """Number of elements of the dense array."""
        n = 1
        for s in self.shape:
            n *= s
        return n

    @property
    def density(self) -> float:
        """nnz / numel."""
        return self.nnz / self.numel if self.numel else 0.0

    @property
    def dtype(self) -> Any:
        return self.values.dtype

    def to_dense(self) -> Any:
        """The dense array (zeros where nothing was kept), same type, dtype and device as values."""
        if is_tensor(self.values):
            torch = torch_module()
            out = torch.zeros(self.numel, dtype=self.values.dtype, device=self.values.device)
            out[self.indices] = self.values
            return out.reshape(self.shape)
        out = np.zeros(self.numel, dtype=self.values.dtype)
        out[self.indices] = self.values
        return out.reshape(self.shape)

    def __repr__(self) -> str:
        return f"Sparse(shape={self.shape}, nnz={self.nnz}, dtype={self.dtype})"
