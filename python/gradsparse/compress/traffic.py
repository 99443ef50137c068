"""The alpha-beta model of the sparse traffic schemes (the DDP hook's choice, the benchmarks'
extrapolation): alpha seconds per message step and beta seconds per byte of a ring step,
measured once (`gradsparse.integrations.ddp.measure_link`) or given.

Per bucket of n elements, world size W, k elements a rank keeps, p bytes per sent element
(value + int32 index) and a header of h bytes per payload, the model's times are

* ``allgather`` (every rank's k pairs to every rank, ring): (W-1) * (alpha + beta * (h + k p));
* ``dense`` (the densified update all-reduced, ring): 2 (W-1) * (alpha + beta * 4n / W);
* ``split`` (each rank sends region r's share, ceil(k/W) pairs, to rank r; rank r reduces
  its region, keeps the best ceil(k/W) and all-gathers them): 2 (W-1) * (alpha + beta *
  (h + ceil(k/W) p')), p' the bytes of a reduced pair;

`choose` picks the smallest (ties: allgather, then split, then dense). With the same inputs on
every rank (`measure_link` returns rank 0's figures on every rank) every rank chooses alike.
Works without torch.
"""
from __future__ import annotations

import math
from typing import Any, Dict, NamedTuple

from ..errors import ArgumentError, ArgumentTypeError

__all__ = ["Link", "scheme_costs", "choose", "SCHEMES", "HEADER"]

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
