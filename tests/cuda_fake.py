"""A CPU stand-in for ``gradsparse.cuda._ops``, for testing the layer above it without a GPU.

``fake_cuda()`` makes gradsparse treat CPU torch tensors as CUDA tensors (``_convert.
CUDA_DEVICE_TYPES``), lets ``gradsparse.cuda.require`` pass, and puts this module's functions
in place of ``gradsparse.cuda._ops``. Each function follows the contract of the real one
(docs/cuda.md; the lead's ``_ops.py``) with the C++ engine doing the work, so a test run
through it checks everything the Python layer adds: routing, argument checks, the split of
global selections, dim handling, error-feedback arithmetic, state handling. The real backend
is checked by the same tests on a GPU (tests/test_cuda_api.py, marked ``requires_cuda``).
"""
from __future__ import annotations

import contextlib
import sys
from typing import Any, Iterator, List, Optional

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="the CUDA stand-in runs on torch CPU tensors")

import gradsparse
import gradsparse.cuda
from gradsparse import _convert, _core
from gradsparse.costs import PreparedCost
from gradsparse.errors import ArgumentError, ArgumentTypeError

_CODES = {torch.float32: 0, torch.float64: 1, torch.float16: 2, torch.bfloat16: 3}
_MODES = {"magnitude": 0, "largest": 1, "smallest": 2}
_KINDS = {"count": 0, "energy": 1, "threshold": 2}

#: every call made through the stand-in, by function name (tests check which path ran)
calls: List[str] = []


@contextlib.contextmanager
def fake_cuda() -> Iterator[None]:
    """CPU tensors take the CUDA path, with this module as ``gradsparse.cuda._ops``."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(_convert, "CUDA_DEVICE_TYPES", ("cuda", "cpu"))
        mp.setattr(gradsparse.cuda, "require", lambda what: None)
        mp.setattr(gradsparse.cuda, "_ops", sys.modules[__name__], raising=False)
        mp.setitem(sys.modules, "gradsparse.cuda._ops", sys.modules[__name__])
        yield


def _np(t: torch.Tensor) -> np.ndarray:
    assert t.is_contiguous(), "callers make tensors contiguous"
    if t.dtype == torch.bfloat16:
        return t.view(torch.int16).numpy().view(np.uint16)
    return t.numpy()


def _tensor(a: np.ndarray, dtype: torch.dtype) -> torch.Tensor:
    t = torch.from_numpy(np.ascontiguousarray(a))
    return t.view(torch.bfloat16) if dtype == torch.bfloat16 else t


def _cost(c: Any, n: int) -> Any:
    if c is None or isinstance(c, float):
        return c
    if isinstance(c, PreparedCost):
        return c._core
    assert isinstance(c, torch.Tensor) and c.dtype in (torch.float32, torch.float64) and c.numel() == n, c
    return _np(c)


def select(xs: List[torch.Tensor], *, kind: str, k: int = 0, energy: float = 0.0, tau: float = 0.0,
           mode: str = "magnitude", costs: Optional[list] = None, q: float = 2.0, alpha: float = 1.0):
    calls.append("select")
    if len({x.dtype for x in xs}) != 1:
        raise ArgumentTypeError("xs: all tensors must have one dtype")
    code = _CODES[xs[0].dtype]
    cs = [None] * len(xs) if costs is None else [_cost(c, x.numel()) for c, x in zip(costs, xs)]
    res = _core.select([_np(x) for x in xs], [code] * len(xs), cs, _MODES[mode], q, alpha, _KINDS[kind], k,
                       energy, tau)
    offsets = np.cumsum([0] + [x.numel() for x in xs])[:-1]
    idx = np.concatenate([i + o for (i, _), o in zip(res, offsets)]).astype(np.int64)
    vals = np.concatenate([v for _, v in res])
    counts = None if kind == "count" and len(xs) == 1 else [int(i.size) for i, _ in res]
    return torch.from_numpy(idx), _tensor(vals, xs[0].dtype), counts


def topk_rows(x: torch.Tensor, k: int, mode: str, sorted: bool):
    calls.append("topk_rows")
    rows, n = x.shape
    values = np.empty((rows, k, 1), dtype=_np(x).dtype)
    indices = np.empty((rows, k, 1), dtype=np.int64)
    _core.topk_axis(_np(x).reshape(rows, n, 1), _CODES[x.dtype], k, _MODES[mode], sorted, values, indices)
    return _tensor(values.reshape(rows, k), x.dtype), torch.from_numpy(indices.reshape(rows, k))


from gradsparse.cuda._ops import fusable  # noqa: E402  (pure Python: which costs the fused path scores)


def feedback_select(g: torch.Tensor, e: torch.Tensor, *, k: Optional[int] = None, tau: Optional[float] = None,
                    mode: str = "magnitude", cost: Any = None, q: float = 2.0, alpha: float = 1.0,
                    value_dtype: str = "float32", out_values: Optional[torch.Tensor] = None,
                    out_indices: Optional[torch.Tensor] = None):
    calls.append("feedback_select")
    assert g.dtype == torch.float32 and e.dtype == torch.float32 and g.numel() == e.numel()
    n = g.numel()
    kind, kk, t, cap = (0, k, 0.0, k) if k is not None else (2, 0, tau, n)
    vals = np.empty(cap, dtype=np.float32 if value_dtype == "float32" else np.uint16)
    idx = np.empty(cap, dtype=np.int32)
    [count] = _core.feedback_select(_np(g), _np(e), _cost(cost, n), q, alpha, kind, kk, 0.0, t, 1, cap,
                                    vals, cap, idx, cap, 0)
    vt = _tensor(vals[:count], torch.float32 if value_dtype == "float32" else torch.bfloat16)
    it = torch.from_numpy(idx[:count].copy())
    if k is None:
        return it, vt, int(count)
    if out_values is not None:
        out_values.copy_(vt)
        out_indices.copy_(it)
        return out_indices, out_values, None
    return it, vt, None


def random_k_indices(n: int, k: int, seed: int, device: Any) -> torch.Tensor:
    calls.append("random_k_indices")
    return torch.from_numpy(_core.random_k(n, k, seed)).to(device)


def rank_order(values: torch.Tensor, indices: torch.Tensor, mode: str):
    raise ArgumentError("rank_order: not used by the public API")
