"""Sweeps: a grid over any settings, one run directory each, and one run of it (a
top-level function, so that worker processes can import it).

A grid is a list of *axes*. An axis is a list of options; an option is a dict of changes
``{key: value}`` where a key is a :class:`Config` field or ``params.X``,
``downlink_params.X``, ``energy_overrides.X``. The runs of a method are the product of its
axes, where an option that sets a compressor parameter the method does not take is left
out for it (a method that takes none of an axis's parameters runs once per the other axes).
"""
from __future__ import annotations

import dataclasses
import itertools
import os
import traceback
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple

from .records import result_line  # noqa: F401  (the sweep's lines)
from .config import Config, parse_overrides
from ..errors import ArgumentError

__all__ = ["Axis", "parse_grid", "sweep_configs", "sweep_threads", "one_sweep_run", "run_label",
           "read_result", "result_line", "run_configs"]

#: one axis of a grid: its label (for messages) and its options
Axis = Tuple[str, List[Dict[str, Any]]]

_DICTS = ("params", "downlink_params", "energy_overrides")
# set by the sweep itself: the methods come from --methods, and every run is named by its settings
_NOT_SWEPT = {"method": "the methods come from --methods",
              "run_name": "each run is named by its settings (Config.run_dir)",
              "out_dir": "a sweep writes into one --out-dir"}


def _split(text: str) -> List[str]:
    """`text` split at the commas outside brackets, braces and double quotes (so that a JSON
    list or object can be one value)."""
    parts, depth, quoted, cur = [], 0, False, []
    for i, ch in enumerate(text):
        if quoted:
            quoted = not (ch == '"' and text[i - 1] != "\\")
        elif ch == '"':
            quoted = True
        elif ch in "[{":
            depth += 1
        elif ch in "]}":
            depth -= 1
        elif ch == "," and depth == 0:
            parts.append("".join(cur))
            cur = []
            continue
        cur.append(ch)
    parts.append("".join(cur))
    return [p.strip() for p in parts]


def _check_key(key: str, what: str) -> None:
    """ArgumentError unless `key` is a setting a sweep may vary."""
    head = key.split(".", 1)[0]
    fields = {f.name for f in dataclasses.fields(Config)}
    if "." in key and head not in _DICTS:
        raise ArgumentError(f"{what}: unknown setting {key!r} (a dotted key starts with {', '.join(_DICTS)})")
    if head not in fields:
        raise ArgumentError(f"{what}: unknown setting {key!r}")
    if key in _DICTS:
        raise ArgumentError(f"{what}: sweep {key}.NAME (one parameter per axis), not {key!r}")
    if key in _NOT_SWEPT:
        raise ArgumentError(f"{what}: {key!r} cannot be swept: {_NOT_SWEPT[key]}")


def _parse_value(key: str, text: str) -> Any:
    """`text` parsed as ``--set key=text`` parses it."""
    parsed = parse_overrides([f"{key}={text}"])
    if "." in key:
        head, sub = key.split(".", 1)
        return parsed[head][sub]
    return parsed[key]


def parse_grid(items: Iterable[str]) -> List[Axis]:
    """``["lr=0.1,0.05", "params.bits=2,4"]`` -> one axis per item, values parsed like ``--set``
    (a JSON list or object may be one value: commas inside brackets do not split)."""
    axes: List[Axis] = []
    for item in items:
        if "=" not in item:
            raise ArgumentError(f"grid: expected KEY=V1,V2,..., got {item!r}")
        key, text = (s.strip() for s in item.split("=", 1))
        what = f"grid {key}"
        _check_key(key, what)
        texts = _split(text)
        if not text or any(t == "" for t in texts):
            raise ArgumentError(f"{what}: expected comma-separated values, got {text!r}")
        axes.append((key, [{key: _parse_value(key, t)} for t in texts]))
    return axes


