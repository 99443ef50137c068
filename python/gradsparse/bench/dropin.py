"""The drop-in suite (``python -m gradsparse.bench --suite dropin``): ``gradsparse.topk``
itself against ``torch.topk``, same process, same torch tensors, same thread count.

Cells (full grid): 1-D n in {1e6, 1e7}; 2-D row-wise (dim=-1) 1000x1000, 10000x1000,
1000x10000, 100x100000 and 64x50257 (vocabulary logits); 3-D 64x1024x64 and 4-D
32x256x32x32 along dim=1; k in {1, 0.1%, 1%, 10%} of the selected dim (at least 1; a ratio
giving the same k as an earlier one is left out); sorted and unsorted; float32 and
bfloat16; every thread count of ``--threads`` (default 1 and all), set the same way for
both libraries (``gradsparse.set_num_threads`` / ``torch.set_num_threads``). The fused
magnitude path -- ``gradsparse.topk(x, k, key="abs")`` against the idiom it replaces,
``torch.topk(x.abs(), k)`` (the abs pass counted, as written) -- at 1e6 and 1e7, k in
{0.1%, 1%, 10%}, sorted, float32. The quick subset (``--quick``, and what the default
``python -m gradsparse.bench`` runs) is 1e7, 1000x1000, 10000x1000, 64x50257 and
64x1024x64 at k in {1%, 10%}, sorted, float32, and the fused cell 1e7 / 1%.

Data: the gradient-like float32 of the other suites (N(0,1) x lognormal scale per
4096-element block, seeded per shape); bfloat16 is that data rounded, which makes many
ties -- the checks below must and do cope with them.

Check, before timing, of every gradsparse result against torch.topk's on the same input
(for key="abs": on ``x.abs()``): torch tensors of the input's dtype and int64, torch's
shapes; indices in range and distinct along the dim; values == the input gathered at the
indices (bitwise); the ranked values equal torch's exactly -- element by element with
sorted=True, as multisets with sorted=False (torch's unsorted order is unspecified); the
order gradsparse documents -- sorted=True: equal values lower index first, sorted=False:
ascending indices. Indices are never compared with torch's directly: tie order differs.
A failed check aborts the benchmark (exit code 2). A cell where gradsparse.topk raises
(an input it does not take) is printed as unsupported and fails the drop-in summary.

Timing: Bench.group of the selection suite -- the checked call is the warm-up, then each
library is timed in its own block of consecutive samples (at least 7 each unless
``--repeats``/``--quick`` say fewer; calls under 2 ms looped per sample); medians. Blocks,
not round-robin: torch's OpenMP workers keep spinning on the cores for a while after each
torch call, so a call interleaved right after one runs on fewer free cores (on a 2-core
machine, gradsparse at 2 threads measured about 2x slower that way), and a call after an
idle pause pays for waking the cores up. A block measures each library the way a loop of
its own calls runs.
ratio = torch ms / gradsparse ms (> 1: gradsparse is faster).
"""
from __future__ import annotations

import gc
from typing import Any, Dict, List, NamedTuple, Optional, Sequence, Tuple

import numpy as np

import gradsparse as gs

from .common import (
    SEED,
    VerificationError,
    gradient_like,
    fmt_n,
    geomean,
    ms,
    xf,
    med,
    ratio,
    Out,
)

__all__ = ["Cell", "cells", "check_topk", "run", "TARGETS"]

#: the issue's done-when targets (ratios torch / gradsparse, from medians)
TARGETS = {
    "worst_nd": 1.0,           # every 2-D/N-D cell
    "geomean_2d_small_k": 3.0,  # 2-D cells at k <= 1%
    "one_d_10pct_sorted": 5.0,  # 1-D, k = 10%, sorted=True
    "fused_abs_1e7_1pct": 20.0,  # key="abs" vs torch.topk(x.abs(), k), n = 1e7, k = 1%
}
MIN_REPEATS = 7

K_LABELS = ("1", "0.1%", "1%", "10%")
SMALL_K = ("1", "0.1%", "1%")
SHAPES_FULL: Tuple[Tuple[Tuple[int, ...], int], ...] = (
    ((1_000_000,), -1), ((10_000_000,), -1),
    ((1000, 1000), -1), ((10000, 1000), -1), ((1000, 10000), -1), ((100, 100000), -1), ((64, 50257), -1),
    ((64, 1024, 64), 1), ((32, 256, 32, 32), 1),
)
SHAPES_QUICK = (((10_000_000,), -1), ((1000, 1000), -1), ((10000, 1000), -1), ((64, 50257), -1),
                ((64, 1024, 64), 1))
