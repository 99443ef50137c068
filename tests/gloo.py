"""Two-process gloo groups for the DDP tests: ``spawn(body, *args)`` runs
``body(rank, *args)`` on each rank of a fresh group and re-raises a rank's failure.

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

WORLD = 2


def _worker(rank: int, init_file: str, body, *args) -> None:
    import torch
    import torch.distributed as dist

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=WORLD,
                            timeout=datetime.timedelta(seconds=60))
    try:
        body(rank, *args)
        dist.barrier()
    except BaseException:
        dist.destroy_process_group()
        raise
    dist.destroy_process_group()
    os._exit(0)


def spawn(body, *args) -> None:
    """Runs body(rank, *args) on WORLD processes in one gloo group."""
    import torch.multiprocessing as mp

    with tempfile.TemporaryDirectory() as d:
        mp.spawn(_worker, args=(os.path.join(d, "init"), body) + args, nprocs=WORLD, join=True)
