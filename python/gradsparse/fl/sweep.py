"""Sweeps: the grid of configurations, and one run of it (a top-level function, so that
worker processes can import it)."""
from __future__ import annotations

import itertools
from typing import Any, Dict, List

from .config import Config
from ..errors import ArgumentError

__all__ = ["sweep_configs", "one_sweep_run"]


def one_sweep_run(item) -> str:
    cfg_dict, log_path = item
    from .simulation import Simulation
    cfg = Config(**cfg_dict).validate()
    with open(log_path, "a", encoding="utf-8") as fh:
        def log(msg: str) -> None:
            fh.write(msg + "\n")
            fh.flush()
        Simulation(cfg, log=log).run(resume=True)
    return cfg.run_dir()


def sweep_configs(base: Config, methods: List[str], ratios: List[float], energies: List[float],
                  alphas: List[float], seeds: List[int]) -> List[Config]:
    """The grid: methods without a ratio/energy parameter run once per (alpha, seed)."""
    from ..compress import available_compressors, compressor_class
    out = []
    for method in methods:
        if method not in available_compressors():
            raise ArgumentError(f"methods: unknown compressor {method!r}")
        takes = compressor_class(method).params
        grid: List[Dict[str, Any]] = []
        if "ratio" in takes and ratios:
            grid += [{"ratio": r} for r in ratios]
        if "energy" in takes and energies:
            grid += [{"energy": e} for e in energies]
        if not grid:
            grid = [{}]
        for params, alpha, seed in itertools.product(grid, alphas or [base.alpha], seeds or [base.seed]):
            merged = {**base.params, **params} if method == base.method else dict(params)
            out.append(base.replace(method=method, params=merged, alpha=alpha, seed=seed, run_name="").validate())
    return out