FUSED_FULL = (1_000_000, 10_000_000)  # key="abs" cells, 1-D
FUSED_QUICK = (10_000_000,)


class Cell(NamedTuple):
    """One benchmark cell (timed at every thread count)."""
    shape: Tuple[int, ...]
    dim: int
    k: int
    k_label: str  # "1", "0.1%", "1%" or "10%"
    sorted: bool
    dtype: str  # "float32" or "bfloat16"
    key: Optional[str] = None  # None: torch.topk(x); "abs": torch.topk(x.abs())

    def name(self) -> str:
        shape = "x".join(fmt_n(s) if len(self.shape) == 1 else str(s) for s in self.shape)
        key = ', key="abs"' if self.key else ""
        return (f"{shape} dim={self.dim} k={self.k} ({self.k_label}) "
                f"{'sorted' if self.sorted else 'unsorted'} {self.dtype}{key}")


def k_for(label: str, n: int) -> int:
    return 1 if label == "1" else gs.k_from_ratio(float(label[:-1]) / 100, n)


def _ks(n: int, labels: Sequence[str]) -> List[Tuple[int, str]]:
    out: List[Tuple[int, str]] = []
    for lab in labels:
        k = k_for(lab, n)
        if all(k != seen for seen, _ in out):
            out.append((k, lab))
    return out


def cells(quick: bool = False) -> List[Cell]:
    """The grid, in the order it is run (grouped by shape, so each input is made once)."""
    shapes = SHAPES_QUICK if quick else SHAPES_FULL
    labels = ("1%", "10%") if quick else K_LABELS
    sorts = (True,) if quick else (True, False)
    dtypes = ("float32",) if quick else ("float32", "bfloat16")
    out = [Cell(shape, dim, k, lab, s, dt)
           for shape, dim in shapes for dt in dtypes
           for k, lab in _ks(shape[dim], labels) for s in sorts]
    for n in FUSED_QUICK if quick else FUSED_FULL:
        out += [Cell((n,), -1, k, lab, True, "float32", "abs")
                for k, lab in _ks(n, ("1%",) if quick else ("0.1%", "1%", "10%"))]
    return out


# ----------------------------------------------------------------------------- the check

def _np(t: Any) -> np.ndarray:
    """A torch tensor (bfloat16 widened exactly to float32) or array as numpy."""
    if isinstance(t, np.ndarray):
        return t
    t = t.detach()
    if str(t.dtype) == "torch.bfloat16":
        t = t.float()
    return t.numpy()


def check_topk(label: str, got: Any, ref: Any, x: Any, cell: Cell) -> None:
    """Raises VerificationError unless `got` (gradsparse.topk's result on torch tensor `x`)
    is a right answer, judged against `ref` (torch.topk's on x, or on x.abs() for key="abs")."""
    def fail(why: str) -> None:
        raise VerificationError(f"dropin {label}: gradsparse.topk {why}")

    try:
        values, indices = got
    except (TypeError, ValueError):
        fail(f"returned {type(got).__name__}, not a (values, indices) pair")
    rvalues, rindices = ref
    for what, t, want in (("values", values, x.dtype), ("indices", indices, rindices.dtype)):
        if type(t) is not type(x):
            fail(f"{what} is a {type(t).__name__}, torch.topk gives {type(x).__name__}")
        if t.dtype != want:
            fail(f"{what} dtype {t.dtype}, expected {want}")
        if tuple(t.shape) != tuple(rvalues.shape):
            fail(f"{what} shape {tuple(t.shape)}, torch.topk's {tuple(rvalues.shape)}")
    dim = cell.dim % max(1, x.dim())
    k, n = rvalues.shape[dim], x.shape[dim]

    def rows(a: np.ndarray, width: int) -> np.ndarray:  # the selected dim last, one row per line
        return np.moveaxis(a, dim, -1).reshape(-1, width)

    v, i, rv = rows(_np(values), k), rows(_np(indices), k), rows(_np(rvalues), k)
    xv = rows(_np(x), n)
    if i.size and (i.min() < 0 or i.max() >= n):
        fail(f"indices out of range [0, {n})")
    si = np.sort(i, axis=1)
    if k > 1 and not np.all(si[:, 1:] > si[:, :-1]):
        fail("repeats an index within a row")
    gathered = np.take_along_axis(xv, i, axis=1)
    bits = np.dtype(f"u{gathered.itemsize}")  # bitwise: the input's own values, sign of zero and NaNs included
    if not np.array_equal(gathered.view(bits), np.ascontiguousarray(v).view(bits)):
        fail("values are not the input at the returned indices")
    keys = np.abs(v) if cell.key == "abs" else v
    if cell.sorted:
        if not np.array_equal(keys, rv, equal_nan=True):
            fail("values differ from torch.topk's (sorted=True, compared in order)")
        tied = keys[:, 1:] == keys[:, :-1]
        if np.any(tied & (i[:, 1:] < i[:, :-1])):
            fail("puts a higher index before a lower one among equal values (sorted=True)")
    else:
        if not np.array_equal(np.sort(keys, axis=1), np.sort(rv, axis=1), equal_nan=True):
            fail("values differ from torch.topk's as multisets (sorted=False)")
        if k > 1 and not np.all(i[:, 1:] > i[:, :-1]):
            fail("indices are not ascending (sorted=False)")


