"""The selection suite: magnitude top-k, CWMP and global selection against torch.topk and
np.argpartition (every result verified before it is timed); see gradsparse.bench."""
from __future__ import annotations

import gc
import math
import statistics
import time
from typing import Any, Callable, Dict, List, Optional, Sequence

import numpy as np

import gradsparse as gs

from .common import (
    SEED,
    SCALAR_COST,
    MIN_SAMPLE_S,
    SOLO_WARMUP_S,
    MAX_ATTEMPTS,
    RETRY_PAUSE_S,
    TARGETS,
    VerificationError,
    data_for,
    element_costs,
    resnet18_shapes,
    resnet_data,
    timed_call,
    exact_reference,
    check_gradsparse,
    check_baseline,
    check_own_scores,
    fmt_n,
    fmt_ratio,
    ms,
    xf,
    geomean,
    busy_cpu_s,
    disturbed,
    own_cpu_s,
    Out,
    med,
    ratio,
)


# ----------------------------------------------------------------------------- the bench

class Cand:
    """One implementation measured inside a group: fn() is timed, check(result) verifies."""

    def __init__(self, impl: str, fn: Callable[[], Any], check: Callable[[Any], None], repeats: int,
                 solo: bool = False, **fields: Any):
        self.impl, self.fn, self.check, self.repeats, self.fields = impl, fn, check, repeats, fields
        self.solo = solo  # a slow baseline: timed in its own consecutive run, not round-robin


