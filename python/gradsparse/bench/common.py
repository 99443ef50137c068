"""Shared pieces of the benchmark suites: data like gradients, timing, result checks against
exact references, option parsing, number formatting and a description of the machine."""
from __future__ import annotations

import argparse
import math
import os
import platform
import statistics
import time
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

import gradsparse as gs

BLOCK = 4096
SEED = 20240611
SCALAR_COST = 0.37
MIN_SAMPLE_S = 0.002  # calls shorter than this are looped within one sample
SOLO_WARMUP_S = 0.02  # untimed calls before a block of consecutive samples (Bench.group, solo)
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

def timeit(fn: Callable[[], object], repeats: int) -> float:
    """Median seconds of `repeats` calls of fn, after one untimed warm-up call."""
    fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


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
    """CPU seconds of this process and of its children that have ended (a suite's
    measurement subprocesses are not other processes' load)."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


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


def med(t: Optional[Dict[str, Any]], stat: str = "median_s") -> Optional[float]:
    return None if t is None else t[stat]


def ratio(a: Optional[Dict[str, Any]], b: Optional[Dict[str, Any]], stat: str = "median_s") -> Optional[float]:
    if a is None or b is None:
        return None
    return a[stat] / b[stat]
