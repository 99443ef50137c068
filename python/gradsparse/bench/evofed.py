"""The EvoFed benchmark (``python -m gradsparse.bench --suite evofed [--quick]``).

One EvoFed round in simulation, "encode + decode", for K = 5 clients: the fitness of the K
client updates against the antithetic population (z-score shaping and the weight term, in
the official order, so theta is needed), the server's unweighted mean over the clients, and
the update ``g = (1/(N sigma)) sum_j F_j z_j``. Cases (official settings of sigma and w):
(d = 11,274, N = 128) as FMNIST's CNN; (d = 2,309,770, N = 32) as the CIFAR CNN; and the
latter with P = 200 partitions, shared noise (one noise block reused for every chunk, as
the official code does). gradsparse runs through :mod:`gradsparse.evofed` (``fitness``,
mean, ``gradient``): it regenerates its noise from the counter-based generator and never
holds the population. Against it, in the same run:

(a) official-style numpy: the (N, d) population noise as input; inside the timed call the
    members ``x = theta + sigma z`` (N, d), the clients' models ``theta + delta_k``, the
    per-client differences (K, N, d) and their squares (K, N, d) -- the two (K, N, d)
    temporaries of the official JAX code --, per-chunk sums (float32, pairwise), the mean of
    ``x**2`` for the weight term, shaping, mean, and ``F @ z`` per chunk.
(b) the best numpy we could write with the population materialised: it holds only the
    distinct noise -- the N/2 positive members (N/2, d), the negative half being their
    negation; with shared noise the one (N/2, m) block -- and makes one pass over it in
    cache-sized column steps: ``||z_j||^2`` (einsum) and ``z @ [delta; theta]^T`` (GEMM),
    float32 within a step and float64 across steps (one float32 sum over d is not accurate
    enough: the fitness differences are ~1e-3 of the distances); then
    ``||sigma z - delta||^2 = sigma^2 ||z||^2 - 2 sigma z.delta + ||delta||^2`` for both
    halves, shaping, mean, and the update as one GEMV with the antithetic coefficients
    ``F_j - F_{H+j}``. With shared noise the deltas and theta are laid out as (P, m) rows
    (a short chunk's missing last element zero), so one GEMM serves every chunk, and the
    update is one (P, N/2) x (N/2, m) GEMM.
(c) the physical floor: the N/2 * m distinct normals (m = d, or the block length with shared
    noise) generated once with the library's own generator (``_core.evofed_noise``, member
    by member into one reused buffer), one read of the K deltas and theta (``np.add.reduce``,
    one thread) and one write of the update (into a reused buffer).

Data: theta = 0.05 x and each delta_k = 0.01 x gradient-like values (common.gradient_like:
N(0, 1) times a lognormal scale per 4096-element block), seeded; noise seed SEED, round 3.

The baselines take their noise from the library's generator. A round's population is new
(it is keyed by the round), so a materialising implementation must build it every round:
(a) and (b) are timed with their population's generation inside (at gradsparse's thread
count), like gradsparse and the floor, into population buffers allocated once outside the
timed region (reused from round to round: no page faults of fresh memory are timed). Row (b') times (b) with the population given (built
outside the timed region): the cost of the arithmetic alone, a lower bound no real round
reaches, shown so that the two parts of (b) can be told apart. Before timing,
(a) and (b) must equal gradsparse: the averaged fitness F to ``F_ATOL`` (absolute; F is
z-scored, O(1)) and the update to ``G_RTOL`` (relative L2 norm); the floor's buffer must hold
the population's last member. A mismatch aborts.

Per case and implementation: wall time and process CPU time (``time.process_time``: all
threads) per call, medians; gradsparse and the floor at each thread count, timed
round-robin; numpy/BLAS at its own default threads; every timing starts after a short
pause (BLAS worker threads spin for a while after a call: their CPU time would be billed to
whatever is timed next). Peak extra memory: each implementation
runs once in a fresh subprocess after a tiny warm-up of the same implementation; its peak
RSS is reset (``/proc/self/clear_refs``) once the inputs (theta, deltas) exist, and the
figure is the peak RSS (VmHWM) minus the RSS at that point -- so (a) and (b) include the
noise they hold, and every implementation its output. (At small d it is a lower bound:
allocations below the allocator's mmap threshold may reuse heap pages freed earlier.)
"""
from __future__ import annotations

