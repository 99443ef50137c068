"""The CUDA backend's tensor layer: torch CUDA tensors in, torch CUDA tensors out.

Every function checks its tensors (device, dtype, layout), allocates the outputs and one
workspace tensor through torch's caching allocator, and enqueues the engine's kernels on
torch's current stream of the tensors' device. The results are the CPU engine's, bit for
bit (docs/cuda.md). torch is imported inside the functions only.

Synchronisation: a count budget over one tensor, `feedback_select` with `k`, `topk_rows`
and `rank_order` never wait for the device. Several tensors (the per-tensor counts), energy
and threshold budgets (the kept count sizes the outputs), cost arrays that are not a
`PreparedCost` (their check) and `scatter_mean` (its index check) do.

Thread safety: stateless (a `PreparedCost` keeps its own per-device copy); calls from several
threads are as safe as torch's own, provided they do not share output tensors.
"""
from __future__ import annotations

import math
from typing import Any, List, Optional, Sequence, Tuple

import numpy as np

from .._convert import as_real
from ..costs import PreparedCost
from ..errors import ArgumentError, ArgumentTypeError
from . import _module, require

__all__ = ["feedback_select", "fusable", "random_k_indices", "rank_order", "scatter_mean", "select", "topk_rows"]

_MODES = {"magnitude": 0, "largest": 1, "smallest": 2, "smallest_magnitude": 3}
_KINDS = {"count": 0, "energy": 1, "threshold": 2}
_NONE, _SCALAR, _ARRAY = 0, 1, 2
_F32, _F64 = 0, 1


def _torch():
    import torch

    return torch


def _codes(torch) -> dict:
    return {torch.float32: 0, torch.float64: 1, torch.float16: 2, torch.bfloat16: 3}


def _engine():
    require("x")
    return _module()


def _cuda_tensor(t: Any, name: str, torch) -> None:
    if not isinstance(t, torch.Tensor):
        raise ArgumentTypeError(f"{name}: expected a torch tensor, got {type(t).__name__}")
    if t.device.type != "cuda":
        raise ArgumentError(f"{name}: expected a CUDA tensor, got one on {t.device}")
    if not t.is_contiguous():
        raise ArgumentError(f"{name}: the CUDA engine takes contiguous tensors")


def _float_code(t: Any, name: str, torch) -> int:
    code = _codes(torch).get(t.dtype)
    if code is None:
        raise ArgumentTypeError(f"{name}: CUDA selection takes float32, float64, float16 or bfloat16, got {t.dtype}")
    return code


def _same_device(t: Any, device: Any, name: str) -> None:
    if t.device != device:
        raise ArgumentError(f"{name}: on {t.device}, but the input is on {device}")


def _mode(mode: str) -> int:
    if mode not in _MODES:
        raise ArgumentError(f"mode: expected one of {sorted(_MODES)}, got {mode!r}")
    return _MODES[mode]


def _stream(torch, device) -> int:
    return int(torch.cuda.current_stream(device).cuda_stream)


def _workspace(torch, nbytes: int, device) -> Any:
    return torch.empty(max(int(nbytes), 1), dtype=torch.uint8, device=device)


def _power_alpha(c: float, alpha: float) -> float:
    """c ** alpha as the CPU engine computes it (ScoredSegment::power_alpha)."""
    return c if alpha == 1.0 else (1.0 if alpha == 0.0 else math.pow(c, alpha))


# ----------------------------------------------------------------------------- costs

def _check_cost_array(c: Any, name: str, torch) -> None:
    bad = ~(torch.isfinite(c) & (c > 0))
    if bool(bad.any()):
        i = int(bad.nonzero()[0, 0])
        raise ArgumentError(f"{name}: costs must be finite and > 0, got {float(c[i])} at {i}")


