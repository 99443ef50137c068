"""The selection functions on CUDA tensors.

``selection`` checks every argument the same way for CPU and CUDA inputs and hands CUDA
inputs here; the work runs in ``gradsparse.cuda._ops`` on the tensors' device, launched on
torch's current stream of that device, with results equal bit for bit to the CPU engine's.
What this layer adds around ``_ops``: one device for all inputs, the split of a global
selection back into one result per tensor, the movement of ``dim`` for topk, and the few
cases ``_ops`` does not express (mixed dtypes in one global selection: widened to float64,
which ranks exactly alike; topk by smallest |x|: the smallest of |x|).

torch and ``_ops`` are imported lazily (a CUDA tensor means torch is loaded).
"""
from __future__ import annotations

from typing import Any, List, Optional, Sequence, Tuple

import numpy as np

from ._convert import BF16, Flat, torch_module
from .errors import ArgumentError

#: selection's budget kinds (_COUNT, _ENERGY, _THRESHOLD) and topk's KeyMode codes, as _ops names them
_KINDS = {0: "count", 1: "energy", 2: "threshold"}
_MODES = {0: "magnitude", 1: "largest", 2: "smallest"}
_SMALLEST_MAGNITUDE = 3


def _ops() -> Any:
    from .cuda import _ops  # the compiled backend's Python layer (imports gradsparse._cuda)

    return _ops


def where(flat: Flat) -> str:
    """Where a flat input lives, for messages: "cuda:0", "the CPU"."""
    return str(flat.device) if flat.kind == "cuda" else "the CPU"


def one_device(flats: Sequence[Flat], names: Sequence[str]) -> Optional[Any]:
    """The CUDA device of `flats` when any is a CUDA tensor (None when none is); raises
    ArgumentError naming the first input that is elsewhere (CPU data or another device)."""
    first = next((i for i, f in enumerate(flats) if f.kind == "cuda"), None)
    if first is None:
        return None
    device = flats[first].device
    for f, name in zip(flats, names):
        if f.kind != "cuda" or f.device != device:
            raise ArgumentError(f"{name}: is on {where(f)}, but {names[first]} is on {device}; "
                                "give every tensor on one device")
    return device


# ----------------------------------------------------------------------------- selection

def select(arrays: Sequence[Any], costs: Sequence[Any], kind: int, k: int, energy: float, tau: float,
           q: float, alpha: float) -> List[Tuple[Any, Any]]:
    """``_core.select`` on flat contiguous CUDA tensors of one device: one (int64 indices
    ascending, values in that tensor's dtype) pair per tensor, for the magnitude / CWMP score.
    Tensors of different dtypes are selected as float64 copies (exact: the scores are float64
    either way) and their values gathered from the originals."""
    torch = torch_module()
    if len({a.dtype for a in arrays}) > 1:
        wide = [a.to(torch.float64) for a in arrays]
        wide_costs = [c.to(torch.float64) if _is_tensor(c) else c for c in costs]
        pairs = select(wide, wide_costs, kind, k, energy, tau, q, alpha)
        return [(i, take(a, i)) for (i, _), a in zip(pairs, arrays)]
    given = None if all(c is None for c in costs) else list(costs)
    idx, vals, counts = _ops().select(list(arrays), kind=_KINDS[kind], k=k, energy=energy, tau=tau,
                                      mode="magnitude", costs=given, q=q, alpha=alpha)
    return _split(arrays, idx, vals, counts)


def _is_tensor(c: Any) -> bool:
    torch = torch_module()
    return isinstance(c, torch.Tensor)


def _split(arrays: Sequence[Any], idx: Any, vals: Any, counts: Optional[List[int]]) -> List[Tuple[Any, Any]]:
    """One global result (indices into the concatenation) cut into one pair per array, with
    indices made local (views of the global outputs where no shift is needed)."""
    if counts is None or len(arrays) == 1:
        return [(idx, vals)]
    out, start, offset = [], 0, 0
    for a, c in zip(arrays, counts):
        c = int(c)
        i = idx[start:start + c]
        out.append((i - offset if offset else i, vals[start:start + c]))
        start += c
        offset += a.numel()
    return out