import dataclasses
import gc
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

import gradsparse as gs
from gradsparse import _core, evofed

from .common import (
    MAX_ATTEMPTS,
    MIN_SAMPLE_S,
    SEED,
    Out,
    busy_cpu_s,
    disturbed,
    gradient_like,
    own_cpu_s,
)

__all__ = ["Case", "CASES", "QUICK_CASES", "EvofedVerificationError", "run"]

K = 5  # clients
ROUND = 3
THETA_SCALE, DELTA_SCALE = 0.05, 0.01  # times gradient-like data (common.gradient_like)
# Tolerances of the check against gradsparse: (a) sums float32 squares as the official code
# does, and the antithetic fitness differences are ~1e-3 of the distances, so its update is
# ~2e-4 (relative) from a float64 reference at d = 2.3M; a wrong sign or shaping step is O(1).
F_ATOL = 1e-3  # max |F - F_gradsparse|: F is z-scored (O(1))
G_RTOL = 1e-3  # ||g - g_gradsparse|| / ||g_gradsparse||
TARGET_CASE = "cifar"
TARGETS = {"cpu_s": 0.2, "vs_official": 20.0, "vs_numpy": 1.0, "vs_floor": 2.0, "memory_vectors": 4}
SETTLE_S = 0.2  # pause before timing: numpy's BLAS threads spin a while after a call (billed as CPU time)
IMPLS = ("gradsparse", "official", "numpy", "numpy-given", "floor")
LABELS = {"gradsparse": "gradsparse", "official": "(a) official-style numpy", "numpy": "(b) best numpy",
          "numpy-given": "(b') best numpy, noise given", "floor": "(c) floor: noise + read + write"}


class EvofedVerificationError(RuntimeError):
    """An implementation's fitness or update differed from gradsparse's before timing."""


@dataclasses.dataclass(frozen=True)
class Case:
    """One benchmark case: d parameters, population N, P partitions (shared noise when P > 1)."""
    name: str
    d: int
    n: int
    p: int
    sigma: float
    weight: float

    @property
    def half(self) -> int:
        return self.n // 2


CASES = [Case("fmnist", 11_274, 128, 1, 0.35, 0.0152),
         Case("cifar", 2_309_770, 32, 1, 0.4204, 0.0692),
         Case("cifar-p200", 2_309_770, 32, 200, 0.4204, 0.0692)]
QUICK_CASES = [Case("quick", 20_000, 16, 1, 0.35, 0.0152), Case("quick-p7", 20_000, 16, 7, 0.4204, 0.0692)]


@dataclasses.dataclass
class Inputs:
    """theta (d,), deltas (K, d) and the chunk layout: bounds (P+1,), sizes (P,), block
    length m = max size, valid (P, m): element t of a chunk's padded row exists."""
    theta: np.ndarray
    deltas: np.ndarray
    bounds: np.ndarray
    sizes: np.ndarray
    m: int
    valid: np.ndarray


def make_inputs(case: Case) -> Inputs:
    theta = gradient_like(case.d, np.random.default_rng([SEED, case.d, 0])) * np.float32(THETA_SCALE)
    deltas = gradient_like(K * case.d, np.random.default_rng([SEED, case.d, 1])).reshape(K, case.d)
    deltas *= np.float32(DELTA_SCALE)
    bounds = (np.arange(case.p + 1, dtype=np.int64) * case.d) // case.p  # the contract's chunk rule
    sizes = np.diff(bounds)
    m = int(sizes.max())
    return Inputs(theta, deltas, bounds, sizes, m, np.arange(m)[None, :] < sizes[:, None])


# ----------------------------------------------------------------------------- noise (outside timing)

