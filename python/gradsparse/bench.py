"""gradsparse benchmark: ``python -m gradsparse.bench [--quick] [--suite all|select|wire|atomo] [--json PATH] ...``

Measures gradsparse against the usual baselines and checks every result first.

Cases (float32 data, numpy RNG seeded):

1. Magnitude top-k, n in {1e6, 1e7, 2.5e7}, k in {0.1%, 1%, 10%}, at 1 thread and at all
   threads: ``gradsparse.sparsify(x, k)`` vs ``torch.topk(t.abs(), k, sorted=False)`` +
   gather of the signed values, vs ``np.argpartition(np.abs(x), n-k)[n-k:]`` + gather
   (numpy is single-threaded: the same numpy time is reported in both thread rows).
   The floor is one plain single-thread read of the input, ``np.add.reduce(x)``.
2. CWMP (score |x|^2 / cost), per-tensor (scalar) cost and per-element float32 cost
   arrays, k in {0.1%, 1%}, n in {1e7, 2.5e7}: ``gradsparse.sparsify(x, k, cost=c)`` vs
   ``torch.topk(t.abs()**2 / c, k, sorted=False)`` + gather, and the ratio to plain
   gradsparse top-k on the same data (measured next to it). Per-element costs are timed
   twice: as the raw array (checked and read in full on every call: twice the bytes of
   plain top-k) and as a ``gradsparse.PreparedCost`` built once from the same array (the
   costs of a model stay the same from round to round; its one-time build is reported).
3. Global selection over the 62 gradient tensors of a CIFAR-10 ResNet-18 (11,173,962
   parameters; shapes built from the architecture, see :func:`resnet18_shapes`),
   k in {0.1%, 1%} of the total: ``gradsparse.sparsify_many(xs, k)`` vs
   ``torch.topk(torch.cat([t.flatten() for t in ts]).abs(), k, sorted=False)`` + gather,
   the cat counted in the time; and the same with one cost per tensor
   (``sparsify_many(xs, k, costs=[...])`` vs the cat of per-tensor ``|t|^2 / c``). torch's
   result is left as global indices (not split back per tensor, which would cost it more);
   gradsparse returns one Sparse per tensor. gs[torch-in] is gradsparse given the tensors.

(The wire-format benchmark -- bits per index and codec throughput -- is described in
:mod:`gradsparse.bench_wire`; ``--suite`` picks either part. ``--suite atomo`` runs the ATOMO
benchmark of :mod:`gradsparse.bench_atomo` instead -- SVD vs numpy/torch, real FFT vs
numpy.fft.rfft, end-to-end spectral ATOMO vs plain numpy; it is not part of ``all``.)

Data ("gradient-like"): a Gaussian scale mixture. Every block of 4096 consecutive elements
(about one conv filter bank / matrix row group) gets its own scale drawn from
lognormal(0, 1), multiplied by i.i.d. standard normal values. The marginal is symmetric
and heavy-tailed (kurtosis 3*e^4 ~ 164 in theory, ~70 measured at n = 2.5e7; 3 for a
normal), like real gradients whose magnitude varies a lot between channels/rows. ResNet tensors additionally get one
lognormal(0, 1) scale per tensor (layers differ in gradient size). Costs: scalar cost 0.37
(per tensor), per-element costs uniform in [0.5, 2) (float32); ResNet per-tensor costs
uniform in [0.5, 2).

Verification, before timing: gradsparse's index set must equal exactly the reference set
computed with numpy (magnitude / CWMP scores in float64, the k largest, equal scores
ranked by the lower index -- gradsparse's documented rule), and its values must be
``x[indices]`` bitwise. torch.topk and np.argpartition break ties arbitrarily, so they are
checked by the multiset of kept magnitudes (and by the exact index set when the k-th
magnitude is not tied); the torch CWMP baseline scores in float32, so it is checked
against the k largest of its own float32 scores. Any disagreement aborts (exit code 2).

Timing: the verified call is also the warm-up; then ``--repeats`` timed calls for
gradsparse and the plain read, ``max(3, repeats // 2)`` for the slow baselines (torch,
numpy). In one table row the slow baselines are timed first, each on its own; then the fast
implementations (gradsparse, the plain read, CWMP vs plain top-k) get one more untimed
warm-up round and are timed round-robin (one sample of each per round, the order rotated
every round), so that their ratios compare calls made under the same conditions. All
timings are warm-cache timings:
on a CPU with a large last-level cache the input may be served from it (the JSON records
the cache sizes), as for a gradient that was just written by the backward pass.
Calls shorter than 2 ms are repeated in a loop per sample (per-call time is reported).
Medians are reported (the summary also shows each figure from the fastest samples). The
CPU time other processes use while a row is timed is measured from /proc/stat; a row
disturbed by them is timed again (up to 3 attempts, the least disturbed one is kept) and is
marked ``*`` if it never ran undisturbed (2 attempts with --quick). The background load of
the whole run is printed.

Buffers: torch uses ``out=`` buffers for abs / topk / gather (``torch.index_select(t, 0,
idx, out=...)`` is the gather ``t[idx]`` without allocating);
``np.argpartition`` cannot reuse an output buffer, so numpy pays for a fresh n-element
int64 array (page faults included) each call; ``np.abs`` reuses one. gradsparse allocates
its (k-sized) outputs on every call, as its API does.

torch is imported lazily and only here; without torch (or with ``--no-torch``) the torch
columns are skipped and the output says so.
"""
from __future__ import annotations

