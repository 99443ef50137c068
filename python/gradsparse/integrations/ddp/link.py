"""`measure_link`: alpha and beta of a gloo group, for the traffic model of
`gradsparse.compress.traffic`."""
from __future__ import annotations

import time
from typing import Any

from ...compress.traffic import HEADER, SCHEMES, Link, choose, scheme_costs
from ...errors import ArgumentError

__all__ = ["Link", "measure_link", "scheme_costs", "choose", "SCHEMES", "HEADER"]


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
