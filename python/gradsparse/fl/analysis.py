"""Reading finished runs: settings, per-seed metrics with intervals, frontiers, tables, figures.

Identity. A run directory's ``experiment.json`` holds its ``setting`` (every experimental
setting, resolved) and ``setting_key`` (equal for the seeds of one setting, different
whenever anything else differs). Runs are grouped by that key only: two runs that differ
in lr, energy profile, epochs, data, threads, ... are never averaged together. Runs
written before experiment.json existed are keyed by a hash of their config.json minus
the fields that are not part of the experiment (and the seed); the summary says so.

A *group* is one comparison (one table, one figure panel): the settings whose
experiments are equal except for the method, its parameters and error feedback (and any
field named in ``pool``). A setting's *label* is its method with the parameters that
matter (ratio, those off the compressor's defaults, those that vary between the
settings of that method); settings that still share a label get what differs between
them appended in brackets, e.g. ``topk ratio=0.01 [energy_profile=datacenter]``.

Metrics of a run (over the evaluated rounds up to the setting's common last round):
final test accuracy, the mean test accuracy of the last k evaluated rounds (k: config
``last_k``, default 5), the test accuracy at the round of best validation accuracy
(none without a validation split: never selected on test), and time to a target test
accuracy in rounds, uplink bytes, uplink joules and client joules.

Frontiers. For one method in a group and one seed, the frontier at budget B on a cost
axis is the test accuracy of the point (any of the method's settings, any round) with
cost <= B and the best validation accuracy (ties: the cheaper). Runs without a
validation split fall back to the best test accuracy, labelled "optimistic: selected on
test". The curve is averaged over seeds with a percentile bootstrap interval, and two
methods are compared per seed (paired differences) at each budget.
"""
from __future__ import annotations

import json
import math
import os
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from . import records as rec
from .config import digest
from .stats import Interval, bootstrap_band, bootstrap_interval, paired_difference, t_interval
from ..errors import ArgumentError

__all__ = ["Run", "Setting", "Group", "Study", "find_runs", "load_runs", "study", "run_metrics",
           "method_frontier", "summary_table", "plot_runs", "AXES"]

CONFIG, EXPERIMENT, STATUS = "config.json", "experiment.json", "status.json"

#: config.json fields that are not part of the experiment (the contract of experiment.json),
#: used to key runs written before experiment.json existed.
OLD_NON_EXPERIMENT = ("out_dir", "run_name", "progress", "rounds", "data_dir", "download", "checkpoint",
                      "checkpoint_every", "eval_every", "eval_batch_size")
#: the fields a comparison (a group) varies: everything else is equal within a group.
METHOD_FIELDS = ("method", "params", "error_feedback")

#: cost axes: name -> (records field, axis label without the profile)
AXES = {"energy": ("cum_energy_j", "cumulative uplink energy: update + transmission (J)"),
        "client_energy": ("cum_energy_client_j",
                          "cumulative client energy: training compute + memory, uplink, downlink (J)"),
        "bytes": ("cum_uplink_bytes", "cumulative uplink bytes")}

OPTIMISTIC = "optimistic: selected on test"


# ----------------------------------------------------------------------------- loading

def _read_json(path: str) -> Optional[Dict[str, Any]]:
    if not os.path.isfile(path):
        return None
    with open(path, "r", encoding="utf-8") as fh:
        try:
            data = json.load(fh)
        except json.JSONDecodeError as e:
            raise ArgumentError(f"runs: {path!r} is not valid JSON ({e})") from None
    if not isinstance(data, dict):
        raise ArgumentError(f"runs: {path!r} must hold a JSON object")
    return data


@dataclass
class Run:
    """One run directory: its config, experiment identity, records and status."""
    path: str
    config: Dict[str, Any]
    setting: Dict[str, Any]          #: the experiment without the seed
    setting_key: str
    seed: int
    keyed_by: str                    #: "experiment.json" or "config.json"
    rows: List[Dict[str, Any]]
    status: Optional[Dict[str, Any]]

    @property
    def finished(self) -> bool:
        return bool(self.status and self.status.get("finished"))

    @property
    def last_k(self) -> int:
        k = self.config.get("last_k", 5)
        return k if isinstance(k, int) and not isinstance(k, bool) and k >= 1 else 5


def find_runs(paths: Sequence[str]) -> List[str]:
    """Run directories under `paths` (a path that is a run directory is taken as is), sorted."""
    if isinstance(paths, (str, bytes)) or not isinstance(paths, Sequence):
        raise ArgumentError(f"runs: expected a list of folders, got {paths!r}")
    out = []
    for p in paths:
        if os.path.isfile(os.path.join(p, CONFIG)):
            out.append(p)
        elif os.path.isdir(p):
            for root, dirs, files in os.walk(p):
                dirs.sort()
                if CONFIG in files:
                    out.append(root)
        else:
            raise ArgumentError(f"runs: no such folder {p!r}")
    if not out:
        raise ArgumentError(f"runs: no run directories under {', '.join(paths)}")
    return sorted(dict.fromkeys(os.path.normpath(p) for p in out))