def _resolve_costs(xs: Sequence[Any], costs: Optional[Sequence[Any]], torch) -> Tuple[list, bool]:
    """Per tensor: ("none", 1.0, None) | ("scalar", c, None) | ("array", 1.0, a float32 or
    float64 device tensor); and whether every cost is one and the same scalar (or none)."""
    if costs is None:
        return [("none", 1.0, None)] * len(xs), True
    if len(costs) != len(xs):
        raise ArgumentError(f"costs: expected {len(xs)} entries (one per tensor), got {len(costs)}")
    out = []
    for i, (x, c) in enumerate(zip(xs, costs)):
        name = "cost" if len(xs) == 1 else f"costs[{i}]"
        if c is None:
            out.append(("none", 1.0, None))
        elif isinstance(c, PreparedCost):
            if c.size != x.numel():
                raise ArgumentError(f"{name}: has {c.size} elements, x has {x.numel()}")
            out.append(("array", 1.0, c.on_device(x.device)))  # checked when prepared; kept per device
        elif isinstance(c, torch.Tensor) and c.ndim > 0:
            if c.numel() != x.numel():
                raise ArgumentError(f"{name}: has {c.numel()} elements, x has {x.numel()}")
            if c.is_complex() or c.dtype == torch.bool:
                raise ArgumentTypeError(f"{name}: costs must be real numbers, got dtype {c.dtype}")
            dt = torch.float32 if c.dtype == torch.float32 else torch.float64
            arr = c.detach().reshape(-1).to(device=x.device, dtype=dt)
            _check_cost_array(arr, name, torch)
            out.append(("array", 1.0, arr))
        elif isinstance(c, np.ndarray) and c.ndim > 0:
            if c.size != x.numel():
                raise ArgumentError(f"{name}: has {c.size} elements, x has {x.numel()}")
            if c.dtype.kind not in "fiu":
                raise ArgumentTypeError(f"{name}: costs must be real numbers, got dtype {c.dtype}")
            dt = np.float32 if c.dtype == np.float32 else np.float64
            arr = torch.from_numpy(np.ascontiguousarray(c, dtype=dt).reshape(-1)).to(x.device)
            _check_cost_array(arr, name, torch)
            out.append(("array", 1.0, arr))
        else:
            v = as_real(c.item() if isinstance(c, torch.Tensor) else c, name)
            if not (v > 0.0 and math.isfinite(v)):
                raise ArgumentError(f"{name}: costs must be finite and > 0, got {v}")
            out.append(("scalar", v, None))
    firsts = {v for kind, v, _ in out if kind != "array"}
    equal = all(kind != "array" for kind, _, _ in out) and len(firsts) <= 1
    return out, equal


# ----------------------------------------------------------------------------- selection

def _check_inputs(xs: Sequence[Any], torch) -> Tuple[int, Any]:
    if len(xs) == 0:
        raise ArgumentError("xs: the list is empty")
    code = None
    device = xs[0].device if isinstance(xs[0], torch.Tensor) else None
    for i, x in enumerate(xs):
        name = "x" if len(xs) == 1 else f"xs[{i}]"
        _cuda_tensor(x, name, torch)
        c = _float_code(x, name, torch)
        if code is None:
            code = c
        elif c != code:
            raise ArgumentTypeError(f"{name}: CUDA selection over several tensors takes one dtype, "
                                    f"got {x.dtype} after {xs[0].dtype}")
        _same_device(x, device, name)
    return code, device


