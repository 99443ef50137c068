"""Exact selection: top-k (torch.topk semantics), sparsify (magnitude top-k / CWMP),
global selection over many tensors, streaming selection, threshold and random-k.

Ranking rules, everywhere: larger score first; equal scores rank by the lower flat index
(for many tensors: the position in their concatenation); NaN ranks above +inf; -0.0 and
+0.0 are equal. Results do not depend on the SIMD level or the thread count.

Where it runs: numpy arrays and CPU tensors in the C++ engine; torch CUDA tensors on their
device (``gradsparse.cuda``; `_cuda_select`), with the same argument checks and results
equal bit for bit, returned as tensors on the same device. A CUDA tensor without the CUDA
backend built, or without a usable device, raises ArgumentError saying how to build it.
`StreamingSelector` takes CPU data only.
"""
from __future__ import annotations

import math
import threading
from typing import Any, List, Optional, Sequence

import numpy as np

from . import _core, _cuda_select, _topk_args, _torch_op
from ._convert import (
    BF16,
    Flat,
    as_count,
    as_flat,
    as_real,
    bf16_to_f32,
    check_cuda,
    f32_to_bf16,
    is_cuda,
    is_tensor,
    torch_module,
)
from .costs import as_cost
from .sparse import Sparse
from .errors import ArgumentError, ArgumentTypeError

TopK = _topk_args.TopK

_MAGNITUDE = 0  # KeyMode: largest |x| first
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


def _sparse(flat: Flat, idx: Any, raw: Any) -> Sparse:
    return Sparse(flat.wrap_index(idx), flat.wrap(raw), flat.shape)


def _select(arrays: List[Any], codes: List[int], costs: List[Any], q: float, alpha: float, kind: int,
            k: int, energy: float, tau: float) -> List[Any]:
    """One (indices, raw values) pair per flat array: the C++ engine for numpy arrays, the
    CUDA backend for CUDA tensors (all on one device, checked by the caller)."""
    if is_tensor(arrays[0]):
        return _cuda_select.select(arrays, costs, kind, k, energy, tau, q, alpha)
    return _core.select(arrays, codes, costs, _MAGNITUDE, q, alpha, kind, k, energy, tau)


# ----------------------------------------------------------------------------- top-k

def topk(input: Any, k: Any, dim: Any = -1, largest: bool = True, sorted: bool = True, *,
         key: Optional[str] = None, out=None):
    """The k largest (or smallest) entries of `input` along `dim`, as ``(values, indices)``
    like ``torch.topk``: any rank (0-d included), any dim, ``k = 0`` and empty inputs;
    float32/64/16, bfloat16 and integer dtypes. torch in: a ``torch.return_types.topk``
    of contiguous tensors; numpy in: a `TopK` of C-contiguous arrays.

    The tie rule is stricter than torch's (which leaves the order of equal entries open):
    equal entries rank by the lower index; NaN ranks above +inf; -0.0 equals +0.0. With
    ``sorted=True`` entries come best first; with ``sorted=False`` they come in ascending
    index order. ``key="abs"`` ranks by |x| (largest=False: smallest |x| first, NaN last;
    for integers the mathematical |x|) and returns x's own signed values at the selected
    indices, in one pass -- ``topk(x, k, key="abs").values.abs()`` equals
    ``torch.topk(x.abs(), k).values``. ``out=(values, indices)`` follows torch: tensors of
    another shape are resized (with torch's warning if they were not empty), strided
    buffers are written through; numpy buffers must have the result's shape.
    Errors: k out of range -> ArgumentError, dim out of range -> DimensionError.

    A CUDA tensor is selected on its device (the same results, autograd and out= included;
    out= tensors must be on that device): float dtypes in the CUDA backend, without a host
    synchronisation (`dim` is moved last, a copy unless it already is last and contiguous;
    ``key="abs", largest=False`` selects the smallest of |x|, one more pass); integer dtypes
    through the CPU engine on a host copy (synchronises; the result is copied back).
    """
    if is_tensor(input) and _torch_op.wants_op(input):
        return _torch_op.topk(input, k, dim, largest, sorted, key, out)
    values, indices = _topk_direct(input, k, dim, largest, sorted, key)
    if out is not None:
        return _topk_args.write_out(out, values, indices)
    if is_tensor(input):
        return torch_module().return_types.topk((values, indices))
    return TopK(values, indices)