def load_run(path: str) -> Optional[Run]:
    """The run in `path` (None when it has no records yet)."""
    cfg = _read_json(os.path.join(path, CONFIG)) or {}
    rows = rec.read(path)
    if not rows:
        return None
    exp = _read_json(os.path.join(path, EXPERIMENT))
    if exp is not None and isinstance(exp.get("setting"), dict) and exp.get("setting_key"):
        setting = {k: v for k, v in exp["setting"].items() if k != "seed"}
        key, keyed_by = str(exp["setting_key"]), EXPERIMENT
        seed = exp["setting"].get("seed", cfg.get("seed", 0))
    else:
        setting = {k: v for k, v in cfg.items() if k not in OLD_NON_EXPERIMENT and k != "seed"}
        key, keyed_by = "cfg-" + digest(setting), CONFIG
        seed = cfg.get("seed", rows[0].get("seed", 0))
    return Run(path=path, config=cfg, setting=setting, setting_key=key, seed=int(seed), keyed_by=keyed_by,
               rows=rows, status=_read_json(os.path.join(path, STATUS)))


def load_runs(paths: Sequence[str]) -> List[Run]:
    """Every run with records under `paths`, in path order."""
    return [r for r in (load_run(p) for p in find_runs(paths)) if r is not None]


# ----------------------------------------------------------------------------- settings and groups

def _flat(d: Mapping[str, Any], prefix: str = "") -> Dict[str, Any]:
    """{"a": {"b": 1}} -> {"a.b": 1}; lists become JSON text."""
    out: Dict[str, Any] = {}
    for k in sorted(d):
        v = d[k]
        name = f"{prefix}{k}"
        if isinstance(v, Mapping) and v:
            out.update(_flat(v, name + "."))
        elif isinstance(v, Mapping):
            out[name] = "{}"
        elif isinstance(v, list):
            out[name] = json.dumps(v, sort_keys=True)
        else:
            out[name] = v
    return out


def _fmt_value(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:g}"
    if isinstance(v, str) and len(v) >= 32 and all(c in "0123456789abcdef" for c in v):
        return v[:8]
    if v is None:
        return "null"
    return str(v)


def _differing(dicts: Sequence[Mapping[str, Any]], skip: Iterable[str] = ()) -> List[str]:
    """The dotted fields whose values are not all equal across `dicts` (missing = null);
    a profile's constants are left out when the profile names differ (the name says it)."""
    flats = [_flat(d) for d in dicts]
    keys = sorted(set().union(*flats)) if flats else []
    skip = set(skip)
    diff = [k for k in keys if k not in skip and len({json.dumps(f.get(k), sort_keys=True) for f in flats}) > 1]
    if "energy_profile" in diff or "client_profiles" in diff:
        diff = [k for k in diff if not k.startswith("profiles.")]
    return diff


def _describe(flat: Mapping[str, Any], fields: Sequence[str], limit: int = 4) -> str:
    parts = [f"{k}={_fmt_value(flat.get(k))}" for k in fields[:limit]]
    if len(fields) > limit:
        parts.append(f"+{len(fields) - limit} more")
    return ", ".join(parts)


def _defaults(method: str, params: Optional[Dict[str, Any]] = None) -> Optional[Dict[str, Any]]:
    """The compressor's default parameters (None for a compressor this version lacks); for
    ``evofed``, every parameter resolved under the preset `params` name (so a preset's run
    is labelled by its preset and what differs from it)."""
    from ..compress import compressor_class
    from . import evofed_params
    try:
        if method == evofed_params.METHOD:
            return {**evofed_params.defaults((params or {}).get("preset") or ""), "preset": ""}
        return dict(compressor_class(method).params)
    except ValueError:
        return None


@dataclass
class Setting:
    """The runs (one per seed) of one experiment."""
    key: str
    setting: Dict[str, Any]
    runs: List[Run]
    group: str = ""
    base_label: str = ""
    label: str = ""
    horizon: int = 0                 #: the last round every seed reached
    dropped: List[str] = field(default_factory=list)  #: duplicate runs left out

    @property
    def method(self) -> str:
        return str(self.setting.get("method", self.runs[0].rows[0].get("method", "?")))

    @property
    def seeds(self) -> List[int]:
        return [r.seed for r in self.runs]

    @property
    def keyed_by_config(self) -> bool:
        return any(r.keyed_by == CONFIG for r in self.runs)

    def rows(self, run: Run) -> List[Dict[str, Any]]:
        return [r for r in run.rows if r.get("round", 0) <= self.horizon]

    def display_params(self) -> Dict[str, Any]:
        params = dict(self.setting.get("params") or {})
        return {**(_defaults(self.method, params) or {}), **params}