import argparse
import datetime
import gc
import json
import math
import os
import platform
import statistics
import sys
import time
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

import gradsparse as gs

from . import bench_atomo, bench_wire

BLOCK = 4096
SEED = 20240611
SCALAR_COST = 0.37
MIN_SAMPLE_S = 0.002  # calls shorter than this are looped within one sample
MAX_ATTEMPTS = 3  # a table row disturbed by other processes is timed again, up to this often
RETRY_PAUSE_S = 0.5
TARGETS = {
    "speedup_vs_torch": 20.0,
    "speedup_vs_numpy": 5.0,
    "read_ratio": 1.6,
    "cwmp_scalar_ratio": 1.3,
    "cwmp_array_ratio": 2.0,
    "cwmp_prepared_ratio": 2.0,
    "global_speedup": 15.0,
}


class VerificationError(RuntimeError):
    """A benchmarked implementation returned a wrong selection."""


# ----------------------------------------------------------------------------- data

def gradient_like(n: int, rng: np.random.Generator) -> np.ndarray:
    """float32 Gaussian scale mixture: N(0, 1) * lognormal(0, 1) scale per 4096-block."""
    x = rng.standard_normal(n, dtype=np.float32)
    nblocks = -(-n // BLOCK)
    scales = np.exp(rng.standard_normal(nblocks)).astype(np.float32)
    full = n // BLOCK
    if full:
        body = x[: full * BLOCK].reshape(full, BLOCK)  # a view: scaled in place
        body *= scales[:full, None]
    if full * BLOCK < n:
        x[full * BLOCK:] *= scales[full]
    return x


def data_for(n: int) -> np.ndarray:
    return gradient_like(n, np.random.default_rng([SEED, n]))


def element_costs(n: int) -> np.ndarray:
    rng = np.random.default_rng([SEED, n, 1])
    return rng.uniform(0.5, 2.0, n).astype(np.float32)


def resnet18_shapes(num_classes: int = 10, cifar: bool = True) -> List[Tuple[str, Tuple[int, ...]]]:
    """(name, shape) of every trainable tensor of ResNet-18 in ``model.parameters()`` order.

    cifar=True: the CIFAR variant (3x3 stem conv, no max-pool, 10 classes): 62 tensors,
    11,173,962 parameters. cifar=False with 1000 classes is torchvision's resnet18 (7x7
    stem): 62 tensors, 11,689,512 parameters. Convolutions have no bias; every BatchNorm
    has a weight and a bias; the fc layer has both.
    """
    shapes: List[Tuple[str, Tuple[int, ...]]] = []

    def conv(name: str, cout: int, cin: int, ks: int) -> None:
        shapes.append((f"{name}.weight", (cout, cin, ks, ks)))

    def bn(name: str, c: int) -> None:
        shapes.append((f"{name}.weight", (c,)))
        shapes.append((f"{name}.bias", (c,)))

    conv("conv1", 64, 3, 3 if cifar else 7)
    bn("bn1", 64)
    cin = 64
    for stage, cout in enumerate((64, 128, 256, 512), start=1):
        for b in range(2):
            stride = 2 if (stage > 1 and b == 0) else 1
            p = f"layer{stage}.{b}"
            conv(f"{p}.conv1", cout, cin, 3)
            bn(f"{p}.bn1", cout)
            conv(f"{p}.conv2", cout, cout, 3)
            bn(f"{p}.bn2", cout)
            if stride != 1 or cin != cout:
                conv(f"{p}.downsample.0", cout, cin, 1)
                bn(f"{p}.downsample.1", cout)
            cin = cout
    shapes.append(("fc.weight", (num_classes, 512)))
    shapes.append(("fc.bias", (num_classes,)))
    return shapes


def resnet_data(shapes) -> List[np.ndarray]:
    rng = np.random.default_rng([SEED, 18])
    out = []
    for _, shape in shapes:
        n = int(np.prod(shape))
        layer_scale = np.float32(math.exp(rng.standard_normal()))
        out.append((gradient_like(n, rng) * layer_scale).reshape(shape))
    return out


# ----------------------------------------------------------------------------- timing

def timed_call(fn: Callable[[], Any]) -> Tuple[Any, float]:
    t0 = time.perf_counter()
    res = fn()
    return res, time.perf_counter() - t0


# ----------------------------------------------------------------------------- references

def exact_reference(score: np.ndarray, k: int) -> Tuple[np.ndarray, bool]:
    """Ascending indices of the k largest scores, equal scores ranked by the lower index;
    and whether the k-th score is tied with an element left out."""
    n = score.size
    part = np.argpartition(score, n - k)[n - k:]
    thr = score[part].min()
    gt = np.flatnonzero(score > thr)
    eq = np.flatnonzero(score == thr)
    need = k - gt.size
    if not (0 < need <= eq.size):
        raise VerificationError(f"reference: inconsistent partition (need {need}, {eq.size} tied)")
    ref = np.sort(np.concatenate([gt, eq[:need]]))
    return ref, eq.size > need


def check_gradsparse(label: str, idx: np.ndarray, vals: np.ndarray, x: np.ndarray, ref: np.ndarray) -> None:
    idx = np.asarray(idx)
    vals = np.asarray(vals)
    if idx.shape != ref.shape:
        raise VerificationError(f"{label}: gradsparse kept {idx.size} elements, reference {ref.size}")
    if idx.size > 1 and not np.all(idx[1:] > idx[:-1]):
        raise VerificationError(f"{label}: gradsparse indices are not strictly ascending")
    if not np.array_equal(idx, ref):
        bad = np.setdiff1d(ref, idx).size
        raise VerificationError(f"{label}: gradsparse index set differs from the exact reference "
                                f"({bad} of {ref.size} reference indices missing)")
    if not np.array_equal(vals.view(np.uint32), x[ref].view(np.uint32)):
        raise VerificationError(f"{label}: gradsparse values are not x[indices]")


def check_baseline(label: str, impl: str, idx: np.ndarray, vals: np.ndarray, x: np.ndarray,
                   kept_sorted: np.ndarray, ref: Optional[np.ndarray], tied: bool) -> None:
    """An arbitrary-tie-break selection: same kept-magnitude multiset, values = x[idx]."""
    idx = np.asarray(idx).astype(np.int64, copy=False)
    if idx.size != kept_sorted.size or np.unique(idx).size != idx.size:
        raise VerificationError(f"{label}: {impl} returned {idx.size} indices "
                                f"({np.unique(idx).size} distinct), expected {kept_sorted.size}")
    if not np.array_equal(np.asarray(vals).view(np.uint32), x[idx].view(np.uint32)):
        raise VerificationError(f"{label}: {impl} gathered values are not x[indices]")
    if not np.array_equal(np.sort(np.abs(x[idx])), kept_sorted):
        raise VerificationError(f"{label}: {impl} kept magnitudes differ from the reference top-k")
    if ref is not None and not tied and not np.array_equal(np.sort(idx), ref):
        raise VerificationError(f"{label}: {impl} index set differs from the reference (no ties)")


def check_own_scores(label: str, impl: str, kept_scores: np.ndarray, scores: np.ndarray, k: int) -> None:
    n = scores.size
    want = np.sort(np.partition(scores, n - k)[n - k:])
    if not np.array_equal(np.sort(kept_scores), want):
        raise VerificationError(f"{label}: {impl} did not keep the k largest of its own scores")


# ----------------------------------------------------------------------------- helpers

def parse_sizes(text: str) -> List[int]:
    out = []
    for tok in text.split(","):
        tok = tok.strip()
        if tok:
            v = float(tok)
            if v < 1 or v != int(v):
                raise argparse.ArgumentTypeError(f"bad size {tok!r}")
            out.append(int(v))
    if not out:
        raise argparse.ArgumentTypeError("no sizes")
    return out


def parse_ratios(text: str) -> List[float]:
    out = []
    for tok in text.split(","):
        tok = tok.strip()
        if tok:
            pct = tok.endswith("%")
            v = float(tok[:-1]) / 100 if pct else float(tok)
            if not 0 < v <= 1:
                raise argparse.ArgumentTypeError(f"bad ratio {tok!r}")
            out.append(v)
    if not out:
        raise argparse.ArgumentTypeError("no ratios")
    return out


def all_threads() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def parse_threads(text: str) -> List[int]:
    out: List[int] = []
    for tok in text.split(","):
        tok = tok.strip().lower()
        if not tok:
            continue
        v = all_threads() if tok == "all" else int(tok)
        if v < 1:
            raise argparse.ArgumentTypeError(f"bad thread count {tok!r}")
        if v not in out:
            out.append(v)
    if not out:
        raise argparse.ArgumentTypeError("no thread counts")
    return out


def fmt_n(n: int) -> str:
    if n < 1000:
        return str(n)
    e = int(math.floor(math.log10(n)))
    m = n / 10**e
    return f"{m:g}e{e}" if abs(m * 100 - round(m * 100)) < 1e-9 else str(n)


def fmt_ratio(r: float) -> str:
    return f"{r * 100:g}%"


def ms(t: Optional[float]) -> str:
    if t is None:
        return "-"
    v = t * 1e3
    return f"{v:.3g}" if v < 100 else f"{v:.0f}"


def xf(v: Optional[float]) -> str:
    return "-" if v is None else (f"{v:.2f}x" if v < 10 else f"{v:.1f}x")


def geomean(vals: Sequence[float]) -> Optional[float]:
    vals = [v for v in vals if v is not None]
    if not vals:
        return None
    return math.exp(sum(math.log(v) for v in vals) / len(vals))


def cpu_model() -> Optional[str]:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, val = line.partition(":")
                if key.strip() in ("model name", "Model", "Hardware", "cpu model"):
                    return val.strip()
    except OSError:
        pass
    return platform.processor() or None


def cpu_caches() -> Dict[str, str]:
    """Cache sizes of cpu0 from sysfs, e.g. {'L1d': '48K', 'L2': '2048K', 'L3': '491520K'}."""
    caches: Dict[str, str] = {}
    base = "/sys/devices/system/cpu/cpu0/cache"
    try:
        for entry in sorted(os.listdir(base)):
            if not entry.startswith("index"):
                continue
            def rd(name: str) -> str:
                with open(os.path.join(base, entry, name)) as f:
                    return f.read().strip()
            kind = rd("type")
            key = f"L{rd('level')}" + ({"Data": "d", "Instruction": "i"}.get(kind, ""))
            caches[key] = rd("size")
    except OSError:
        pass
    return caches


def mem_total() -> Optional[str]:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


def core_info() -> Dict[str, Any]:
    """Path, size and sha256 of the compiled core that was benchmarked."""
    import hashlib  # noqa: PLC0415

    path = getattr(getattr(gs, "_core", None), "__file__", None)
    info: Dict[str, Any] = {"file": path}
    try:
        with open(path, "rb") as f:
            data = f.read()
        info.update(size=len(data), sha256=hashlib.sha256(data).hexdigest())
    except (OSError, TypeError):
        pass
    return info


def load_avg() -> Optional[List[float]]:
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except (AttributeError, OSError):
        return None


def busy_cpu_s() -> Optional[float]:
    """CPU seconds all processes have been busy since boot (from /proc/stat), or None."""
    try:
        with open("/proc/stat") as f:
            fields = f.readline().split()
        if fields[0] != "cpu":
            return None
        vals = [int(v) for v in fields[1:]]
        busy = sum(vals[:3]) + sum(vals[5:8])  # user nice system (idle iowait skipped) irq softirq steal
        return busy / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, AttributeError):
        return None