def select(xs: Sequence[Any], *, kind: str, k: int = 0, energy: float = 0.0, tau: float = 0.0,
           mode: str = "magnitude", costs: Optional[Sequence[Any]] = None, q: float = 2.0,
           alpha: float = 1.0) -> Tuple[Any, Any, Optional[List[int]]]:
    """Exact selection over the concatenation of the flattened CUDA tensors `xs`: global
    int64 indices (ascending), their values (xs' dtype), and the kept count per tensor
    (None for a count budget over one tensor: nothing waits for the device then)."""
    torch = _torch()
    if kind not in _KINDS:
        raise ArgumentError(f"kind: expected one of {sorted(_KINDS)}, got {kind!r}")
    code, device = _check_inputs(xs, torch)
    mod = _engine()
    m = _mode(mode)
    resolved, equal = _resolve_costs(xs, costs, torch)
    native = equal and kind != "threshold"
    if not native and m != 0:
        raise ArgumentError("mode: signed (largest/smallest) ranking needs one dtype and no costs")
    if kind == "threshold":
        qq, aa, cost_kind = 1.0, float(alpha), _NONE
    else:
        qq, aa = float(q), float(alpha)
        cost_kind = _NONE
        if not native or any(r[0] == "scalar" for r in resolved):
            kinds = {r[0] for r in resolved}
            cost_kind = _ARRAY if "array" in kinds else (_SCALAR if "scalar" in kinds else _NONE)
    if not (math.isfinite(qq) and qq > 0):
        raise ArgumentError("q: must be finite and > 0")
    if not (math.isfinite(aa) and aa >= 0):
        raise ArgumentError("alpha: must be finite and >= 0")
    if not native and (qq not in (1.0, 2.0) or (cost_kind == _ARRAY and aa not in (0.0, 1.0))):
        # pow() on the GPU is not rounded like the CPU's: score on the host, exactly.
        return _select_on_host(xs, kind, k, energy, tau, m, resolved, qq, aa, device, torch)
    data, sizes, cptr, cscalar, cpow = [], [], [], [], []
    keep = []  # cost tensors alive until the kernels ran (stream order)
    # One cost dtype per call: float32 when every cost is a float32 array, else float64
    # (exact for float32 costs and for the scalars made arrays beside them).
    f32 = cost_kind == _ARRAY and all(r[0] == "array" and r[2].dtype == torch.float32 for r in resolved)
    for x, (ck, v, arr) in zip(xs, resolved):
        data.append(x.data_ptr())
        sizes.append(x.numel())
        if cost_kind == _ARRAY and arr is None:  # a scalar or no cost beside arrays: as an array
            arr = torch.full((x.numel(),), v, dtype=torch.float64, device=device)
        elif cost_kind == _ARRAY and not f32 and arr.dtype != torch.float64:
            arr = arr.to(torch.float64)
        keep.append(arr)
        cptr.append(arr.data_ptr() if (cost_kind == _ARRAY and arr is not None) else 0)
        cscalar.append(v)
        if ck == "scalar":
            p = _power_alpha(v, aa)
            if not (math.isfinite(p) and p > 0.0):
                raise ArgumentError("cost: cost**alpha overflows or underflows double")
            cpow.append(p)
        else:
            cpow.append(1.0)
    total = sum(sizes)
    if total == 0:
        raise ArgumentError("x: input is empty" if len(xs) == 1 else "xs: every tensor is empty")
    # the engine reads q only for score keys and alpha only for cost arrays
    spec_q = int(qq) if not native else 2
    spec_alpha = int(aa) if (not native and cost_kind == _ARRAY) else 1
    spec = mod.Spec(code, m, native, spec_q, spec_alpha, cost_kind, _F32 if f32 else _F64, _KINDS[kind], int(k),
                    float(energy),
                    float(tau))
    dtype = xs[0].dtype
    with torch.cuda.device(device):
        stream = _stream(torch, device)
        ws = _workspace(torch, mod.select_workspace(sizes, spec), device)
        nbytes = ws.numel()
        if kind == "count":
            if not 1 <= int(k) <= total:
                raise ArgumentError(f"k: must be in [1, {total}], got {k}")
            idx = torch.empty(int(k), dtype=torch.int64, device=device)
            val = torch.empty(int(k), dtype=dtype, device=device)
            mod.select(spec, data, sizes, cptr, cscalar, cpow, ws.data_ptr(), nbytes, idx.data_ptr(),
                       val.data_ptr(), stream)
        else:
            count = int(mod.select(spec, data, sizes, cptr, cscalar, cpow, ws.data_ptr(), nbytes, 0, 0, stream))
            idx = torch.empty(count, dtype=torch.int64, device=device)
            val = torch.empty(count, dtype=dtype, device=device)
            mod.emit(spec, data, sizes, cptr, cscalar, cpow, ws.data_ptr(), nbytes, count,
                     idx.data_ptr() if count else 0, val.data_ptr() if count else 0, stream)
    for t in keep + [ws]:
        if t is not None:
            t.record_stream(torch.cuda.current_stream(device))
    if len(xs) == 1 and kind == "count":
        return idx, val, None
    return idx, val, _counts(idx, sizes, device, torch)


def _counts(idx: Any, sizes: List[int], device, torch) -> List[int]:
    ends = torch.tensor(np.cumsum(sizes, dtype=np.int64), device=device)
    seg = torch.searchsorted(ends, idx, right=True)
    return [int(c) for c in torch.bincount(seg, minlength=len(sizes)).tolist()]


