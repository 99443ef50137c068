"""Tables and the alpha-beta model of the DDP step-time benchmark (``python -m gradsparse.bench
ddp``): everything here works on the JSON a run's rank 0 writes (see
:mod:`gradsparse.bench.ddp_worker`), so a saved run can be printed again.

The model (labelled "model" wherever it is printed; nothing in it is measured at W > 2):
the overhead of a method over the floor, per step, is its hook CPU (measured alone on the
captured buckets; gradsparse's ``local_pass`` is timed at each W) plus its communication,
with no overlap with the backward pass. Per bucket of n float32 elements (D = 4n bytes),
with the link's alpha (seconds per message) and beta (seconds per byte):

* ring all-reduce of B bytes: 2(W-1) alpha + 2(W-1)/W B beta (plain: B = D; bf16: D/2;
  gradsparse ``dense``: n times the value size);
* ring all-gather of B bytes per rank: (W-1) alpha + (W-1) B beta (gradsparse
  ``allgather``: B = k (value size + 4));
* gradsparse ``split`` as Ok-Topk's split-and-reduce + all-gather: each rank sends the
  (W-1)/W of its k pairs that fall in the other ranks' regions, then all-gathers k/W
  re-selected pairs: 2(W-1) alpha + 2(W-1)/W k (value size + 4) beta;
* gradsparse ``auto``: the cheapest of the three per bucket (what a cost model with these
  alpha and beta chooses);
* PowerSGD: three all-reduces per bucket (uncompressed tensors, P, Q) of the bytes
  measured per step (they do not depend on W).
"""
from __future__ import annotations

import math
from typing import Any, Callable, Dict, List, Optional

import numpy as np

from ..compress.traffic import Link, choose, scheme_costs
from ..selection import k_from_ratio

MODEL_WORLDS = (2, 8, 64)
GRID_GBPS = np.logspace(-2, 3, 501)  # 0.01 .. 1000 Gb/s, where a method is ahead of bf16


def _q(xs: List[float]) -> Dict[str, float]:
    a = np.asarray(xs, dtype=np.float64)
    return {"median": float(np.median(a)), "p25": float(np.percentile(a, 25)), "p75": float(np.percentile(a, 75))}


def summarize(model: Dict[str, Any]) -> Dict[str, Dict[str, Any]]:
    """Per method: step time over all steps, and the round-by-round paired differences
    (median of the method's steps in a round minus the same of the other method) to the
    floor, to plain DDP and to bf16 -- median and p25-p75 over rounds (seconds)."""
    meths = model["methods"]
    rounds = {n: [float(np.median(r)) for r in m["step_s"]] for n, m in meths.items()}
    out: Dict[str, Dict[str, Any]] = {}
    for n, m in meths.items():
        s: Dict[str, Any] = {"step": _q([t for r in m["step_s"] for t in r])}
        for base in ("noop", "plain", "bf16", "powersgd"):
            if base in rounds and base != n:
                s[f"vs_{base}"] = _q([a - b for a, b in zip(rounds[n], rounds[base])])
        out[n] = s
    return out


def _ms(x: Optional[float], sign: bool = False) -> str:
    if x is None:
        return "-"
    return f"{x * 1e3:+.1f}" if sign else f"{x * 1e3:.1f}"


def _cpu(x: Optional[float]) -> str:
    return "-" if x is None else f"{x * 1e3:.3g}"


def _iqr(q: Optional[Dict[str, float]], sign: bool = False) -> str:
    if q is None:
        return "-"
    return f"{_ms(q['median'], sign)} [{_ms(q['p25'], sign)}..{_ms(q['p75'], sign)}]"


def _mb(b: Optional[float]) -> str:
    return "-" if b is None else (f"{b / 1e6:.2f} MB" if b >= 1e5 else f"{b / 1e3:.1f} kB")


def _x(a: Optional[float], b: Optional[float]) -> str:
    return "-" if a is None or not b else f"{a / b:.2f}x"