def _topk_plain(input: Any, k: Any, dim: Any, largest: Any, sorted: Any, key: Any):
    """(values, indices) of a numpy array or a plain CPU tensor, in its own array type
    (numpy: C-contiguous arrays; torch: fresh contiguous tensors), no autograd, no out=:
    the direct path, and the torch op's CPU kernel."""
    flat = as_flat(input, "input", integers=True)
    k, dim, mode = _topk_args.check(flat.shape, k, dim, largest, sorted, key)
    values, indices, shape = _topk_flat(flat, k, dim, mode, bool(sorted))
    return flat.wrap(values.reshape(shape)), flat.wrap_index(indices.reshape(shape))


def _topk_cuda(input: Any, k: Any, dim: Any, largest: Any, sorted: Any, key: Any):
    """(values, indices) of a CUDA tensor, on its device, as fresh contiguous tensors: the
    direct path, and the torch op's CUDA kernel. Integer dtypes go through the CPU engine
    on a host copy."""
    t, code = check_cuda(input, "input", integers=True)
    k, dim, mode = _topk_args.check(tuple(t.shape), k, dim, largest, sorted, key)
    if code > BF16:  # integers: exact through the CPU engine
        values, indices = _topk_plain(t.cpu(), k, dim, largest, sorted, key)
        return values.to(t.device), indices.to(t.device)
    return _cuda_select.topk(t, k, dim, mode, bool(sorted))


def _topk_direct(input: Any, k: Any, dim: Any, largest: Any, sorted: Any, key: Any):
    """The direct path by where the input lives: CUDA tensors on their device, the rest on
    the CPU (also the torch op's CPU kernel: tests route CPU tensors through the CUDA layer)."""
    if is_cuda(input):
        return _topk_cuda(input, k, dim, largest, sorted, key)
    return _topk_plain(input, k, dim, largest, sorted, key)


# the torch op's kernels (_torch_op cannot import this module)
_torch_op.set_kernels(cpu=_topk_direct, cuda=_topk_direct)


def _topk_flat(flat: Flat, k: int, dim: int, mode: int, sorted: bool):
    """(values, indices, result shape) along `dim` of `flat`, as (outer, k, inner) buffers."""
    shape = flat.shape
    if not shape:  # 0-d: torch gives the element itself, for k = 0 as for k = 1
        shape, k = (1,), 1
        result = ()
    else:
        result = shape[:dim] + (k,) + shape[dim + 1:]
    outer, n, inner = math.prod(shape[:dim]), shape[dim], math.prod(shape[dim + 1:])
    x = flat.array.reshape(outer, n, inner)  # flat.array is C-contiguous: a view
    values = np.empty((outer, k, inner), dtype=flat.array.dtype)
    indices = np.empty((outer, k, inner), dtype=np.int64)
    if k and outer * inner:
        _core.topk_axis(x, flat.code, k, mode, sorted, values, indices)
    return values, indices, result


# ----------------------------------------------------------------------------- sparsify

def _resolve_one(flat: Flat, k, ratio, cost, budget, q, alpha) -> tuple:
    """Checks the selection arguments for `flat`; returns them in the core's form."""
    kind, kk, energy = _budget(flat.size, k, ratio, budget)
    q, alpha = _score_params(q, alpha)
    return as_cost(cost, flat), q, alpha, kind, kk, energy


