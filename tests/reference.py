"""Plain numpy reference implementations of every gradsparse ranking rule.

Everything here works on float64 copies of the inputs (float16, bfloat16 and float32
convert to float64 exactly) and is written to be obviously correct, not fast: each
ranking is one ``np.lexsort`` whose last key is the primary one, with the flat index as
the final tie-breaker, so "ties rank by the lower index" holds by construction.
"""
from __future__ import annotations

import math

import numpy as np


def _index(n: int) -> np.ndarray:
    return np.arange(n, dtype=np.int64)


# ----------------------------------------------------------------------------- orders

def magnitude_order(a: np.ndarray) -> np.ndarray:
    """Flat positions of `a` best first by |a|: NaN first, then |a| descending
    (-0.0 == +0.0), equal keys by the lower index."""
    a = np.asarray(a, dtype=np.float64).reshape(-1)
    nan = np.isnan(a)
    mag = np.where(nan, 0.0, np.abs(a))
    return np.lexsort((_index(a.size), -mag, -nan.astype(np.int8)))


def score_order(scores: np.ndarray) -> np.ndarray:
    """Same rule on non-negative (or NaN) float64 scores."""
    return magnitude_order(scores)


def signed_order(a: np.ndarray, largest: bool) -> np.ndarray:
    """torch.topk's order along a 1-D array: largest=True: NaN first, then descending;
    largest=False: ascending, NaN last. -0.0 == +0.0; ties by the lower index."""
    a = np.asarray(a, dtype=np.float64).reshape(-1)
    nan = np.isnan(a)
    v = np.where(nan, 0.0, a) + 0.0  # + 0.0 turns -0.0 into +0.0
    if largest:
        return np.lexsort((_index(a.size), -v, -nan.astype(np.int8)))
    return np.lexsort((_index(a.size), v, nan.astype(np.int8)))


# ----------------------------------------------------------------------------- scores

def _pow(v: float, p: float) -> float:
    try:
        return math.pow(v, p)
    except OverflowError:  # C pow returns +inf (HUGE_VAL) here
        return math.inf


def power(a: np.ndarray, p: float) -> np.ndarray:
    """a**p elementwise with the C library's pow (the engine's), not numpy's SIMD one."""
    flat = np.asarray(a, dtype=np.float64).reshape(-1)
    return np.array([_pow(v, p) for v in flat.tolist()], dtype=np.float64).reshape(np.shape(a))


def cwmp_scores(a: np.ndarray, cost=None, q: float = 2.0, alpha: float = 1.0) -> np.ndarray:
    """|a|**q / cost**alpha in float64 exactly as documented: q == 2 as a*a, q == 1 as a,
    else pow; alpha == 1 as c, alpha == 0 as 1, else pow. cost: None, scalar or array."""
    a = np.abs(np.asarray(a, dtype=np.float64).reshape(-1))
    with np.errstate(all="ignore"):
        if q == 2.0:
            num = a * a
        elif q == 1.0:
            num = a.copy()
        else:
            num = power(a, q)
        if cost is None:
            return num
        c = np.asarray(cost, dtype=np.float64).reshape(-1)
        if alpha == 1.0:
            den = c
        elif alpha == 0.0:
            den = np.ones_like(c)
        else:
            den = power(c, alpha)
        return num / den


# ----------------------------------------------------------------------------- selections

def top_count(order: np.ndarray, k: int) -> np.ndarray:
    """The first k positions of a ranking, ascending."""
    return np.sort(order[:k]).astype(np.int64)


def energy_prefix(order: np.ndarray, costs, budget: float, n: int) -> np.ndarray:
    """Ascending positions of the longest prefix of `order` whose np.cumsum of costs (in that
    order; costs = 1 when None, a scalar means that cost everywhere) is <= budget."""
    if costs is None:
        c = np.ones(n, dtype=np.float64)
    elif np.ndim(costs) == 0:
        c = np.full(n, float(costs), dtype=np.float64)
    else:
        c = np.asarray(costs, dtype=np.float64).reshape(-1)
    cum = np.cumsum(c[order])
    kept = int(np.count_nonzero(cum <= budget))
    # cum is non-decreasing (positive costs), so "cum <= budget" is a prefix
    assert np.all(cum[:kept] <= budget)
    return np.sort(order[:kept]).astype(np.int64)


def k_from_ratio(ratio: float, n: int) -> int:
    return min(n, max(1, int(math.floor(ratio * n + 0.5))))