@dataclass
class Group:
    """One comparison: settings equal but for method, parameters, error feedback (and pooled fields)."""
    key: str
    setting: Dict[str, Any]          #: the shared experiment (method fields removed)
    settings: List[Setting]
    title: str = ""

    def methods(self) -> List[str]:
        return sorted({s.method for s in self.settings})

    def profiles(self) -> List[str]:
        names = set()
        for s in self.settings:
            if s.setting.get("energy_profile"):
                names.add(str(s.setting["energy_profile"]))
            names.update(str(p) for p in (s.setting.get("client_profiles") or []))
        return sorted(names)


@dataclass
class Study:
    """Runs organised into settings and groups, with the notes a reader must see."""
    runs: List[Run]
    settings: List[Setting]
    groups: List[Group]
    notes: List[str]

    def setting(self, label: str) -> Setting:
        for s in self.settings:
            if s.label == label:
                return s
        raise ArgumentError(f"setting: no setting labelled {label!r}")


def _group_title(g: Dict[str, Any]) -> str:
    part = g.get("partition", "?")
    if part == "dirichlet":
        part = f"Dirichlet alpha={_fmt_value(g.get('alpha'))}"
    return f"{g.get('model', '?')}, {part}, {g.get('num_clients', '?')} clients"


def study(runs: Sequence[Run], pool: Sequence[str] = ()) -> Study:
    """Organises `runs` into settings (by setting_key) and groups; `pool` names extra
    setting fields a group may vary (e.g. ["lr"] puts an lr grid into one table)."""
    if not runs:
        raise ArgumentError("runs: no run has records yet")
    pool = tuple(pool)
    for p in pool:
        if not isinstance(p, str) or not p or p == "seed":
            raise ArgumentError(f"pool: expected setting names, got {p!r}")
    notes: List[str] = []
    by_key: Dict[str, List[Run]] = defaultdict(list)
    for r in runs:
        by_key[r.setting_key].append(r)
    settings: List[Setting] = []
    for key, rs in by_key.items():
        kept: Dict[int, Run] = {}
        dropped = []
        for r in sorted(rs, key=lambda r: (r.seed, r.path)):
            if r.seed in kept:
                dropped.append(r.path)
            else:
                kept[r.seed] = r
        s = Setting(key=key, setting=rs[0].setting, runs=list(kept.values()), dropped=dropped)
        s.horizon = min(max(row.get("round", 0) for row in r.rows) for r in s.runs)
        settings.append(s)
    # groups
    by_group: Dict[str, List[Setting]] = defaultdict(list)
    shared: Dict[str, Dict[str, Any]] = {}
    for s in settings:
        g = {k: v for k, v in s.setting.items() if k not in METHOD_FIELDS and k not in pool}
        s.group = digest(g)
        shared[s.group] = g
        by_group[s.group].append(s)
    # labels: method + the parameters that matter, then what differs among equal labels
    for gk, ss in by_group.items():
        per_method: Dict[str, List[Setting]] = defaultdict(list)
        for s in ss:
            per_method[s.method].append(s)
        for method, ms in per_method.items():
            varying = set(_differing([m.display_params() for m in ms]))
            for s in ms:
                p = s.display_params()
                defaults = _defaults(method, p)
                # an unset alternative (cwmp's ratio when it has an energy budget) is not shown
                shown = [k for k in sorted(p) if p[k] is not None and (k == "ratio" or k in varying or defaults is None
                                                                       or k not in defaults or defaults[k] != p[k])]
                lab = " ".join([method] + [f"{k}={_fmt_value(p[k])}" for k in shown])
                ef = s.setting.get("error_feedback")
                if ef not in (None, "auto"):
                    lab += f" ef={ef}"
                s.base_label = lab
    by_label: Dict[str, List[Setting]] = defaultdict(list)
    for s in settings:
        by_label[s.base_label].append(s)
    for lab, ss in sorted(by_label.items()):
        if len(ss) == 1:
            ss[0].label = lab
            continue
        diff = _differing([s.setting for s in ss], skip=())
        for s in ss:
            flat = _flat(s.setting)
            extra = _describe(flat, diff) if diff else f"key {s.key}"
            s.label = f"{lab} [{extra}]"
        notes.append(f"settings labelled {lab!r} are different experiments (never merged); they differ in: "
                     + (", ".join(diff) if diff else "their key only (one keyed by config.json)"))
    settings.sort(key=lambda s: (s.label, s.key))
    groups = []
    for gk, ss in by_group.items():
        groups.append(Group(key=gk, setting=shared[gk], settings=sorted(ss, key=lambda s: (s.label, s.key))))
    gdiff = _differing([g.setting for g in groups])
    for g in groups:
        g.title = _group_title(g.setting)
        rest = [k for k in gdiff if k not in ("model", "partition", "alpha", "num_clients")]
        if rest:
            g.title += f" [{_describe(_flat(g.setting), rest, limit=6)}]"
    groups.sort(key=lambda g: (g.title, g.key))
    if len(groups) > 1 and gdiff:
        notes.append("groups (tables) differ in: " + ", ".join(gdiff))
    # visible caveats
    old = [s.label for s in settings if s.keyed_by_config]
    if old:
        notes.append(f"(no experiment.json: keyed by config.json) {len(old)} setting(s): " + "; ".join(old))
    for s in settings:
        if s.dropped:
            notes.append(f"{s.label}: {len(s.dropped)} duplicate run(s) of a seed left out: " + ", ".join(s.dropped))
        rounds = sorted({max(row.get("round", 0) for row in r.rows) for r in s.runs})
        if len(rounds) > 1:
            notes.append(f"{s.label}: seeds reached different rounds ({', '.join(map(str, rounds))}); "
                         f"metrics use rounds <= {s.horizon}")
    unfinished = [r.path for r in runs if not r.finished]
    if unfinished:
        notes.append(f"{len(unfinished)} run(s) not finished (no status.json saying so): " + ", ".join(unfinished))
    return Study(runs=list(runs), settings=settings, groups=groups, notes=notes)


