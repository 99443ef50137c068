"""Statistics over seeds with numpy only: Student-t intervals, percentile bootstrap, paired differences.

The Student-t quantile is computed, not tabulated: the t distribution's CDF through the
regularised incomplete beta function (a continued fraction, Numerical Recipes' ``betacf``
evaluated with the modified Lentz method), inverted by bisection to 1e-12. It matches the
printed tables (t_{0.975} = 12.706 at 1 degree of freedom, 2.776 at 4, 2.262 at 9, 2.045 at 29)
and tends to the normal quantile as the degrees of freedom grow.

An interval over n < 2 seeds is undefined: its bounds are NaN (tables print "n<2").
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from ..errors import ArgumentError

__all__ = ["t_cdf", "t_quantile", "Interval", "t_interval", "bootstrap_interval", "bootstrap_band", "Paired",
           "paired_difference"]

BOOTSTRAP_RESAMPLES = 10_000


def _betacf(a: float, b: float, x: float) -> float:
    """The continued fraction of the incomplete beta function (modified Lentz)."""
    tiny = 1e-300
    qab, qap, qam = a + b, a + 1.0, a - 1.0
    c, d = 1.0, 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 10_000):
        m2 = 2 * m
        aa = m * (b - m) * x / ((qam + m2) * (a + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c
        c = c if abs(c) > tiny else tiny
        h *= d * c
        aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c
        c = c if abs(c) > tiny else tiny
        delta = d * c
        h *= delta
        if abs(delta - 1.0) < 1e-15:
            break
    return h


def _betainc(a: float, b: float, x: float) -> float:
    """The regularised incomplete beta function I_x(a, b), 0 <= x <= 1."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    front = math.exp(math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x))
    if x < (a + 1.0) / (a + b + 2.0):
        return front * _betacf(a, b, x) / a
    return 1.0 - front * _betacf(b, a, 1.0 - x) / b


def _check_df(df: float) -> float:
    if isinstance(df, bool) or not isinstance(df, (int, float, np.integer, np.floating)) or not df > 0:
        raise ArgumentError(f"df: expected degrees of freedom > 0, got {df!r}")
    return float(df)


def t_cdf(t: float, df: float) -> float:
    """P(T <= t) for Student's t with `df` degrees of freedom."""
    df = _check_df(df)
    t = float(t)
    if math.isinf(t):
        return 1.0 if t > 0 else 0.0
    tail = 0.5 * _betainc(df / 2.0, 0.5, df / (df + t * t))
    return 1.0 - tail if t > 0 else tail


def t_quantile(p: float, df: float) -> float:
    """The `p` quantile of Student's t with `df` degrees of freedom (0 < p < 1).
    ``t_quantile(0.975, 4)`` is 2.776..."""
    df = _check_df(df)
    if isinstance(p, bool) or not isinstance(p, (int, float, np.floating)) or not 0.0 < float(p) < 1.0:
        raise ArgumentError(f"p: expected a probability in (0, 1), got {p!r}")
    p = float(p)
    if p == 0.5:
        return 0.0
    if p < 0.5:
        return -t_quantile(1.0 - p, df)
    if df == 1.0:
        return math.tan(math.pi * (p - 0.5))
    hi = 1.0
    while t_cdf(hi, df) < p:
        hi *= 2.0
    lo = 0.0
    while hi - lo > 1e-12 * max(1.0, hi):
        mid = 0.5 * (lo + hi)
        if t_cdf(mid, df) < p:
            lo = mid
        else:
            hi = mid
    return 0.5 * (lo + hi)


@dataclass(frozen=True)
class Interval:
    """A point estimate with a two-sided interval at `level` (NaN bounds when n < 2)."""
    mean: float
    lo: float
    hi: float
    n: int
    level: float = 0.95
    method: str = "t"

    @property
    def defined(self) -> bool:
        return self.n >= 2 and math.isfinite(self.lo) and math.isfinite(self.hi)


def _values(values: Sequence[float], what: str = "values") -> np.ndarray:
    v = np.asarray(values, dtype=np.float64).ravel()
    if v.size == 0:
        raise ArgumentError(f"{what}: expected at least one value")
    if not np.all(np.isfinite(v)):
        raise ArgumentError(f"{what}: expected finite numbers, got {v.tolist()}")
    return v


def _check_level(level: float) -> float:
    if isinstance(level, bool) or not isinstance(level, (int, float)) or not 0.0 < float(level) < 1.0:
        raise ArgumentError(f"level: expected a confidence level in (0, 1), got {level!r}")
    return float(level)