def disturbed(other_cpu_s: float, wall_s: float) -> bool:
    """Whether other processes used a noticeable share of the CPU (/proc/stat counts in
    10 ms ticks, hence the fixed allowance)."""
    return other_cpu_s > 0.03 + 0.1 * wall_s


def own_cpu_s() -> float:
    t = os.times()
    return t.user + t.system


def load_torch(disabled: bool):
    if disabled:
        return None, "disabled by --no-torch"
    try:
        import torch  # noqa: PLC0415  (lazy on purpose: gradsparse never needs torch)
    except Exception as exc:  # ImportError, or a broken install
        return None, f"not available ({type(exc).__name__}: {exc})"
    return torch, None


class Out:
    def __init__(self) -> None:
        self.lines: List[str] = []

    def __call__(self, text: str = "") -> None:
        print(text, flush=True)
        self.lines.append(text)


# ----------------------------------------------------------------------------- the bench

class Cand:
    """One implementation measured inside a group: fn() is timed, check(result) verifies."""

    def __init__(self, impl: str, fn: Callable[[], Any], check: Callable[[Any], None], repeats: int,
                 solo: bool = False, **fields: Any):
        self.impl, self.fn, self.check, self.repeats, self.fields = impl, fn, check, repeats, fields
        self.solo = solo  # a slow baseline: timed in its own consecutive run, not round-robin