# ----------------------------------------------------------------------------- metrics

def _evaluated(rows: Sequence[Mapping[str, Any]]) -> List[Mapping[str, Any]]:
    return [r for r in rows if r.get("test_acc") is not None]


def run_metrics(rows: Sequence[Mapping[str, Any]], last_k: int = 5, target: Optional[float] = None) -> Dict[str, Any]:
    """Metrics of one run's rows (see the module's docstring); missing fields are None."""
    ev = _evaluated(rows)
    out: Dict[str, Any] = {"final_round": None, "final_acc": None, "lastk_acc": None, "k": last_k,
                           "best_val_round": None, "val_selected_acc": None, "has_val": False}
    last = rows[-1] if rows else {}
    for name, f in (("uplink_bytes", "cum_uplink_bytes"), ("uplink_j", "cum_energy_j"),
                    ("client_j", "cum_energy_client_j")):
        out[name] = last.get(f)
    out["rounds"] = last.get("round")
    if ev:
        out["final_round"] = ev[-1]["round"]
        out["final_acc"] = float(ev[-1]["test_acc"])
        out["lastk_acc"] = float(np.mean([r["test_acc"] for r in ev[-last_k:]]))
        val = [r for r in ev if r.get("val_acc") is not None]
        if val:
            best = max(val, key=lambda r: (r["val_acc"], -r["round"]))
            out.update(has_val=True, best_val_round=best["round"], val_selected_acc=float(best["test_acc"]))
    if target is not None:
        hit = next((r for r in ev if r["test_acc"] >= target), None)
        out["tta"] = None if hit is None else {"round": hit.get("round"), "uplink_bytes": hit.get("cum_uplink_bytes"),
                                                "uplink_j": hit.get("cum_energy_j"),
                                                "client_j": hit.get("cum_energy_client_j")}
    return out


def setting_metrics(s: Setting, target: Optional[float] = None) -> Dict[int, Dict[str, Any]]:
    """seed -> run_metrics of that seed's run."""
    return {r.seed: run_metrics(s.rows(r), r.last_k, target) for r in s.runs}


def _per_seed(m: Mapping[int, Mapping[str, Any]], name: str) -> Dict[int, float]:
    return {seed: float(v[name]) for seed, v in m.items() if v.get(name) is not None}


# ----------------------------------------------------------------------------- frontiers

@dataclass
class Frontier:
    """One method's frontier in one group on one cost axis: per seed, sorted points."""
    method: str
    axis: str
    selection: str                               #: "val" or OPTIMISTIC
    points: Dict[int, Tuple[np.ndarray, np.ndarray]]  #: seed -> (cost ascending, test acc of the selected point)

    def lo(self) -> float:
        """The smallest budget at which every seed has a point."""
        return max(float(c[0]) for c, _ in self.points.values())

    def hi(self) -> float:
        return max(float(c[-1]) for c, _ in self.points.values())

    def at(self, budgets: Sequence[float]) -> Dict[int, np.ndarray]:
        """seed -> the selected test accuracy at each budget (NaN where the seed has no point)."""
        b = np.asarray(budgets, dtype=np.float64)
        out = {}
        for seed, (cost, acc) in self.points.items():
            i = np.searchsorted(cost, b, side="right") - 1
            v = np.where(i >= 0, acc[np.maximum(i, 0)], np.nan)
            out[seed] = v
        return out