# ----------------------------------------------------------------------------- topk

def topk(x: Any, k: int, dim: int, mode: int, sorted: bool) -> Tuple[Any, Any]:
    """(values, indices) of the float CUDA tensor `x` along `dim` (arguments checked; `mode`
    a KeyMode code), as fresh contiguous tensors on x's device: `dim` is moved last and
    made contiguous (a copy unless it already is), each row selected by ``_ops.topk_rows``,
    and the result moved back. Smallest |x| first (key="abs", largest=False) is the
    "smallest" selection of |x| (NaN last, ±0 equal, ties by lower index: the CPU's order),
    with x's signed values gathered at the selected indices."""
    torch = torch_module()
    if x.dim() == 0:  # torch gives the element itself, for k = 0 as for k = 1
        return x.clone(), torch.zeros((), dtype=torch.int64, device=x.device)
    shape = list(x.shape)
    shape[dim] = k
    if k == 0 or x.numel() == 0:
        return x.new_empty(shape), torch.empty(shape, dtype=torch.int64, device=x.device)
    moved = x.movedim(dim, -1)
    lead, n = moved.shape[:-1], moved.shape[-1]
    rows = moved.contiguous().reshape(-1, n)
    if mode == _SMALLEST_MAGNITUDE:
        values, indices = _ops().topk_rows(rows.abs(), k, "smallest", bool(sorted))
        values = _as_bits(rows).gather(1, indices).view(rows.dtype)
    else:
        values, indices = _ops().topk_rows(rows, k, _MODES[mode], bool(sorted))
    values = values.reshape(*lead, k).movedim(-1, dim).contiguous()
    indices = indices.reshape(*lead, k).movedim(-1, dim).contiguous()
    return values, indices


# ----------------------------------------------------------------------------- random-k

def random_k(flat: Flat, k: int, seed: int, scale: bool) -> Tuple[Any, Any]:
    """(indices, values) of random_k on a CUDA input: the CPU's indices for `seed` (drawn on
    the host, copied to the device), values gathered on the device and, with `scale`,
    multiplied by n/k with the CPU's roundings; an overflow raises like on the CPU (this
    check synchronises)."""
    torch = torch_module()
    x = flat.array
    idx = _ops().random_k_indices(flat.size, k, seed, x.device)
    raw = take(x, idx)
    if not scale:
        return idx, raw
    factor = flat.size / k
    # The factor is rounded to the product's dtype first, as numpy does on the CPU: torch
    # takes a Python float into the product unrounded, so it gets the rounded value.
    if flat.code == BF16:  # float32 product, rounded once to bfloat16 (NaN payloads: the device's)
        out = (raw.float() * float(np.float32(factor))).to(torch.bfloat16)
    elif np.isfinite(_numpy_dtype(x.dtype).type(factor)):
        out = raw * float(_numpy_dtype(x.dtype).type(factor))
    else:  # n / k beyond float16's range: scale in float32, round once to float16
        out = (raw.float() * float(np.float32(factor))).to(x.dtype)
    bad = ~torch.isfinite(out) & torch.isfinite(raw)
    if bool(bad.any()):
        v = float(raw[bad][0])
        name = "bfloat16" if flat.code == BF16 else str(_numpy_dtype(x.dtype))
        raise ArgumentError(f"scale: a kept value times n/k = {factor:g} overflows {name} (value {v:g}); "
                            "use scale=False or a wider dtype")
    return idx, out


def take(x: Any, idx: Any) -> Any:
    """x[idx] as a bitwise copy (NaN payloads kept: torch's CPU gather of bfloat16 is not
    bitwise; integer copies are, on every device)."""
    return _as_bits(x)[idx].view(x.dtype)


def _as_bits(x: Any) -> Any:
    torch = torch_module()
    return x.view({1: torch.int8, 2: torch.int16, 4: torch.int32, 8: torch.int64}[x.element_size()])


def _numpy_dtype(dtype: Any) -> np.dtype:
    torch = torch_module()
    return np.dtype({torch.float32: np.float32, torch.float64: np.float64, torch.float16: np.float16}[dtype])
