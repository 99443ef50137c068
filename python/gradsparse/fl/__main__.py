"""``python -m gradsparse.fl {run,sweep,plot,summary}`` -- see docs/fl.md.

run      one experiment: a config file and/or options, ``--set key=value`` overrides,
         ``--resume`` to continue a killed run; prints its result line and where records and
         figures are
sweep    methods x a grid over any settings (--grid KEY=V1,V2,...), one run directory each;
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
import textwrap
from typing import Any, Dict, List, Optional

from .config import DATA_SOURCES, ENGINES, MODELS, PARTITIONS, Config, load_config, parse_overrides
from ..errors import ArgumentError

# the help's default of a setting when the Config default alone does not say it
_DEFAULT_TEXT = {"data_dir": "none: with --download, ~/.cache/gradsparse/cifar10 (fmnist: .../fmnist)",
                 "threads": "0: cores - 1, at least 1, at most 4; a resumed run: the count it started with"}
_DICTS = ("params", "downlink_params", "energy_overrides")
# sweep --help's description
_SWEEP = ("Runs every method of --methods with every combination of the --grid axes (and of --ratios/--energies, "
          "--alphas, --seeds), one run directory each. A params.X axis or --set params.X=V applies to the methods "
          "whose compressor takes X; the others run once per the other axes. Finished runs are skipped, interrupted "
          "ones resumed; each finished run prints a line, and the log (<out-dir>/sweep.log) prefixes every line "
          "with the run's name.")


def _default(name: str) -> str:
    """The default of Config field `name` as the help shows it."""
    if name in _DEFAULT_TEXT:
        return _DEFAULT_TEXT[name]
    v = getattr(Config(), name)
    return str(v).lower() if isinstance(v, bool) else str(v)


def _h(text: str, name: str) -> str:
    """Help `text` with the default of Config field `name` (escaped for argparse's % formatting)."""
    return f"{text} (default: {_default(name)})".replace("%", "%%")


def _epilog() -> str:
    """The energy profiles with their descriptions and the compressors with their parameters."""
    import json
    from ..compress import available_compressors, compressor_class
    from .energy import load_profile, profile_names
    wrap = textwrap.TextWrapper(width=100, initial_indent="  ", subsequent_indent=" " * 18,
                                break_on_hyphens=False).wrap
    lines = ["energy profiles (--energy-profile NAME; one constant: --set energy_overrides.NAME=VALUE):"]
    for n in profile_names():
        lines += wrap(f"{n:<15} {load_profile(n).description}")
    lines += ["", "compressors (--method / --methods) and their parameters' defaults (--set params.NAME=VALUE):"]
    for n in available_compressors():
        ps = compressor_class(n).params
        text = ", ".join(f"{k}={v if isinstance(v, str) else json.dumps(v)}" for k, v in ps.items())
        lines += wrap(f"{n:<15} {text or 'no parameters'}")
    from .evofed_params import DEFAULTS
    text = ", ".join(f"{k}={v if isinstance(v, str) else json.dumps(v)}" for k, v in DEFAULTS.items())
    lines += ["", "not a compressor: evofed (population-based fitness encoding, docs/fl.md; preset=fmnist|cifar "
              "sets the official settings):"]
    lines += wrap(f"{'evofed':<15} {text}")
    return "\n".join(lines)


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", help="a JSON (or TOML) file of settings")
    p.add_argument("--data", choices=list(DATA_SOURCES), help=_h("data source", "data"))
    p.add_argument("--data-dir", help=_h("folder with the CIFAR-10 python-format files (cifar-10-batches-py) or "
                                         "the Fashion-MNIST IDX files (raw or .gz; or FashionMNIST/raw below it)",
                                         "data_dir"))
    p.add_argument("--download", action="store_true", default=None,
                   help=_h("download CIFAR-10 / Fashion-MNIST with torchvision", "download"))
    p.add_argument("--model", choices=list(MODELS), help=_h("model", "model"))
    p.add_argument("--rounds", type=int, help=_h("communication rounds", "rounds"))
    p.add_argument("--clients", type=int, dest="num_clients", help=_h("number of clients", "num_clients"))
    p.add_argument("--fraction", type=float, dest="client_fraction",
                   help=_h("fraction of clients per round", "client_fraction"))
    p.add_argument("--partition", choices=list(PARTITIONS), help=_h("partition", "partition"))
    p.add_argument("--alpha", type=float, help=_h("Dirichlet concentration", "alpha"))
    p.add_argument("--epochs", type=int, dest="local_epochs", help=_h("local epochs", "local_epochs"))
    p.add_argument("--batch-size", type=int, help=_h("local batch size", "batch_size"))
    p.add_argument("--lr", type=float, help=_h("local learning rate", "lr"))
    p.add_argument("--energy-profile", metavar="NAME", help=_h("device profile (listed below)", "energy_profile"))
    p.add_argument("--threads", type=int, help=_h("torch threads", "threads"))
    p.add_argument("--out-dir", help=_h("folder of run directories", "out_dir"))
    p.add_argument("--progress", choices=["auto", "on", "off"], help=_h("progress bars (auto: on a terminal)",
                                                                          "progress"))
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="any setting, e.g. --set weight_decay=0 --set params.scope=layer "
                        "--set energy_overrides.radio_j_per_bit=1e-9")


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
    ov = _overrides(args, _COMMON + ["method", "seed", "run_name", "engine"])
    if args.ratio is not None:
        ov.setdefault("params", {})["ratio"] = args.ratio
    cfg = load_config(args.config, ov)
    from . import run
    run_dir = run(cfg, resume=args.resume)
    print(f"records: {os.path.join(run_dir, 'records.jsonl')} (and records.csv)")  # the result line is above
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