def method_frontier(group: Group, method: str, axis: str) -> Optional[Frontier]:
    """The frontier of `method`'s settings in `group` on `axis` (a key of AXES); None when
    no run of it records that cost."""
    if axis not in AXES:
        raise ArgumentError(f"axis: expected one of {', '.join(AXES)}, got {axis!r}")
    fld = AXES[axis][0]
    ss = [s for s in group.settings if s.method == method]
    raw: Dict[int, List[Tuple[float, float, float]]] = defaultdict(list)
    has_val = True
    for s in ss:
        for r in s.runs:
            for row in _evaluated(s.rows(r)):
                if row.get(fld) is None:
                    continue
                if row.get("val_acc") is None:
                    has_val = False
                raw[r.seed].append((float(row[fld]), row.get("val_acc"), float(row["test_acc"])))
    if not raw:
        return None
    selection = "val" if has_val else OPTIMISTIC
    points = {}
    for seed in sorted(raw):
        pts = raw[seed]
        score = [(p[1] if has_val else p[2]) for p in pts]
        order = sorted(range(len(pts)), key=lambda i: (pts[i][0], -score[i]))
        costs, accs, best = [], [], -math.inf
        for i in order:
            if score[i] > best:  # strictly better: ties keep the cheaper point
                best = score[i]
                costs.append(pts[i][0])
                accs.append(pts[i][2])
        points[seed] = (np.asarray(costs), np.asarray(accs))
    return Frontier(method=method, axis=axis, selection=selection, points=points)


def budget_grid(frontiers: Sequence[Frontier], n: int) -> np.ndarray:
    """`n` geometric budgets from where every seed of every frontier has a point to the
    largest cost any reaches."""
    if not frontiers:
        return np.zeros(0)
    lo = max(f.lo() for f in frontiers)
    hi = max(f.hi() for f in frontiers)
    if lo <= 0:
        pos = [c[c > 0] for f in frontiers for c, _ in f.points.values()]
        lo = min(float(p[0]) for p in pos if p.size) if any(p.size for p in pos) else 1.0
    if hi <= lo or n == 1:
        return np.asarray([hi])
    return np.geomspace(lo, hi, n)


def frontier_interval(values: Mapping[int, np.ndarray], j: int) -> Optional[Interval]:
    """Mean over seeds, with a bootstrap interval, at budget index j (None unless every seed has a point)."""
    v = [float(a[j]) for a in values.values()]
    if not v or any(math.isnan(x) for x in v):
        return None
    return bootstrap_interval(v)


# ----------------------------------------------------------------------------- tables

def _ci(iv: Optional[Interval], digits: int = 4) -> str:
    if iv is None:
        return "–"
    if not iv.defined:
        return f"{iv.mean:.{digits}f} (n<2)"
    return f"{iv.mean:.{digits}f} [{iv.lo:.{digits}f}, {iv.hi:.{digits}f}]"


def _signed(iv: Interval) -> str:
    if not iv.defined:
        return f"{iv.mean:+.4f} (n<2)"
    return f"{iv.mean:+.4f} [{iv.lo:+.4f}, {iv.hi:+.4f}]"


def _mean(vals: Iterable[Optional[float]]) -> Optional[float]:
    v = [x for x in vals if x is not None]
    return float(np.mean(v)) if v else None


def _num(x: Optional[float], fmt: str) -> str:
    return "–" if x is None else format(x, fmt)


def _baseline(group: Group, name: str) -> Tuple[Optional[Setting], str]:
    """The setting of `group` that `name` (a label or a method) designates, or why none."""
    hits = [s for s in group.settings if name in (s.label, s.base_label)]
    if not hits:
        hits = [s for s in group.settings if s.method == name]
    if len(hits) == 1:
        return hits[0], ""
    if not hits:
        return None, f"baseline {name!r}: no such setting in this group"
    return None, (f"baseline {name!r} matches {len(hits)} settings ({'; '.join(s.label for s in hits)}): "
                  f"give one label")


def _baseline_method(group: Group, name: str) -> Optional[str]:
    if name in group.methods():
        return name
    s, _ = _baseline(group, name)
    return s.method if s is not None else None


def _axis_label(group: Group, axis: str) -> str:
    text = AXES[axis][1]
    if axis in ("energy", "client_energy"):
        profs = group.profiles()
        text += f", profile{'s' if len(profs) > 1 else ''} {', '.join(profs) if profs else 'unknown'}"
    return text


def summary_table(runs: Sequence[Run], baseline: Optional[str] = None, frontier: Optional[str] = None,
                  target: Optional[float] = None, budgets: int = 6, pool: Sequence[str] = ()) -> str:
    """The markdown summary (see the module's docstring): per group a table of every
    setting's metrics with 95% Student-t intervals over seeds; with `baseline`, paired
    per-seed differences of every setting against it; with `frontier` (a key of AXES),
    frontier accuracy at `budgets` budgets with bootstrap intervals and paired differences
    against the baseline's method; with `target`, time to that test accuracy."""
    if frontier is not None and frontier not in AXES:
        raise ArgumentError(f"frontier: expected one of {', '.join(AXES)}, got {frontier!r}")
    if target is not None and not (isinstance(target, (int, float)) and 0 < target <= 1):
        raise ArgumentError(f"target: expected a test accuracy in (0, 1], got {target!r}")
    if isinstance(budgets, bool) or not isinstance(budgets, int) or budgets < 1:
        raise ArgumentError(f"budgets: expected an integer >= 1, got {budgets!r}")
    st = study(runs, pool)
    out: List[str] = [f"{len(st.runs)} runs, {len(st.settings)} settings, {len(st.groups)} group(s). "
                      "Accuracies are test-set fractions; intervals are 95% Student-t over seeds "
                      "unless marked bootstrap (percentile, 10000 resamples, seed 0).", ""]
    out += [f"note: {n}" for n in st.notes]
    if st.notes:
        out.append("")
    for g in st.groups:
        out += _group_summary(g, baseline, frontier, target, budgets)
    return "\n".join(out).rstrip() + "\n"