def noise_block(case: Case, m: int, out: Optional[np.ndarray] = None) -> np.ndarray:
    """The distinct noise, (N/2, m): member j's noise at indices 0..m-1 (P = 1: m = d, the
    positive half of the population; shared noise: the block every chunk reuses), written
    into `out` when given (a buffer reused from round to round)."""
    blk = np.empty((case.half, m), np.float32) if out is None else out
    for j in range(case.half):
        _core.evofed_noise(SEED, ROUND, j, 0, blk[j])
    return blk


def population(case: Case, inp: Inputs, out: Optional[np.ndarray] = None) -> np.ndarray:
    """The (N, d) population noise as the official code holds it (chunk rule applied),
    written into `out` when given (a buffer reused from round to round)."""
    z = np.empty((case.n, case.d), np.float32) if out is None else out
    if case.p == 1:
        for j in range(case.half):
            _core.evofed_noise(SEED, ROUND, j, 0, z[j])
    else:
        blk = noise_block(case, inp.m)
        for c in range(case.p):
            z[:case.half, inp.bounds[c]:inp.bounds[c + 1]] = blk[:, :inp.sizes[c]]
    np.negative(z[:case.half], out=z[case.half:])
    return z


# ----------------------------------------------------------------------------- implementations

def run_gradsparse(case: Case, inp: Inputs) -> Tuple[np.ndarray, np.ndarray]:
    pop = evofed.Population(case.n, case.sigma, seed=SEED, partitions=case.p, shared_noise=True)
    f = evofed.fitness(pop, ROUND, inp.deltas, inp.theta, evofed.Shaping(zscore=True, weight=case.weight))
    F = f.mean(axis=0)
    return F, evofed.gradient(pop, ROUND, F, case.d)


def shape(dist: np.ndarray, l2: np.ndarray, weight: float) -> np.ndarray:
    """Official order after the sign flip (+distances): z-score per client and chunk over the
    N members (population std), then the weight term -w * mean(x**2). dist (K, P, N), l2 (P, N)."""
    z = (dist - dist.mean(axis=2, keepdims=True)) / dist.std(axis=2, keepdims=True)
    return z - weight * l2[None]