def _numbers(text: Optional[str], what: str, kind=float) -> list:
    if not text:
        return []
    try:
        return [kind(t) for t in text.split(",") if t.strip()]
    except ValueError:
        raise ArgumentError(f"{what}: expected comma-separated {'integers' if kind is int else 'numbers'}, "
                            f"got {text!r}") from None


def _sweep_base(args: argparse.Namespace):
    """The sweep's base config and its compressor parameters (``params`` of the config file,
    then ``--set params.X``): they belong to no single method, so they are kept apart and set
    for the methods that take them. A config file's ``method`` is ignored (--methods)."""
    from .config import _read_file
    values = _read_file(args.config) if args.config else {}
    values.pop("method", None)
    params = values.pop("params", {})
    if not isinstance(params, dict):
        raise ArgumentError(f"params: expected an object of compressor parameters in {args.config!r}")
    ov = _overrides(args, _COMMON)
    for k in ("method", "run_name"):
        if k in ov:
            raise ArgumentError(f"{k}: a sweep sets it itself (--methods; a run directory per setting); "
                                f"drop --set {k}")
    params = {**params, **ov.pop("params", {})}
    for k, v in ov.items():
        values[k] = {**values.get(k, {}), **v} if k in _DICTS and isinstance(v, dict) else v
    return load_config(None, values), params


def _cmd_sweep(args: argparse.Namespace) -> int:
    from .records import STATUS, read_json as _read_json
    from .sweep import (parse_grid, read_result, result_line, run_configs, shorthand_axes, sweep_configs,
                        sweep_threads)
    if args.jobs < 1:
        raise ArgumentError(f"jobs: must be >= 1, got {args.jobs}")
    base, params = _sweep_base(args)
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    axes = parse_grid(args.grid) + shorthand_axes(
        _numbers(args.ratios, "ratios"), _numbers(args.energies, "energies"), _numbers(args.alphas, "alphas"),
        _numbers(args.seeds, "seeds", int))
    cfgs = sweep_configs(base, methods, axes, params)
    todo = []
    for c in cfgs:
        c = c.replace(progress="off", threads=sweep_threads(c, args.jobs))
        st = os.path.join(c.run_dir(), STATUS)
        if os.path.lexists(st) and _read_json(st).get("rounds", 0) >= c.rounds:
            print(f"skip (finished): {c.run_dir()}: {result_line(read_result(c.run_dir()))}")
            continue
        todo.append(c)
    n = len(todo)
    print(f"sweep: {len(cfgs)} runs, {n} to do, {args.jobs} at a time", flush=True)
    os.makedirs(base.out_dir, exist_ok=True)
    log_path = os.path.join(base.out_dir, "sweep.log")
    failed = run_configs(todo, log_path, args.jobs)
    print(f"runs under {base.out_dir}; log {log_path}")
    if failed:
        print(f"sweep: {failed} of {n} runs FAILED (see {log_path})", file=sys.stderr)
        return 1
    return 0


