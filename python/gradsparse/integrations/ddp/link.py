"""The link model behind the hook's choice of traffic scheme: an alpha-beta model of gloo's
collectives, alpha seconds per message step and beta seconds per byte, measured once
(`measure_link`) or given.

Per bucket of n elements, world size W, k elements a rank keeps, p bytes per sent element
(value + int32 index) and a header of h bytes per payload, the model's times are

* ``allgather`` (every rank's k pairs to every rank, ring): (W-1) * (alpha + beta * (h + k p));
* ``dense`` (the densified update all-reduced, ring): 2 (W-1) * (alpha + beta * 4n / W);
* ``split`` (each rank sends region r's share, ceil(k/W) pairs, to rank r; rank r reduces
  its region, keeps the best ceil(k/W) and all-gathers them): 2 (W-1) * (alpha + beta *
  (h + ceil(k/W) p')), p' the bytes of a reduced pair;

the hook picks the smallest (ties: allgather, then split, then dense). The inputs are the
same on every rank (`measure_link` returns rank 0's figures on every rank), so the choice is.
"""
from __future__ import annotations

import math
import time
from typing import Any, Dict, NamedTuple, Optional

from ...errors import ArgumentError, ArgumentTypeError

__all__ = ["Link", "measure_link", "scheme_costs", "SCHEMES"]

#: the traffic schemes, in the order ties are broken
SCHEMES = ("allgather", "split", "dense")
#: bytes of the header in front of every sparse payload (two int32: bucket size, count)
HEADER = 8


class Link(NamedTuple):
    """alpha: seconds per message step; beta: seconds per byte."""

    alpha: float
    beta: float

    @classmethod
    def of(cls, value: Any) -> "Link":
        """A Link from a Link or an (alpha, beta) pair of finite numbers >= 0."""
        if isinstance(value, Link):
            return value
        if not isinstance(value, (tuple, list)) or len(value) != 2:
            raise ArgumentTypeError(f"link: expected (alpha_seconds, beta_seconds_per_byte), got {value!r}")
        a, b = value
        for what, v in (("alpha", a), ("beta", b)):
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
                raise ArgumentError(f"link: {what} must be a finite number >= 0, got {v!r}")
        return cls(float(a), float(b))


def scheme_costs(link: Link, world: int, n: int, k: int, pair_bytes: int, reduced_pair_bytes: int = 8
                 ) -> Dict[str, float]:
    """The model's seconds per bucket for each scheme (see the module docstring)."""
    steps = world - 1
    share = -(-k // world)
    return {
        "allgather": steps * (link.alpha + link.beta * (HEADER + k * pair_bytes)),
        "split": 2 * steps * (link.alpha + link.beta * (HEADER + share * max(pair_bytes, reduced_pair_bytes))),
        "dense": 2 * steps * (link.alpha + link.beta * 4.0 * n / world),
    }


def choose(costs: Dict[str, float]) -> str:
    """The cheapest scheme (ties in the order of SCHEMES)."""
    return min(SCHEMES, key=lambda s: (costs[s], SCHEMES.index(s)))


def measure_link(group: Any = None, *, small: int = 256, large: int = 1 << 22, repeat: int = 7) -> Link:
    """Measures alpha and beta of `group` (default: the world group) with gloo all-reduces of
    `small` and `large` bytes (median of `repeat` each) under the ring model, and returns rank
    0's figures on every rank. A collective: every rank of the group must call it."""
    import torch
    import torch.distributed as dist

    for what, v in (("small", small), ("large", large), ("repeat", repeat)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ArgumentError(f"{what}: must be an integer >= 1, got {v!r}")
    if large <= small:
        raise ArgumentError(f"large: must exceed small ({small}), got {large}")
    world = dist.get_world_size(group)
    if world < 2:
        return Link(0.0, 0.0)

    def median_time(nbytes: int) -> float:
        t = torch.zeros(max(1, nbytes // 4), dtype=torch.float32)
        dist.all_reduce(t, group=group)  # warm-up (connections, buffers)
        times = []
        for _ in range(repeat):
            dist.barrier(group=group)
            t0 = time.perf_counter()
            dist.all_reduce(t, group=group)
            times.append(time.perf_counter() - t0)
        times.sort()
        return times[len(times) // 2]

    t_small, t_large = median_time(small), median_time(large)
    steps = 2 * (world - 1)
    alpha = max(t_small / steps, 0.0)
    beta = max((t_large - t_small) / (steps * (large - small) / world), 0.0)
    figures = torch.tensor([alpha, beta], dtype=torch.float64)
    dist.broadcast(figures, src=dist.get_global_rank(group, 0) if group is not None else 0, group=group)
    return Link(float(figures[0]), float(figures[1]))