def sparsify_ref(a: np.ndarray, k=None, *, ratio=None, cost=None, budget=None, q=2.0, alpha=1.0):
    """Indices kept by gradsparse.sparsify for float64 values `a` (flattened)."""
    a = np.asarray(a, dtype=np.float64).reshape(-1)
    n = a.size
    if cost is None or np.ndim(cost) == 0:
        order = magnitude_order(a)  # equal costs everywhere: plain magnitude ranking
    else:
        order = score_order(cwmp_scores(a, cost, q, alpha))
    if budget is not None:
        return energy_prefix(order, cost, budget, n)
    if ratio is not None:
        k = k_from_ratio(ratio, n)
    return top_count(order, k)


def split(indices: np.ndarray, sizes) -> list:
    """Global ascending indices -> one local ascending index array per tensor."""
    out, start = [], 0
    for s in sizes:
        sel = indices[(indices >= start) & (indices < start + s)]
        out.append((sel - start).astype(np.int64))
        start += s
    return out


def many_order(arrays, costs=None, q=2.0, alpha=1.0, magnitude_if_equal=True):
    """(global ranking, per-element costs, sizes) of the concatenation of `arrays` (float64
    values). With every cost equal (None/scalar) and magnitude_if_equal the ranking is plain
    magnitude; otherwise the CWMP score (a None cost divides by nothing, a scalar by c**alpha)."""
    arrays = [np.asarray(a, dtype=np.float64).reshape(-1) for a in arrays]
    sizes = [a.size for a in arrays]
    costs = [None] * len(arrays) if costs is None else list(costs)
    scalar_like = [c is None or np.ndim(c) == 0 for c in costs]
    per_elem = np.concatenate(
        [np.full(s, 1.0 if c is None else float(c)) if sl else np.asarray(c, dtype=np.float64).reshape(-1)
         for s, c, sl in zip(sizes, costs, scalar_like)])
    equal = all(scalar_like) and len({1.0 if c is None else float(c) for c in costs}) <= 1
    if equal and magnitude_if_equal:
        order = magnitude_order(np.concatenate(arrays))
    else:
        order = score_order(np.concatenate([cwmp_scores(a, c, q, alpha) for a, c in zip(arrays, costs)]))
    return order, per_elem, sizes


def many_select(ranked, k=None, *, ratio=None, budget=None):
    """Per-tensor local indices for one budget, from many_order's result."""
    order, per_elem, sizes = ranked
    n = order.size
    if budget is not None:
        glob = energy_prefix(order, per_elem, budget, n)
    else:
        if ratio is not None:
            k = k_from_ratio(ratio, n)
        glob = top_count(order, k)
    return split(glob, sizes)


def sparsify_many_ref(arrays, k=None, *, ratio=None, costs=None, budget=None, q=2.0, alpha=1.0,
                      magnitude_if_equal=True):
    """Per-tensor local indices of a global selection over the concatenation of `arrays`
    (float64 values), ties by position in the concatenation (see many_order)."""
    ranked = many_order(arrays, costs, q, alpha, magnitude_if_equal)
    return many_select(ranked, k, ratio=ratio, budget=budget)


def topk_ref(a: np.ndarray, k: int, largest: bool = True, sorted: bool = True) -> np.ndarray:
    """Indices of torch.topk-like selection along a 1-D array: rank order when sorted,
    else ascending index order."""
    order = signed_order(a, largest)[:k]
    return order.astype(np.int64) if sorted else np.sort(order).astype(np.int64)


def topk_rows_ref(a: np.ndarray, k: int, largest: bool = True, sorted: bool = True) -> np.ndarray:
    """topk_ref applied to every row of a 2-D array (np.lexsort along the last axis)."""
    a = np.asarray(a, dtype=np.float64)
    nan = np.isnan(a)
    v = np.where(nan, 0.0, a) + 0.0
    idx = np.broadcast_to(np.arange(a.shape[1]), a.shape)
    if largest:
        order = np.lexsort((idx, -v, -nan.astype(np.int8)), axis=-1)
    else:
        order = np.lexsort((idx, v, nan.astype(np.int8)), axis=-1)
    order = order[:, :k].astype(np.int64)
    return order if sorted else np.sort(order, axis=1)


def threshold_ref(a: np.ndarray, tau: float) -> np.ndarray:
    a = np.asarray(a, dtype=np.float64).reshape(-1)
    return np.flatnonzero(np.isnan(a) | (np.abs(a) >= tau)).astype(np.int64)
