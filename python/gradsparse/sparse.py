"""The `Sparse` result type: which coordinates were kept and their values."""
from __future__ import annotations

from typing import Any, Tuple

import numpy as np

from ._convert import is_tensor, torch_module


class Sparse:
    """A sparse update: flat ``indices`` (int64, ascending) into an array of ``shape``,
    and the kept ``values`` (same dtype and array type — numpy or torch — as the input)."""

    __slots__ = ("indices", "values", "shape")

    def __init__(self, indices: Any, values: Any, shape: Tuple[int, ...]):
        self.indices = indices
        self.values = values
        self.shape = tuple(int(s) for s in shape)
        if len(indices) != len(values):
            raise ValueError("values: must have as many entries as indices")

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
        """The dense array (zeros where nothing was kept), same type and dtype as values."""
        if is_tensor(self.values):
            torch = torch_module()
            out = torch.zeros(self.numel, dtype=self.values.dtype)
            out[self.indices] = self.values
            return out.reshape(self.shape)
        out = np.zeros(self.numel, dtype=self.values.dtype)
        out[self.indices] = self.values
        return out.reshape(self.shape)

    def __repr__(self) -> str:
        return f"Sparse(shape={self.shape}, nnz={self.nnz}, dtype={self.dtype})"
