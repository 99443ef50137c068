"""Reading finished runs: Pareto frontiers, summary tables and figures (matplotlib).

Runs are grouped into *settings* (method + parameters + partition) and averaged over
seeds round by round. A method's Pareto frontier over a cost axis (cumulative energy or
bytes) is the running maximum of accuracy over all points of all its settings, in
increasing cost: the best accuracy the method reached for at most that cost.
"""
from __future__ import annotations

import json
import os
from collections import OrderedDict, defaultdict
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from . import records as rec
from ..errors import ArgumentError

__all__ = ["load_runs", "settings", "frontier", "summary_table", "plot_runs", "find_runs"]

AXES = {"energy": ("cum_energy_j", "cumulative uplink energy: update + transmission (J)"),
        "bytes": ("cum_uplink_bytes", "cumulative uplink bytes"),
        "round": ("round", "round")}


def find_runs(paths: Sequence[str]) -> List[str]:
    """Run directories under `paths` (a path that is a run directory is taken as is)."""
    out = []
    for p in paths:
        if os.path.isfile(os.path.join(p, "config.json")):
            out.append(p)
        elif os.path.isdir(p):
            for root, dirs, files in os.walk(p):
                dirs.sort()
                if "config.json" in files:
                    out.append(root)
        else:
            raise ArgumentError(f"runs: no such folder {p!r}")
    if not out:
        raise ArgumentError(f"runs: no run directories under {', '.join(paths)}")
    return out


def load_runs(paths: Sequence[str]) -> List[Tuple[Dict[str, Any], List[Dict[str, Any]]]]:
    runs = []
    for d in find_runs(paths):
        with open(os.path.join(d, "config.json"), "r", encoding="utf-8") as fh:
            cfg = json.load(fh)
        rows = rec.read(d)
        if rows:
            runs.append((cfg, rows))
    return runs


def label(cfg: Dict[str, Any]) -> str:
    """"topk ratio=0.01" etc."""
    ps = " ".join(f"{k}={v}" for k, v in sorted(cfg.get("params", {}).items()))
    return f"{cfg['method']} {ps}".strip()


def group_name(cfg: Dict[str, Any]) -> str:
    if cfg["partition"] == "dirichlet":
        return f"{cfg['model']}, Dirichlet alpha={cfg['alpha']:g}, {cfg['num_clients']} clients"
    return f"{cfg['model']}, {cfg['partition']}, {cfg['num_clients']} clients"


def settings(runs) -> "OrderedDict[Tuple[str, str], Dict[str, Any]]":
    """(group, label) -> {"method", "seeds", "rounds", "acc", "energy", "bytes"}: per-round
    means over the seeds (rounds every seed has evaluated)."""
    by: Dict[Tuple[str, str], List] = defaultdict(list)
    for cfg, rows in runs:
        by[(group_name(cfg), label(cfg))].append((cfg, rows))
    out: "OrderedDict[Tuple[str, str], Dict[str, Any]]" = OrderedDict()
    for key in sorted(by):
        items = by[key]
        common = None
        for _, rows in items:
            got = {r["round"] for r in rows if r["test_acc"] is not None}
            common = got if common is None else common & got
        rounds = sorted(common or [])
        if not rounds:
            continue

        def col(field: str) -> np.ndarray:
            vals = []
            for _, rows in items:
                m = {r["round"]: r[field] for r in rows}
                vals.append([m[r] for r in rounds])
            return np.asarray(vals, dtype=np.float64)

        acc = col("test_acc")
        out[key] = {"method": items[0][0]["method"], "params": items[0][0].get("params", {}),
                    "seeds": sorted(c["seed"] for c, _ in items), "rounds": np.asarray(rounds),
                    "acc": acc.mean(0), "acc_std": acc.std(0), "acc_all": acc,
                    "energy": col("cum_energy_j").mean(0), "bytes": col("cum_uplink_bytes").mean(0),
                    "best": acc.max(1)}
    return out