def _select_one(array: np.ndarray, code: int, args: tuple):
    """(indices, raw values) of one flat array for arguments from `_resolve_one`."""
    c, q, alpha, kind, kk, energy = args
    [(idx, raw)] = _select([array], [code], [c], q, alpha, kind, kk, energy, 0.0)
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

    A CUDA `x` is selected on its device (a `Sparse` of tensors there); its per-element
    `cost` must be a tensor on that device (checked to be finite and > 0: one
    synchronisation) or a `PreparedCost` (copied to the device once). A count budget makes no
    host synchronisation; an energy budget synchronises once (the count it keeps).
    """
    flat = _nonempty(as_flat(x, cuda=True), "x")
    idx, raw = _select_one(flat.array, flat.code, _resolve_one(flat, k, ratio, cost, budget, q, alpha))
    return _sparse(flat, idx, raw)


def sparsify_many(xs: Sequence[Any], k: Any = None, *, ratio: Any = None, costs: Any = None,
                  budget: Any = None, q: Any = 2.0, alpha: Any = 1.0) -> List[Sparse]:
    """Global selection: one budget over all of `xs` (a whole model's tensors), without
    concatenating them. `costs` is None or one cost (None, scalar, array or
    `PreparedCost`) per tensor;
    `ratio` is relative to the total element count. Returns one `Sparse` per tensor.
    Equal scores rank by position in the concatenation of `xs`.

    CUDA tensors: all of `xs` on one device (ArgumentError naming the first that is not),
    costs as for `sparsify`; one selection over all of them on the device, which
    synchronises once (the count per tensor). Tensors of different dtypes are selected as
    float64 copies (the same result; memory for the copies).
    """
    if is_tensor(xs) or isinstance(xs, np.ndarray) or not isinstance(xs, Sequence):
        raise ArgumentTypeError("xs: expected a list or tuple of arrays/tensors")
    if len(xs) == 0:
        raise ArgumentError("xs: the list is empty")
    flats = [as_flat(x, f"xs[{i}]", cuda=True) for i, x in enumerate(xs)]
    _cuda_select.one_device(flats, [f"xs[{i}]" for i in range(len(flats))])
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
    res = _select([f.array for f in flats], [f.code for f in flats], cs, q, alpha, kind, kk, energy, 0.0)
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
    """Every coordinate with |x| >= tau (NaN included: it ranks above +inf). A CUDA `x` is
    selected on its device (synchronises once: the count)."""
    flat = _nonempty(as_flat(x, cuda=True), "x")
    t = as_real(tau, "tau")
    if math.isnan(t) or t < 0:
        raise ArgumentError(f"tau: must be >= 0, got {t}")
    [(idx, raw)] = _select([flat.array], [flat.code], [None], 1.0, 0.0, _THRESHOLD, 0, 0.0, t)
    return _sparse(flat, idx, raw)


def random_k(x: Any, k: Any, seed: Any, *, scale: bool = False) -> Sparse:
    """k coordinates drawn uniformly without replacement, reproducibly for `seed` (any
    platform, SIMD level or thread count). With ``scale=True`` values are multiplied by
    n/k, which makes the estimate unbiased.

    A CUDA `x`: the same indices as on the CPU (drawn on the host, O(k), copied to the
    device), values gathered and scaled on the device; ``scale=True`` synchronises once
    (the overflow check)."""
    flat = _nonempty(as_flat(x, cuda=True), "x")
    k = as_count(k, "k")
    if k < 1 or k > flat.size:
        raise ArgumentError(f"k: must be in [1, {flat.size}], got {k}")
    seed = as_count(seed, "seed")
    if not 0 <= seed < 2**64:
        raise ArgumentError(f"seed: must be in [0, 2**64), got {seed}")
    if not isinstance(scale, (bool, np.bool_)):
        raise ArgumentTypeError(f"scale: expected a bool, got {type(scale).__name__}")
    if flat.kind == "cuda":
        return _sparse(flat, *_cuda_select.random_k(flat, k, seed, bool(scale)))
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
