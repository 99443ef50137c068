"""The CUDA suite: ``python -m gradsparse.bench cuda [--quick] [--repeats R] [--n N] [--json PATH]``.

gradsparse's CUDA layer (``gradsparse.cuda._ops``, the functions the tensor API calls for
CUDA tensors) against torch on the same GPU, in the same process, on the same tensors:

1. one tensor, n = 2.5e7, k in {0.1%, 1%}, float32 (and float16 / bfloat16 at 1%):
   ``_ops.select([x], kind="count", k=k)`` vs ``torch.topk(x.abs(), k, sorted=False)`` +
   ``x[idx]`` (written with ``out=`` buffers: ``torch.abs(x, out=a)``, ``torch.topk(a, k,
   sorted=False, out=(v, i))``, ``torch.index_select(x, 0, i, out=g)`` -- the same kernels
   without allocator traffic), and vs one plain read of x: ``torch.sum(x, 0, out=s)``. The
   read is a reduction, not a copy: a copy also writes n elements (twice the traffic), and a
   selection reads its input and writes O(k), so the floor it is held to is one read.
2. global top-1% over 160 tensors totalling 2.5e7 (CIFAR ResNet-18's 62, six transformer
   blocks of width 384 with 16 tensors each, a token embedding of width 384 and one small
   remainder tensor; seeded gradient-like data with one lognormal scale per tensor):
   ``_ops.select(xs, kind="count", k=k)`` vs ``torch.cat(xs, out=c)`` + the recipe above on
   c (torch's indices stay global, not split back per tensor); and its ratio to case 1's
   single-tensor time at the same n and k.
3. the error-feedback step ``_ops.feedback_select(g, e, k=k, out_values=.., out_indices=..)``
   (e += g, select from e, e[sent] = what was not sent; float32 values, and bfloat16 values)
   vs plain selection ``_ops.select([g], kind="count", k=k)`` on the same g, 2.5e7 / 1%.

Checks before timing (a failure marks the row and the exit status is 2): every gradsparse
result equals the CPU engine's on a host copy bit for bit (``gradsparse.sparsify``,
``sparsify_many``, ``ErrorFeedback.compress_into``: indices, values, counts, the residual);
every buffer of the rotation gives the same result; torch's result is checked by its kept
magnitudes (tie breaks differ). Then the two promises of a count-budget call on one tensor
(and of the error-feedback step with k): no host synchronisation (torch's sync debug mode
"error", and a busy-stream probe that also sees the extension's own CUDA calls) and no device
allocation beyond the documented outputs + one workspace (``torch.cuda.memory_stats``
allocation counts, and free device memory outside torch's allocator).

Timing: CUDA events around each call, back to back on the current stream after warm-up
calls, median and p10/p90 of R >= 50 samples (default 100); the i-th call reads buffer i mod
B, B copies of the input with B x size >= 4x the GPU's L2 (50 MB on an H100), so no call finds
its input in L2. Back-to-back samples measure the GPU's time per call when the host enqueues
faster than the GPU runs, else the host-bound time a loop of such calls takes; the host's
enqueue time per call is printed beside them. Targets (issue 18, on an H100): at 2.5e7 / 1%
float32 gradsparse <= 0.5x torch's time and <= 120 us, <= 3x one read; global <= 1.3x
single-tensor; error-feedback step <= 1.5x plain selection; no synchronisation, no
allocation. Each is printed as met / not met; a target not met does not change the exit
status (0), a wrong result does (2).

Without torch, a CUDA build of gradsparse (``GRADSPARSE_CUDA=ON``), a device or a CUDA torch,
the suite prints why and exits 0. ``python -m gradsparse.bench`` alone never runs it.
"""
from __future__ import annotations

import argparse
import datetime
import gc
import json
import math
import os
import platform
import sys
import time
from typing import Any, Callable, Dict, List, Optional, Sequence

import numpy as np

import gradsparse as gs

from . import cuda_checks as chk
from .common import SEED, VerificationError, data_for, fmt_n, fmt_ratio, gradient_like, load_torch, resnet18_shapes, Out

__all__ = ["TARGETS", "build_parser", "global_sizes", "main", "run", "unavailable"]