def frontier(costs: np.ndarray, accs: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """The running maximum of accuracy over increasing cost (a step curve's corners)."""
    order = np.lexsort((-accs, costs))
    xs, ys, best = [], [], -np.inf
    for i in order:
        if accs[i] > best:
            best = accs[i]
            xs.append(costs[i])
            ys.append(best)
    return np.asarray(xs), np.asarray(ys)


def method_frontiers(sets, group: str, axis: str) -> Dict[str, Tuple[np.ndarray, np.ndarray]]:
    key = {"energy": "energy", "bytes": "bytes"}[axis]
    pts: Dict[str, List] = defaultdict(lambda: [[], []])
    for (g, _), s in sets.items():
        if g != group:
            continue
        pts[s["method"]][0].extend(s[key])
        pts[s["method"]][1].extend(s["acc"])
    return {m: frontier(np.asarray(x), np.asarray(y)) for m, (x, y) in pts.items()}


def accuracy_at(fr: Tuple[np.ndarray, np.ndarray], cost: float) -> Optional[float]:
    """The frontier's accuracy at `cost` (None when the method has no point that cheap)."""
    xs, ys = fr
    ok = xs <= cost
    return float(ys[ok].max()) if ok.any() else None


def summary_table(runs, budgets: int = 4) -> str:
    """A markdown table per group: best accuracy (mean over seeds) of every setting, and
    each method's frontier accuracy at a few energy budgets."""
    sets = settings(runs)
    lines: List[str] = []
    for group in sorted({g for g, _ in sets}):
        lines.append(f"### {group}\n")
        lines.append("| setting | seeds | rounds | best acc (mean ± sd over seeds) | final acc | "
                     "uplink MB | uplink energy (J) |")
        lines.append("|---|---|---|---|---|---|---|")
        for (g, lab), s in sets.items():
            if g != group:
                continue
            best = s["best"]
            lines.append(f"| {lab} | {len(s['seeds'])} | {int(s['rounds'][-1])} | {best.mean():.4f} ± {best.std():.4f} "
                         f"| {s['acc'][-1]:.4f} | {s['bytes'][-1] / 1e6:.2f} | {s['energy'][-1]:.4g} |")
        fr = method_frontiers(sets, group, "energy")
        sparse = {m: f for m, f in fr.items() if m != "none"}
        if sparse:
            hi = max(f[0].max() for f in sparse.values())
            lo = max(f[0].min() for f in sparse.values())
            if hi > lo > 0:
                grid = np.geomspace(lo, hi, budgets)
                lines.append("")
                lines.append("Pareto frontier: best accuracy reached within an uplink energy budget")
                lines.append("")
                lines.append("| method | " + " | ".join(f"≤ {e:.3g} J" for e in grid) + " |")
                lines.append("|---|" + "---|" * len(grid))
                for m in sorted(fr):
                    cells = [accuracy_at(fr[m], e) for e in grid]
                    lines.append(f"| {m} | " + " | ".join("–" if c is None else f"{c:.4f}" for c in cells) + " |")
        lines.append("")
    return "\n".join(lines)


def plot_runs(runs, out_dir: str) -> List[str]:
    """Writes accuracy vs cumulative energy, vs cumulative bytes (each method's frontier as a
    line, every setting's points faint) and accuracy vs round. Returns the PNG paths."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sets = settings(runs)
    groups = sorted({g for g, _ in sets})
    if not groups:
        raise ArgumentError("runs: nothing evaluated yet")
    os.makedirs(out_dir, exist_ok=True)
    methods = sorted({s["method"] for s in sets.values()})
    colors = {m: plt.get_cmap("tab10")(i % 10) for i, m in enumerate(methods)}
    paths = []
    for axis in ("energy", "bytes"):
        fig, axs = plt.subplots(1, len(groups), figsize=(6 * len(groups), 4.5), squeeze=False)
        for ax, group in zip(axs[0], groups):
            for (g, lab), s in sets.items():
                if g == group:
                    ax.plot(s[axis], s["acc"], ".", color=colors[s["method"]], alpha=0.25, ms=3)
            for m, (xs, ys) in sorted(method_frontiers(sets, group, axis).items()):
                if xs.size:
                    ax.step(xs, ys, where="post", color=colors[m], label=f"{m} frontier", lw=2)
            ax.set_xscale("log")
            ax.set_xlabel(AXES[axis][1])
            ax.set_ylabel("test accuracy")
            ax.set_title(group, fontsize=10)
            ax.grid(alpha=0.3)
            ax.legend(fontsize=8)
        fig.tight_layout()
        p = os.path.join(out_dir, f"accuracy_vs_{axis}.png")
        fig.savefig(p, dpi=110)
        plt.close(fig)
        paths.append(p)
    fig, axs = plt.subplots(1, len(groups), figsize=(6 * len(groups), 4.5), squeeze=False)
    for ax, group in zip(axs[0], groups):
        for (g, lab), s in sets.items():
            if g == group:
                ax.plot(s["rounds"], s["acc"], color=colors[s["method"]], alpha=0.8, lw=1, label=lab)
        ax.set_xlabel("round")
        ax.set_ylabel("test accuracy (mean over seeds)")
        ax.set_title(group, fontsize=10)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=6, ncol=2)
    fig.tight_layout()
    p = os.path.join(out_dir, "accuracy_vs_round.png")
    fig.savefig(p, dpi=110)
    plt.close(fig)
    paths.append(p)
    return paths