def _select_on_host(xs, kind, k, energy, tau, mode, resolved, q, alpha, device, torch):
    """The CPU engine on host copies (pow() scores), moved back to `device`."""
    from .. import _core

    arrays, codes, costs = [], [], []
    for x, (ck, v, arr) in zip(xs, resolved):
        flat = x.detach().reshape(-1).cpu()
        c = _float_code(x, "x", torch)
        if c == 3:
            arrays.append(flat.view(torch.int16).numpy().view(np.uint16))
        else:
            arrays.append(flat.numpy())
        codes.append(c)
        costs.append(arr.cpu().numpy() if ck == "array" else (v if ck == "scalar" else None))
    res = _core.select(arrays, codes, costs, mode, q, alpha, _KINDS[kind], int(k), float(energy), float(tau))
    offset, idx_parts, val_parts, counts = 0, [], [], []
    for x, a, (i, raw) in zip(xs, arrays, res):
        idx_parts.append(np.asarray(i, dtype=np.int64) + offset)
        val_parts.append(np.asarray(raw))
        counts.append(len(i))
        offset += a.size
    idx = torch.from_numpy(np.concatenate(idx_parts)).to(device)
    raw = np.concatenate(val_parts)
    if xs[0].dtype == torch.bfloat16:
        val = torch.from_numpy(raw.view(np.int16)).view(torch.bfloat16).to(device)
    else:
        val = torch.from_numpy(raw).to(device)
    if len(xs) == 1 and kind == "count":
        return idx, val, None
    return idx, val, counts


# ----------------------------------------------------------------------------- top-k rows

def topk_rows(x: Any, k: int, mode: str, sorted: bool) -> Tuple[Any, Any]:
    """Top-k of every row of a contiguous (rows, n) CUDA tensor: values and int64 column
    indices (rows, k); sorted: best first, ties by the lower index; else ascending index."""
    torch = _torch()
    _cuda_tensor(x, "input", torch)
    code = _float_code(x, "input", torch)
    if x.ndim != 2:
        raise ArgumentError(f"input: topk_rows takes a 2-D tensor, got {x.ndim}-D")
    rows, n = int(x.shape[0]), int(x.shape[1])
    m = _mode(mode)
    mod = _engine()
    k = int(k)
    if not 0 <= k <= n:
        raise ArgumentError(f"k: must be in [0, {n}], got {k}")
    device = x.device
    values = torch.empty((rows, k), dtype=x.dtype, device=device)
    indices = torch.empty((rows, k), dtype=torch.int64, device=device)
    if rows == 0 or k == 0:
        return values, indices
    with torch.cuda.device(device):
        stream = _stream(torch, device)
        ws = _workspace(torch, mod.rows_workspace(rows, n, k, code, bool(sorted)), device)
        mod.topk_rows(x.data_ptr(), rows, n, k, code, m, bool(sorted), values.data_ptr(), indices.data_ptr(),
                      ws.data_ptr(), ws.numel(), stream)
        ws.record_stream(torch.cuda.current_stream(device))
    return values, indices


def rank_order(values: Any, indices: Any, mode: str) -> Tuple[Any, Any]:
    """(values, indices) of a selection (indices ascending) in rank order: best first, ties
    by the lower index."""
    torch = _torch()
    _cuda_tensor(values, "values", torch)
    _cuda_tensor(indices, "indices", torch)
    code = _float_code(values, "values", torch)
    _same_device(indices, values.device, "indices")
    if values.ndim != 1 or indices.shape != values.shape or indices.dtype != torch.int64:
        raise ArgumentError("indices: rank_order takes 1-D values and int64 indices of the same length")
    m = _mode(mode)
    if m == _MODES["smallest_magnitude"]:
        raise ArgumentError("mode: rank_order takes the modes of a selection (magnitude, largest, smallest)")
    mod = _engine()
    k = values.numel()
    out_v, out_i = torch.empty_like(values), torch.empty_like(indices)
    if k == 0:
        return out_v, out_i
    device = values.device
    with torch.cuda.device(device):
        stream = _stream(torch, device)
        ws = _workspace(torch, mod.rank_workspace(k, code), device)
        mod.rank_order(values.data_ptr(), indices.data_ptr(), k, code, m, out_v.data_ptr(), out_i.data_ptr(),
                       ws.data_ptr(), ws.numel(), stream)
        ws.record_stream(torch.cuda.current_stream(device))
    return out_v, out_i


# ----------------------------------------------------------------------------- error feedback

def fusable(cost: Any, q: float, alpha: float) -> bool:
    """Whether `feedback_select` scores this cost exactly on the device: no cost or one
    scalar, or q in {1, 2} with alpha in {0, 1} (others need pow(); callers then take the
    unfused path, which scores on the host)."""
    if cost is None or isinstance(cost, (int, float)):
        return True
    return float(q) in (1.0, 2.0) and float(alpha) in (0.0, 1.0)