# ----------------------------------------------------------------------------- the run

def run(out: Out, bench, torch, *, quick: bool = False, repeats: int = MIN_REPEATS,
        threads: Sequence[int] = (1,), grid: Optional[Sequence[Cell]] = None) -> Dict[str, Any]:
    """Times every cell of `grid` (default: cells(quick)) at every thread count; prints the
    table and the summary; returns {"rows", "summary", ...} for the JSON file.
    `bench` is a gradsparse.bench.select.Bench (its group() checks and times)."""
    from .select import Cand  # noqa: PLC0415

    grid = list(cells(quick) if grid is None else grid)
    out(f"== drop-in: gradsparse.topk(x, k, dim, sorted=...) vs torch.topk(x, k, dim, sorted=...) on the same "
        f"torch tensors; fused: gradsparse.topk(x, k, key=\"abs\") vs torch.topk(x.abs(), k)"
        f"{'  [quick subset; full grid: python -m gradsparse.bench --suite dropin]' if quick else ''}")
    if torch is None:
        out("   skipped: torch is not available (the drop-in suite compares against torch.topk)")
        return {"status": "skipped", "rows": [], "summary": {}, "targets": TARGETS}
    out(f"   median ms of {repeats} samples each, each library in its own block of consecutive calls after a warm-up; every gradsparse result "
        f"checked against torch.topk first; ratio = torch / gradsparse")
    hdr = (f"{'shape':>16} {'dim':>3} {'k':>13} {'sorted':>6} {'dtype':>8} {'thr':>3} | "
           f"{'gs ms':>8} {'torch ms':>8} | {'ratio':>7}")
    out(hdr)
    out("-" * len(hdr))
    rows: List[Dict[str, Any]] = []
    data: Dict[Tuple[Tuple[int, ...], str], Any] = {}
    fused_header = False
    threads0 = gs.get_num_threads(), torch.get_num_threads()
    try:
        for cell in grid:
            if cell.key and not fused_header:
                out("   fused magnitude path: gradsparse.topk(x, k, key=\"abs\") (signed values) vs "
                    "torch.topk(x.abs(), k)")
                fused_header = True
            if (cell.shape, cell.dtype) not in data:
                data.clear()
                gc.collect()
                n = int(np.prod(cell.shape))
                x = gradient_like(n, np.random.default_rng([SEED, *cell.shape])).reshape(cell.shape)
                t = torch.from_numpy(x)
                data[(cell.shape, cell.dtype)] = t if cell.dtype == "float32" else t.to(torch.bfloat16)
            t = data[(cell.shape, cell.dtype)]
            rows += _time_cell(out, bench, torch, Cand, cell, t, repeats, threads)
    finally:
        gs.set_num_threads(threads0[0])
        torch.set_num_threads(threads0[1])
    del data
    gc.collect()
    out()
    summary = summarize(out, rows, quick)
    return {"status": "ok", "grid": "quick" if quick else "full", "repeats": repeats, "threads": list(threads),
            "targets": TARGETS, "rows": rows, "summary": summary}