def med(t: Optional[Dict[str, Any]], stat: str = "median_s") -> Optional[float]:
    return None if t is None else t[stat]


def ratio(a: Optional[Dict[str, Any]], b: Optional[Dict[str, Any]], stat: str = "median_s") -> Optional[float]:
    if a is None or b is None:
        return None
    return a[stat] / b[stat]


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


# ----------------------------------------------------------------------------- main

def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m gradsparse.bench",
                                description="Benchmark gradsparse against torch.topk and np.argpartition "
                                            "(results verified before timing).")
    p.add_argument("--quick", action="store_true",
                   help="small sizes and few repeats (CI smoke test, < 30 s)")
    p.add_argument("--sizes", type=parse_sizes, default=None,
                   help="comma-separated n for the top-k case (default 1e6,1e7,2.5e7; --quick: 1e5,1e6)")
    p.add_argument("--ratios", type=parse_ratios, default=None,
                   help="comma-separated k/n (e.g. 0.001,0.01,0.1 or 0.1%%,1%%,10%%; default 0.001,0.01,0.1)")
    p.add_argument("--threads", type=parse_threads, default=None,
                   help='comma-separated thread counts, "all" = every usable core (default "1,all")')
    p.add_argument("--repeats", type=int, default=None,
                   help="timed calls per gradsparse measurement (default 7, --quick 3); slow baselines "
                        "get max(3, repeats // 2)")
    p.add_argument("--json", default="bench-results/bench.json", metavar="PATH",
                   help="where to write all measurements (default bench-results/bench.json)")
    p.add_argument("--no-torch", action="store_true", help="skip the torch baselines")
    p.add_argument("--suite", choices=("all", "select", "wire", "atomo"), default="all",
                   help="which benchmarks: selection (top-k, CWMP, global), wire format, both (all, the "
                        "default), or the ATOMO benchmark (SVD, FFT, end to end; not part of all)")
    return p


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    if args.sizes is None:
        args.sizes = [100_000, 1_000_000] if args.quick else [1_000_000, 10_000_000, 25_000_000]
    if args.ratios is None:
        args.ratios = [0.001, 0.01, 0.1]
    if args.threads is None:
        args.threads = parse_threads("1,all")
    if args.repeats is None:
        args.repeats = 3 if args.quick else 7
    if args.repeats < 1:
        raise SystemExit("--repeats: must be >= 1")

    out = Out()
    t_start = time.perf_counter()
    busy0, own0 = busy_cpu_s(), own_cpu_s()
    torch, why_not = load_torch(args.no_torch)
    default_threads = gs.get_num_threads()
    torch_threads0 = torch.get_num_threads() if torch is not None else None

    big = [n for n in args.sizes if n >= 10_000_000] or [max(args.sizes)]
    cwmp_sizes = big
    small_ratios = [r for r in args.ratios if r <= 0.01 + 1e-12] or [min(args.ratios)]
    # the global case needs k >= 1 per ratio; quick mode uses the same ResNet-18 shapes

    cfg = gs.config()
    meta = {
        "timestamp": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "gradsparse_config": cfg,
        "gradsparse_file": getattr(gs, "__file__", None),
        "gradsparse_core": core_info(),
        "numpy": np.__version__,
        "torch": getattr(torch, "__version__", None),
        "torch_status": why_not or "used",
        "torch_default_threads": torch_threads0,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu_model": cpu_model(),
        "logical_cpus": os.cpu_count(),
        "usable_cpus": all_threads(),
        "mem_total": mem_total(),
        "cpu_caches": cpu_caches(),
        "loadavg_start": load_avg(),
    }
    out(f"gradsparse {cfg['version']} bench  |  SIMD {cfg['simd_level']} (available: "
        f"{', '.join(cfg['simd_available'])})  |  threads {args.threads}  |  repeats {args.repeats} "
        f"(baselines {max(3, args.repeats // 2)})")
    caches = ", ".join(f"{k} {v}" for k, v in meta["cpu_caches"].items() if k[:2] in ("L2", "L3"))
    out(f"cpu: {meta['cpu_model']} ({meta['usable_cpus']} usable cpus{', ' + caches if caches else ''}), "
        f"mem {meta['mem_total']}  |  "
        f"python {meta['python']}, numpy {np.__version__}, torch {meta['torch'] or '-'}  |  "
        f"load avg {meta['loadavg_start']}")
    if torch is None:
        hint = "" if args.no_torch else ('; for the torch.topk comparison install the bench extra: '
                                          'pip install "gradsparse[bench]" (from a checkout: pip install ".[bench]")')
        out(f"torch: {why_not} -- torch baselines skipped{hint}")
    out("data: float32, N(0,1) x lognormal(0,1) scale per 4096-element block (heavy-tailed, gradient-like), "
        f"seed {SEED}")
    out()

    bench = Bench(args, torch, out)
    summ: Dict[str, Any] = {}
    status = "ok"
    error = None
    wire: Dict[str, Any] = {}
    atomo_res: Dict[str, Any] = {}
    try:
        if args.suite in ("all", "select"):
            topk_rows = bench.topk_case(args.sizes, args.ratios, args.threads)
            cwmp_rows = bench.cwmp_case(cwmp_sizes, small_ratios, args.threads)
            global_rows = bench.global_case(small_ratios, args.threads)
            summ = summarize(out, topk_rows, cwmp_rows, global_rows, big, torch is not None)
            if args.quick or max(args.sizes) < 10_000_000:
                out("  (note: the targets are meant for n >= 1e7; this run's top-k sizes are smaller)")
        if args.suite in ("all", "wire"):
            if args.suite == "all":
                out()
            wire = bench_wire.run(out, quick=args.quick, repeats=args.repeats)
        if args.suite == "atomo":
            atomo_res = bench_atomo.run(out, quick=args.quick, repeats=args.repeats,
                                        torch=torch if torch is not None else None)
    except (VerificationError, bench_wire.WireVerificationError, bench_atomo.AtomoVerificationError) as exc:
        status = "verification failed"
        error = str(exc)
    finally:
        gs.set_num_threads(default_threads)
        if torch is not None and torch_threads0 is not None:
            torch.set_num_threads(torch_threads0)

    elapsed = time.perf_counter() - t_start
    meta["loadavg_end"] = load_avg()
    busy1, own1 = busy_cpu_s(), own_cpu_s()
    background = None
    if busy0 is not None and busy1 is not None and elapsed > 0:
        background = max(0.0, ((busy1 - busy0) - (own1 - own0)) / elapsed)
    meta["background_cores_busy"] = background
    meta["disturbed_rows"] = bench.disturbed_rows
    meta["retimings"] = bench.attempts_total - bench.groups
    payload = {
        "status": status,
        "error": error,
        "meta": meta,
        "settings": {
            "quick": args.quick, "sizes": args.sizes, "ratios": args.ratios, "threads": args.threads,
            "repeats": args.repeats, "baseline_repeats": max(3, args.repeats // 2), "cwmp_sizes": cwmp_sizes,
            "small_ratios": small_ratios, "summary_sizes": big, "seed": SEED, "block": BLOCK,
            "scalar_cost": SCALAR_COST,
            "data": "float32 standard normal x lognormal(0,1) scale per 4096-element block; ResNet tensors x an "
                    "extra lognormal(0,1) per-tensor scale; per-element costs U[0.5,2) float32; ResNet "
                    "per-tensor costs U[0.5,2)",
            "timing": "perf_counter per call; first (verified) call is the warm-up; the implementations of "
                      "one table row are sampled round-robin; calls < 2 ms looped per sample; gc disabled "
                      "while timing",
        },
        "targets": TARGETS,
        "verified": bench.verified,
        "results": bench.results,
        "summary": summ,
        "wire": wire,
        "atomo": atomo_res,
        "elapsed_s": elapsed,
        "printed": out.lines,
    }
    if args.json:
        d = os.path.dirname(args.json)
        if d:
            os.makedirs(d, exist_ok=True)
        with open(args.json, "w") as f:
            json.dump(payload, f, indent=1, default=str)
    if error is not None:
        print(f"\nERROR: verification failed, benchmark aborted: {error}", file=sys.stderr, flush=True)
        if args.json:
            print(f"partial results written to {args.json}", file=sys.stderr)
        return 2
    if background is not None:
        warn = "  WARNING: other processes competed for the CPU; timings are noisy" if background > 0.15 else ""
        out(f"\nbackground load (other processes) during the run: {background:.2f} cores on average{warn}")
    out(f"re-timings because other processes were busy: {bench.attempts_total - bench.groups}; rows still "
        f"disturbed after {bench.max_attempts} attempts (marked *): {bench.disturbed_rows}")
    out(f"{len(bench.verified) + len(wire.get('verified', [])) + len(atomo_res.get('verified', []))} results verified; total time {elapsed:.0f} s; JSON: {args.json or '-'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
