"""Gloo groups for the DDP tests: ``spawn(body, *args, world=2)`` runs ``body(rank, *args)``
on each rank of a fresh group of `world` processes and re-raises a rank's failure; and
``topk_sum_reference``, the numpy reference of the top-k hook's bucket sum.

On success a worker leaves with ``os._exit(0)`` after an orderly shutdown: with this torch,
a worker that returns normally aborts now and then in gloo's teardown at interpreter exit
("terminate called without an active exception", about 1 run in 10, plain DDP too). A
failure raises as usual, so ``mp.spawn`` reports its traceback. Every collective times out
after 60 s, so a hung rank fails the test instead of blocking the suite.

torch is imported inside the functions: only the torch-only DDP tests import this module,
after their ``pytest.importorskip("torch")``."""
from __future__ import annotations

import datetime
import os
import tempfile

import numpy as np

WORLD = 2


def _worker(rank: int, init_file: str, world: int, body, *args) -> None:
    import torch
    import torch.distributed as dist

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world,
                            timeout=datetime.timedelta(seconds=60))
    try:
        body(rank, *args)
        dist.barrier()
    except BaseException:
        dist.destroy_process_group()
        raise
    dist.destroy_process_group()
    os._exit(0)


def spawn(body, *args, world: int = WORLD) -> None:
    """Runs body(rank, *args) on `world` processes (default WORLD) in one gloo group."""
    import torch.multiprocessing as mp

    with tempfile.TemporaryDirectory() as d:
        mp.spawn(_worker, args=(os.path.join(d, "init"), world, body) + args, nprocs=world, join=True)


def topk_sum_reference(ins, residual, layout, ks, dtype, ef: bool = True) -> np.ndarray:
    """The sum over ranks (in rank order) of each rank's exact top-k of its bucket input plus
    its residual (ties by the lower index); `residual[r]` (parameter name -> residual) is
    updated in place to what rank r did not send. `layout` lists the bucket's (name, size);
    `ks[r]` is rank r's k. Without `ef` the residuals are neither added nor kept."""
    n = sum(size for _, size in layout)
    expect = np.zeros(n, dtype)
    for r, x in enumerate(ins):
        e = np.concatenate([residual[r].get(name, np.zeros(size, dtype)) for name, size in layout])
        acc = x + e if ef else x.copy()
        sel = np.sort(np.argsort(-np.abs(acc.astype(np.float64)), kind="stable")[:ks[r]])
        np.add.at(expect, sel, acc[sel])
        acc[sel] = 0
        off = 0
        for name, size in layout:
            residual[r][name] = acc[off:off + size]
            off += size
    return expect