def cpu_of(model: Dict[str, Any], name: str, world: int = 2) -> Optional[float]:
    """Median hook CPU per step (seconds) of `name` at `world` (None if not measured)."""
    got = model.get("hook_cpu", {}).get(name, {}).get(str(world))
    return None if got is None else got["median_s"]


def print_model_table(out: Callable[[str], None], name: str, model: Dict[str, Any]) -> Dict[str, Any]:
    """One model's table on one link; returns the summary (also stored in the JSON)."""
    summ = summarize(model)
    meths = model["methods"]
    mb = " / ".join(f"{4 * n / 1e6:.1f}" for n in model["buckets"])
    out(f"-- {name}: {model['params']:,} parameters, {len(model['buckets'])} bucket(s) of {mb} MB, batch "
        f"{model['batch']}, bucket_cap_mb " + (f"{model['bucket_cap_mb']:g}" if model["bucket_cap_mb"] is not None
                                              else "default (25 MiB, first bucket 1 MiB)"))
    floor = summ.get("noop", {}).get("step")
    out(f"   floor (no-op hook, no communication): step {_iqr(floor)} ms; floor pass e += g alone "
        f"{_cpu(cpu_of(model, 'floor-pass'))} ms of CPU per step")
    head = (f"   {'method':<22} {'step ms [p25..p75]':<22} {'+floor ms [p25..p75]':<23} {'-plain ms [IQR]':<22} "
            f"{'-bf16 ms [IQR]':<22} {'hook CPU ms':<11} {'x bf16':<6} {'x e+=g':<7} {'bytes/step/rank':<15} "
            f"{'x plain':<7} params")
    out(head)
    plain_b = meths.get("plain", {}).get("bytes_per_step", model["dense_bytes"])
    bf16_cpu, floor_cpu = cpu_of(model, "bf16"), cpu_of(model, "floor-pass")
    for n, m in meths.items():
        s = summ[n]
        cpu = cpu_of(model, n)
        note = model.get("hook_cpu", {}).get(n, {}).get("note")
        cpu_s = _cpu(cpu) if cpu is not None or m["kind"] != "gradsparse" else "n/m"
        if m["kind"] == "noop":
            cpu_s = "0"
        label = m["label"] + (f" {_schemes(m['schemes'])}" if m.get("schemes") else "")
        out(f"   {label:<22} {_iqr(s['step']):<22} {_iqr(s.get('vs_noop'), True):<23} "
            f"{_iqr(s.get('vs_plain'), True):<22} {_iqr(s.get('vs_bf16'), True):<22} {cpu_s:<11} "
            f"{_x(cpu, bf16_cpu):<6} {_x(cpu, floor_cpu):<7} {_mb(m['bytes_per_step']):<15} "
            f"{_x(m['bytes_per_step'], plain_b):<7} {m['params']}")
        if note and cpu is None and m["kind"] != "noop":
            out(f"      ({n}: hook CPU {note})")
    return summ


def _schemes(counts: Dict[str, int]) -> str:
    used = {k: v for k, v in counts.items() if v}
    return "(" + ",".join(sorted(used)) + ")" if used else ""


# ----------------------------------------------------------------------------- the model

def _allreduce(nbytes: float, w: int, a: float, b: float) -> float:
    return 2 * (w - 1) * a + 2 * (w - 1) / w * nbytes * b


def comm_model(m: Dict[str, Any], buckets: List[int], w: int, a: float, b: float) -> float:
    """Modelled communication seconds per step of method `m` at world size `w`."""
    kind = m["kind"]
    if kind == "noop":
        return 0.0
    if kind in ("plain", "bf16"):
        width = 4 if kind == "plain" else 2
        return sum(_allreduce(n * width, w, a, b) for n in buckets)
    if kind == "powersgd":
        return 3 * len(buckets) * 2 * (w - 1) * a + 2 * (w - 1) / w * m["bytes_per_step"] * b
    # the hook's own model (gradsparse.compress.traffic), the one its "auto" chooses by
    vbytes = 2 if m["value_dtype"] == "bfloat16" else 4
    total = 0.0
    for n in buckets:
        costs = scheme_costs(Link(a, b), w, n, k_from_ratio(m["ratio"], n), vbytes + 4)
        total += costs[choose(costs) if m["scheme"] == "auto" else m["scheme"]]
    return total


