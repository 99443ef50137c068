"""`measure_link`: alpha and beta of a process group (gloo, or NCCL on CUDA tensors), for the
traffic model of `gradsparse.compress.traffic`."""
from __future__ import annotations

import time
from typing import Any

from ...compress.traffic import HEADER, SCHEMES, Link, choose, scheme_costs
from ...errors import ArgumentError

__all__ = ["Link", "measure_link", "scheme_costs", "choose", "SCHEMES", "HEADER"]


def measure_link(group: Any = None, *, small: int = 256, large: int = 1 << 22, repeat: int = 7,
                 device: Any = None) -> Link:
    """Measures alpha and beta of `group` (default: the world group) with all-reduces of
    `small` and `large` bytes (median of `repeat` each) under the ring model, and returns rank
    0's figures on every rank. The tensors live on `device` (default the CPU; a CUDA device
    for NCCL, timed to the end of the device's work). A collective: every rank of the group
    must call it, with the same kind of device."""
    import torch
    import torch.distributed as dist

    for what, v in (("small", small), ("large", large), ("repeat", repeat)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ArgumentError(f"{what}: must be an integer >= 1, got {v!r}")
    if large <= small:
        raise ArgumentError(f"large: must exceed small ({small}), got {large}")
    device = torch.device("cpu") if device is None else torch.device(device)
    world = dist.get_world_size(group)
    if world < 2:
        return Link(0.0, 0.0)
    on_gpu = device.type == "cuda"

    def settle(t: Any) -> None:
        """Every rank at the same point, nothing of this rank's in flight (on a GPU: an
        all-reduce and the device's queue drained, instead of NCCL's barrier, which must
        guess the device)."""
        if on_gpu:
            dist.all_reduce(t[:1], group=group)
            torch.cuda.synchronize(device)
        else:
            dist.barrier(group=group)

    def median_time(nbytes: int) -> float:
        t = torch.zeros(max(1, nbytes // 4), dtype=torch.float32, device=device)
        dist.all_reduce(t, group=group)  # warm-up (connections, buffers)
        times = []
        for _ in range(repeat):
            settle(t)
            t0 = time.perf_counter()
            dist.all_reduce(t, group=group)
            if on_gpu:  # NCCL returns once the work is queued
                torch.cuda.synchronize(device)
            times.append(time.perf_counter() - t0)
        times.sort()
        return times[len(times) // 2]

    t_small, t_large = median_time(small), median_time(large)
    steps = 2 * (world - 1)
    alpha = max(t_small / steps, 0.0)
    beta = max((t_large - t_small) / (steps * (large - small) / world), 0.0)
    figures = torch.tensor([alpha, beta], dtype=torch.float64, device=device)
    dist.broadcast(figures, src=dist.get_global_rank(group, 0) if group is not None else 0, group=group)
    return Link(float(figures[0]), float(figures[1]))
