"""The re-tests of docs/results.md: CWMP vs Top-K and ATOMO vs QSGD/TernGrad.

    python bench/fl_retest.py --data-dir DIR --out-dir OUT [--jobs 2] [--seeds 0,1,2,3,4]

First the learning-rate grids of dense FedAvg and dense data-parallel SGD; the lr of each
is chosen on the validation split (printed with the grid). Then, at those lrs: Top-K
ratios and CWMP energy budgets under edge-45nm and edge-memory (FedAvg), and ATOMO
spectral vs QSGD (L2) vs TernGrad at about equal bytes (FedAvg and data-parallel). Each
run is a harness run directory; finished runs are skipped, so the script resumes.
"""
from __future__ import annotations

import argparse
import json
import os
import sys

from gradsparse.fl.config import Config, load_config
from gradsparse.fl.sweep import run_configs

# FedAvg: 10 clients, half of them per round, 1 local epoch, 30 rounds (docs/results.md says
# why these sizes); data-parallel (ATOMO's setting): 4 workers on IID shards, one
# mini-batch gradient each per step, momentum 0.9 on the server, 100 steps.
FEDAVG = dict(model="cnn", partition="dirichlet", alpha=0.5, num_clients=10, client_fraction=0.5, rounds=30,
              local_epochs=1, batch_size=32, mode="fedavg", threads=1, progress="off")
GRADIENT = dict(model="cnn", partition="iid", num_clients=4, rounds=100, batch_size=32, mode="gradient",
                momentum=0.0, server_momentum=0.9, eval_every=10, last_k=3, threads=1, progress="off")
LR_FEDAVG = (0.01, 0.02, 0.05)
LR_GRADIENT = (0.02, 0.05)
# ATOMO's atom budget (fraction of min(m, n) per matrix) whose payload per client is about
# that of qsgd-l2 (levels 1, bucket 512) on the CNN's updates (about 35 KB; measured, see
# docs/results.md); TernGrad has no knob and lands near them.
ATOMO_RATIO = 0.005


def _cfg(sub: str, data_dir: str, out: str, seed: int, **kw) -> Config:
    return load_config(None, {"data_dir": data_dir, "out_dir": os.path.join(out, sub), "seed": seed, **kw})


def lr_configs(data_dir: str, out: str, seeds):
    return ([_cfg("lr-fedavg", data_dir, out, s, **FEDAVG, method="none", lr=lr) for lr in LR_FEDAVG for s in seeds]
            + [_cfg("lr-gradient", data_dir, out, s, **GRADIENT, method="none", lr=lr)
               for lr in LR_GRADIENT for s in seeds])


def pick_lr(cfgs, mode: str):
    """The lr of the dense runs of `mode` with the best mean validation accuracy (the mean of
    each run's last-k validation accuracies, over seeds); prints the grid."""
    import numpy as np
    from gradsparse.fl import records as rec
    by = {}
    for c in cfgs:
        if c.mode != mode:
            continue
        rows = [r for r in rec.read(c.run_dir()) if r.get("val_acc") is not None]
        by.setdefault(c.lr, []).append(np.mean([r["val_acc"] for r in rows[-c.last_k:]]))
    for lr, v in sorted(by.items()):
        print(f"lr grid ({mode}): lr {lr:g}: validation accuracy (last-k mean) {np.mean(v):.4f} "
              f"± {np.std(v, ddof=1):.4f} over {len(v)} seeds", flush=True)
    return max(by, key=lambda lr: (np.mean(by[lr]), -lr))


def main_configs(data_dir: str, out: str, seeds, lr_f: float, lr_g: float):
    cf = []
    # ATOMO first: its runs are the longest
    for method, params, fedavg_too in (("atomo-svd", {"ratio": ATOMO_RATIO}, True),
                                       ("atomo-svd", {"ratio": ATOMO_RATIO, "vector": "dense"}, True),
                                       ("qsgd-l2", {"levels": 1, "bucket": 512}, True), ("terngrad", {}, False)):
        cf += [_cfg("atomo-gradient", data_dir, out, s, **GRADIENT, lr=lr_g, method=method, params=params)
               for s in seeds]
        if fedavg_too:
            cf += [_cfg("fedavg", data_dir, out, s, **FEDAVG, lr=lr_f, method=method, params=params) for s in seeds]
    for r in (0.003, 0.005, 0.01, 0.03):
        cf += [_cfg("fedavg", data_dir, out, s, **FEDAVG, lr=lr_f, method="topk", params={"ratio": r})
               for s in seeds]
    for prof, energies in (("edge-memory", (0.003, 0.01)), ("edge-45nm", (0.01,))):
        for e in energies:
            cf += [_cfg("fedavg", data_dir, out, s, **FEDAVG, lr=lr_f, method="cwmp", params={"energy": e},
                        energy_profile=prof) for s in seeds]
    # Top-K under edge-memory, one seed, run for real: its records must equal the edge-45nm
    # run's re-accounted (Top-K's selection does not read costs)
    cf.append(_cfg("check", data_dir, out, seeds[0], **FEDAVG, lr=lr_f, method="topk", params={"ratio": 0.01},
                   energy_profile="edge-memory"))
    # second round of runs: more CWMP budgets, TernGrad in FedAvg mode
    cf += [_cfg("fedavg", data_dir, out, s, **FEDAVG, lr=lr_f, method="cwmp", params={"energy": 0.03},
                energy_profile="edge-memory") for s in seeds]
    cf += [_cfg("fedavg", data_dir, out, s, **FEDAVG, lr=lr_f, method="cwmp", params={"energy": e},
                energy_profile="edge-45nm") for e in (0.003, 0.03) for s in seeds]
    cf += [_cfg("fedavg", data_dir, out, s, **FEDAVG, lr=lr_f, method="terngrad") for s in seeds]
    return cf


def _run_all(cfgs, out: str, jobs: int, tag: str) -> None:
    todo = [c for c in cfgs if not os.path.exists(os.path.join(c.run_dir(), "status.json"))]
    print(f"{tag}: {len(cfgs)} runs, {len(todo)} to do, {jobs} at a time", flush=True)
    run_configs(todo, os.path.join(out, f"{tag}.log"), jobs)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-dir", required=True)
    ap.add_argument("--out-dir", required=True)
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--seeds", default="0,1,2,3,4")
    a = ap.parse_args(argv)
    seeds = [int(s) for s in a.seeds.split(",")]
    os.makedirs(a.out_dir, exist_ok=True)
    grid = lr_configs(a.data_dir, a.out_dir, seeds)
    _run_all(grid, a.out_dir, a.jobs, "lr")
    lr_f, lr_g = pick_lr(grid, "fedavg"), pick_lr(grid, "gradient")
    print(f"chosen on validation: lr {lr_f:g} (FedAvg), {lr_g:g} (data-parallel)", flush=True)
    with open(os.path.join(a.out_dir, "chosen_lr.json"), "w", encoding="utf-8") as fh:
        json.dump({"fedavg": lr_f, "gradient": lr_g}, fh)
    _run_all(main_configs(a.data_dir, a.out_dir, seeds, lr_f, lr_g), a.out_dir, a.jobs, "main")
    return 0


if __name__ == "__main__":
    sys.exit(main())
