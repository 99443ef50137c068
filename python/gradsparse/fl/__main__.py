"""``python -m gradsparse.fl {run,sweep,plot,summary}`` -- see docs/fl.md.

run      one experiment: a config file and/or options, ``--set key=value`` overrides,
         ``--resume`` to continue a killed run; prints where records and figures are
sweep    methods x ratios (or energy fractions) x alphas x seeds, one run directory each;
         finished runs are skipped, interrupted ones resumed
plot     PNG figures: accuracy vs round (a colour per setting, seed bands), frontiers vs uplink
         energy, client energy and bytes (bootstrap bands)
summary  markdown tables per comparison: final / last-k / val-selected test accuracy with 95%
         intervals over seeds and costs; --baseline paired differences, --frontier, --target
"""
from __future__ import annotations

import argparse
import os
import sys
from typing import Any, Dict, List, Optional

from .config import load_config, parse_overrides
from .sweep import one_sweep_run, sweep_configs
from ..errors import ArgumentError


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", help="a JSON (or TOML) file of settings")
    p.add_argument("--data", choices=["cifar10", "synthetic"], help="data source (default cifar10)")
    p.add_argument("--data-dir", help="folder with the CIFAR-10 python-format files (cifar-10-batches-py)")
    p.add_argument("--download", action="store_true", default=None, help="download CIFAR-10 with torchvision")
    p.add_argument("--model", choices=["cnn", "resnet18", "tiny"])
    p.add_argument("--rounds", type=int)
    p.add_argument("--clients", type=int, dest="num_clients", help="number of clients")
    p.add_argument("--fraction", type=float, dest="client_fraction", help="fraction of clients per round")
    p.add_argument("--partition", choices=["dirichlet", "shards", "iid"])
    p.add_argument("--alpha", type=float, help="Dirichlet concentration")
    p.add_argument("--epochs", type=int, dest="local_epochs", help="local epochs")
    p.add_argument("--batch-size", type=int)
    p.add_argument("--lr", type=float)
    p.add_argument("--energy-profile")
    p.add_argument("--threads", type=int, help="torch threads (default: cores - 1, at least 1, at most 4)")
    p.add_argument("--out-dir", help="folder of run directories (default runs)")
    p.add_argument("--progress", choices=["auto", "on", "off"], help="progress bars (auto: on a terminal)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="any setting, e.g. --set weight_decay=0 --set params.scope=layer")


def _overrides(args: argparse.Namespace, names: List[str]) -> Dict[str, Any]:
    out: Dict[str, Any] = {}
    for n in names:
        v = getattr(args, n, None)
        if v is not None:
            out[n] = v
    out.update(parse_overrides(args.set))
    return out


_COMMON = ["data", "data_dir", "download", "model", "rounds", "num_clients", "client_fraction", "partition",
           "alpha", "local_epochs", "batch_size", "lr", "energy_profile", "threads", "out_dir", "progress"]


def _cmd_run(args: argparse.Namespace) -> int:
    ov = _overrides(args, _COMMON + ["method", "seed", "run_name"])
    if args.ratio is not None:
        ov.setdefault("params", {})["ratio"] = args.ratio
    cfg = load_config(args.config, ov)
    from . import run
    run_dir = run(cfg, resume=args.resume)
    print(f"records: {os.path.join(run_dir, 'records.jsonl')} (and records.csv)")
    if not args.no_plot:
        figs = _plot([run_dir], os.path.join(run_dir, "figures"))
        if figs:
            print("figures: " + ", ".join(figs))
    return 0


def _plot(paths: List[str], out: str, pool: Optional[List[str]] = None) -> List[str]:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        print("figures: matplotlib is not installed (pip install 'gradsparse[fl]'); skipped", file=sys.stderr)
        return []
    from .analysis import load_runs, plot_runs
    return plot_runs(load_runs(paths), out, pool=pool or [])


def _floats(text: Optional[str], what: str) -> List[Optional[float]]:
    if not text:
        return []
    try:
        return [float(t) for t in text.split(",") if t.strip()]
    except ValueError:
        raise ArgumentError(f"{what}: expected comma-separated numbers, got {text!r}") from None


def _sweep_threads(c, jobs: int) -> int:
    """torch threads of a sweep run: --threads when given; else the count an interrupted run
    started with (0: read from its config.json, since the count changes torch's results);
    else one per run when several run at a time (0: the default)."""
    from .simulation import CONFIG
    if c.threads or os.path.lexists(os.path.join(c.run_dir(), CONFIG)):
        return c.threads
    return 1 if jobs > 1 else 0


def _cmd_sweep(args: argparse.Namespace) -> int:
    from .simulation import STATUS, _read_json
    base = load_config(args.config, _overrides(args, _COMMON))
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    cfgs = sweep_configs(base, methods, _floats(args.ratios, "ratios"), _floats(args.energies, "energies"),
                         _floats(args.alphas, "alphas"), [int(s) for s in _floats(args.seeds, "seeds")])
    todo = []
    for c in cfgs:
        st = os.path.join(c.run_dir(), STATUS)
        if os.path.lexists(st) and _read_json(st).get("rounds", 0) >= c.rounds:
            print(f"skip (finished): {c.run_dir()}")
            continue
        todo.append(c)
    print(f"sweep: {len(cfgs)} runs, {len(todo)} to do, {args.jobs} at a time")
    os.makedirs(base.out_dir, exist_ok=True)
    log_path = os.path.join(base.out_dir, "sweep.log")
    items = [(c.replace(progress="off", threads=_sweep_threads(c, args.jobs)).to_dict(), log_path) for c in todo]
    if args.jobs > 1 and len(items) > 1:
        from concurrent.futures import ProcessPoolExecutor
        import multiprocessing as mp
        with ProcessPoolExecutor(args.jobs, mp_context=mp.get_context("spawn")) as ex:
            for d in ex.map(one_sweep_run, items):
                print(f"done: {d}", flush=True)
    else:
        for it in items:
            print(f"done: {one_sweep_run(it)}", flush=True)
    print(f"runs under {base.out_dir}; log {log_path}")
    return 0


def _pool(text: Optional[str]) -> List[str]:
    return [t.strip() for t in (text or "").split(",") if t.strip()]


def _cmd_plot(args: argparse.Namespace) -> int:
    out = args.out or os.path.join(args.runs[0], "figures")
    figs = _plot(args.runs, out, _pool(args.pool))
    for f in figs:
        print(f)
    return 0


def _cmd_summary(args: argparse.Namespace) -> int:
    from .analysis import load_runs, summary_table
    print(summary_table(load_runs(args.runs), baseline=args.baseline, frontier=args.frontier, target=args.target,
                        budgets=args.budgets, pool=_pool(args.pool)), end="")
    return 0


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m gradsparse.fl", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("run", help="run one experiment")
    _common(p)
    p.add_argument("--method", help="compressor (none, topk, cwmp, randomk, threshold, dgc, qsgd, terngrad, sign, "
                                    "atomo-entry, atomo-svd, atomo-fourier)")
    p.add_argument("--ratio", type=float, help="the compressor's ratio parameter")
    p.add_argument("--seed", type=int)
    p.add_argument("--run-name")
    p.add_argument("--resume", action="store_true", help="continue the run in its directory")
    p.add_argument("--no-plot", action="store_true", help="do not write figures")
    p.set_defaults(fn=_cmd_run)
    p = sub.add_parser("sweep", help="methods x ratios x alphas x seeds")
    _common(p)
    p.add_argument("--methods", required=True, help="comma-separated compressor names")
    p.add_argument("--ratios", help="comma-separated ratios (methods with a ratio parameter)")
    p.add_argument("--energies", help="comma-separated energy fractions (cwmp)")
    p.add_argument("--alphas", help="comma-separated Dirichlet alphas")
    p.add_argument("--seeds", default="0", help="comma-separated seeds")
    p.add_argument("--jobs", type=int, default=1, help="runs in parallel (each with 1 torch thread)")
    p.set_defaults(fn=_cmd_sweep)
    pool_help = ("comma-separated settings a comparison may vary besides method, params and error feedback "
                 "(e.g. lr: an lr grid in one table); by default every other difference makes its own group")
    p = sub.add_parser("plot", help="figures of runs: accuracy vs round per setting (seed bands), frontiers "
                                    "vs uplink energy, client energy and bytes (bootstrap bands)",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("runs", nargs="+", help="run directories or folders of them")
    p.add_argument("--out", help="output folder (default: <first run>/figures)")
    p.add_argument("--pool", help=pool_help)
    p.set_defaults(fn=_cmd_plot)
    p = sub.add_parser("summary", help="markdown tables: final / last-k / val-selected accuracy with 95%% "
                                       "intervals over seeds, costs; paired differences, frontiers, time to accuracy",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("runs", nargs="+", help="run directories or folders of them")
    p.add_argument("--baseline", metavar="METHOD_OR_LABEL",
                   help="add paired per-seed differences of every setting of a group against this one")
    p.add_argument("--frontier", choices=["energy", "client_energy", "bytes"],
                   help="add frontier accuracy (val-selected) at budgets on this cost axis")
    p.add_argument("--budgets", type=int, default=6, help="number of budgets of the frontier table")
    p.add_argument("--target", type=float, metavar="ACC", help="add time to this test accuracy (0-1)")
    p.add_argument("--pool", help=pool_help)
    p.set_defaults(fn=_cmd_summary)
    args = ap.parse_args(argv)
    try:
        return args.fn(args)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