def _pool(text: Optional[str]) -> List[str]:
    return [t.strip() for t in (text or "").split(",") if t.strip()]


def _cmd_plot(args: argparse.Namespace) -> int:
    out = args.out or os.path.join(args.runs[0], "figures")
    figs = _plot(args.runs, out, _pool(args.pool))
    for f in figs:
        print(f)
    return 0


def _cmd_reaccount(args: argparse.Namespace) -> int:
    from .analysis import find_runs
    from .reaccount import reaccount
    done, skipped = 0, 0
    for d in find_runs(args.runs):
        try:
            print(reaccount(d, args.energy_profile, args.out_dir))
            done += 1
        except ValueError as e:  # e.g. a cwmp run among others: say so, go on
            print(f"skipped: {e}", file=sys.stderr)
            skipped += 1
    if skipped:
        print(f"reaccount: {done} run(s) written, {skipped} skipped", file=sys.stderr)
    return 0 if done else 2


def _cmd_summary(args: argparse.Namespace) -> int:
    from .analysis import load_runs, summary_table
    print(summary_table(load_runs(args.runs), baseline=args.baseline, frontier=args.frontier, target=args.target,
                        budgets=args.budgets, pool=_pool(args.pool)), end="")
    return 0


def main(argv: Optional[List[str]] = None) -> int:
    epilog = _epilog()
    fmt = argparse.RawDescriptionHelpFormatter
    ap = argparse.ArgumentParser(prog="python -m gradsparse.fl", description=__doc__, epilog=epilog,
                                 formatter_class=fmt)
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("run", help="run one experiment", epilog=epilog, formatter_class=fmt)
    _common(p)
    p.add_argument("--method", metavar="NAME", help=_h("compressor (listed below)", "method"))
    p.add_argument("--ratio", type=float, help="the compressor's ratio parameter (= --set params.ratio=R)")
    p.add_argument("--seed", type=int, help=_h("seed", "seed"))
    p.add_argument("--run-name", help="run directory name (default: derived from the settings)")
    p.add_argument("--engine", choices=list(ENGINES),
                   help=_h("what runs the rounds: the builtin loop or Flower's simulation engine (Ray; needs "
                           "gradsparse[flower]; same records, no checkpoints)", "engine"))
    p.add_argument("--resume", action="store_true", help="continue the run in its directory")
    p.add_argument("--no-plot", action="store_true", help="do not write figures")
    p.set_defaults(fn=_cmd_run)
    p = sub.add_parser("sweep", help="a grid of runs: methods x any settings", epilog=epilog, formatter_class=fmt,
                       description=textwrap.fill(_SWEEP, width=100, break_on_hyphens=False))
    _common(p)
    p.add_argument("--methods", required=True, help="comma-separated compressor names (listed below)")
    p.add_argument("--grid", action="append", default=[], metavar="KEY=V1,V2,...",
                   help="an axis of the grid: KEY is any setting (lr, energy_profile, local_epochs, ...), "
                        "params.X, downlink_params.X or energy_overrides.X; values parsed as by --set "
                        "(repeat for more axes)")
    p.add_argument("--ratios", help="comma-separated ratios (= --grid params.ratio=...; cwmp runs each ratio and "
                                    "each of --energies)")
    p.add_argument("--energies", help="comma-separated energy fractions (= --grid params.energy=..., cwmp)")
    p.add_argument("--alphas", help="comma-separated Dirichlet alphas (= --grid alpha=...)")
    p.add_argument("--seeds", help="comma-separated seeds (= --grid seed=...; default: the config's seed)")
    p.add_argument("--jobs", type=int, default=1,
                   help="runs in parallel, each with 1 torch thread unless --threads says otherwise "
                        "(default: %(default)s)")
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
    p = sub.add_parser("reaccount", help="finished runs' energy under another profile, without rerunning them "
                                         "(compressors that do not read costs)")
    p.add_argument("runs", nargs="+", help="run directories or folders of them")
    p.add_argument("--energy-profile", required=True, help="the profile to account under")
    p.add_argument("--out-dir", required=True, help="folder of the new run directories")
    p.set_defaults(fn=_cmd_reaccount)
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
    except (ValueError, ImportError) as e:  # ImportError: an optional dependency is missing (torch, flwr)
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