def model_cost(model: Dict[str, Any], name: str, w: int, a: float, b: float) -> Optional[float]:
    """Modelled overhead per step over the floor (hook CPU + communication), or None when
    the hook CPU at `w` was not measured."""
    m = model["methods"][name]
    cpu = 0.0 if m["kind"] == "noop" else cpu_of(model, name, w if m["kind"] == "gradsparse" else 2)
    if cpu is None:
        return None
    return cpu + comm_model(m, model["buckets"], w, a, b)


def versus_bf16(model: Dict[str, Any], name: str, w: int, a: float) -> str:
    """Where `name`'s modelled overhead is below bf16's at world size `w` (alpha fixed, link
    speed on a log grid 0.01..1000 Gb/s): "<X" (ahead on links slower than X Gb/s), ">X",
    "always" or "never"."""
    if "bf16" not in model["methods"]:
        return "-"
    ahead = []
    for gbps in GRID_GBPS:
        b = 8 / (gbps * 1e9)
        mine, ref = model_cost(model, name, w, a, b), model_cost(model, "bf16", w, a, b)
        if mine is None or ref is None:
            return "-"
        ahead.append(mine < ref)
    if all(ahead) or not any(ahead):
        return "always" if ahead[0] else "never"
    if ahead[0]:
        return f"<{GRID_GBPS[ahead.index(False) - 1]:.3g}"
    return f">{GRID_GBPS[ahead.index(True)]:.3g}"


def print_model(out: Callable[[str], None], name: str, model: Dict[str, Any], link: Dict[str, Any]) -> Dict[str, Any]:
    """The alpha-beta extrapolation to W = 8 and 64 for one model on one link."""
    a, b = link["alpha_s"], link["beta_s_per_byte"]
    gb = 8 / b / 1e9 if b > 0 else math.inf  # beta 0: the large message was no slower (a noisy link fit)
    out(f"   MODEL (alpha-beta, not measured): overhead per step = hook CPU + communication, no overlap; "
        f"alpha {a * 1e3:.3f} ms, beta {b * 1e9:.3f} ns/B ({gb:.2f} Gb/s) from this link")
    out(f"   {'method':<22} {'measured +floor W=2':<20} " + " ".join(f"{'model W=' + str(w):<12}" for w in MODEL_WORLDS)
        + "  vs bf16: ahead on links slower (<) / faster (>) than Gb/s, W=" + "/".join(map(str, MODEL_WORLDS)))
    summ = summarize(model)
    res: Dict[str, Any] = {}
    for n, m in model["methods"].items():
        if m["kind"] == "noop":
            continue
        costs = [model_cost(model, n, w, a, b) for w in MODEL_WORLDS]
        ahead = [versus_bf16(model, n, w, a) if m["kind"] != "bf16" else "" for w in MODEL_WORLDS]
        res[n] = {"overhead_s": dict(zip(map(str, MODEL_WORLDS), costs)),
                  "vs_bf16_gbps": dict(zip(map(str, MODEL_WORLDS), ahead))}
        out(f"   {m['label']:<22} {_ms(summ[n].get('vs_noop', {}).get('median'), True):<20} "
            + " ".join(f"{_ms(c, True):<12}" for c in costs) + "  " + "/".join(ahead))
    return res


def link_line(link: Dict[str, Any]) -> str:
    """The measured link, in one line."""
    a, b = link["alpha_s"], link["beta_s_per_byte"]
    gb = 8 / b / 1e9 if b > 0 else math.inf
    return (f"gloo all-reduce, 2 ranks: 1 KB {link['small_s'] * 1e3:.3f} ms, 16 MB {link['big_s'] * 1e3:.1f} ms "
            f"-> alpha {a * 1e3:.3f} ms, beta {b * 1e9:.3f} ns/B = {gb:.2f} Gb/s  ({link['source']})")
