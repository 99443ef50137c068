"""Client side (fitness of updates against the population, and its shaping) and the
update every party applies (``gradient``), streamed through the core: the population is
never materialised, memory is O(d) plus O(K*P*N).

Distances come from per-chunk sums the core accumulates in one pass over the noise:
``||sigma z_j - D||^2 = sigma^2 <z_j,z_j> - 2 sigma <z_j,D> + <D,D>`` (the antithetic
member ``-z_j`` flips the middle sign), clamped at 0 against rounding, then square-rooted.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional, Tuple

import numpy as np

from .. import _core
from ..errors import ArgumentError, ArgumentTypeError
from . import _args
from .population import Population


@dataclass(frozen=True)
class Shaping:
    """Fitness shaping in the official order, applied per client and per chunk to the
    N values of a population:

    1. negate: the raw fitness ``-||sigma z_j - D||`` becomes the distance (the official ES
       minimises: smaller is better);
    2. ``centered_ranks``: ascending rank (ties: the lower member first), integer-divided by
       ``rank_factor`` (tiers), divided by N - 1, minus 0.5 (tiers are not re-centred, as
       in the official code);
    3. ``zscore``: ``(f - mean) / std`` with the population std (ddof = 0); a row whose std
       is 0 (all values equal) becomes zeros instead of the official 0/0 = NaN;
    4. ``weight`` w: the official code adds ``w * mean_i(x_ji^2)`` to a minimised fitness
       and then negates it along with the objective, so the shaped value is
       ``f - w * mean_i(x_ji^2)``: it **rewards larger** members (not a weight decay).
       Reproduced as coded; the mean is over the member's chunk.

    Immutable and thread-safe.
    """

    centered_ranks: bool = False
    rank_factor: int = 1
    zscore: bool = True
    weight: float = 0.0

    def __post_init__(self):
        set_ = object.__setattr__
        set_(self, "centered_ranks", _args.flag(self.centered_ranks, "centered_ranks"))
        set_(self, "rank_factor", _args.integer(self.rank_factor, "rank_factor", 1, 2**33))
        set_(self, "zscore", _args.flag(self.zscore, "zscore"))
        set_(self, "weight", _args.real(self.weight, "weight"))

    def apply(self, distances: Any, sq_means: Optional[Any] = None) -> np.ndarray:
        """Shapes `distances` (float64, ``(..., N)``: already negated raw fitness) along
        the last axis; `sq_means` (broadcastable to it) is ``mean_i(x_ji^2)`` per member,
        needed when ``weight != 0``."""
        f = np.array(distances, dtype=np.float64)
        n = f.shape[-1]
        if self.centered_ranks:
            order = np.argsort(f, axis=-1, kind="stable")
            ranks = np.empty(f.shape, np.int64)
            np.put_along_axis(ranks, order, np.broadcast_to(np.arange(n), f.shape), axis=-1)
            f = (ranks // self.rank_factor) / (n - 1) - 0.5
        if self.zscore:
            mean = f.mean(axis=-1, keepdims=True)
            std = f.std(axis=-1, keepdims=True)
            f = np.divide(f - mean, std, out=np.zeros_like(f), where=std > 0)
        if self.weight != 0.0:
            if sq_means is None:
                raise ArgumentError("sq_means: needed when weight != 0")
            f = f - self.weight * np.asarray(sq_means, dtype=np.float64)
        return f


def _check_pop(pop: Any) -> Population:
    if not isinstance(pop, Population):
        raise ArgumentTypeError(f"pop: expected a Population, got {type(pop).__name__}")
    return pop


def _inputs(pop, updates, theta, theta_to_core: bool = False) -> Tuple[np.ndarray, Optional[np.ndarray], int]:
    """The updates (K, d) and theta, checked; the core checks what it is given for NaN and
    infinity (theta when `theta_to_core`), so those are not scanned here a second time."""
    deltas = _args.array(updates, "updates", ndims=(1, 2), core_checks_finite=True)
    deltas = deltas.reshape(-1, deltas.shape[-1])
    d = deltas.shape[1]
    try:
        pop.check_dim(d)
    except ArgumentError as e:
        raise ArgumentError(f"updates: {e}") from None
    if theta is not None:
        theta = _args.array(theta, "theta", cols=d, core_checks_finite=theta_to_core)
    return deltas, theta, d


def _stats(pop: Population, round: int, deltas: np.ndarray, theta: Optional[np.ndarray]):
    try:
        return _core.evofed_stats(deltas, theta, pop.seed, round, pop.half, pop.partitions, pop.shared_noise)
    except ArgumentError as e:  # the core names its own argument `deltas`: ours is `updates`
        msg = str(e)
        raise ArgumentError("updates:" + msg[len("deltas:"):] if msg.startswith("deltas:") else msg) from None


def _distances(pop: Population, zd, zz, dd) -> np.ndarray:
    s = pop.sigma
    base = (s * s) * zz[None] + dd[:, :, None]            # (K, P, H)
    cross = (2.0 * s) * zd
    sq = np.concatenate([base - cross, base + cross], axis=-1)
    dist = np.sqrt(np.maximum(sq, 0.0))
    if not np.isfinite(dist).all():
        raise ArgumentError("updates: too large: the distances overflow")
    return dist


def distances(pop: Population, round: int, updates: Any, theta: Any = None) -> np.ndarray:
    """``||sigma z_j - D_k||_2`` over each chunk: float64 (K, P, N) for `updates` (K, d)
    (a 1-D update is one client, K = 1). `theta` is only checked, not needed."""
    pop = _check_pop(pop)
    round = _args.round_number(round)
    deltas, theta, _ = _inputs(pop, updates, theta)
    zd, zz, _zt, dd, _tt = _stats(pop, round, deltas, None)
    return _distances(pop, zd, zz, dd)


def fitness(pop: Population, round: int, updates: Any, theta: Any = None,
            shaping: Shaping = Shaping()) -> np.ndarray:
    """The shaped fitness, float64 (K, P, N): `shaping` applied to :func:`distances`.
    `theta` (d,) is needed only for the weight term (``shaping.weight != 0``)."""
    pop = _check_pop(pop)
    round = _args.round_number(round)
    if not isinstance(shaping, Shaping):
        raise ArgumentTypeError(f"shaping: expected a Shaping, got {type(shaping).__name__}")
    deltas, theta, d = _inputs(pop, updates, theta, theta_to_core=shaping.weight != 0.0)
    if shaping.weight != 0.0 and theta is None:
        raise ArgumentError("theta: needed when shaping.weight != 0")
    use_theta = theta if shaping.weight != 0.0 else None
    zd, zz, zt, dd, tt = _stats(pop, round, deltas, use_theta)
    dist = _distances(pop, zd, zz, dd)
    sq_means = None
    if use_theta is not None:
        m = np.diff(pop.bounds(d)).astype(np.float64)[:, None]          # (P, 1) chunk sizes
        base = tt[:, None] + (pop.sigma ** 2) * zz
        cross = (2.0 * pop.sigma) * zt
        sq_means = np.concatenate([base + cross, base - cross], axis=-1) / m   # (P, N)
    f = shaping.apply(dist, sq_means)
    if not np.isfinite(f).all():
        raise ArgumentError("theta: too large: the weight term overflows")
    return f


def gradient(pop: Population, round: int, F: Any, d: int) -> np.ndarray:
    """``g = (1/(N sigma)) sum_j F[c(t), j] z_j(t)``, float32 (d,), for the (P, N) fitness
    `F` (e.g. the server's mean). Antithetic pairs are folded first:
    ``coef[c, j] = (F[c, j] - F[c, H + j]) / (N sigma)``; the core sums over j in float32."""
    pop = _check_pop(pop)
    round = _args.round_number(round)
    d = pop.check_dim(d)
    F = _args.array(F, "F", ndims=(2,), dtype=np.float64, cols=pop.size)
    if F.shape[0] != pop.partitions:
        raise ArgumentError(f"F: expected shape ({pop.partitions}, {pop.size}), got {F.shape}")
    h = pop.half
    coef = np.ascontiguousarray((F[:, :h] - F[:, h:]) / (pop.size * pop.sigma))
    if not (np.isfinite(coef).all() and (np.abs(coef) <= np.finfo(np.float32).max).all()):
        raise ArgumentError("F: too large for sigma: the coefficients overflow float32")
    out = np.empty(d, np.float32)
    _core.evofed_update(coef, d, pop.seed, round, pop.partitions, pop.shared_noise, out)
    if not _args.all_finite(out):
        raise ArgumentError("F: too large: the update overflows float32")
    return out
