"""Error feedback on CUDA tensors: the device half of `ErrorFeedback`.

`feedback.ErrorFeedback` keeps the residual of a name fed with CUDA tensors on their device
(a flat float32 tensor, float64 for float64 updates) and hands the arithmetic here. Every
step mirrors the CPU path operation for operation (the same IEEE additions, subtractions and
roundings, in the same precision), so residuals and sent values equal the CPU's bit for bit;
only NaN payloads made by arithmetic may differ (a CUDA add returns the canonical NaN where
the CPU keeps an operand's), a NaN staying NaN at the same place.

* float32 with a count budget: ``_ops.feedback_select`` (e += x, the selection and the
  settle in one fused pass; no host synchronisation);
* everything else: e += x with torch, the selection by ``selection._select``
  (``_ops.select``), and the settle below.

torch and ``_ops`` are imported lazily (a CUDA tensor means torch is loaded).
"""
from __future__ import annotations

from typing import Any, List, Tuple

import numpy as np

from .._convert import BF16, F16, F32, Flat, is_cuda, is_tensor, plain_tensor, torch_module
from ..errors import ArgumentError, ArgumentTypeError
from ..selection import _COUNT, _THRESHOLD, _select
from ..sparse import Sparse

_F16_MAX = 65504.0
_BF16_MAX = 3.3895313892515355e38  # largest finite bfloat16 (float32 bits 0x7F7F0000)


def _ops() -> Any:
    from ..cuda import _ops  # the compiled backend's Python layer

    return _ops


# ----------------------------------------------------------------------------- residuals

def new_residual(flat: Flat) -> Any:
    """A zero residual for the CUDA input `flat`, on its device: float64 for float64 x,
    float32 otherwise."""
    torch = torch_module()
    dtype = torch.float64 if flat.array.dtype == torch.float64 else torch.float32
    return torch.zeros(flat.size, dtype=dtype, device=flat.device)


def to_device(res: np.ndarray, device: Any) -> Any:
    """A host residual (a loaded state) copied to `device`."""
    torch = torch_module()
    return torch.from_numpy(np.array(res, copy=True)).to(device)


def accumulate(res: Any, flat: Flat) -> None:
    """e += x in the residual's precision (16-bit x widened exactly)."""
    res.add_(flat.array)


# ----------------------------------------------------------------------------- compress

def compress(res: Any, flat: Flat, args: tuple) -> Sparse:
    """`ErrorFeedback.compress` of the CUDA input `flat` with its residual `res` (arguments
    from ``selection._resolve_one``)."""
    torch = torch_module()
    c, q, alpha, kind, k, energy = args
    if flat.code == F32 and kind == _COUNT and _ops().fusable(c, q, alpha):
        idx, vals, _ = _ops().feedback_select(flat.array, res, k=k, mode="magnitude", cost=c, q=q, alpha=alpha,
                                              value_dtype="float32")
        return Sparse(idx.to(torch.int64), vals, flat.shape)
    accumulate(res, flat)
    [(idx, vals)] = _select([res], [0], [c], q, alpha, kind, k, energy, 0.0)
    return Sparse(idx, settle(res, idx, vals, flat.code), flat.shape)


def settle(res: Any, idx: Any, vals: Any, code: int) -> Any:
    """``feedback._settle_selected`` on the device: the values sent in x's dtype (16-bit
    ones saturated at the finite range), the residual left at what was not sent."""
    torch = torch_module()
    if code == BF16:
        sent = f32_to_bf16(vals.clamp(-_BF16_MAX, _BF16_MAX))
        res[idx] = vals - sent.float()
    elif code == F16:
        sent = vals.clamp(-_F16_MAX, _F16_MAX).to(torch.float16)
        res[idx] = vals - sent.float()
    else:
        sent = vals
        res[idx] = 0
    return sent


def f32_to_bf16(a: Any) -> Any:
    """float32 -> bfloat16, round to nearest even, NaN kept NaN as ``_convert.f32_to_bf16``
    does it ((bits >> 16) | 0x40), on the device."""
    torch = torch_module()
    u = a.contiguous().view(torch.int32).to(torch.int64) & 0xFFFFFFFF
    r = (u + 0x7FFF + ((u >> 16) & 1)) >> 16
    r = torch.where((u & 0x7FFFFFFF) > 0x7F800000, (u >> 16) | 0x40, r)
    return torch.where(r >= 0x8000, r - 0x10000, r).to(torch.int16).view(torch.bfloat16)


def _bf16_saturated(a: Any) -> Any:
    """The C++ feedback_select's rounding to bfloat16: finite values saturate at the largest
    finite bfloat16, infinities stay infinite."""
    torch = torch_module()
    return f32_to_bf16(torch.where(torch.isinf(a), a, a.clamp(-_BF16_MAX, _BF16_MAX)))


# ----------------------------------------------------------------------------- compress_into

