"""Exact selection: top-k (torch.topk semantics), sparsify (magnitude top-k / CWMP),
global selection over many tensors, streaming selection, threshold and random-k.

Ranking rules, everywhere: larger score first; equal scores rank by the lower flat index
(for many tensors: the position in their concatenation); NaN ranks above +inf; -0.0 and
+0.0 are equal. Results do not depend on the SIMD level or the thread count.
"""
from __future__ import annotations

import math
import threading
from collections import namedtuple
from typing import Any, List, Optional, Sequence

import numpy as np

from . import _core
from . import _torch_op
from ._convert import (
    BF16,
    Flat,
    as_count,
    as_flat,
    as_real,
    bf16_to_f32,
    f32_to_bf16,
    is_tensor,
    tensor_to_numpy,
    torch_module,
)
from .costs import as_cost
from .sparse import Sparse
from .errors import ArgumentError, ArgumentTypeError

TopK = namedtuple("TopK", ["values", "indices"])

_MAGNITUDE, _LARGEST, _SMALLEST = 0, 1, 2
_COUNT, _ENERGY, _THRESHOLD = 0, 1, 2


# ----------------------------------------------------------------------------- arguments

def _score_params(q: Any, alpha: Any):
    q = as_real(q, "q")
    alpha = as_real(alpha, "alpha")
    if not (math.isfinite(q) and q > 0):
        raise ArgumentError(f"q: must be finite and > 0, got {q}")
    if not (math.isfinite(alpha) and alpha >= 0):
        raise ArgumentError(f"alpha: must be finite and >= 0, got {alpha}")
    return q, alpha


def _budget(n: int, k: Any, ratio: Any, budget: Any):
    """(kind, k, energy) from exactly one of k / ratio / budget, for n elements."""
    given = [name for name, v in (("k", k), ("ratio", ratio), ("budget", budget)) if v is not None]
    if len(given) != 1:
        raise ArgumentError("k, ratio, budget: give exactly one of them" + (f" (got {', '.join(given)})" if given else ""))
    if k is not None:
        k = as_count(k, "k")
        if k < 1 or k > n:
            raise ArgumentError(f"k: must be in [1, {n}] for {n} elements, got {k}")
        return _COUNT, k, 0.0
    if ratio is not None:
        return _COUNT, k_from_ratio(ratio, n), 0.0
    b = as_real(budget, "budget")
    if not (math.isfinite(b) and b > 0):
        raise ArgumentError(f"budget: must be finite and > 0, got {b}")
    return _ENERGY, 0, b


def k_from_ratio(ratio: Any, n: int) -> int:
    """k for a density: max(1, floor(ratio * n + 0.5)), ratio in (0, 1]."""
    r = as_real(ratio, "ratio")
    if not (0.0 < r <= 1.0):
        raise ArgumentError(f"ratio: must be in (0, 1], got {r}")
    n = as_count(n, "n")
    if n < 0:
        raise ArgumentError(f"n: must be >= 0, got {n}")
    return min(n, max(1, int(math.floor(r * n + 0.5))))


def _nonempty(flat: Flat, name: str) -> Flat:
    if flat.size == 0:
        raise ArgumentError(f"{name}: input is empty")
    return flat


def _sparse(flat: Flat, idx: np.ndarray, raw: np.ndarray) -> Sparse:
    return Sparse(flat.wrap_index(idx), flat.wrap(raw), flat.shape)


# ----------------------------------------------------------------------------- top-k