def t_interval(values: Sequence[float], level: float = 0.95) -> Interval:
    """Mean of `values` (one per seed) with the Student-t interval mean ± t·s/√n."""
    v = _values(values)
    level = _check_level(level)
    m = float(v.mean())
    n = v.size
    if n < 2:
        return Interval(m, math.nan, math.nan, n, level, "t")
    half = t_quantile(0.5 + level / 2.0, n - 1) * float(v.std(ddof=1)) / math.sqrt(n)
    return Interval(m, m - half, m + half, n, level, "t")


def bootstrap_interval(values: Sequence[float], statistic: Optional[Callable[[np.ndarray], float]] = None,
                       level: float = 0.95, resamples: int = BOOTSTRAP_RESAMPLES, seed: int = 0) -> Interval:
    """Percentile bootstrap over `values` (one per seed): `resamples` resamples with
    replacement drawn by ``numpy.random.default_rng(seed)`` -- the same call gives the same
    interval. `statistic` maps a 1-D array to a number (default: the mean, vectorised)."""
    v = _values(values)
    level = _check_level(level)
    if isinstance(resamples, bool) or not isinstance(resamples, int) or resamples < 1:
        raise ArgumentError(f"resamples: expected an integer >= 1, got {resamples!r}")
    if statistic is not None and not callable(statistic):
        raise ArgumentError(f"statistic: expected a function of a 1-D array, got {statistic!r}")
    stat = (lambda a: float(np.mean(a))) if statistic is None else statistic
    point = float(stat(v))
    n = v.size
    if n < 2:
        return Interval(point, math.nan, math.nan, n, level, "bootstrap")
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, n, size=(resamples, n))
    samples = v[idx]
    if statistic is None:
        stats = samples.mean(axis=1)
    else:
        stats = np.array([float(statistic(row)) for row in samples])
    alpha = (1.0 - level) / 2.0
    lo, hi = np.quantile(stats, [alpha, 1.0 - alpha])
    return Interval(point, float(lo), float(hi), n, level, "bootstrap")


def bootstrap_band(values: np.ndarray, level: float = 0.95, resamples: int = BOOTSTRAP_RESAMPLES,
                   seed: int = 0) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(mean, lo, hi) per column of `values` (seeds x points): the percentile bootstrap of
    the mean with the same resamples of the seeds for every column -- column j equals
    ``bootstrap_interval(values[:, j], level=level, resamples=resamples, seed=seed)``.
    With one seed the bounds are NaN."""
    v = np.asarray(values, dtype=np.float64)
    if v.ndim != 2 or v.shape[0] == 0 or not np.all(np.isfinite(v)):
        raise ArgumentError(f"values: expected a finite seeds x points array, got shape {v.shape}")
    level = _check_level(level)
    n, m = v.shape
    mean = v.mean(axis=0)
    if n < 2:
        nan = np.full(m, math.nan)
        return mean, nan, nan.copy()
    idx = np.random.default_rng(seed).integers(0, n, size=(resamples, n))
    alpha = (1.0 - level) / 2.0
    lo, hi = np.empty(m), np.empty(m)
    step = max(1, 2_000_000 // (resamples * n))
    for j in range(0, m, step):
        stats = v[idx, j:j + step].mean(axis=1)  # resamples x columns
        lo[j:j + step], hi[j:j + step] = np.quantile(stats, [alpha, 1.0 - alpha], axis=0)
    return mean, lo, hi


@dataclass(frozen=True)
class Paired:
    """Per-seed differences a − b over the seeds both sides have."""
    seeds: List[int]
    diffs: List[float]
    t: Interval
    bootstrap: Interval
    wins: int                       #: seeds where a > b
    losses: int                     #: seeds where a < b
    ties: int
    only_a: List[int] = field(default_factory=list)  #: seeds only a has (left out)
    only_b: List[int] = field(default_factory=list)

    @property
    def mean(self) -> float:
        return self.t.mean


def paired_difference(a: Mapping[int, float], b: Mapping[int, float], level: float = 0.95,
                      resamples: int = BOOTSTRAP_RESAMPLES, seed: int = 0) -> Optional[Paired]:
    """The paired difference a − b of two settings' per-seed values (seed -> value): only the
    seeds both have are paired. None when they share no seed."""
    for name, d in (("a", a), ("b", b)):
        if not isinstance(d, Mapping):
            raise ArgumentError(f"{name}: expected a dict seed -> value, got {type(d).__name__}")
    common = sorted(set(a) & set(b))
    if not common:
        return None
    diffs = np.array([float(a[s]) - float(b[s]) for s in common])
    return Paired(seeds=common, diffs=diffs.tolist(), t=t_interval(diffs, level),
                  bootstrap=bootstrap_interval(diffs, level=level, resamples=resamples, seed=seed),
                  wins=int((diffs > 0).sum()), losses=int((diffs < 0).sum()), ties=int((diffs == 0).sum()),
                  only_a=sorted(set(a) - set(b)), only_b=sorted(set(b) - set(a)))