def out_buffer(a: Any, what: str, size: int, dtypes: Tuple[Any, ...], want: str, device: Any) -> Any:
    """A flat view of a caller-owned contiguous tensor on `device` with `size` items of one
    of `dtypes` (int16/uint16 bits of bfloat16 viewed as bfloat16)."""
    torch = torch_module()
    if not is_tensor(a):
        raise ArgumentError(f"{what}: x is on {device}; expected a tensor on that device, got {type(a).__name__}")
    if not is_cuda(a) or a.device != device:
        raise ArgumentError(f"{what}: is on {a.device}, but x is on {device}; give buffers on x's device")
    t = plain_tensor(a, what, writable=True)
    if t.dtype not in dtypes:
        raise ArgumentTypeError(f"{what}: expected {want} items, got {t.dtype}")
    if not t.is_contiguous():
        raise ArgumentError(f"{what}: must be C-contiguous and writable")
    if t.numel() != size:
        raise ArgumentError(f"{what}: must have regions * cap = {size} elements, got {t.numel()}")
    t = t.view(-1)
    return t.view(torch.bfloat16) if t.dtype in (torch.int16, getattr(torch, "uint16", torch.int16)) else t


def compress_into(res: Any, flat: Flat, c: Any, q: float, alpha: float, kind: int, k: int, energy: float,
                  tau: float, regions: int, cap: int, values: Any, indices: Any, value_dtype: str) -> List[int]:
    """`ErrorFeedback.compress_into` of the float32 CUDA input `flat` (arguments checked):
    region by region, a count (or a threshold that cannot overflow `cap`) through the fused
    ``_ops.feedback_select``, other budgets through e += x, ``_ops.select`` and the C++
    settle (0 where float32 was sent, the bfloat16 rounding error, finite values saturated,
    0 for non-finite ones). A region over `cap` sends nothing and keeps e + x, as on the CPU.
    Count budgets make no host synchronisation; the others synchronise once per region."""
    n, g = flat.size, flat.array
    m = -(-n // regions)
    fused = (kind == _COUNT and _ops().fusable(c, q, alpha)) or (kind == _THRESHOLD and cap >= m)
    if not fused:
        accumulate(res, flat)
    counts = []
    for r in range(regions):
        lo = min(n, r * m)
        hi = min(n, lo + m)
        vo, io = values[r * cap:(r + 1) * cap], indices[r * cap:(r + 1) * cap]
        kept = count = 0
        if hi > lo:
            cr = _region_cost(c, lo, hi, regions, g.device)
            if fused:
                count = kept = _fused_region(g[lo:hi], res[lo:hi], cr, q, alpha, k, tau, kind, vo, io, value_dtype)
            else:
                count, kept = _plain_region(res[lo:hi], cr, q, alpha, kind, k, energy, tau, cap, vo, io, value_dtype)
            if kept and lo:
                io[:kept] += lo
        vo[kept:].zero_()
        io[kept:].fill_(-1)
        counts.append(count)
    return counts


def _region_cost(c: Any, lo: int, hi: int, regions: int, device: Any) -> Any:
    """The cost of one region: a scalar as it is, a tensor sliced, a PreparedCost whole
    (one region) or its device copy sliced."""
    if c is None or isinstance(c, float):
        return c
    if not is_tensor(c):  # a PreparedCost
        if regions == 1:
            return c
        c = c.on_device(device)
    return c[lo:hi]


def _fused_region(g: Any, e: Any, c: Any, q: float, alpha: float, k: int, tau: float, kind: int, vo: Any, io: Any,
                  value_dtype: str) -> int:
    if kind == _COUNT:
        kk = min(k, g.numel())
        _ops().feedback_select(g, e, k=kk, mode="magnitude", cost=c, q=q, alpha=alpha, value_dtype=value_dtype,
                               out_values=vo[:kk], out_indices=io[:kk])
        return kk
    idx, vals, count = _ops().feedback_select(g, e, tau=tau, mode="magnitude", cost=None, q=q, alpha=alpha,
                                              value_dtype=value_dtype)
    count = int(count)
    vo[:count] = vals
    io[:count] = idx
    return count


def _plain_region(e: Any, c: Any, q: float, alpha: float, kind: int, k: int, energy: float, tau: float, cap: int,
                  vo: Any, io: Any, value_dtype: str) -> Tuple[int, int]:
    """(count, kept) of one region selected from e (already accumulated) and settled."""
    torch = torch_module()
    kk = min(k, e.numel()) if kind == _COUNT else 0
    qq, aa = (1.0, 0.0) if kind == _THRESHOLD else (q, alpha)
    [(idx, vals)] = _select([e], [0], [c], qq, aa, kind, kk, energy, tau)
    count = int(idx.numel())
    if count > cap:
        return count, 0
    if value_dtype == "bfloat16":
        sent = _bf16_saturated(vals)
        e[idx] = torch.where(torch.isfinite(vals), vals - sent.float(), torch.zeros_like(vals))
    else:
        sent = vals
        e[idx] = 0
    vo[:count] = sent
    io[:count] = idx.to(torch.int32)
    return count, count


# ----------------------------------------------------------------------------- apply, add_at

def _device_values(v: Any, what: str, device: Any) -> Any:
    """A sent tensor's values, flat, on `device` (bfloat16 widened exactly to float32)."""
    torch = torch_module()
    if not is_tensor(v) or v.device != device:
        got = v.device if is_tensor(v) else type(v).__name__
        raise ArgumentError(f"{what}: the update is on {device}; expected a tensor there, got {got}")
    t = plain_tensor(v, what)
    if t.dtype not in (torch.float32, torch.float64, torch.float16, torch.bfloat16):
        raise ArgumentTypeError(f"{what}: unsupported dtype {t.dtype}; expected float32, float64, float16 or bfloat16")
    t = t.reshape(-1)
    return t.float() if t.dtype == torch.bfloat16 else t


def subtract(res: Any, sent: Any, shape: Tuple[int, ...], what: str) -> None:
    """``feedback._subtract`` on the device: e -= sent (a Sparse at its indices, 0 where the
    sent value equals the accumulated one; or a dense tensor)."""
    torch = torch_module()
    if isinstance(sent, Sparse):
        if tuple(int(d) for d in sent.shape) != tuple(shape):
            raise ArgumentError(f"{what}: shape {tuple(sent.shape)} does not match the update's {tuple(shape)}")
        idx = sent.indices
        if not is_tensor(idx) or idx.device != res.device:
            raise ArgumentError(f"{what}.indices: the update is on {res.device}; expected indices there")
        idx = plain_tensor(idx, f"{what}.indices").reshape(-1).to(torch.int64)
        vals = _device_values(sent.values, f"{what}.values", res.device)
        if idx.numel() != vals.numel():
            raise ArgumentError(f"{what}: has {idx.numel()} indices and {vals.numel()} values")
        if idx.numel() and bool((idx.min() < 0) | (idx.max() >= res.numel())):
            raise ArgumentError(f"{what}: index out of range for {res.numel()} elements")
        cur = res[idx]
        exact = (cur == vals) | (torch.isnan(cur) & torch.isnan(vals))
        res[idx] = torch.where(exact, torch.zeros((), dtype=cur.dtype, device=res.device), cur - vals).to(res.dtype)
        return
    vals = _device_values(sent, what, res.device)
    if vals.numel() != res.numel():
        raise ArgumentError(f"{what}: has {vals.numel()} elements, the update {res.numel()}")
    res.copy_(res - vals)  # in the wider dtype, rounded once to the residual's (numpy: casting="unsafe")


def add_at(res: Any, indices: Any, values: Any) -> None:
    """``ErrorFeedback.add_at`` for a residual on a CUDA device: `indices`/`values` on that
    device, or host data (copied there). Distinct positions are added on the device; with
    repeated positions the involved entries are summed one addition at a time in order on
    the host (np.add.at's order), then written back. Synchronises (the bounds check)."""
    torch = torch_module()
    idx = _indices_on(indices, res.device)
    vals = _values_on(values, idx.numel(), res.device)
    if idx.numel() == 0:
        return
    if bool((idx.min() < 0) | (idx.max() >= res.numel())):
        raise ArgumentError(f"indices: positions must lie in [0, {res.numel()})")
    vals = vals.to(res.dtype)
    uniq, inverse = torch.unique(idx, return_inverse=True)
    if uniq.numel() == idx.numel():
        res[idx] = res[idx] + vals
        return
    cur = res[uniq].cpu().numpy()
    np.add.at(cur, inverse.cpu().numpy(), vals.cpu().numpy())
    res[uniq] = torch.from_numpy(cur).to(res.device)


def _host_or(a: Any, what: str, device: Any) -> Any:
    """`a` as a flat plain tensor on `device` when it is a tensor (a CPU one is copied there;
    another CUDA device raises ArgumentError), or as a flat numpy array (host data)."""
    if is_tensor(a):
        if is_cuda(a) and a.device != device:
            raise ArgumentError(f"{what}: is on {a.device}, but the residual is on {device}")
        return plain_tensor(a, what).reshape(-1).to(device)
    return np.asarray(a).reshape(-1)


def _indices_on(indices: Any, device: Any) -> Any:
    torch = torch_module()
    idx = _host_or(indices, "indices", device)
    if is_tensor(idx):
        if idx.is_floating_point() or idx.is_complex() or idx.dtype == torch.bool:
            raise ArgumentTypeError(f"indices: expected integers, got {idx.dtype}")
        return idx.to(torch.int64)
    if idx.dtype.kind not in "iu":
        raise ArgumentTypeError(f"indices: expected integers, got {idx.dtype}")
    return torch.from_numpy(idx.astype(np.int64)).to(device)


def _values_on(values: Any, count: int, device: Any) -> Any:
    torch = torch_module()
    vals = _host_or(values, "values", device)
    ok = (torch.float32, torch.float64) if is_tensor(vals) else (np.float32, np.float64)
    size = vals.numel() if is_tensor(vals) else vals.size
    if vals.dtype not in ok or size != count:
        raise ArgumentError(f"values: expected {count} float32/float64 values, got {size} of {vals.dtype}")
    return vals if is_tensor(vals) else torch.from_numpy(np.array(vals, copy=True)).to(device)