def _time_cell(out: Out, bench, torch, Cand, cell: Cell, t, repeats: int, threads) -> List[Dict[str, Any]]:
    k, dim, s = cell.k, cell.dim, cell.sorted
    label = cell.name()
    if cell.key == "abs":
        def torch_fn():
            return torch.topk(t.abs(), k, dim=dim, sorted=s)

        def gs_fn():
            return gs.topk(t, k, dim=dim, sorted=s, key="abs")
    else:
        def torch_fn():
            return torch.topk(t, k, dim=dim, sorted=s)

        def gs_fn():
            return gs.topk(t, k, dim=dim, sorted=s)

    ref: Dict[str, Any] = {}

    def keep_ref(res) -> None:  # torch's candidate is checked (and so run) first: its result is the reference
        ref["r"] = res

    shape = "x".join(fmt_n(d) if len(cell.shape) == 1 else str(d) for d in cell.shape)
    k_col = str(k) if cell.k_label == "1" else f"{k} ({cell.k_label})"
    rows = []
    for th in threads:
        bench.set_threads(th)
        cands = [Cand("torch.topk", torch_fn, keep_ref, repeats, solo=True),
                 Cand("gradsparse.topk", gs_fn, lambda res: check_topk(f"{label} {th} thr", res, ref["r"], t, cell),
                      repeats, solo=True)]
        row: Dict[str, Any] = dict(cell._asdict(), shape=list(cell.shape), threads=th, name=label)
        try:
            res = bench.group("dropin", cands, **{k_: v for k_, v in row.items() if k_ != "name"})
        except VerificationError:
            raise
        except (ValueError, TypeError, NotImplementedError) as exc:  # an input gradsparse.topk does not take
            row.update(gs=None, torch=None, ratio=None, unsupported=f"{type(exc).__name__}: {exc}")
            rows.append(row)
            out(f"{shape:>16} {dim:>3} {k_col:>13} {str(s):>6} {cell.dtype:>8} {th:>3} | "
                f"unsupported: {type(exc).__name__}: {str(exc)[:70]}")
            continue
        finally:
            ref.clear()
        row.update(gs=res["gradsparse.topk"], torch=res["torch.topk"],
                   ratio=ratio(res["torch.topk"], res["gradsparse.topk"]))
        rows.append(row)
        out(f"{shape:>16} {dim:>3} {k_col:>13} {str(s):>6} {cell.dtype:>8} {th:>3} | "
            f"{ms(med(row['gs'])):>8} {ms(med(row['torch'])):>8} | {xf(row['ratio']):>7}{bench.mark()}")
    return rows


# ----------------------------------------------------------------------------- summary

def _where(r: Dict[str, Any]) -> str:
    return f"{r['name']}, {r['threads']} thr"


def summarize(out: Out, rows: Sequence[Dict[str, Any]], quick: bool = False) -> Dict[str, Any]:
    """The done-when lines (PASS/FAIL, from medians); an unsupported cell fails its line. On
    the quick subset the geometric mean is only informative (INFO): a worst cell of the
    subset that fails also fails the grid, but a subset's mean bounds nothing."""
    summ: Dict[str, Any] = {}
    out("== drop-in summary (ratio = torch.topk / gradsparse.topk, medians, same run)"
        + ("  [quick subset: the targets are judged on the full grid, --suite dropin]" if quick else ""))

    def line(key: str, text: str, sel: Sequence[Dict[str, Any]], how: str) -> None:
        target = TARGETS[key]
        bad = [r for r in sel if r["ratio"] is None]
        timed = [r for r in sel if r["ratio"] is not None]
        value, where, verdict = None, "no such cell in this run", "SKIP"
        if timed and how == "geomean":
            value, where = geomean([r["ratio"] for r in timed]), f"{len(timed)} cells"
        elif timed:
            worst = min(timed, key=lambda r: r["ratio"])
            value, where = worst["ratio"], _where(worst)
        if value is not None:
            verdict = "PASS" if value >= target else "FAIL"
            if quick and how == "geomean":  # a subset's mean says nothing about the grid's
                verdict = "INFO"
        if bad:  # an input gradsparse.topk refuses is no drop-in
            verdict = "FAIL"
            where = (f"{where}; " if timed else "") + f"{len(bad)} unsupported, e.g. {_where(bad[0])}"
        val = "n/a" if value is None else xf(value)
        out(f"  {text:<44} {val:>8}  (target >= {target:g}x)  {verdict}   [{where}]")
        summ[key] = {"value": value, "target": target, "verdict": verdict, "where": where}

    plain = [r for r in rows if not r["key"]]
    line("worst_nd", "worst 2-D/N-D cell", [r for r in plain if len(r["shape"]) >= 2], "worst")
    line("geomean_2d_small_k", "geo-mean of the 2-D cells at k <= 1%",
         [r for r in plain if len(r["shape"]) == 2 and r["k_label"] in SMALL_K], "geomean")
    line("one_d_10pct_sorted", "1-D, k = 10%, sorted (worst cell)",
         [r for r in plain if len(r["shape"]) == 1 and r["k_label"] == "10%" and r["sorted"]], "worst")
    line("fused_abs_1e7_1pct", 'key="abs" vs torch.topk(x.abs()), 1e7 / 1%',
         [r for r in rows if r["key"] == "abs" and r["shape"] == [10_000_000] and r["k_label"] == "1%"], "worst")
    unsupported = [r for r in rows if r["ratio"] is None]
    if unsupported:
        out(f"  {len(unsupported)} cell(s) unsupported by gradsparse.topk, e.g. {_where(unsupported[0])}: "
            f"{unsupported[0]['unsupported'][:120]}")
    summ["unsupported_cells"] = len(unsupported)
    return summ