def topk(input: Any, k: Any, dim: int = -1, largest: bool = True, sorted: bool = True, *, key: Any = None,
         out=None) -> TopK:
    """The k largest (or smallest) entries along `dim` of a 1-D or 2-D array, as
    ``(values, indices)`` like ``torch.topk``. numpy in, numpy out; torch in, torch out.

    With ``sorted=True`` entries come best first (ties: lower index first); with
    ``sorted=False`` they come in ascending index order. NaN counts as larger than +inf.
    ``out=(values, indices)`` reuses C-contiguous buffers of the result's shape.
    """
    if is_tensor(input) and _torch_op.wants_op(input): return _torch_op.topk(input, k, dim, largest, sorted, key, out)
    if is_tensor(input) and input.numel() and (key is not None or input.dim() not in (1, 2) or k == 0):
        # TEMPORARY (issue 14, branch i14-op only; part B's N-D topk replaces it at merge): what
        # the 1-D/2-D engine path refuses (key=, other ranks, k=0), through torch.topk, so that
        # gradcheck's evaluations on detached inputs in the torch op's tests have an answer here
        tk, tdim = _torch_op._check(torch_module(), input, k, dim, largest, sorted, key)
        return torch_module().return_types.topk(_topk_tensor(input, tk, tdim, largest, sorted, key))
    flat = as_flat(input, "input")
    shape = flat.shape
    if len(shape) not in (1, 2):
        raise ArgumentError(f"input: topk supports 1-D and 2-D inputs, got {len(shape)}-D")
    _nonempty(flat, "input")
    dim = as_count(dim, "dim")
    if not -len(shape) <= dim < len(shape):
        raise ArgumentError(f"dim: out of range for a {len(shape)}-D input, got {dim}")
    dim %= len(shape)
    k = as_count(k, "k")
    length = shape[dim]
    if k < 1 or k > length:
        raise ArgumentError(f"k: must be in [1, {length}] (size of dim {dim}), got {k}")
    if not isinstance(largest, (bool, np.bool_)) or not isinstance(sorted, (bool, np.bool_)):
        raise ArgumentTypeError("largest, sorted: must be bool")
    rows2d = flat.array.reshape(shape if len(shape) == 2 else (1, shape[0]))
    transposed = len(shape) == 2 and dim == 0
    if transposed:
        rows2d = np.ascontiguousarray(rows2d.T)
    nrows = rows2d.shape[0]
    values, indices = _topk_buffers(flat, nrows, k, len(shape), transposed, out)
    _core.topk_rows(rows2d, flat.code, k, _LARGEST if largest else _SMALLEST, bool(sorted), values, indices)
    if out is not None:
        return TopK(*out)
    if len(shape) == 1:
        values, indices = values[0], indices[0]
    elif transposed:
        values, indices = values.T, indices.T
    return TopK(flat.wrap(values), flat.wrap_index(indices))


def _topk_tensor(input: Any, k: int, dim: int, largest: bool, sorted: bool, key: Any):
    """TEMPORARY (issue 14, branch i14-op only; replaced at merge by part B's engine-backed
    version): (values, indices) of a plain CPU tensor through torch.topk, so that the torch
    op (_torch_op.py) can be developed and tested before the N-D engine exists. key="abs"
    ranks by |x| and returns x's signed values."""
    torch = torch_module()
    t = input.detach()
    if key == "abs":
        indices = torch.topk(t.abs(), k, dim, largest, sorted).indices
        values = t.gather(dim, indices)
    else:
        values, indices = torch.topk(t, k, dim, largest, sorted)
    return values.contiguous(), indices.contiguous()


_torch_op.set_cpu_kernel(_topk_tensor)  # the torch op's CPU kernel (issue 14 part C: keep at merge)


def _topk_buffers(flat: Flat, nrows: int, k: int, ndim: int, transposed: bool, out):
    if out is None:
        return np.empty((nrows, k), dtype=flat.array.dtype), np.empty((nrows, k), dtype=np.int64)
    if transposed:
        raise ArgumentError("out: not supported with dim=0 on a 2-D input")
    if not isinstance(out, (tuple, list)) or len(out) != 2:
        raise ArgumentTypeError("out: expected a (values, indices) pair")
    vals, idx = out
    # written in place: no copy (contiguous=False), bfloat16 as its uint16 bit patterns
    if is_tensor(vals):
        vals = tensor_to_numpy(vals, "out", bfloat16="bits", writable=True, contiguous=False)
    if is_tensor(idx):
        idx = tensor_to_numpy(idx, "out", writable=True, contiguous=False)
    if not isinstance(vals, np.ndarray) or not isinstance(idx, np.ndarray):
        raise ArgumentTypeError("out: expected numpy arrays or torch tensors")
    if idx.dtype != np.int64:
        raise ArgumentTypeError("out: indices buffer must be int64")
    if flat.code == BF16 and vals.dtype.itemsize == 2:
        vals = vals.view(np.uint16)
    elif vals.dtype != flat.array.dtype:
        raise ArgumentTypeError(f"out: values buffer must have the input dtype {flat.array.dtype}")
    want = (k,) if ndim == 1 else (nrows, k)
    if vals.shape != want or idx.shape != want:
        raise ArgumentError(f"out: buffers must have shape {want}")
    return vals.reshape(nrows, k), idx.reshape(nrows, k)


# ----------------------------------------------------------------------------- sparsify

def _resolve_one(flat: Flat, k, ratio, cost, budget, q, alpha) -> tuple:
    """Checks the selection arguments for `flat`; returns them in the core's form."""
    kind, kk, energy = _budget(flat.size, k, ratio, budget)
    q, alpha = _score_params(q, alpha)
    return as_cost(cost, flat), q, alpha, kind, kk, energy


