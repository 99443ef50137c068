"""The combine of sparse payloads into a persistent dense output (the DDP hook's decode):
no n-sized temporary, and only the positions written last time are cleared."""
from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np

from .. import _core
from .._convert import as_real, flat_buffer, is_tensor
from ..errors import ArgumentError, ArgumentTypeError

__all__ = ["scatter_mean"]


def scatter_mean(out: Any, parts: Sequence[Any], world: Any, clear: Any = None) -> Any:
    """Adds `world` ranks' sparse payloads into `out` as their mean, in place: first
    ``out[clear[j]] = 0`` for every index of `clear` (the int32 indices written last time;
    -1 skipped), then for each part p in order and each j in order
    ``out[i] += v / world`` (float32 division of each contribution, then the sum -- the order
    of DDP's default hook). `parts`: a sequence of (values, indices) pairs of equal length,
    values float32 or bfloat16 (torch.bfloat16, or its bits as int16/uint16), indices int32;
    index -1 is padding. `out`: a writable C-contiguous float32 array/tensor (any shape,
    flat indices). An index outside [0, out.size) raises ArgumentError ("payload: ..." or
    "clear: ...") before anything in out is written. Returns out."""
    o = flat_buffer(out, "out", writable=True)
    if o.dtype != np.float32:
        raise ArgumentTypeError(f"out: expected float32, got {o.dtype}")
    w = as_real(world, "world")
    if not (math.isfinite(w) and w > 0):
        raise ArgumentError(f"world: must be finite and > 0, got {w}")
    if is_tensor(parts) or isinstance(parts, (np.ndarray, str)) or not isinstance(parts, Sequence):
        raise ArgumentTypeError("parts: expected a list of (values, indices) pairs")
    vals, idxs = [], []
    for p, part in enumerate(parts):
        if not isinstance(part, Sequence) or len(part) != 2:
            raise ArgumentTypeError(f"parts[{p}]: expected a (values, indices) pair")
        vals.append(flat_buffer(part[0], f"parts[{p}] values"))
        idxs.append(flat_buffer(part[1], f"parts[{p}] indices"))
    c = None if clear is None else flat_buffer(clear, "clear")
    _core.scatter_mean(o, c, vals, idxs, w)
    return out