def run_official(case: Case, inp: Inputs, z: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """(a): materialises the members and two (K, N, d) temporaries, as the official code."""
    starts = inp.bounds[:-1]
    x = inp.theta + np.float32(case.sigma) * z                    # (N, d) members
    targets = inp.theta + inp.deltas                               # (K, d) the clients' models
    diff = x[None, :, :] - targets[:, None, :]                     # (K, N, d)
    sq = diff * diff                                               # (K, N, d)
    dist = np.sqrt(np.add.reduceat(sq, starts, axis=2).astype(np.float64))  # (K, N, P)
    del diff, sq
    l2 = np.add.reduceat(x * x, starts, axis=1).astype(np.float64) / inp.sizes  # (N, P)
    F = shape(dist.transpose(0, 2, 1), l2.T, case.weight).mean(axis=0)           # (P, N)
    g = np.empty(case.d, np.float32)
    scale = 1.0 / (case.n * case.sigma)
    for c in range(case.p):
        lo, hi = inp.bounds[c], inp.bounds[c + 1]
        g[lo:hi] = (F[c] * scale).astype(np.float32) @ z[:, lo:hi]
    return F, g


BLOCK = 8192  # columns per step of (b)'s pass over the noise: the step's noise stays in cache


def sumsq_rows(a: np.ndarray) -> np.ndarray:
    """Row sums of squares in float64: float32 einsum per BLOCK columns, summed in float64."""
    acc = np.zeros(a.shape[0])
    for lo in range(0, a.shape[1], BLOCK):
        blk = a[:, lo:lo + BLOCK]
        acc += np.einsum("ij,ij->i", blk, blk)
    return acc


def noise_stats(blk: np.ndarray, mats: Sequence[np.ndarray]) -> Tuple[np.ndarray, List[np.ndarray]]:
    """One pass over the noise blk (H, m) in BLOCK-column steps: ||z_j||^2 (H,) and blk @ a^T
    (H, rows) for each a (rows, m) in mats; float32 per step, float64 across steps."""
    zz = np.zeros(blk.shape[0])
    prods = [np.zeros((blk.shape[0], a.shape[0])) for a in mats]
    for lo in range(0, blk.shape[1], BLOCK):
        b = blk[:, lo:lo + BLOCK]
        zz += np.einsum("ij,ij->i", b, b)
        for p, a in zip(prods, mats):
            p += b @ a[:, lo:lo + BLOCK].T
    return zz, prods


def run_numpy(case: Case, inp: Inputs, blk: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """(b): the distinct noise blk (N/2, m) materialised; fitness from z @ delta^T."""
    s, H, P, m = case.sigma, case.half, case.p, inp.m
    if P == 1:
        zz, (zd, zt) = noise_stats(blk, [inp.deltas, inp.theta[None]])
        zd, zt, zz = zd.T[:, None, :], zt.T, zz[None, :]             # (K, 1, H), (1, H), (1, H)
        dd = sumsq_rows(inp.deltas)[:, None]                        # (K, 1)
        tt = sumsq_rows(inp.theta[None])                            # (1,)
    else:
        rows = np.empty((K + 1, P, m), np.float32)                  # deltas and theta in (P, m) rows
        for c in range(P):
            lo, hi = inp.bounds[c], inp.bounds[c + 1]
            rows[:K, c, :hi - lo] = inp.deltas[:, lo:hi]
            rows[K, c, :hi - lo] = inp.theta[lo:hi]
            rows[:, c, hi - lo:] = 0.0                              # a short chunk's padding
        zz, (prod,) = noise_stats(blk, [rows.reshape((K + 1) * P, m)])
        prod = prod.T.reshape(K + 1, P, H)
        zd, zt = prod[:K], prod[K]
        last = blk[:, m - 1].astype(np.float64) ** 2                # short chunks lack element m-1
        zz = zz[None, :] - (inp.sizes < m)[:, None] * last[None, :]  # (P, H)
        sums = np.einsum("rpm,rpm->rp", rows, rows).astype(np.float64)
        dd, tt = sums[:K], sums[K]
    base = s * s * zz[None] + dd[:, :, None]                        # (K, P, H)
    dist = np.sqrt(np.concatenate([base - 2 * s * zd, base + 2 * s * zd], axis=2))  # (K, P, N)
    sz = s * s * zz + tt[:, None]
    l2 = np.concatenate([sz + 2 * s * zt, sz - 2 * s * zt], axis=1) / inp.sizes[:, None]  # (P, N)
    F = shape(dist, l2, case.weight).mean(axis=0)
    coef = ((F[:, :H] - F[:, H:]) / (case.n * s)).astype(np.float32)  # (P, H)
    if P == 1:
        return F, coef[0] @ blk
    return F, (coef @ blk)[inp.valid]


def run_floor(case: Case, inp: Inputs, buf: np.ndarray, out: np.ndarray) -> float:
    """(c): the distinct normals once (into buf), one read of deltas and theta, one write of out."""
    for j in range(case.half):
        _core.evofed_noise(SEED, ROUND, j, 0, buf)
    total = float(np.add.reduce(inp.deltas.reshape(-1))) + float(np.add.reduce(inp.theta))
    out.fill(0.0)
    return total


# ----------------------------------------------------------------------------- verification

def check(case: Case, impl: str, got: Tuple[np.ndarray, np.ndarray], want: Tuple[np.ndarray, np.ndarray],
          verified: List[str]) -> Dict[str, float]:
    (F, g), (F0, g0) = got, want
    if F.shape != F0.shape or g.shape != g0.shape or g.dtype != np.float32:
        raise EvofedVerificationError(f"{case.name}: {impl} returned F {F.shape}, g {g.shape} {g.dtype}; "
                                      f"gradsparse F {F0.shape}, g {g0.shape} float32")
    f_err = float(np.abs(F - F0).max())
    g_err = float(np.linalg.norm(g.astype(np.float64) - g0) / np.linalg.norm(g0.astype(np.float64)))
    if not (f_err <= F_ATOL and g_err <= G_RTOL):
        raise EvofedVerificationError(f"{case.name}: {impl} differs from gradsparse: max |dF| {f_err:.3g} "
                                      f"(tolerance {F_ATOL:g}), relative |dg| {g_err:.3g} (tolerance {G_RTOL:g})")
    verified.append(f"evofed:{case.name}:{impl}")
    return {"max_abs_dF": f_err, "rel_dg": g_err}


# ----------------------------------------------------------------------------- timing

def _loops(fn: Callable[[], Any]) -> int:
    t0 = time.perf_counter()
    fn()
    dt = time.perf_counter() - t0
    return 1 if dt >= MIN_SAMPLE_S else int(min(1000, -(-MIN_SAMPLE_S // max(dt, 1e-7))))


def measure(fns: Dict[str, Callable[[], Any]], repeats: int, attempts: int) -> Dict[str, Dict[str, Any]]:
    """Median wall and process-CPU seconds per call of each fn, sampled round-robin (order
    rotated each round) after one warm-up; timed again (up to `attempts`) while other
    processes used the CPU, keeping the least disturbed attempt."""
    names = list(fns)
    loops = {k: _loops(fns[k]) for k in names}  # also the warm-up
    best: Optional[Tuple[Dict[str, Dict[str, List[float]]], float, float]] = None
    made = 0
    for made in range(1, attempts + 1):
        time.sleep(SETTLE_S)
        samples = {k: {"wall": [], "cpu": []} for k in names}
        busy0, own0, w0 = busy_cpu_s(), own_cpu_s(), time.perf_counter()
        enabled = gc.isenabled()
        gc.disable()
        try:
            for rnd in range(repeats):
                for k in names[rnd % len(names):] + names[:rnd % len(names)]:
                    fn, n = fns[k], loops[k]
                    c0, t0 = time.process_time(), time.perf_counter()
                    for _ in range(n):
                        fn()
                    samples[k]["wall"].append((time.perf_counter() - t0) / n)
                    samples[k]["cpu"].append((time.process_time() - c0) / n)
        finally:
            if enabled:
                gc.enable()
        busy1, own1, wall = busy_cpu_s(), own_cpu_s(), time.perf_counter() - w0
        other = 0.0 if busy0 is None or busy1 is None else max(0.0, (busy1 - busy0) - (own1 - own0))
        if best is None or other < best[1]:
            best = (samples, other, wall)
        if not disturbed(other, wall):
            break
    samples, other, wall = best
    flag = disturbed(other, wall)
    return {k: {"wall_s": statistics.median(samples[k]["wall"]), "cpu_s": statistics.median(samples[k]["cpu"]),
                "wall_samples_s": samples[k]["wall"], "cpu_samples_s": samples[k]["cpu"], "loops": loops[k],
                "other_processes_cpu_s": other, "attempts": made, "disturbed": flag} for k in names}


# ----------------------------------------------------------------------------- memory (subprocess)

def _rss_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise OSError(f"{field} not in /proc/self/status")


def _execute(impl: str, case: Case) -> Callable[[], Any]:
    """A zero-argument call that builds what `impl` holds (its noise, buffers) and runs it once."""
    inp = make_inputs(case)
    if impl == "gradsparse":
        return lambda: run_gradsparse(case, inp)
    if impl == "official":
        return lambda: run_official(case, inp, population(case, inp))
    if impl == "numpy":
        return lambda: run_numpy(case, inp, noise_block(case, inp.m))
    return lambda: run_floor(case, inp, np.empty(inp.m, np.float32), np.empty(case.d, np.float32))


def _child(spec: str) -> None:
    """Subprocess entry: prints {"extra_bytes", "method"} for one implementation and case."""
    args = json.loads(spec)
    case, impl = Case(**args["case"]), args["impl"]
    gs.set_num_threads(args["threads"])
    warm = dataclasses.replace(case, name="warm-up", d=1000, n=4, p=min(case.p, 3))
    _execute(impl, warm)()  # one-time allocations (BLAS buffers, thread pool) left out
    fn = _execute(impl, case)  # the inputs
    gc.collect()
    rss0 = _rss_kib("VmRSS")
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # resets the peak RSS (VmHWM) to the current RSS
        method = "VmHWM after clear_refs"
    except OSError:
        method = "ru_maxrss (peak since start)"
    res = fn()
    peak = _rss_kib("VmHWM") if method.startswith("VmHWM") else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    del res
    print(json.dumps({"extra_bytes": (peak - rss0) * 1024, "method": method}))


def peak_extra(case: Case, impl: str, threads: int) -> Dict[str, Any]:
    """Runs `impl` once in a fresh interpreter (same gradsparse); its peak extra RSS."""
    spec = json.dumps({"case": dataclasses.asdict(case), "impl": impl, "threads": threads})
    env = dict(os.environ)
    root = os.path.dirname(os.path.dirname(os.path.abspath(gs.__file__)))
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [root, env.get("PYTHONPATH")]))
    proc = subprocess.run([sys.executable, "-c", "import sys\nfrom gradsparse.bench import evofed\n"
                           "evofed._child(sys.argv[1])", spec], capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        raise RuntimeError(f"memory measurement of {impl} on {case.name} failed:\n{proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


# ----------------------------------------------------------------------------- the suite

def _mem(b: Optional[int], d: int) -> str:
    if b is None:
        return "-"
    size = f"{b / 2**30:.2f} GiB" if b >= 2**30 else f"{b / 2**20:.1f} MiB"
    return f"{size} ({b / (4 * d):.1f}x d*4 B)"


def noise_speed(d: int, threads: Sequence[int], repeats: int, attempts: int) -> Dict[int, float]:
    """Normals per second per core of _core.evofed_noise filling a d-element buffer."""
    buf = np.empty(d, np.float32)
    speed = {}
    for t in threads:
        gs.set_num_threads(t)
        r = measure({"noise": lambda: _core.evofed_noise(SEED, ROUND, 0, 0, buf)}, repeats, attempts)["noise"]
        speed[t] = d / r["wall_s"] / t
    return speed


def run_case(out: Out, case: Case, threads: Sequence[int], repeats: int, attempts: int,
             verified: List[str]) -> Dict[str, Any]:
    inp = make_inputs(case)
    top = max(threads)
    gs.set_num_threads(top)
    want = run_gradsparse(case, inp)
    z = population(case, inp)
    errors = {"official": check(case, "official", run_official(case, inp, z), want, verified)}
    blk = z[:case.half] if case.p == 1 else noise_block(case, inp.m)  # P = 1: the positive half, a view
    errors["numpy"] = check(case, "numpy", run_numpy(case, inp, blk), want, verified)
    buf, upd = np.empty(inp.m, np.float32), np.empty(case.d, np.float32)
    run_floor(case, inp, buf, upd)
    if not np.array_equal(buf, blk[-1]):
        raise EvofedVerificationError(f"{case.name}: the floor's noise differs from the population's")
    verified.append(f"evofed:{case.name}:floor")
    slow = max(3, repeats // 2)
    rows: List[Dict[str, Any]] = []
    # the baselines' population buffers are allocated once, outside the timed region (a
    # round only regenerates the noise into them: the kindest way to materialise it)
    zbuf, bbuf = z, np.empty_like(blk)
    for impl, fn in (("official", lambda: run_official(case, inp, population(case, inp, out=zbuf))),
                     ("numpy", lambda: run_numpy(case, inp, noise_block(case, inp.m, out=bbuf))),
                     ("numpy-given", lambda: run_numpy(case, inp, blk))):
        rows.append({"impl": impl, "threads": "numpy", **measure({impl: fn}, slow, attempts)[impl],
                     **errors["numpy" if impl == "numpy-given" else impl]})
    del z, blk, zbuf, bbuf
    for t in threads:
        gs.set_num_threads(t)
        res = measure({"gradsparse": lambda: run_gradsparse(case, inp),
                       "floor": lambda: run_floor(case, inp, buf, upd)}, repeats, attempts)
        rows += [{"impl": k, "threads": t, **v} for k, v in res.items()]
    mem = {impl: peak_extra(case, impl, top) for impl in IMPLS if impl != "numpy-given"}
    mem["numpy-given"] = mem["numpy"]  # it holds the same noise
    for r in rows:
        r["extra_bytes"] = mem[r["impl"]]["extra_bytes"]
        r["memory_method"] = mem[r["impl"]]["method"]
    out(f"case {case.name}: d = {case.d:,}, N = {case.n}, P = {case.p}{' (shared noise)' if case.p > 1 else ''}, "
        f"K = {K}, sigma {case.sigma}, w {case.weight}; normals per encode+decode pass N/2*m = "
        f"{case.half * inp.m:,}")
    hdr = f"  {'implementation':<32} {'threads':>7} {'wall ms':>9} {'CPU ms':>9}  peak extra memory"
    out(hdr)
    for r in sorted(rows, key=lambda r: (IMPLS.index(r["impl"]), str(r["threads"]))):
        r.update(case=case.name, d=case.d, n=case.n, p=case.p)
        out(f"  {LABELS[r['impl']]:<32} {r['threads']:>7} {r['wall_s'] * 1e3:9.2f} {r['cpu_s'] * 1e3:9.2f}  "
            f"{_mem(r['extra_bytes'], case.d)}{' *' if r['disturbed'] else ''}")
    by = {(r["impl"], r["threads"]): r for r in rows}
    for t in threads:
        g = by[("gradsparse", t)]
        out(f"  gradsparse at {t} thread(s): (a) / gs {by[('official', 'numpy')]['wall_s'] / g['wall_s']:.1f}x, "
            f"(b) / gs {by[('numpy', 'numpy')]['wall_s'] / g['wall_s']:.2f}x, "
            f"(b') / gs {by[('numpy-given', 'numpy')]['wall_s'] / g['wall_s']:.2f}x, "
            f"gs / (c) {g['wall_s'] / by[('floor', t)]['wall_s']:.2f}x (wall)")
    out(f"  checked before timing: (a) max |dF| {errors['official']['max_abs_dF']:.2g}, relative |dg| "
        f"{errors['official']['rel_dg']:.2g}; (b) {errors['numpy']['max_abs_dF']:.2g}, {errors['numpy']['rel_dg']:.2g} "
        f"(tolerances {F_ATOL:g}, {G_RTOL:g}); (c) the same noise")
    groups = {(r["impl"] if r["threads"] == "numpy" else r["threads"]): r for r in rows}.values()  # one per timing
    return {"case": dataclasses.asdict(case), "rows": rows, "errors": errors,
            "retimings": sum(r["attempts"] - 1 for r in groups), "disturbed_rows": sum(r["disturbed"] for r in rows)}


def targets(out: Out, case_res: Dict[str, Any], top: int, target_case: bool) -> Dict[str, Any]:
    """PASS/FAIL of the issue's targets, gradsparse at `top` threads against the same run."""
    case = Case(**case_res["case"])
    by = {(r["impl"], r["threads"]): r for r in case_res["rows"]}
    g, a, b, c = by[("gradsparse", top)], by[("official", "numpy")], by[("numpy", "numpy")], by[("floor", top)]
    vec = 4 * case.d
    vs_a, vs_b, vs_c = a["wall_s"] / g["wall_s"], b["wall_s"] / g["wall_s"], g["wall_s"] / c["wall_s"]
    walls = {k: f"{r['wall_s'] * 1e3:.1f} ms" for k, r in (("g", g), ("a", a), ("b", b), ("c", c))}
    checks = [
        ("cpu_s", g["cpu_s"], g["cpu_s"] <= TARGETS["cpu_s"],
         f"CPU time <= {TARGETS['cpu_s']} s: {g['cpu_s']:.3f} CPU-s per encode+decode ({top} threads)"),
        ("vs_official", vs_a, vs_a >= TARGETS["vs_official"],
         f">= {TARGETS['vs_official']:g}x faster than (a): {vs_a:.1f}x ({walls['a']} vs {walls['g']})"),
        ("vs_numpy", vs_b, vs_b > TARGETS["vs_numpy"],
         f"faster than (b): {vs_b:.2f}x ({walls['b']} vs {walls['g']})"),
        ("vs_floor", vs_c, vs_c <= TARGETS["vs_floor"],
         f"within {TARGETS['vs_floor']:g}x of (c): {vs_c:.2f}x ({walls['g']} vs {walls['c']})"),
        ("memory", g["extra_bytes"], g["extra_bytes"] <= TARGETS["memory_vectors"] * vec,
         f"extra memory O(d), at most {TARGETS['memory_vectors']} d-sized float32 vectors: "
         f"{g['extra_bytes']:,} B = {g['extra_bytes'] / vec:.2f} x d*4 B "
         f"((a): {a['extra_bytes'] / vec:.0f}x, (b): {b['extra_bytes'] / vec:.0f}x)"),
    ]
    bg = by[("numpy-given", "numpy")]
    checks.append(("info_vs_numpy_given", bg["wall_s"] / g["wall_s"], None,
                   f"(b') with its population given (not a real round): {bg['wall_s'] / g['wall_s']:.2f}x "
                   f"({bg['wall_s'] * 1e3:.1f} ms vs {walls['g']})"))
    where = f"case {case.name}" + ("" if target_case else f" (no case {TARGET_CASE} in this run: not the target)")
    out(f"targets at {where}:")
    res = {}
    for key, value, ok, text in checks:
        out(f"  {'INFO' if ok is None else 'PASS' if ok else 'FAIL'}  {text}")
        res[key] = {"value": value, "pass": None if ok is None else bool(ok)}
    return res


def run(out: Out, *, quick: bool = False, repeats: int = 7, threads: Sequence[int] = (1, 2),
        cases: Optional[Sequence[Case]] = None) -> Dict[str, Any]:
    """Runs the EvoFed suite; returns its rows, targets and the list of verified results.
    Raises EvofedVerificationError when a baseline differs from gradsparse before timing."""
    cases = list(cases if cases is not None else (QUICK_CASES if quick else CASES))
    threads = sorted(set(threads))
    attempts = 2 if quick else MAX_ATTEMPTS
    default_threads = gs.get_num_threads()
    out(f"== EvoFed encode + decode: K = {K} clients' fitness (z-score + weight term, official order), their "
        f"unweighted mean, the update g = (1/(N sigma)) sum_j F_j z_j; gradsparse {gs.__version__}, threads {threads}")
    out("   (a) official-style numpy: members and two (K, N, d) temporaries; (b) best numpy: distinct noise "
        "materialised, z @ delta^T; (c) floor: the N/2*m normals once + read deltas/theta + write the update")
    out("   every round has a new population: (a) and (b) generate theirs (gradsparse's generator) inside the timed "
        "region, into buffers allocated once; (b') is (b) with it given; (a)/(b) arithmetic at numpy's own BLAS threads; medians per call; "
        "memory: fresh subprocess, peak RSS - RSS with inputs")
    verified: List[str] = []
    results = []
    try:
        for case in cases:
            results.append(run_case(out, case, threads, repeats, attempts, verified))
        speed = noise_speed(max(c.d for c in cases), threads, repeats, attempts)
        out("noise generation (_core.evofed_noise, d-element buffer): " + ", ".join(
            f"{v / 1e6:.0f} M normals/s per core at {t} thread(s)" for t, v in speed.items()))
        target = next((r for r in results if r["case"]["name"] == TARGET_CASE), None)
        hit = target is not None
        if target is None:
            target = max(results, key=lambda r: (r["case"]["d"], -r["case"]["p"]))
        verdict = targets(out, target, max(threads), hit)
    finally:
        gs.set_num_threads(default_threads)
    return {"cases": results, "noise_normals_per_s_per_core": speed, "targets": verdict,
            "targets_case": target["case"]["name"], "tolerances": {"F_atol": F_ATOL, "g_rtol": G_RTOL},
            "retimings": sum(r["retimings"] for r in results),
            "disturbed_rows": sum(r["disturbed_rows"] for r in results), "verified": verified}