def _group_summary(g: Group, baseline: Optional[str], frontier: Optional[str], target: Optional[float],
                   budgets: int) -> List[str]:
    out = [f"## {g.title}", ""]
    metrics = {s.key: setting_metrics(s, target) for s in g.settings}
    seedsets = {tuple(s.seeds) for s in g.settings}
    if len(seedsets) > 1:
        out.append("note: seeds differ between settings: "
                   + "; ".join(f"{s.label}: {','.join(map(str, s.seeds))}" for s in g.settings))
        out.append("")
    ks = sorted({r.last_k for s in g.settings for r in s.runs})
    out.append(f"| setting | seeds | final acc (mean [95% CI]) | last-{'/'.join(map(str, ks))} acc (mean [95% CI]) "
               "| val-selected test acc | uplink MB | uplink J | client J | rounds |")
    out.append("|---|---|---|---|---|---|---|---|---|")
    for s in g.settings:
        m = metrics[s.key]
        final = _per_seed(m, "final_acc")
        lastk = _per_seed(m, "lastk_acc")
        vsel = _per_seed(m, "val_selected_acc")
        vtext = _ci(t_interval(list(vsel.values()))) if len(vsel) == len(m) else (
            "no val split" if not vsel else f"{_ci(t_interval(list(vsel.values())))} ({len(vsel)}/{len(m)} seeds)")
        out.append(f"| {s.label} | {len(s.seeds)} | {_ci(t_interval(list(final.values())) if final else None)} "
                   f"| {_ci(t_interval(list(lastk.values())) if lastk else None)} | {vtext} "
                   f"| {_num(_mean(v['uplink_bytes'] / 1e6 if v['uplink_bytes'] is not None else None for v in m.values()), '.3f')} "
                   f"| {_num(_mean(v['uplink_j'] for v in m.values()), '.4g')} "
                   f"| {_num(_mean(v['client_j'] for v in m.values()), '.4g')} | {s.horizon} |")
    out.append("")
    base = None
    if baseline is not None:
        base, why = _baseline(g, baseline)
        if base is None:
            out += [f"note: {why}", ""]
        else:
            out += _paired_table(g, base, metrics)
    if frontier is not None:
        out += _frontier_table(g, frontier, budgets, baseline)
    if target is not None:
        out += _target_table(g, target, metrics)
    return out


def _paired_table(g: Group, base: Setting, metrics: Mapping[str, Mapping[int, Mapping[str, Any]]]) -> List[str]:
    out = [f"Paired per-seed differences against {base.label} (setting − baseline, seeds both have):", "",
           "| setting | metric | paired seeds | mean diff [95% t-CI] | 95% bootstrap CI | wins/losses/ties | per seed |",
           "|---|---|---|---|---|---|---|"]
    bm = metrics[base.key]
    for s in g.settings:
        if s is base:
            continue
        for name, title in (("final_acc", "final"), ("lastk_acc", "last-k"), ("val_selected_acc", "val-selected")):
            p = paired_difference(_per_seed(metrics[s.key], name), _per_seed(bm, name))
            if p is None:
                if name != "val_selected_acc":
                    out.append(f"| {s.label} | {title} | 0 | – | – | – | no common seed |")
                continue
            per = ", ".join(f"{sd}:{d:+.4f}" for sd, d in zip(p.seeds, p.diffs))
            boot = "n<2" if not p.bootstrap.defined else f"[{p.bootstrap.lo:+.4f}, {p.bootstrap.hi:+.4f}]"
            out.append(f"| {s.label} | {title} | {len(p.seeds)} | {_signed(p.t)} | {boot} "
                       f"| {p.wins}/{p.losses}/{p.ties} | {per} |")
    out.append("")
    return out