class Bench:
    def __init__(self, args, torch, out: Out):
        self.args = args
        self.torch = torch
        self.out = out
        self.results: List[Dict[str, Any]] = []
        self.verified: List[Dict[str, Any]] = []
        self.rep = args.repeats
        self.rep_slow = max(3, args.repeats // 2)
        self.last_disturbed = False
        self.max_attempts = 2 if args.quick else MAX_ATTEMPTS
        self.attempts_total = 0
        self.groups = 0
        self.disturbed_rows = 0

    def group(self, case: str, cands: Sequence[Cand], **common: Any) -> Dict[str, Dict[str, Any]]:
        """Verifies every candidate (that call is its warm-up), then times them: slow
        baselines each on their own, the fast ones round-robin (one sample of each per round)
        so that their ratios compare calls made under the same machine conditions."""
        loops = []
        for c in cands:
            res, warm = timed_call(c.fn)
            c.check(res)
            del res
            self.verified.append({"case": case, "impl": c.impl, **common, **c.fields})
            loops.append(1 if warm >= MIN_SAMPLE_S else int(min(10000, math.ceil(MIN_SAMPLE_S / max(warm, 1e-7)))))
        best = None
        made = 0
        for made in range(1, self.max_attempts + 1):
            times, other_s, wall = self._time_round_robin(cands, loops)
            if best is None or other_s < best[1]:
                best = (times, other_s, wall)
            if not disturbed(other_s, wall):
                break
            time.sleep(RETRY_PAUSE_S)
        times, other_s, wall = best
        self.last_disturbed = disturbed(other_s, wall)
        self.attempts_total += made
        self.groups += 1
        self.disturbed_rows += self.last_disturbed
        extra = {"other_processes_cpu_s": other_s, "row_wall_s": wall, "attempts": made,
                 "disturbed": self.last_disturbed}
        out: Dict[str, Dict[str, Any]] = {}
        for c, number, ts in zip(cands, loops, times):
            timing = {"median_s": statistics.median(ts), "min_s": min(ts), "repeats": len(ts),
                      "loops_per_sample": number, "times_s": ts}
            self.results.append({"case": case, "impl": c.impl, **common, **c.fields, **timing, **extra})
            out[c.impl] = timing
        return out

    @staticmethod
    def _time_round_robin(cands: Sequence[Cand], loops: Sequence[int]):
        """One timing pass: (samples per candidate, CPU seconds other processes used, wall s).

        Slow baselines (solo) run first, each on its own; then the fast candidates get one
        untimed warm-up round (the slow ones evict the caches) and are timed round-robin,
        the order rotated every round."""
        times: List[List[float]] = [[] for _ in cands]

        def sample(c: Cand, number: int) -> float:
            fn = c.fn
            t0 = time.perf_counter()
            for _ in range(number):
                fn()
            return (time.perf_counter() - t0) / number

        busy0, own0, w0 = busy_cpu_s(), own_cpu_s(), time.perf_counter()
        enabled = gc.isenabled()
        gc.disable()
        try:
            for c, number, ts in zip(cands, loops, times):
                if c.solo:
                    # untimed calls first, SOLO_WARMUP_S of them: what ran before (another
                    # library's OpenMP workers still spinning, cold caches) settles first
                    t_end = time.perf_counter() + SOLO_WARMUP_S
                    while True:
                        c.fn()
                        if time.perf_counter() >= t_end:
                            break
                    ts.extend(sample(c, number) for _ in range(c.repeats))
            fast = [(c, number, ts) for c, number, ts in zip(cands, loops, times) if not c.solo]
            for c, _, _ in fast:
                c.fn()
            for rnd in range(max((c.repeats for c, _, _ in fast), default=0)):
                shift = rnd % len(fast)  # rotate, so that each one follows each other one
                for c, number, ts in fast[shift:] + fast[:shift]:
                    if rnd < c.repeats:
                        ts.append(sample(c, number))
        finally:
            if enabled:
                gc.enable()
        busy1, own1, wall = busy_cpu_s(), own_cpu_s(), time.perf_counter() - w0
        other = 0.0 if busy0 is None or busy1 is None else max(0.0, (busy1 - busy0) - (own1 - own0))
        return times, other, wall

    def mark(self) -> str:
        return " *" if self.last_disturbed else ""

    def set_threads(self, th: int) -> None:
        gs.set_num_threads(th)
        if self.torch is not None:
            self.torch.set_num_threads(th)

    # -- case 1
    def topk_case(self, sizes, ratios, threads) -> List[Dict[str, Any]]:
        out, torch = self.out, self.torch
        out("== 1. magnitude top-k: gradsparse.sparsify(x, k) vs torch.topk(|t|, k, sorted=False)+gather "
            "vs np.argpartition(|x|, n-k)+gather")
        out("   median ms; numpy is single-threaded (measured once per n,k; same time in every thread row); "
            "read = np.add.reduce(x), 1 thread, timed next to each row")
        hdr = (f"{'n':>7} {'k':>6} {'thr':>3} | {'gradsparse':>10} {'torch.topk':>10} {'np.argpart':>10} "
               f"{'read':>7} | {'gs/read':>7} {'vs torch':>8} {'vs numpy':>8}")
        out(hdr)
        out("-" * len(hdr))
        rows = []
        for n in sizes:
            x = data_for(n)
            a = np.abs(x)
            abuf = np.empty_like(x)
            t = torch.from_numpy(x) if torch is not None else None
            for r in ratios:
                k = gs.k_from_ratio(r, n)
                label = f"top-k n={n} k={k}"
                ref, tied = exact_reference(a, k)
                kept = np.sort(a[ref])
                common = dict(n=n, k=k, ratio=r, tied_at_kth=bool(tied))

                def np_fn():
                    np.abs(x, out=abuf)
                    idx = np.argpartition(abuf, n - k)[n - k:]
                    return idx, x[idx]

                np_cand = Cand("numpy.argpartition", np_fn,
                               lambda res: check_baseline(label, "np.argpartition", res[0], res[1], x, kept, ref, tied),
                               self.rep_slow, solo=True, threads=1)
                torch_cand = None
                if t is not None:
                    tab = torch.empty_like(t)
                    tv = torch.empty(k, dtype=t.dtype)
                    ti = torch.empty(k, dtype=torch.int64)
                    tg = torch.empty(k, dtype=t.dtype)

                    def torch_fn():
                        torch.abs(t, out=tab)
                        torch.topk(tab, k, sorted=False, out=(tv, ti))
                        torch.index_select(t, 0, ti, out=tg)
                        return ti, tg

                    torch_cand = Cand("torch.topk", torch_fn,
                                      lambda res: check_baseline(label, "torch.topk", res[0].numpy(), res[1].numpy(),
                                                                 x, kept, ref, tied),
                                      self.rep_slow, solo=True)
                t_np = None
                for th in threads:
                    self.set_threads(th)
                    cands = [Cand("gradsparse", lambda: gs.sparsify(x, k),
                                  lambda sp: check_gradsparse(label, sp.indices, sp.values, x, ref), self.rep),
                             Cand("numpy.add.reduce", lambda: np.add.reduce(x), lambda res: None, self.rep,
                                  threads=1, role="plain read")]
                    if torch_cand is not None:
                        cands.append(torch_cand)
                    if t_np is None:
                        cands.append(np_cand)
                    res = self.group("topk", cands, threads=th, **common)
                    t_np = res.get("numpy.argpartition", t_np)
                    row = dict(n=n, k=k, ratio=r, threads=th, gs=res["gradsparse"], torch=res.get("torch.topk"),
                               numpy=t_np, read=res["numpy.add.reduce"])
                    rows.append(row)
                    out(f"{fmt_n(n):>7} {fmt_ratio(r):>6} {th:>3} | {ms(med(row['gs'])):>10} "
                        f"{ms(med(row['torch'])):>10} {ms(med(t_np)):>10} {ms(med(row['read'])):>7} | "
                        f"{xf(ratio(row['gs'], row['read'])):>7} {xf(ratio(row['torch'], row['gs'])):>8} "
                        f"{xf(ratio(t_np, row['gs'])):>8}{self.mark()}")
            del x, a, abuf, t
            gc.collect()
        out()
        return rows

    # -- case 2
    def cwmp_case(self, sizes, ratios, threads) -> List[Dict[str, Any]]:
        out, torch = self.out, self.torch
        out(f"== 2. CWMP: gradsparse.sparsify(x, k, cost=c) vs torch.topk(|t|**2 / c, k, sorted=False)+gather; "
            f"cost = scalar {SCALAR_COST} or per-element float32 U[0.5, 2), given as the array (element) "
            f"or as gradsparse.PreparedCost(array) built once (prepared)")
        out("   median ms; 'plain' = gradsparse.sparsify(x, k) on the same data, timed alongside; "
            "ratio = cwmp / plain")
        hdr = (f"{'n':>7} {'k':>6} {'cost':>8} {'thr':>3} | {'cwmp':>8} {'plain':>8} {'torch':>8} | "
               f"{'ratio':>6} {'vs torch':>8}")
        out(hdr)
        out("-" * len(hdr))
        rows = []
        max_diff = 0
        for n in sizes:
            x = data_for(n)
            ce = element_costs(n)
            t0 = time.perf_counter()
            prepared = gs.PreparedCost(ce)
            prep_s = time.perf_counter() - t0
            out(f"   n={fmt_n(n)}: PreparedCost(c) built once in {ms(prep_s)} ms ({prepared.nbytes / 1e6:.0f} MB)")
            a64 = np.abs(x).astype(np.float64)
            t = torch.from_numpy(x) if torch is not None else None
            tce = torch.from_numpy(ce) if torch is not None else None
            for kind in ("scalar", "element", "prepared"):
                cost = {"scalar": SCALAR_COST, "element": ce, "prepared": prepared}[kind]
                score = a64 * a64 / (SCALAR_COST if kind == "scalar" else ce.astype(np.float64))
                for r in ratios:
                    k = gs.k_from_ratio(r, n)
                    label = f"cwmp-{kind} n={n} k={k}"
                    ref, tied = exact_reference(score, k)
                    plain_ref, _ = exact_reference(a64, k)
                    common = dict(n=n, k=k, ratio=r, cost=kind, tied_at_kth=bool(tied))
                    torch_cand = None
                    info: Dict[str, Any] = {}
                    if t is not None and kind != "prepared":  # torch's side is the "element" row's
                        tsc = torch.empty_like(t)
                        tv = torch.empty(k, dtype=t.dtype)
                        ti = torch.empty(k, dtype=torch.int64)
                        tg = torch.empty(k, dtype=t.dtype)
                        tc = SCALAR_COST if kind == "scalar" else tce

                        def torch_fn():
                            torch.abs(t, out=tsc)
                            tsc.square_()
                            tsc.div_(tc)
                            torch.topk(tsc, k, sorted=False, out=(tv, ti))
                            torch.index_select(t, 0, ti, out=tg)
                            return ti, tg

                        def torch_check(res):
                            idx, vals = res[0].numpy(), res[1].numpy()
                            if np.unique(idx).size != k:
                                raise VerificationError(f"{label}: torch.topk returned duplicate indices")
                            if not np.array_equal(vals.view(np.uint32), x[idx].view(np.uint32)):
                                raise VerificationError(f"{label}: torch gathered values are not x[indices]")
                            check_own_scores(label, "torch.topk", tv.numpy().copy(), tsc.numpy(), k)
                            info["torch_vs_exact_diff"] = int(np.setdiff1d(ref, idx).size)

                        torch_cand = Cand("torch.topk", torch_fn, torch_check, self.rep_slow, solo=True)
                    for th in threads:
                        self.set_threads(th)
                        cands = [Cand("gradsparse", lambda: gs.sparsify(x, k, cost=cost),
                                      lambda sp: check_gradsparse(label, sp.indices, sp.values, x, ref), self.rep),
                                 Cand("gradsparse-plain", lambda: gs.sparsify(x, k),
                                      lambda sp: check_gradsparse(label + " (plain)", sp.indices, sp.values, x,
                                                                  plain_ref), self.rep)]
                        if torch_cand is not None:
                            cands.append(torch_cand)
                        res = self.group("cwmp", cands, threads=th, **common)
                        max_diff = max(max_diff, info.get("torch_vs_exact_diff", 0))
                        row = dict(n=n, k=k, ratio=r, cost=kind, threads=th, gs=res["gradsparse"],
                                   plain=res["gradsparse-plain"], torch=res.get("torch.topk"), **info)
                        rows.append(row)
                        out(f"{fmt_n(n):>7} {fmt_ratio(r):>6} {kind:>8} {th:>3} | {ms(med(row['gs'])):>8} "
                            f"{ms(med(row['plain'])):>8} {ms(med(row['torch'])):>8} | "
                            f"{xf(ratio(row['gs'], row['plain'])):>6} {xf(ratio(row['torch'], row['gs'])):>8}"
                            f"{self.mark()}")
                del score
            del x, ce, prepared, a64, t, tce
            gc.collect()
        if max_diff:
            out(f"   note: torch scores in float32, gradsparse (and the reference) in float64; their index sets "
                f"differ in up to {max_diff} elements at the k-th score (float32 rounding creates ties)")
        out()
        return rows

    # -- case 3
    def global_case(self, ratios, threads) -> List[Dict[str, Any]]:
        out, torch = self.out, self.torch
        shapes = resnet18_shapes()
        sizes = [int(np.prod(s)) for _, s in shapes]
        total = sum(sizes)
        if len(shapes) != 62 or total != 11_173_962:
            raise VerificationError(f"resnet18 shapes: {len(shapes)} tensors, {total} params (want 62, 11173962)")
        out(f"== 3. global selection over the {len(shapes)} gradient tensors of ResNet-18 (CIFAR-10, "
            f"{total:,} params): gradsparse.sparsify_many(xs, k) vs torch.topk(cat(flatten).abs(), k)+gather "
            f"(cat counted)")
        out("   costs: one scalar cost per tensor, U[0.5, 2): sparsify_many(xs, k, costs=[...]) vs "
            "torch.topk(cat(|t|**2 / c))+gather; gs[torch-in] = gradsparse given the torch tensors")
        if torch is not None:
            self._crosscheck_torchvision()
        xs = resnet_data(shapes)
        offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)
        cat = np.concatenate([v.reshape(-1) for v in xs])
        a64 = np.abs(cat).astype(np.float64)
        rng = np.random.default_rng([SEED, 62])
        costs = [float(c) for c in rng.uniform(0.5, 2.0, len(xs))]
        cost_el = np.repeat(np.asarray(costs), sizes)
        hdr = (f"{'k':>6} {'costs':>5} {'thr':>3} | {'gradsparse':>10} {'gs[torch-in]':>12} {'torch.topk':>10} | "
               f"{'vs torch':>8}")
        out(hdr)
        out("-" * len(hdr))
        ts = [torch.from_numpy(v) for v in xs] if torch is not None else None
        tcat = torch.from_numpy(cat) if torch is not None else None
        rows = []
        for with_costs in (False, True):
            score = a64 * a64 / cost_el if with_costs else a64
            for r in ratios:
                k = gs.k_from_ratio(r, total)
                label = f"global{' costs' if with_costs else ''} k={k}"
                ref, tied = exact_reference(score, k)
                kept = np.sort(np.abs(cat[ref]))
                common = dict(n=total, k=k, ratio=r, costs=with_costs, tensors=len(xs), tied_at_kth=bool(tied))
                cs = costs if with_costs else None

                def gs_check(res):
                    if len(res) != len(xs):
                        raise VerificationError(f"{label}: sparsify_many returned {len(res)} results")
                    idx = np.concatenate([np.asarray(sp.indices) + o for sp, o in zip(res, offsets)])
                    vals = np.concatenate([np.asarray(sp.values) for sp in res])
                    check_gradsparse(label, idx, vals, cat, ref)

                torch_cands = []
                if ts is not None:
                    tbuf = torch.empty_like(tcat)
                    tsc = torch.empty_like(tcat)
                    tv = torch.empty(k, dtype=tcat.dtype)
                    ti = torch.empty(k, dtype=torch.int64)
                    tg = torch.empty(k, dtype=tcat.dtype)
                    segs = list(zip(offsets.tolist(), sizes, costs))

                    def torch_fn():
                        torch.cat([tt.flatten() for tt in ts], out=tbuf)
                        torch.abs(tbuf, out=tsc)
                        if with_costs:
                            tsc.square_()
                            for o, m, c in segs:
                                tsc[o:o + m].div_(c)
                        torch.topk(tsc, k, sorted=False, out=(tv, ti))
                        torch.index_select(tbuf, 0, ti, out=tg)
                        return ti, tg

                    def torch_check(res):
                        idx, vals = res[0].numpy(), res[1].numpy()
                        if with_costs:
                            if np.unique(idx).size != k or not np.array_equal(vals.view(np.uint32),
                                                                              cat[idx].view(np.uint32)):
                                raise VerificationError(f"{label}: torch.topk result malformed")
                            check_own_scores(label, "torch.topk", tv.numpy().copy(), tsc.numpy(), k)
                        else:
                            check_baseline(label, "torch.topk", idx, vals, cat, kept, ref, tied)

                    torch_cands = [Cand("gradsparse[torch-in]", lambda: gs.sparsify_many(ts, k, costs=cs), gs_check,
                                        self.rep),
                                   Cand("torch.topk", torch_fn, torch_check, self.rep_slow, solo=True)]
                for th in threads:
                    self.set_threads(th)
                    cands = [Cand("gradsparse", lambda: gs.sparsify_many(xs, k, costs=cs), gs_check, self.rep)]
                    res = self.group("global", cands + torch_cands, threads=th, **common)
                    row = dict(k=k, ratio=r, costs=with_costs, threads=th, gs=res["gradsparse"],
                               gs_torch=res.get("gradsparse[torch-in]"), torch=res.get("torch.topk"))
                    rows.append(row)
                    out(f"{fmt_ratio(r):>6} {'yes' if with_costs else 'no':>5} {th:>3} | {ms(med(row['gs'])):>10} "
                        f"{ms(med(row['gs_torch'])):>12} {ms(med(row['torch'])):>10} | "
                        f"{xf(ratio(row['torch'], row['gs'])):>8}{self.mark()}")
            del score
        out()
        return rows

    def _crosscheck_torchvision(self) -> None:
        try:
            import torchvision  # noqa: PLC0415
        except Exception:
            self.out("   (torchvision not installed: ResNet-18 shapes built from the architecture, not cross-checked)")
            return
        model = torchvision.models.resnet18(weights=None, num_classes=1000)
        want = [tuple(p.shape) for p in model.parameters()]
        got = [s for _, s in resnet18_shapes(num_classes=1000, cifar=False)]
        if want != got:
            raise VerificationError("resnet18 shapes disagree with torchvision.models.resnet18")
        self.out("   (ResNet-18 shape list cross-checked against torchvision.models.resnet18)")