def _select_one(array: np.ndarray, code: int, args: tuple):
    """(indices, raw values) of one flat array for arguments from `_resolve_one`."""
    c, q, alpha, kind, kk, energy = args
    [(idx, raw)] = _core.select([array], [code], [c], _MAGNITUDE, q, alpha, kind, kk, energy, 0.0)
    return idx, raw


def sparsify(x: Any, k: Any = None, *, ratio: Any = None, cost: Any = None, budget: Any = None,
             q: Any = 2.0, alpha: Any = 1.0) -> Sparse:
    """Keeps the best-scoring coordinates of `x` (any shape, flattened row-major).

    Without `cost` the score is |x| (magnitude top-k). With `cost` (a scalar, an array of
    x's size or a `PreparedCost` of that size, all finite and > 0) it is the CWMP score
    |x|^q / cost^alpha. Costs reused across calls are best given as a `PreparedCost`:
    checked once, and float32 costs are mostly not read at all (same result). The budget is a
    count (`k`, or `ratio` of the elements: k = max(1, floor(ratio*n + 0.5))) or an energy
    `budget`: the longest best-first run whose summed cost (1 per element without `cost`)
    stays <= budget. Returns a `Sparse` with ascending int64 indices and x's values.
    """
    flat = _nonempty(as_flat(x), "x")
    idx, raw = _select_one(flat.array, flat.code, _resolve_one(flat, k, ratio, cost, budget, q, alpha))
    return _sparse(flat, idx, raw)


def sparsify_many(xs: Sequence[Any], k: Any = None, *, ratio: Any = None, costs: Any = None,
                  budget: Any = None, q: Any = 2.0, alpha: Any = 1.0) -> List[Sparse]:
    """Global selection: one budget over all of `xs` (a whole model's tensors), without
    concatenating them. `costs` is None or one cost (None, scalar, array or
    `PreparedCost`) per tensor;
    `ratio` is relative to the total element count. Returns one `Sparse` per tensor.
    Equal scores rank by position in the concatenation of `xs`.
    """
    if is_tensor(xs) or isinstance(xs, np.ndarray) or not isinstance(xs, Sequence):
        raise ArgumentTypeError("xs: expected a list or tuple of arrays/tensors")
    if len(xs) == 0:
        raise ArgumentError("xs: the list is empty")
    flats = [as_flat(x, f"xs[{i}]") for i, x in enumerate(xs)]
    total = sum(f.size for f in flats)
    if total == 0:
        raise ArgumentError("xs: every tensor is empty")
    if costs is None:
        cs = [None] * len(flats)
    else:
        if is_tensor(costs) or isinstance(costs, np.ndarray) or not isinstance(costs, Sequence):
            raise ArgumentTypeError("costs: expected None or a list with one cost per tensor")
        if len(costs) != len(flats):
            raise ArgumentError(f"costs: expected {len(flats)} entries (one per tensor), got {len(costs)}")
        cs = [as_cost(c, f, f"costs[{i}]") for i, (c, f) in enumerate(zip(costs, flats))]
    kind, kk, energy = _budget(total, k, ratio, budget)
    q, alpha = _score_params(q, alpha)
    res = _core.select([f.array for f in flats], [f.code for f in flats], cs, _MAGNITUDE, q, alpha,
                       kind, kk, energy, 0.0)
    return [_sparse(f, idx, raw) for f, (idx, raw) in zip(flats, res)]