def shorthand_axes(ratios: Sequence[float], energies: Sequence[float], alphas: Sequence[float],
                   seeds: Sequence[int]) -> List[Axis]:
    """The axes of ``--ratios``/``--energies`` (one axis: a method that takes both, such as
    cwmp, runs each ratio and each energy, its alternative budgets), ``--alphas``, ``--seeds``."""
    axes: List[Axis] = []
    budget = [{"params.ratio": r} for r in ratios] + [{"params.energy": e} for e in energies]
    if budget:
        axes.append(("params.ratio/params.energy", budget))
    if alphas:
        axes.append(("alpha", [{"alpha": a} for a in alphas]))
    if seeds:
        axes.append(("seed", [{"seed": s} for s in seeds]))
    return axes


def _param_keys(option: Dict[str, Any]) -> List[str]:
    return [k.split(".", 1)[1] for k in option if k.startswith("params.")]


def _apply(values: Dict[str, Any], changes: Dict[str, Any]) -> Dict[str, Any]:
    out = dict(values)
    for key, v in changes.items():
        if "." in key:
            head, sub = key.split(".", 1)
            out[head] = {**out[head], sub: v}
        else:
            out[key] = v
    return out


def _describe(changes: Dict[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in changes.items()) or "no changes"


def sweep_configs(base: Config, methods: Sequence[str], axes: Sequence[Axis] = (),
                  params: Optional[Dict[str, Any]] = None) -> List[Config]:
    """The runs of a sweep, method by method, each the product of the method's axes.

    `params` (``--set params.X``, a config file's ``params``) are set for the methods that
    take them; ``base.params`` is ignored (it belongs to ``base.method``). An option that sets
    a compressor parameter a method does not take is dropped for that method. A parameter no
    listed method takes is an error, and so is a key on two axes. Runs with the same
    directory appear once; runs that would share a directory but differ in any setting are
    an error (they would be mixed in one directory)."""
    from ..compress import available_compressors, compressor_class
    from . import evofed_params
    if not methods:
        raise ArgumentError("methods: expected at least one compressor name")
    takes = {}
    for m in methods:
        if m == evofed_params.METHOD:
            takes[m] = set(evofed_params.DEFAULTS)
            continue
        if m not in available_compressors():
            raise ArgumentError(f"methods: unknown compressor {m!r}; expected evofed or one of "
                                f"{', '.join(available_compressors())}")
        takes[m] = set(compressor_class(m).params)
    params = dict(params or {})
    anyone = set().union(*takes.values())
    for name in params:
        if name not in anyone:
            raise ArgumentError(f"params.{name}: no method of --methods ({', '.join(methods)}) takes a parameter "
                                f"{name!r}")
    seen_keys: Dict[str, str] = {}
    for label, options in axes:
        for key in {k for o in options for k in o}:
            if key in seen_keys:
                raise ArgumentError(f"grid: {key} is on two axes ({seen_keys[key]} and {label})")
            seen_keys[key] = label
        for name in {n for o in options for n in _param_keys(o)}:
            if name not in anyone:
                raise ArgumentError(f"grid {label}: no method of --methods ({', '.join(methods)}) takes a parameter "
                                    f"{name!r}")
    values = base.to_dict()
    out: List[Config] = []
    for m in methods:
        mine = [[o for o in options if set(_param_keys(o)) <= takes[m]] or [{}] for _, options in axes]
        start = _apply(values, {"method": m, "params": {k: v for k, v in params.items() if k in takes[m]},
                                "run_name": ""})
        for combo in itertools.product(*mine):
            changes = {k: v for o in combo for k, v in o.items()}
            try:
                out.append(Config(**_apply(start, changes)).validate())
            except ValueError as e:
                raise ArgumentError(f"grid: {m} with {_describe(changes)}: {e}") from None
    return _unique(out)


def _unique(cfgs: List[Config]) -> List[Config]:
    """`cfgs` without repeated run directories; an error where two different runs share one."""
    seen: Dict[str, Config] = {}
    out = []
    for c in cfgs:
        d = c.run_dir()
        if d not in seen:
            seen[d] = c
            out.append(c)
            continue
        a, b = seen[d].to_dict(), c.to_dict()
        diff = [k for k in a if k != "progress" and a[k] != b[k]]
        if diff:
            raise ArgumentError(f"grid: runs that differ in {', '.join(diff)} would share the run directory {d!r} "
                                "(the setting is not part of a run's name); sweep it in separate --out-dir folders")
    return out


def sweep_threads(cfg: Config, jobs: int) -> int:
    """torch threads of a sweep run: ``cfg.threads`` when given; else the count an interrupted
    run started with (0: read from its config.json, since the count changes torch's results);
    else one per run when several run at a time (0: the default)."""
    from .records import CONFIG
    if cfg.threads or os.path.lexists(os.path.join(cfg.run_dir(), CONFIG)):
        return cfg.threads
    return 1 if jobs > 1 else 0


def run_label(cfg: Config) -> str:
    """The run's name: its directory's name."""
    return os.path.basename(cfg.run_dir())


class _RunLog:
    """Appends a run's messages to the sweep's log, each line prefixed with ``[<run name>]``;
    one write per message, so that the lines of parallel runs do not interleave."""

    def __init__(self, path: str, name: str):
        self.path, self.prefix = path, f"[{name}] "

    def __call__(self, msg: str) -> None:
        text = "".join(self.prefix + line + "\n" for line in str(msg).splitlines() or [""])
        with open(self.path, "a", encoding="utf-8") as fh:
            fh.write(text)


def one_sweep_run(item: Tuple[Dict[str, Any], str]) -> Tuple[str, Optional[str]]:
    """Runs (or resumes) the config dict ``item[0]``, logging to the file ``item[1]``;
    returns ``(run directory, None)``, or ``(run directory, error message)`` when it failed
    (the traceback of an unexpected error goes to the log)."""
    cfg_dict, log_path = item
    cfg = Config(**cfg_dict)
    log = _RunLog(log_path, run_label(cfg))
    try:
        from . import run
        run(cfg.validate(), resume=True, log=log)
    except ValueError as e:  # a bad setting or a damaged run directory: the message says which
        log(f"FAILED: {e}")
        return cfg.run_dir(), str(e)
    except Exception as e:  # noqa: BLE001 - one failed run must not stop the sweep
        log("FAILED:\n" + traceback.format_exc().rstrip())
        return cfg.run_dir(), f"{type(e).__name__}: {e}"
    return cfg.run_dir(), None


def run_configs(todo: Sequence[Config], log_path: str, jobs: int) -> int:
    """Runs (or resumes) every config of `todo`, `jobs` at a time in spawned processes,
    logging to `log_path` and printing ``[i/n] done <run>: <result line>`` (or ``FAILED``)
    as each ends; a run that fails, or whose worker dies, does not stop the others.
    Returns the number of failed runs."""
    n = len(todo)
    failed = 0

    def report(i: int, run_dir: str, error: Optional[str]) -> None:
        nonlocal failed
        name = os.path.basename(run_dir)
        if error is not None:
            failed += 1
            print(f"[{i}/{n}] FAILED {name}: {error}", flush=True)
            return
        try:
            line = result_line(read_result(run_dir))
        except ValueError as e:  # a damaged status.json: the run is done, its result unreadable
            line = str(e)
        print(f"[{i}/{n}] done {name}: {line}", flush=True)

    items = [(c.to_dict(), log_path) for c in todo]
    if jobs > 1 and n > 1:
        from concurrent.futures import ProcessPoolExecutor, as_completed
        import multiprocessing as mp
        with ProcessPoolExecutor(min(jobs, n), mp_context=mp.get_context("spawn")) as ex:
            futures = {ex.submit(one_sweep_run, it): c for it, c in zip(items, todo)}
            for i, fut in enumerate(as_completed(futures), 1):
                try:
                    run_dir, error = fut.result()
                except Exception as e:  # noqa: BLE001 - a worker died (e.g. killed): the others go on
                    run_dir, error = futures[fut].run_dir(), f"{type(e).__name__}: {e}"
                report(i, run_dir, error)
    else:
        for i, it in enumerate(items, 1):
            report(i, *one_sweep_run(it))
    return failed


def read_result(run_dir: str) -> Optional[Dict[str, Any]]:
    """The ``result`` of the run's status.json, or None when the run has not finished or
    was written by a version without one."""
    from .records import STATUS, read_json as _read_json
    path = os.path.join(run_dir, STATUS)
    if not os.path.lexists(path):
        return None
    res = _read_json(path).get("result")
    return res if isinstance(res, dict) else None