def _frontier_table(g: Group, axis: str, budgets: int, baseline: Optional[str]) -> List[str]:
    frs = [f for f in (method_frontier(g, m, axis) for m in g.methods()) if f is not None]
    if not frs:
        return [f"Frontier on {AXES[axis][0]}: no run of this group records it.", ""]
    ranged = [f for f in frs if f.method != "none"] or frs
    grid = budget_grid(ranged, budgets)
    vals = {f.method: f.at(grid) for f in frs}
    sel = sorted({f.selection for f in frs})
    out = [f"Frontier: test accuracy of the point selected on "
           f"{'validation accuracy' if sel == ['val'] else ' / '.join(sel)} among every setting and round of a "
           f"method within a budget of {_axis_label(g, axis)} (mean over seeds [95% bootstrap CI]; budgets span "
           f"where every seed of {', '.join(f.method for f in ranged)} has a point):", ""]
    heads = [f"{f.method}" + ("" if f.selection == "val" else f" ({OPTIMISTIC})") for f in frs]
    out.append("| budget | " + " | ".join(heads) + " |")
    out.append("|---|" + "---|" * len(frs))
    for j, b in enumerate(grid):
        out.append(f"| ≤ {b:.4g} | " + " | ".join(_ci(frontier_interval(vals[f.method], j)) for f in frs) + " |")
    out.append("")
    bm = _baseline_method(g, baseline) if baseline is not None else None
    if bm is not None and len(frs) > 1 and bm in vals:
        others = [f.method for f in frs if f.method != bm]
        out.append(f"Paired frontier differences against {bm} (method − {bm}, per seed; mean [95% bootstrap CI], "
                   "wins/losses):")
        out.append("")
        out.append("| budget | " + " | ".join(others) + " |")
        out.append("|---|" + "---|" * len(others))
        for j, b in enumerate(grid):
            cells = []
            for m in others:
                a = {sd: float(v[j]) for sd, v in vals[m].items() if not math.isnan(v[j])}
                c = {sd: float(v[j]) for sd, v in vals[bm].items() if not math.isnan(v[j])}
                p = paired_difference(a, c)
                if p is None:
                    cells.append("–")
                else:
                    ci = "n<2" if not p.bootstrap.defined else f"[{p.bootstrap.lo:+.4f}, {p.bootstrap.hi:+.4f}]"
                    cells.append(f"{p.mean:+.4f} {ci} {p.wins}/{p.losses}")
            out.append(f"| ≤ {b:.4g} | " + " | ".join(cells) + " |")
        out.append("")
    return out


def _target_table(g: Group, target: float, metrics: Mapping[str, Mapping[int, Mapping[str, Any]]]) -> List[str]:
    out = [f"Time to {target:g} test accuracy (first evaluated round reaching it; means [95% t-CI] over the "
           "seeds that reached it):", "",
           "| setting | reached | rounds | uplink MB | uplink J | client J |", "|---|---|---|---|---|---|"]
    for s in g.settings:
        hits = [v["tta"] for v in metrics[s.key].values() if v.get("tta") is not None]
        cells = []
        for name, scale, digits in (("round", 1, 2), ("uplink_bytes", 1e6, 3), ("uplink_j", 1, 4),
                                    ("client_j", 1, 4)):
            v = [h[name] / scale for h in hits if h.get(name) is not None]
            cells.append(_ci(t_interval(v), digits) if v else "–")
        out.append(f"| {s.label} | {len(hits)}/{len(s.seeds)} | " + " | ".join(cells) + " |")
    out.append("")
    return out


# ----------------------------------------------------------------------------- figures

def _colors(n: int) -> List[Any]:
    import matplotlib.pyplot as plt
    if n <= 10:
        cmap = plt.get_cmap("tab10")
        return [cmap(i) for i in range(n)]
    if n <= 20:
        cmap = plt.get_cmap("tab20")
        return [cmap(i) for i in range(n)]
    cmap = plt.get_cmap("turbo")
    return [cmap(x) for x in np.linspace(0.05, 0.95, n)]


def _round_curves(s: Setting) -> Tuple[np.ndarray, np.ndarray]:
    """(rounds every seed evaluated, seeds x rounds test accuracy)."""
    common = None
    for r in s.runs:
        got = {row["round"] for row in _evaluated(s.rows(r))}
        common = got if common is None else common & got
    rounds = sorted(common or [])
    acc = np.array([[{row["round"]: row["test_acc"] for row in _evaluated(s.rows(r))}[x] for x in rounds]
                    for r in s.runs], dtype=np.float64).reshape(len(s.runs), len(rounds))
    return np.asarray(rounds), acc


def _cost_curve(s: Setting, fld: str) -> Tuple[np.ndarray, np.ndarray]:
    """(mean cost, mean test accuracy) over seeds at the rounds every seed evaluated and recorded `fld`."""
    rounds, acc = _round_curves(s)
    cols = []
    keep = []
    for j, x in enumerate(rounds):
        vals = []
        for r in s.runs:
            row = next(row for row in r.rows if row.get("round") == x)
            vals.append(row.get(fld))
        if all(v is not None for v in vals):
            keep.append(j)
            cols.append(float(np.mean(vals)))
    return np.asarray(cols), acc[:, keep].mean(0) if keep else np.zeros(0)