def feedback_select(g: Any, e: Any, *, k: Optional[int] = None, tau: Optional[float] = None,
                    mode: str = "magnitude", cost: Any = None, q: float = 2.0, alpha: float = 1.0,
                    value_dtype: str = "float32", out_values: Any = None,
                    out_indices: Any = None) -> Tuple[Any, Any, Optional[int]]:
    """e += g, then the exact selection of k (or every |acc| >= tau) from e, and
    e[kept] = acc - sent: the CPU's feedback_select with one region. Returns int32 indices
    (ascending), values (float32, or bfloat16 rounded from the float32 accumulation) and the
    count (None with k: nothing waits for the device)."""
    torch = _torch()
    _cuda_tensor(g, "g", torch)
    _cuda_tensor(e, "residual", torch)
    if g.dtype != torch.float32 or e.dtype != torch.float32:
        raise ArgumentTypeError(f"g: CUDA error feedback fuses float32 buffers, got {g.dtype} and {e.dtype}")
    _same_device(e, g.device, "residual")
    n = g.numel()
    if e.numel() != n:
        raise ArgumentError(f"residual: has {e.numel()} elements, g has {n}")
    if (k is None) == (tau is None):
        raise ArgumentError("k, tau: give exactly one of them")
    if value_dtype not in ("float32", "bfloat16"):
        raise ArgumentError(f"value_dtype: must be 'float32' or 'bfloat16', got {value_dtype!r}")
    bf16 = value_dtype == "bfloat16"
    m = _mode(mode)
    mod = _engine()
    device = g.device
    [(ck, v, arr)], equal = _resolve_costs([g], None if cost is None else [cost], torch)
    threshold = tau is not None
    native = equal and not threshold
    if not native and m != 0:
        raise ArgumentError("mode: signed (largest/smallest) ranking needs no costs")
    qq, aa = (1.0, float(alpha)) if threshold else (float(q), float(alpha))
    cost_kind = _NONE if threshold else {"none": _NONE, "scalar": _SCALAR, "array": _ARRAY}[ck]
    if not (math.isfinite(qq) and qq > 0) or not (math.isfinite(aa) and aa >= 0):
        raise ArgumentError("q, alpha: q must be finite and > 0, alpha finite and >= 0")
    if not native and (qq not in (1.0, 2.0) or (cost_kind == _ARRAY and aa not in (0.0, 1.0))):
        raise ArgumentError("q, alpha: CUDA error feedback scores with q in {1, 2} and, for cost arrays, "
                            "alpha in {0, 1} (other exponents need pow(), not rounded like the CPU's)")
    cpow = _power_alpha(v, aa) if ck == "scalar" else 1.0
    if not (math.isfinite(cpow) and cpow > 0.0):
        raise ArgumentError("cost: cost**alpha overflows or underflows double")
    cptr = arr.data_ptr() if (cost_kind == _ARRAY and arr is not None) else 0
    if threshold:
        t = float(tau)
        if math.isnan(t) or t < 0:
            raise ArgumentError(f"tau: must be >= 0, got {t}")
        spec = mod.Spec(0, m, False, 1, 1, _NONE, _F64, 2, 0, 0.0, t)
    else:
        kk = int(k)
        if not 1 <= kk <= n:
            raise ArgumentError(f"k: must be in [1, {n}], got {kk}")
        spec = mod.Spec(0, m, native, int(qq) if not native else 2,
                        int(aa) if (not native and cost_kind == _ARRAY) else 1, cost_kind,
                        _F32 if (arr is not None and arr.dtype == torch.float32) else _F64, 0, kk, 0.0, 0.0)
    vdtype = torch.bfloat16 if bf16 else torch.float32
    with torch.cuda.device(device):
        stream = _stream(torch, device)
        ws = _workspace(torch, mod.feedback_workspace(n, spec), device)
        if not threshold:
            idx = _out(out_indices, (int(k),), torch.int32, device, "out_indices", torch)
            val = _out(out_values, (int(k),), vdtype, device, "out_values", torch)
            mod.feedback_select(spec, g.data_ptr(), e.data_ptr(), n, cptr, v, cpow, bf16, ws.data_ptr(), ws.numel(),
                                idx.data_ptr(), val.data_ptr(), stream)
            count = None
        else:
            count = int(mod.feedback_select(spec, g.data_ptr(), e.data_ptr(), n, 0, 1.0, 1.0, bf16, ws.data_ptr(),
                                            ws.numel(), 0, 0, stream))
            idx = torch.empty(count, dtype=torch.int32, device=device)
            val = torch.empty(count, dtype=vdtype, device=device)
            mod.feedback_emit(spec, e.data_ptr(), n, 0, 1.0, 1.0, bf16, ws.data_ptr(), ws.numel(), count,
                              idx.data_ptr() if count else 0, val.data_ptr() if count else 0, stream)
        ws.record_stream(torch.cuda.current_stream(device))
        if arr is not None:
            arr.record_stream(torch.cuda.current_stream(device))
    return idx, val, count