class StreamingSelector:
    """Exact global selection over tensors that arrive one at a time (DDP buckets, layers).

    ``push(x, cost=None)`` each chunk in order, then ``finish()`` returns one `Sparse` per
    chunk — exactly the result of `sparsify_many` over all chunks: ranked by |x| while
    every chunk has the same cost (or none), by the CWMP score |x|^q / c^alpha otherwise.
    Values are copied on push, so a buffer may be reused after pushing. Extra memory: O(k)
    candidates for a count budget (`buffered` tells how many are held). A `ratio` needs
    `total`, the element count of all chunks together, known in advance.

    Thread safety: one selector may be shared between threads; its calls run one at a time,
    and chunks pushed from several threads are numbered in the order their pushes run.
    """

    def __init__(self, k: Any = None, *, ratio: Any = None, total: Any = None, budget: Any = None,
                 q: Any = 2.0, alpha: Any = 1.0):
        if ratio is not None:
            if total is None:
                raise ArgumentError("total: a ratio needs the total number of elements of all chunks")
            total = as_count(total, "total")
            if not 1 <= total <= 2**62:
                raise ArgumentError(f"total: must be in [1, 2^62], got {total}")
            if k is not None or budget is not None:
                raise ArgumentError("k, ratio, budget: give exactly one of them")
            k = k_from_ratio(ratio, total)
        kind, kk, energy = _budget(2**62, k, None, budget)
        q, alpha = _score_params(q, alpha)
        self._core = _core.StreamingCore(kind, kk, energy, q, alpha)
        self._flats: List[Flat] = []
        self._finished = False
        self._lock = threading.Lock()  # keeps the core's chunk order and _flats' the same

    def push(self, x: Any, cost: Any = None) -> None:
        """Adds the next chunk (any shape, flattened) with its cost (None, scalar, array or
        `PreparedCost`)."""
        if self._finished:
            raise ArgumentError("push: finish() was already called on this selector")
        flat = as_flat(x)
        c = as_cost(cost, flat)
        with self._lock:
            if self._finished:
                raise ArgumentError("push: finish() was already called on this selector")
            self._core.push(flat.array, flat.code, c)
            self._flats.append(Flat(flat.array[:0], flat.code, flat.shape, flat.kind, flat.out_dtype))

    @property
    def buffered(self) -> int:
        """Candidates the selector holds now (its extra memory, in elements)."""
        return int(self._core.buffered())

    def finish(self) -> List[Sparse]:
        """Ends the stream; one `Sparse` per pushed chunk, in push order."""
        with self._lock:
            if self._finished:
                raise ArgumentError("finish: finish() was already called on this selector")
            res = self._core.finish()
            self._finished = True
        return [_sparse(f, idx, raw.view(f.array.dtype)) for f, (idx, raw) in zip(self._flats, res)]


# ----------------------------------------------------------------------------- baselines

def threshold(x: Any, tau: Any) -> Sparse:
    """Every coordinate with |x| >= tau (NaN included: it ranks above +inf)."""
    flat = _nonempty(as_flat(x), "x")
    t = as_real(tau, "tau")
    if math.isnan(t) or t < 0:
        raise ArgumentError(f"tau: must be >= 0, got {t}")
    [(idx, raw)] = _core.select([flat.array], [flat.code], [None], _MAGNITUDE, 1.0, 0.0, _THRESHOLD, 0, 0.0, t)
    return _sparse(flat, idx, raw)


def random_k(x: Any, k: Any, seed: Any, *, scale: bool = False) -> Sparse:
    """k coordinates drawn uniformly without replacement, reproducibly for `seed` (any
    platform, SIMD level or thread count). With ``scale=True`` values are multiplied by
    n/k, which makes the estimate unbiased."""
    flat = _nonempty(as_flat(x), "x")
    k = as_count(k, "k")
    if k < 1 or k > flat.size:
        raise ArgumentError(f"k: must be in [1, {flat.size}], got {k}")
    seed = as_count(seed, "seed")
    if not 0 <= seed < 2**64:
        raise ArgumentError(f"seed: must be in [0, 2**64), got {seed}")
    if not isinstance(scale, (bool, np.bool_)):
        raise ArgumentTypeError(f"scale: expected a bool, got {type(scale).__name__}")
    idx = _core.random_k(flat.size, k, seed)
    raw = flat.array[idx]
    if scale:
        factor = flat.size / k
        with np.errstate(over="ignore", invalid="ignore"):
            if flat.code == BF16:
                raw = f32_to_bf16(bf16_to_f32(raw) * np.float32(factor))
                out = bf16_to_f32(raw)
            elif np.isfinite(raw.dtype.type(factor)):
                raw = out = (raw * raw.dtype.type(factor)).astype(raw.dtype)
            else:
                # n / k beyond float16's range: scale in float32, round once to float16.
                raw = out = (raw.astype(np.float32) * np.float32(factor)).astype(raw.dtype)
        bad = ~np.isfinite(out) & np.isfinite(flat.array[idx].astype(np.float64))
        if bad.any():
            v = flat.array[idx][bad][0]
            raise ArgumentError(f"scale: a kept value times n/k = {factor:g} overflows {flat.array.dtype if flat.code != BF16 else 'bfloat16'} "
                             f"(value {float(v) if flat.code != BF16 else float(bf16_to_f32(np.array([v]))[0]):g}); "
                             "use scale=False or a wider dtype")
    return _sparse(flat, idx, raw)