def _legend_below(ax, ncol: int = 1) -> None:
    """The legend under the axes (long setting labels would cover the curves inside them);
    the figure is saved with bbox_inches="tight" so that it is kept."""
    ax.legend(fontsize=6, ncol=ncol, loc="upper center", bbox_to_anchor=(0.5, -0.14), frameon=False)


def plot_runs(runs: Sequence[Run], out_dir: str, pool: Sequence[str] = (), points: int = 200) -> List[str]:
    """Writes accuracy_vs_round.png (one colour per setting, mean over seeds with a
    min–max band), accuracy_vs_energy.png, accuracy_vs_client_energy.png and
    accuracy_vs_bytes.png (each method's frontier, mean over seeds with a 95% bootstrap
    band, and every setting's mean curve faint). One panel per group. Returns the paths."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    st = study(runs, pool)
    os.makedirs(out_dir, exist_ok=True)
    colors = dict(zip([s.key for s in st.settings], _colors(len(st.settings))))
    methods = sorted({s.method for s in st.settings})
    dark = plt.get_cmap("Dark2")
    mcolor = {m: dark(i % 8) for i, m in enumerate(methods)}
    styles = ["-", "--", "-.", ":"]
    mstyle = {m: styles[i % len(styles)] for i, m in enumerate(methods)}
    ng = len(st.groups)
    paths = []

    fig, axs = plt.subplots(1, ng, figsize=(6.5 * ng, 4.8), squeeze=False)
    for ax, g in zip(axs[0], st.groups):
        for s in g.settings:
            rounds, acc = _round_curves(s)
            if not rounds.size:
                continue
            c = colors[s.key]
            ax.plot(rounds, acc.mean(0), color=c, lw=1.5, label=f"{s.label} (n={len(s.runs)})")
            if len(s.runs) > 1:
                ax.fill_between(rounds, acc.min(0), acc.max(0), color=c, alpha=0.18, lw=0)
        ax.set_xlabel("round")
        ax.set_ylabel("test accuracy")
        ax.set_title(f"{g.title}\nmean over seeds; band: min–max over seeds", fontsize=9)
        ax.grid(alpha=0.3)
        _legend_below(ax, ncol=1 if len(g.settings) <= 8 else 2)
    p = os.path.join(out_dir, "accuracy_vs_round.png")
    fig.savefig(p, dpi=110, bbox_inches="tight")
    plt.close(fig)
    paths.append(p)

    for axis in ("energy", "client_energy", "bytes"):
        fld = AXES[axis][0]
        fig, axs = plt.subplots(1, ng, figsize=(6.5 * ng, 4.8), squeeze=False)
        for ax, g in zip(axs[0], st.groups):
            drawn = False
            for s in g.settings:
                x, y = _cost_curve(s, fld)
                ok = x > 0
                if ok.any():
                    ax.plot(x[ok], y[ok], ".-", color=colors[s.key], alpha=0.35, lw=0.8, ms=3,
                            label=f"{s.label} (mean curve)")
            sels = set()
            for m in g.methods():
                f = method_frontier(g, m, axis)
                if f is None:
                    continue
                lo, hi = f.lo(), f.hi()
                if lo <= 0:
                    continue
                corners = np.unique(np.concatenate([c for c, _ in f.points.values()]))
                grid = corners[(corners >= lo) & (corners <= hi)]
                if grid.size > points:  # a readable curve: geometric samples between the corners
                    grid = np.unique(np.concatenate([[lo, hi], np.geomspace(lo, hi, points)]))
                vals = np.vstack([v for v in f.at(grid).values()])
                mean, blo, bhi = bootstrap_band(vals)
                ax.step(grid, mean, mstyle[m], where="post", color=mcolor[m], lw=2.2,
                        label=f"{m} frontier (n={len(f.points)})" + ("" if f.selection == "val" else f", {OPTIMISTIC}"))
                if vals.shape[0] > 1:
                    ax.fill_between(grid, blo, bhi, step="post", color=mcolor[m], alpha=0.2, lw=0)
                sels.add(f.selection)
                drawn = True
            if drawn:
                ax.set_xscale("log")
            else:
                ax.text(0.5, 0.5, f"no run records {fld}", ha="center", va="center", transform=ax.transAxes)
            ax.set_xlabel(_axis_label(g, axis))
            pick = "val-selected" if sels == {"val"} else ("selected on test (optimistic)" if sels == {OPTIMISTIC}
                                                           else "val-selected / on test")
            ax.set_ylabel(f"test accuracy ({pick})")
            ax.set_title(f"{g.title}\nfrontier: mean over seeds, band: 95% bootstrap over seeds", fontsize=9)
            ax.grid(alpha=0.3)
            if drawn or ax.get_legend_handles_labels()[0]:
                _legend_below(ax)
        p = os.path.join(out_dir, f"accuracy_vs_{axis}.png")
        fig.savefig(p, dpi=110, bbox_inches="tight")
        plt.close(fig)
        paths.append(p)
    return paths