def _out(buf: Any, shape: tuple, dtype, device, name: str, torch) -> Any:
    if buf is None:
        return torch.empty(shape, dtype=dtype, device=device)
    _cuda_tensor(buf, name, torch)
    if tuple(buf.shape) != shape or buf.dtype != dtype or buf.device != device:
        raise ArgumentError(f"{name}: expected a {dtype} tensor of shape {shape} on {device}, "
                            f"got {buf.dtype} {tuple(buf.shape)} on {buf.device}")
    return buf


# ----------------------------------------------------------------------------- combine

def scatter_mean(out: Any, clear: Any, vals: Sequence[Any], idx: Sequence[Any], world: float) -> None:
    """out[clear] = 0 (-1 skipped), then payload by payload out[i] += v / world (float32
    division, then the sum); -1 is padding. Every index is checked first (a sync); one
    outside [0, n) raises ArgumentError and leaves out unchanged."""
    torch = _torch()
    _cuda_tensor(out, "out", torch)
    if out.dtype != torch.float32:
        raise ArgumentTypeError(f"out: float32 expected, got {out.dtype}")
    device = out.device
    if len(vals) != len(idx):
        raise ArgumentError("parts: values and indices differ in number")
    length = None
    bf16 = None
    for p, (v, i) in enumerate(zip(vals, idx)):
        _cuda_tensor(v, f"vals[{p}]", torch)
        _cuda_tensor(i, f"idx[{p}]", torch)
        _same_device(v, device, f"vals[{p}]")
        _same_device(i, device, f"idx[{p}]")
        if i.dtype != torch.int32:
            raise ArgumentTypeError(f"idx[{p}]: int32 expected, got {i.dtype}")
        if v.dtype not in (torch.float32, torch.bfloat16):
            raise ArgumentTypeError(f"vals[{p}]: float32 or bfloat16 expected, got {v.dtype}")
        if bf16 is None:
            bf16 = v.dtype == torch.bfloat16
        elif bf16 != (v.dtype == torch.bfloat16):
            raise ArgumentTypeError("vals: every part has one value dtype")
        if length is None:
            length = i.numel()
        if i.numel() != length or v.numel() != length:
            raise ArgumentError(f"parts: part {p} has {v.numel()} values and {i.numel()} indices, expected {length}")
    w = float(world)
    if not (math.isfinite(w) and w > 0):
        raise ArgumentError("world: must be finite and > 0")
    if clear is not None:
        _cuda_tensor(clear, "clear", torch)
        _same_device(clear, device, "clear")
        if clear.dtype != torch.int32:
            raise ArgumentTypeError(f"clear: int32 expected, got {clear.dtype}")
    mod = _engine()
    with torch.cuda.device(device):
        stream = _stream(torch, device)
        ws = _workspace(torch, mod.scatter_workspace(), device)
        mod.scatter_mean(out.data_ptr(), out.numel(), clear.data_ptr() if clear is not None and clear.numel() else 0,
                         clear.numel() if clear is not None else 0, [v.data_ptr() for v in vals],
                         [i.data_ptr() for i in idx], length or 0, bool(bf16), w, ws.data_ptr(), ws.numel(), stream)


# ----------------------------------------------------------------------------- random-k

def random_k_indices(n: int, k: int, seed: int, device: Any) -> Any:
    """The CPU's seeded Floyd sample (the same indices for the same seed), drawn on the host
    and copied to `device` as int64."""
    from .. import _core

    torch = _torch()
    return torch.from_numpy(np.asarray(_core.random_k(int(n), int(k), int(seed)), dtype=np.int64)).to(device)