TARGETS = {
    "vs_torch": 0.5,  # gradsparse / (torch.topk(|x|) + gather), 2.5e7 float32, k = 1%
    "abs_us": 120.0,  # gradsparse's median there, microseconds (on an H100)
    "vs_read": 3.0,  # gradsparse / one read of x, same cell
    "global_vs_single": 1.3,  # global over 160 tensors / one tensor, same total n and k
    "ef_vs_select": 1.5,  # error-feedback step / plain selection, same g
}
DEFAULT_N = 25_000_000
DEFAULT_REPEATS = 100
MIN_REPEATS = 50
WARMUP = 10
L2_FALLBACK = 50 << 20  # an H100's L2, when torch does not report the device's
D_MODEL = 384


# ----------------------------------------------------------------------------- inputs

def global_sizes(total: int) -> List[int]:
    """Tensor sizes summing to `total`, shaped like a model: at 2.5e7, 160 tensors -- a token
    embedding of width 384, six transformer blocks of width 384 (q, k, v, o weights and biases,
    two layer norms, two MLP layers: 16 tensors), CIFAR ResNet-18's 62 tensors and one
    remainder tensor. Below the blocks + ResNet (21.8e6) the same list is scaled down."""
    d = D_MODEL
    block = [d * d] * 4 + [d] * 4 + [d] * 4 + [4 * d * d, 4 * d, 4 * d * d, d]
    base = block * 6 + [int(np.prod(s)) for _, s in resnet18_shapes()]
    fixed = sum(base)
    if total > fixed:
        rows, rest = divmod(total - fixed, d)
        return ([rows * d] if rows else []) + base + ([rest] if rest else [])
    sizes = [max(1, s * total // fixed) for s in base]
    excess = sum(sizes) - total
    if excess > 0:  # (tiny totals) take it from the largest tensor
        sizes[sizes.index(max(sizes))] -= excess
    elif excess < 0:
        sizes.append(-excess)
    if min(sizes) < 1:
        raise ValueError(f"n: {total} is too small for the global case")
    return sizes


def global_data(sizes: Sequence[int]) -> List[np.ndarray]:
    rng = np.random.default_rng([SEED, len(sizes), sum(sizes)])
    return [gradient_like(s, rng) * np.float32(math.exp(rng.standard_normal())) for s in sizes]


# ----------------------------------------------------------------------------- timing

def _stats(samples_s: Sequence[float], host_s: float) -> Dict[str, Any]:
    a = np.asarray(samples_s, dtype=np.float64)
    return {"median_s": float(np.median(a)), "p10_s": float(np.percentile(a, 10)),
            "p90_s": float(np.percentile(a, 90)), "min_s": float(a.min()), "samples": int(a.size),
            "host_per_call_s": host_s, "samples_us": [round(v * 1e6, 2) for v in a.tolist()]}


class EventTimer:
    """CUDA-event time of each of `repeats` back-to-back calls fn(i mod nbuf), after `warmup`."""

    def __init__(self, torch, repeats: int, warmup: int = WARMUP):
        self.torch, self.repeats, self.warmup = torch, repeats, warmup

    def __call__(self, fn: Callable[[int], Any], nbuf: int) -> Dict[str, Any]:
        cuda = self.torch.cuda
        for i in range(self.warmup):
            fn(i % nbuf)
        events = [(cuda.Event(enable_timing=True), cuda.Event(enable_timing=True)) for _ in range(self.repeats)]
        cuda.synchronize()
        t0 = time.perf_counter()
        for i, (start, end) in enumerate(events):
            start.record()
            fn((self.warmup + i) % nbuf)
            end.record()
        host = (time.perf_counter() - t0) / self.repeats
        cuda.synchronize()
        return _stats([s.elapsed_time(e) * 1e-3 for s, e in events], host)


class WallTimer:
    """Host wall time per call: the stand-in for EventTimer where the device is the CPU (tests)."""

    def __init__(self, repeats: int, warmup: int = 1):
        self.repeats, self.warmup = repeats, warmup

    def __call__(self, fn: Callable[[int], Any], nbuf: int) -> Dict[str, Any]:
        for i in range(self.warmup):
            fn(i % nbuf)
        times = []
        for i in range(self.repeats):
            t0 = time.perf_counter()
            fn((self.warmup + i) % nbuf)
            times.append(time.perf_counter() - t0)
        return _stats(times, float(np.mean(times)))


# ----------------------------------------------------------------------------- the cases

class Ctx:
    """What every case needs: torch, the ops layer, the device, the timer and the output."""

    def __init__(self, torch, ops, device, out: Out, timer, l2_bytes: int):
        self.torch, self.ops, self.device, self.out, self.timer, self.l2 = torch, ops, device, out, timer, l2_bytes
        self.rows: List[Dict[str, Any]] = []
        self.probes: Dict[str, Any] = {}
        self.verified: List[str] = []

    def nbuf(self, nbytes: int) -> int:
        """Buffers to rotate so that together they hold >= 4x the L2 (at least 3)."""
        return max(3, math.ceil(4 * self.l2 / max(1, nbytes)))

    def on_gpu(self) -> bool:
        return self.device.type == "cuda"

    def time(self, row: Dict[str, Any], fns: Dict[str, Callable[[int], Any]], nbuf: int) -> None:
        gc.collect()
        gc.disable()
        try:
            for name, fn in fns.items():
                row[name] = self.timer(fn, nbuf)
        finally:
            gc.enable()


def _check_select(ctx: Ctx, label: str, got: Any, ref_idx, ref_vals, ref_counts) -> None:
    try:
        idx, vals, counts = got
    except (TypeError, ValueError):
        raise VerificationError(f"{label}: select returned {type(got).__name__}, not (indices, values, counts)")
    for what, t in (("indices", idx), ("values", vals)):
        if t.device != ctx.device:
            raise VerificationError(f"{label}: {what} on {t.device}, not on {ctx.device}")
    chk.check_same(label, "indices", idx, ref_idx)
    chk.check_same(label, "values", vals, ref_vals)
    if ref_counts is None and counts is not None:
        raise VerificationError(f"{label}: counts {counts!r} for a count budget on one tensor (documented: None)")
    if ref_counts is not None and list(counts) != list(ref_counts):
        raise VerificationError(f"{label}: counts per tensor differ from the CPU engine's")


def _same_on_every_buffer(ctx: Ctx, label: str, first: Any, call: Callable[[int], Any], nbuf: int) -> None:
    for b in range(1, nbuf):
        other = call(b)
        for what, a, o in (("indices", first[0], other[0]), ("values", first[1], other[1])):
            if not ctx.torch.equal(a, o):
                raise VerificationError(f"{label}: {what} differ between two copies of one input (buffer {b})")


def _torch_recipe(ctx: Ctx, src: Callable[[int], Any], n: int, k: int, dtype, cat: Optional[List[List[Any]]] = None):
    """torch.topk(|x|, k, sorted=False) + gather with out= buffers; with `cat`, torch.cat of
    the tensor lists first. Returns fn(b) -> (indices, values)."""
    torch, dev = ctx.torch, ctx.device
    a = torch.empty(n, dtype=dtype, device=dev)
    c = torch.empty(n, dtype=dtype, device=dev) if cat is not None else None
    tv = torch.empty(k, dtype=dtype, device=dev)
    ti = torch.empty(k, dtype=torch.int64, device=dev)
    gv = torch.empty(k, dtype=dtype, device=dev)

    def fn(b: int):
        x = torch.cat(cat[b], out=c) if cat is not None else src(b)
        torch.abs(x, out=a)
        torch.topk(a, k, sorted=False, out=(tv, ti))
        torch.index_select(x, 0, ti, out=gv)
        return ti, gv

    return fn


def single_case(ctx: Ctx, x32: np.ndarray, dtype_name: str, ratio: float, probe: bool) -> Dict[str, Any]:
    """One tensor: gradsparse vs torch.topk + gather vs one read."""
    torch, ops = ctx.torch, ctx.ops
    n, k = x32.size, gs.k_from_ratio(ratio, x32.size)
    dtype = getattr(torch, dtype_name)
    host = torch.from_numpy(x32).to(dtype)
    nbuf = ctx.nbuf(n * host.element_size())
    row: Dict[str, Any] = {"case": "single", "dtype": dtype_name, "n": n, "k": k, "ratio": ratio, "buffers": nbuf}
    label = f"single {fmt_n(n)} {dtype_name} k={k}"
    xs = [host.to(ctx.device, copy=True) for _ in range(nbuf)]
    ref_idx, ref_vals = chk.cpu_select(host, k)

    def gs_fn(b: int):
        return ops.select([xs[b]], kind="count", k=k)

    first = gs_fn(0)
    _check_select(ctx, label, first, ref_idx, ref_vals, None)
    _same_on_every_buffer(ctx, label, first, gs_fn, nbuf)
    torch_fn = _torch_recipe(ctx, lambda b: xs[b], n, k, dtype)
    ti, tv = torch_fn(0)
    chk.check_torch_topk(label, ti, tv, host, chk.magnitudes(ref_vals))
    ctx.verified.append(label)
    s = torch.empty((), dtype=dtype, device=ctx.device)
    ctx.time(row, {"torch": torch_fn, "read": lambda b: torch.sum(xs[b], 0, out=s), "gs": gs_fn}, nbuf)
    if probe and ctx.on_gpu():
        ctx.probes["select_sync"] = chk.sync_probe(torch, lambda: gs_fn(0))
        ctx.probes["select_alloc"] = chk.alloc_probe(torch, ctx.device, lambda: gs_fn(0), outputs=2)
    return row


def global_case(ctx: Ctx, sizes: Sequence[int], ratio: float) -> Dict[str, Any]:
    """Global selection over many tensors vs torch.cat + topk + gather."""
    torch, ops = ctx.torch, ctx.ops
    hosts = [torch.from_numpy(a) for a in global_data(sizes)]
    n = sum(sizes)
    k = gs.k_from_ratio(ratio, n)
    nbuf = ctx.nbuf(4 * n)
    row: Dict[str, Any] = {"case": "global", "dtype": "float32", "n": n, "k": k, "ratio": ratio,
                           "tensors": len(sizes), "buffers": nbuf}
    label = f"global {len(sizes)} tensors {fmt_n(n)} k={k}"
    sets = [[h.to(ctx.device, copy=True) for h in hosts] for _ in range(nbuf)]
    ref_idx, ref_vals, ref_counts = chk.cpu_select_many(hosts, k)

    def gs_fn(b: int):
        return ops.select(sets[b], kind="count", k=k)

    first = gs_fn(0)
    _check_select(ctx, label, first, ref_idx, ref_vals, ref_counts)
    _same_on_every_buffer(ctx, label, first, gs_fn, nbuf)
    torch_fn = _torch_recipe(ctx, None, n, k, torch.float32, cat=sets)
    ti, tv = torch_fn(0)
    chk.check_torch_topk(label, ti, tv, torch.cat(hosts), chk.magnitudes(ref_vals))
    ctx.verified.append(label)
    ctx.time(row, {"torch": torch_fn, "gs": gs_fn}, nbuf)
    return row


def feedback_case(ctx: Ctx, x32: np.ndarray, ratio: float, value_dtype: str, probe: bool) -> Dict[str, Any]:
    """The error-feedback step vs plain selection on the same g."""
    torch, ops = ctx.torch, ctx.ops
    n, k = x32.size, gs.k_from_ratio(ratio, x32.size)
    g_host = torch.from_numpy(x32)
    e_host = torch.from_numpy(gradient_like(n, np.random.default_rng([SEED, n, 2])) * np.float32(0.5))
    nbuf = ctx.nbuf(8 * n)
    row: Dict[str, Any] = {"case": "feedback", "dtype": "float32", "value_dtype": value_dtype, "n": n, "k": k,
                           "ratio": ratio, "buffers": nbuf}
    label = f"feedback {fmt_n(n)} k={k} values {value_dtype}"
    gs_ = [g_host.to(ctx.device, copy=True) for _ in range(nbuf)]
    es = [e_host.to(ctx.device, copy=True) for _ in range(nbuf)]
    vdt = torch.float32 if value_dtype == "float32" else torch.bfloat16
    ov = torch.empty(k, dtype=vdt, device=ctx.device)
    oi = torch.empty(k, dtype=torch.int32, device=ctx.device)
    ref_idx, ref_vals, ref_res = chk.cpu_feedback(g_host, e_host, k, value_dtype)

    def ef_fn(b: int):
        return ops.feedback_select(gs_[b], es[b], k=k, value_dtype=value_dtype, out_values=ov, out_indices=oi)

    got = ef_fn(0)
    try:
        idx, vals, count = got
    except (TypeError, ValueError):
        raise VerificationError(f"{label}: feedback_select returned {type(got).__name__}, not (indices, values, count)")
    if count is not None:
        raise VerificationError(f"{label}: count {count!r} with k (documented: None)")
    chk.check_same(label, "indices", idx, ref_idx)
    chk.check_same(label, "values", vals, ref_vals)
    chk.check_same(label, "residual e", es[0], ref_res)
    row["outputs_reused"] = idx.data_ptr() == oi.data_ptr() and vals.data_ptr() == ov.data_ptr()
    ctx.verified.append(label)
    ctx.time(row, {"plain": lambda b: ops.select([gs_[b]], kind="count", k=k), "ef": ef_fn}, nbuf)
    if probe and ctx.on_gpu():
        ctx.probes["feedback_sync"] = chk.sync_probe(torch, lambda: ef_fn(0))
        ctx.probes["feedback_alloc"] = chk.alloc_probe(torch, ctx.device, lambda: ef_fn(0), outputs=0)
    return row


# ----------------------------------------------------------------------------- printing

def _us(t: Optional[Dict[str, Any]]) -> str:
    if t is None:
        return "-"
    return f"{t['median_s'] * 1e6:.1f} [{t['p10_s'] * 1e6:.0f}..{t['p90_s'] * 1e6:.0f}]"


def _x(a: Optional[Dict[str, Any]], b: Optional[Dict[str, Any]]) -> Optional[float]:
    return None if a is None or b is None else a["median_s"] / b["median_s"]


def _xs(v: Optional[float]) -> str:
    return "-" if v is None else f"{v:.2f}x"


def print_row(out: Out, row: Dict[str, Any]) -> None:
    """One table line: gradsparse's time beside its baseline(s) and their ratios."""
    kcol = f"k={row['k']} ({fmt_ratio(row['ratio'])})"
    head = f"   {row['case']:<8} {fmt_n(row['n']):>6} {kcol:<16}"
    host = f"host {row['gs' if 'gs' in row else 'ef']['host_per_call_s'] * 1e6:.0f} us/call"
    if row["case"] == "single":
        gbs = row["n"] * (4 if row["dtype"] == "float32" else 2) / row["read"]["median_s"] / 1e9
        out(f"{head} {row['dtype']:<16} gs {_us(row['gs']):<20} torch {_us(row['torch']):<20} "
            f"read {_us(row['read'])} ({gbs:.0f} GB/s) | gs/torch {_xs(_x(row['gs'], row['torch']))}  "
            f"gs/read {_xs(_x(row['gs'], row['read']))} | {host}")
    elif row["case"] == "global":
        out(f"{head} {str(row['tensors']) + ' tensors':<16} gs {_us(row['gs']):<20} torch.cat+topk "
            f"{_us(row['torch'])} | gs/torch {_xs(_x(row['gs'], row['torch']))} | {host}")
    else:
        out(f"{head} {row['value_dtype'] + ' values':<16} ef {_us(row['ef']):<20} plain select {_us(row['plain'])} | "
            f"ef/plain {_xs(_x(row['ef'], row['plain']))} | {host}")


def _find(rows: Sequence[Dict[str, Any]], case: str, dtype: str = "float32", ratio: float = 0.01,
          value_dtype: Optional[str] = None) -> Optional[Dict[str, Any]]:
    for r in rows:
        if (r["case"] == case and r["dtype"] == dtype and abs(r["ratio"] - ratio) < 1e-12
                and r.get("value_dtype") == value_dtype):
            return r
    return None


def summarize(out: Out, rows: Sequence[Dict[str, Any]], probes: Dict[str, Any], device_name: str,
              on_gpu: bool) -> Dict[str, Any]:
    """The issue's targets, met / not met (n/a where the row or probe is missing)."""
    summ: Dict[str, Any] = {}
    s1, g1 = _find(rows, "single"), _find(rows, "global")
    e1 = _find(rows, "feedback", value_dtype="float32")
    where = f"{fmt_n(s1['n'])} float32 k=1%" if s1 else "2.5e7 float32 k=1%"
    out(f"== summary (medians; targets of issue 18, set for an H100; this device: {device_name})")

    def line(key: str, text: str, value: Optional[float], target: Optional[float], shown: str) -> None:
        verdict = "n/a" if value is None else ("met" if value <= target else "not met")
        out(f"  {text:<58} {shown:>12}  (target <= {target:g}{' us' if key == 'abs_us' else 'x'})  {verdict}")
        summ[key] = {"value": value, "target": target, "verdict": verdict}

    v = _x(s1 and s1["gs"], s1 and s1["torch"])
    line("vs_torch", f"gradsparse / torch.topk(|x|)+gather, {where}", v, TARGETS["vs_torch"], _xs(v))
    v = s1["gs"]["median_s"] * 1e6 if s1 else None
    line("abs_us", f"gradsparse time (us), {where}", v, TARGETS["abs_us"], "-" if v is None else f"{v:.1f} us")
    v = _x(s1 and s1["gs"], s1 and s1["read"])
    line("vs_read", f"gradsparse / one read of x (torch.sum), {where}", v, TARGETS["vs_read"], _xs(v))
    v = _x(g1 and g1["gs"], s1 and s1["gs"])
    line("global_vs_single", f"global ({g1['tensors'] if g1 else '~160'} tensors) / one tensor, same n, k=1%",
         v, TARGETS["global_vs_single"], _xs(v))
    v = _x(e1 and e1["ef"], e1 and e1["plain"])
    line("ef_vs_select", "error-feedback step / plain selection, float32, k=1%", v, TARGETS["ef_vs_select"], _xs(v))
    for key, text in (("select_sync", "select, count, one tensor"), ("feedback_sync", "feedback_select with k")):
        p = probes.get(key)
        for how in ("debug_mode", "busy_stream"):
            ok = None if p is None else p[how]["ok"]
            verdict = "n/a" if ok is None else ("met" if ok else "not met")
            detail = "not run (no CUDA device)" if p is None and not on_gpu else (
                "not run" if p is None else p[how]["detail"])
            out(f"  no host sync: {text} ({how.replace('_', ' ')}): {verdict}  [{detail}]")
            summ[f"{key}_{how}"] = {"verdict": verdict, "detail": detail}
    for key, text in (("select_alloc", "select, count, one tensor"), ("feedback_alloc", "feedback_select with k, out_* given")):
        p = probes.get(key)
        verdict = "n/a" if p is None else ("met" if p["ok"] else "not met")
        detail = "not run" if p is None else p["detail"]
        out(f"  no allocation beyond outputs + workspace: {text}: {verdict}  [{detail}]")
        summ[key] = {"verdict": verdict, "detail": detail}
    info = [r for r in rows if r is not s1 and r["case"] == "single"] + \
           [r for r in rows if r["case"] == "feedback" and r is not e1]
    for r in info:  # no targets: printed for the record
        if r["case"] == "single":
            out(f"  (info) {r['dtype']} k={fmt_ratio(r['ratio'])}: gradsparse / torch {_xs(_x(r['gs'], r['torch']))}, "
                f"/ one read {_xs(_x(r['gs'], r['read']))}, {r['gs']['median_s'] * 1e6:.1f} us")
        else:
            out(f"  (info) error feedback, {r['value_dtype']} values: / plain selection {_xs(_x(r['ef'], r['plain']))}")
    return summ


# ----------------------------------------------------------------------------- the run

def run(out: Out, torch, ops, device, *, n: int = DEFAULT_N, quick: bool = False, timer=None,
        l2_bytes: int = L2_FALLBACK, sizes: Optional[Sequence[int]] = None) -> Dict[str, Any]:
    """Every case (checked, then timed), the probes and the summary; returns the JSON payload's
    results. A case that fails is recorded with its error and the others still run."""
    import traceback  # noqa: PLC0415

    if timer is None:
        timer = EventTimer(torch, DEFAULT_REPEATS) if device.type == "cuda" else WallTimer(3)
    ctx = Ctx(torch, ops, device, out, timer, l2_bytes)
    singles = [("float32", 0.01)] if quick else [("float32", 0.001), ("float32", 0.01), ("float16", 0.01),
                                                 ("bfloat16", 0.01)]
    feedback = ["float32"] if quick else ["float32", "bfloat16"]
    sizes = list(sizes) if sizes is not None else global_sizes(n)
    out(f"data: float32 N(0,1) x lognormal(0,1) scale per 4096-element block, seed {SEED} (float16/bfloat16: "
        f"that data rounded); global: {len(sizes)} tensors, {sum(sizes)} elements")
    out("times in us: median [p10..p90] of CUDA-event samples; gs = gradsparse.cuda._ops; torch = "
        "torch.topk(x.abs(), k, sorted=False) + x[idx] (out= buffers); read = torch.sum(x) (one read of x)")
    x32 = data_for(n)
    errors: List[Dict[str, Any]] = []
    cases: List[tuple] = [(f"single {dt} {fmt_ratio(r)}", lambda dt=dt, r=r: single_case(
        ctx, x32, dt, r, probe=(dt, r) == ("float32", 0.01))) for dt, r in singles]
    cases.append(("global 1%", lambda: global_case(ctx, sizes, 0.01)))
    cases += [(f"feedback {vd}", lambda vd=vd: feedback_case(ctx, x32, 0.01, vd, probe=vd == "float32"))
              for vd in feedback]
    for name, case in cases:
        try:
            row = case()
        except VerificationError as exc:
            errors.append({"case": name, "kind": "verification", "error": str(exc)})
            out(f"   {name}: VERIFICATION FAILED, not timed: {exc}")
            continue
        except Exception as exc:  # noqa: BLE001  (recorded; the other cases still run)
            errors.append({"case": name, "kind": "error", "error": chk.first_line(exc),
                           "traceback": traceback.format_exc()})
            out(f"   {name}: ERROR, not timed: {chk.first_line(exc)}")
            continue
        ctx.rows.append(row)
        print_row(out, row)
    out()
    name = torch.cuda.get_device_name(device) if ctx.on_gpu() else str(device)
    summary = summarize(out, ctx.rows, ctx.probes, name, ctx.on_gpu())
    if any(e["kind"] == "verification" for e in errors):
        status = "verification failed"
    elif errors:
        status = "error"
    else:
        status = "ok"
    return {"status": status, "rows": ctx.rows, "probes": ctx.probes, "summary": summary, "errors": errors,
            "verified": ctx.verified, "global_sizes": sizes, "targets": TARGETS}


def unavailable(torch, why_torch: Optional[str]) -> Optional[str]:
    """Why the suite cannot run here (None when it can)."""
    if torch is None:
        return f"torch is {why_torch}"
    import gradsparse.cuda as gcuda  # noqa: PLC0415

    info = gcuda.info()
    if not info["built"]:
        return f"this gradsparse has no CUDA backend ({info['reason']})"
    if info["devices"] == 0:
        return f"the CUDA backend is built but no CUDA device is usable ({info['reason']})"
    if not torch.cuda.is_available():
        return (f"torch {torch.__version__} cannot use the GPU (torch.version.cuda = {torch.version.cuda}: "
                f"a CPU-only torch, or no driver)")
    return None


def build_parser() -> argparse.ArgumentParser:
    """The options of ``python -m gradsparse.bench cuda``."""
    p = argparse.ArgumentParser(prog="python -m gradsparse.bench cuda",
                                description="gradsparse's CUDA selection vs torch.topk + gather and one read of the "
                                            "input, global selection vs torch.cat + topk, the error-feedback step vs "
                                            "plain selection (results checked against the CPU engine first).")
    p.add_argument("--quick", action="store_true",
                   help="only the cells the targets are judged on (float32 1%%: one tensor, global, feedback)")
    p.add_argument("--repeats", type=int, default=DEFAULT_REPEATS,
                   help=f"timed calls per measurement (default {DEFAULT_REPEATS}, at least {MIN_REPEATS})")
    p.add_argument("--n", type=float, default=DEFAULT_N, help="elements per input (default 2.5e7)")
    p.add_argument("--device", type=int, default=None, help="CUDA device index (default: torch's current device)")
    p.add_argument("--json", default="bench-results/cuda.json", metavar="PATH",
                   help="where to write every figure (default bench-results/cuda.json; '' for none)")
    return p


def _write(path: str, payload: Dict[str, Any]) -> None:
    if path:
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        with open(path, "w") as f:
            json.dump(payload, f, indent=1, default=str)


def _device_meta(torch, device) -> Dict[str, Any]:
    p = torch.cuda.get_device_properties(device)
    return {"name": p.name, "capability": f"{p.major}.{p.minor}", "sms": p.multi_processor_count,
            "memory_bytes": p.total_memory, "l2_bytes": getattr(p, "L2_cache_size", None)}


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Runs the suite: 0 when it ran (targets met or not) or could not run here (the reason is
    printed), 2 when a result was wrong, 1 on another error."""
    args = build_parser().parse_args(argv)
    if args.repeats < MIN_REPEATS:
        raise SystemExit(f"--repeats: at least {MIN_REPEATS}")
    if args.n < 1000 or args.n != int(args.n) or args.n >= 2 ** 31:
        raise SystemExit("--n: a whole number in [1000, 2^31)")
    n = int(args.n)
    out = Out()
    torch, why_torch = load_torch(False)
    payload: Dict[str, Any] = {"meta": {
        "timestamp": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "gradsparse": gs.config()["version"], "torch": getattr(torch, "__version__", None),
        "python": sys.version.split()[0], "platform": platform.platform(),
        "argv": list(argv) if argv is not None else sys.argv[1:]},
        "settings": {"n": n, "quick": args.quick, "repeats": args.repeats, "warmup": WARMUP, "seed": SEED}}
    reason = unavailable(torch, why_torch)
    if reason is not None:
        out(f"CUDA suite skipped: {reason}")
        payload.update(status="skipped", reason=reason, printed=out.lines)
        _write(args.json, payload)
        return 0
    import gradsparse.cuda as gcuda  # noqa: PLC0415

    try:
        from ..cuda import _ops  # noqa: PLC0415
    except ImportError as exc:
        out(f"ERROR: the CUDA backend is built but gradsparse.cuda._ops does not import: {chk.first_line(exc)}")
        payload.update(status="error", reason=str(exc), printed=out.lines)
        _write(args.json, payload)
        return 1
    device = torch.device("cuda", torch.cuda.current_device() if args.device is None else args.device)
    dev = _device_meta(torch, device)
    info = gcuda.info()
    payload["meta"].update(device=dev, torch_cuda=torch.version.cuda, gradsparse_cuda=info)
    out(f"gradsparse {payload['meta']['gradsparse']} CUDA bench | {dev['name']} (sm {dev['capability']}, {dev['sms']} "
        f"SMs, L2 {(dev['l2_bytes'] or 0) / 2**20:.0f} MiB, {dev['memory_bytes'] / 2**30:.0f} GiB) | torch "
        f"{torch.__version__} (CUDA {torch.version.cuda}) | gradsparse CUDA archs {info['archs']}, runtime "
        f"{info['runtime']}, driver {info['driver']} | {args.repeats} samples after {WARMUP} warm-up calls")
    with torch.cuda.device(device):
        res = run(out, torch, _ops, device, n=n, quick=args.quick, timer=EventTimer(torch, args.repeats),
                  l2_bytes=dev["l2_bytes"] or L2_FALLBACK)
    payload.update(res)
    out(f"\n{len(res['verified'])} results verified against the CPU engine; status {res['status']}; "
        f"JSON: {args.json or '-'}")
    payload["printed"] = out.lines
    _write(args.json, payload)
    for e in res["errors"]:
        print(f"{e['kind'].upper()} in {e['case']}: {e['error']}", file=sys.stderr)
    return {"ok": 0, "verification failed": 2}.get(res["status"], 1)