# ----------------------------------------------------------------------------- summary

def summarize(out: Out, topk_rows, cwmp_rows, global_rows, big_sizes, have_torch: bool) -> Dict[str, Any]:
    """Summary lines with PASS/FAIL from medians; [min: ...] is the same figure from the fastest samples."""
    summ: Dict[str, Any] = {}
    out("== summary (from medians; [min: x] = same figure from the fastest samples; targets are informational)")

    def verdict(v: Optional[float], target: float, higher_better: bool) -> str:
        if v is None:
            return "SKIP"
        ok = v >= target if higher_better else v <= target
        return "PASS" if ok else "FAIL"

    def line(key: str, text: str, fn: Callable[[str], Optional[float]], target: float, higher: bool) -> None:
        v, vmin = fn("median_s"), fn("min_s")
        op = ">=" if higher else "<="
        val = "n/a" if v is None else f"{v:.2f}x"
        alt = "" if vmin is None else f"[min: {vmin:.2f}x]"
        out(f"  {text:<58} {val:>8} {alt:<15} (target {op} {target:g}x)  {verdict(v, target, higher)}")
        summ[key] = {"value": v, "value_from_min": vmin, "target": target, "higher_is_better": higher,
                     "verdict": verdict(v, target, higher)}

    def gm(rows, a, b):
        return lambda stat: geomean([ratio(r[a], r[b], stat) for r in rows if r[a] is not None and r[b] is not None])

    def worst(rows, a, b):
        return lambda stat: max((ratio(r[a], r[b], stat) for r in rows), default=None)

    sel = [r for r in topk_rows if r["n"] in big_sizes and r["ratio"] <= 0.01 + 1e-12]
    threads = sorted({r["threads"] for r in sel})
    out(f"  top-k cases: n in {{{', '.join(fmt_n(n) for n in big_sizes)}}} x k in "
        f"{{{', '.join(fmt_ratio(x) for x in sorted({r['ratio'] for r in sel}))}}}")
    if not have_torch:
        out("  torch.topk: skipped (torch not used)")
    for th in threads:
        line(f"speedup_vs_torch_{th}t", f"geo-mean speed-up vs torch.topk, {th} thread(s)",
             gm([r for r in sel if r["threads"] == th], "torch", "gs"), TARGETS["speedup_vs_torch"], True)
    line("speedup_vs_torch", "geo-mean speed-up vs torch.topk, overall", gm(sel, "torch", "gs"),
         TARGETS["speedup_vs_torch"], True)
    for th in threads:
        line(f"speedup_vs_numpy_{th}t", f"geo-mean speed-up vs np.argpartition, {th} thread(s)",
             gm([r for r in sel if r["threads"] == th], "numpy", "gs"), TARGETS["speedup_vs_numpy"], True)
    line("speedup_vs_numpy", "geo-mean speed-up vs np.argpartition, overall", gm(sel, "numpy", "gs"),
         TARGETS["speedup_vs_numpy"], True)
    one = [r for r in sel if r["threads"] == 1]
    # The floor is the fastest plain read seen for that n in any row: a read timed next to
    # one row can be slowed by what ran before it, which would flatter the ratio.
    floor: Dict[int, float] = {}
    for r in topk_rows:
        if r["read"] is not None:
            floor[r["n"]] = min(floor.get(r["n"], math.inf), r["read"]["min_s"])
    for r in one:
        r["read_floor"] = {"median_s": floor[r["n"]], "min_s": floor[r["n"]]}
    line("read_ratio", "1-thread gradsparse / fastest plain read, k <= 1% (worst case)",
         worst(one, "gs", "read_floor"), TARGETS["read_ratio"], False)
    if one:
        out("      per case: " + ", ".join(
            f"{fmt_n(r['n'])}/{fmt_ratio(r['ratio'])} {ratio(r['gs'], r['read_floor']):.2f}x "
            f"(read {1e3 * r['read_floor']['median_s']:.2f} ms)" for r in one))
    for kind, key, text in (("scalar", "cwmp_scalar_ratio", "CWMP per-tensor cost / plain top-k (worst case)"),
                            ("element", "cwmp_array_ratio", "CWMP per-element cost array / plain top-k (worst case)"),
                            ("prepared", "cwmp_prepared_ratio",
                             "CWMP per-element PreparedCost / plain top-k (worst case)")):
        rs = [r for r in cwmp_rows if r["cost"] == kind]
        line(key, text, worst(rs, "gs", "plain"), TARGETS[key], False)
        if rs:
            g = gm(rs, "gs", "plain")("median_s")
            tv = gm(rs, "torch", "gs")("median_s")
            out(f"      geo-mean ratio {g:.2f}x" + (f"; geo-mean speed-up vs torch {tv:.1f}x" if tv else ""))
            summ[f"cwmp_{kind}_ratio_geomean"] = g
            summ[f"cwmp_{kind}_speedup_vs_torch"] = tv
    plain = [r for r in global_rows if not r["costs"]]
    line("global_speedup", "ResNet-18 global speed-up vs torch (geo-mean, k x threads)", gm(plain, "torch", "gs"),
         TARGETS["global_speedup"], True)
    for th in sorted({r["threads"] for r in global_rows}):
        v = gm([r for r in plain if r["threads"] == th], "torch", "gs")("median_s")
        vc = gm([r for r in global_rows if r["costs"] and r["threads"] == th], "torch", "gs")("median_s")
        if v:
            out(f"      {th} thread(s): plain {v:.1f}x, per-tensor costs {vc:.1f}x")
    withc = [r for r in global_rows if r["costs"]]
    summ["global_costs_speedup"] = gm(withc, "torch", "gs")("median_s")
    return summ
