#!/usr/bin/env python3
"""A small end-to-end run of every function of the CUDA layer, each result compared with the
CPU engine bit for bit: the input of ``compute-sanitizer`` in tools/cuda_device_check.sh
(small inputs, so it stays quick under memcheck / racecheck), and a quick first look on a new
GPU machine:

    python tools/cuda_smoke.py [-v]

Covers ``gradsparse.cuda._ops``: select (count / energy / threshold; magnitude, largest,
smallest; float32, float64, float16, bfloat16; sizes 1 .. 2e5 including adversarial inputs --
ties, NaN, +-inf, +-0, subnormals -- so both the bracket and the fallback paths run; several
tensors; scalar, per-element and prepared costs, and q/alpha that need pow), topk_rows,
rank_order, feedback_select (k and tau, float32 and bfloat16 values), scatter_mean (and its
out-of-range check), random_k_indices; then the public functions on CUDA tensors (sparsify,
sparsify_many, topk, threshold, random_k). Every case runs even after a failure; one line
per failure, a summary at the end. Exit status: 0 all equal, 1 a difference or an error,
2 the CUDA layer cannot run here (the reason is printed).
"""
from __future__ import annotations

import argparse
import sys
import traceback
from typing import Callable, List

import numpy as np

MODES = {"magnitude": 0, "largest": 1, "smallest": 2}
KINDS = {"count": 0, "energy": 1, "threshold": 2}
DTYPES = ("float32", "float64", "float16", "bfloat16")


class Mismatch(AssertionError):
    """A GPU result differs from the CPU engine's."""


def bits(t) -> np.ndarray:
    import torch

    t = t.detach().contiguous().cpu().reshape(-1)
    as_int = {1: torch.uint8, 2: torch.int16, 4: torch.int32, 8: torch.int64}[t.element_size()]
    return t.view(as_int).numpy()


def same(what: str, got, want) -> None:
    if got.dtype != want.dtype:
        raise Mismatch(f"{what}: dtype {got.dtype}, CPU {want.dtype}")
    if got.numel() != want.numel():
        raise Mismatch(f"{what}: {got.numel()} entries, CPU {want.numel()}")
    g, w = bits(got), bits(want)
    if not np.array_equal(g, w):
        bad = np.flatnonzero(g != w)
        raise Mismatch(f"{what}: {bad.size} of {g.size} entries differ, first at {int(bad[0])}")


# ----------------------------------------------------------------------------- inputs

def data(kind: str, n: int, dtype: str, seed: int):
    """A CPU tensor of `n` elements: 'grad' (Gaussian x lognormal blocks), 'ties' (few
    distinct values), 'special' (NaN, +-inf, +-0, subnormals among normals), 'sorted',
    'reverse' or 'narrow' (values within a few ulps)."""
    import torch

    rng = np.random.default_rng([seed, n, len(kind)])
    if kind == "ties":
        x = rng.integers(-3, 4, n).astype(np.float64)
    elif kind == "narrow":
        x = 1.0 + rng.integers(0, 4, n) * np.finfo(np.float32).eps
    else:
        x = rng.standard_normal(n) * np.exp(rng.standard_normal((n + 4095) // 4096)).repeat(4096)[:n]
    if kind == "special":
        tiny = {"float32": 1e-45, "float64": 5e-324, "float16": 6e-8, "bfloat16": 1e-40}[dtype]
        pool = [np.nan, -np.nan, np.inf, -np.inf, 0.0, -0.0, tiny, -tiny, 3 * tiny]
        pos = rng.choice(n, size=min(n, 2 * len(pool) + n // 50), replace=False)
        x[pos] = rng.choice(pool, size=pos.size)
    if kind == "sorted":
        x = np.sort(x)
    elif kind == "reverse":
        x = np.sort(x)[::-1].copy()
    return torch.from_numpy(x).to(getattr(torch, dtype))


# ----------------------------------------------------------------------------- CPU references

def cpu_select(xs, *, kind, k=0, energy=0.0, tau=0.0, mode="magnitude", costs=None, q=2.0, alpha=1.0):
    """The CPU engine's (global indices, values, counts) for the arguments of _ops.select."""
    import torch

    from gradsparse import _core
    from gradsparse._convert import as_flat
    from gradsparse.costs import as_cost

    flats = [as_flat(x.cpu()) for x in xs]
    cs = [None if c is None else as_cost(c.cpu() if isinstance(c, torch.Tensor) else c, f)
          for c, f in zip(costs or [None] * len(xs), flats)]
    if kind == "threshold":
        q, alpha = 1.0, 0.0
    res = _core.select([f.array for f in flats], [f.code for f in flats], cs, MODES[mode], q, alpha, KINDS[kind],
                       k, energy, tau)
    offsets = np.cumsum([0] + [f.size for f in flats[:-1]])
    idx = torch.cat([torch.from_numpy(i.astype(np.int64)) + int(o) for (i, _), o in zip(res, offsets)])
    vals = torch.cat([f.wrap(raw) for f, (_, raw) in zip(flats, res)])
    return idx, vals, [len(i) for i, _ in res]


def cpu_topk_rows(x, k, mode, sorted_):
    import torch

    from gradsparse import _core
    from gradsparse._convert import as_flat

    rows, n = x.shape
    flat = as_flat(x.cpu())
    values = np.empty((rows, k, 1), dtype=flat.array.dtype)
    indices = np.empty((rows, k, 1), dtype=np.int64)
    _core.topk_axis(flat.array.reshape(rows, n, 1), flat.code, k, MODES[mode], sorted_, values, indices)
    return flat.wrap(values.reshape(-1)).reshape(rows, k), torch.from_numpy(indices.reshape(rows, k))


def cpu_rank_order(values, indices, mode):
    """Best first, equal keys by the lower index (indices ascend on entry: a stable sort)."""
    v = values.cpu().double().numpy()
    key = {"magnitude": -np.abs(v), "largest": -v, "smallest": v}[mode]
    order = np.argsort(key, kind="stable")
    return values.cpu()[order], indices.cpu()[order]


def cpu_feedback(g, e, *, k=None, tau=None, value_dtype="float32"):
    import torch

    from gradsparse.compress.feedback import ErrorFeedback

    n = g.numel()
    ef = ErrorFeedback()
    ef.load_residual("x", e.cpu().numpy())
    cap = k if k is not None else n
    vals = torch.empty(cap, dtype=torch.float32 if value_dtype == "float32" else torch.bfloat16)
    idx = np.empty(cap, dtype=np.int32)
    [count] = ef.compress_into("x", g.cpu().numpy(), k=k, tau=tau, values=vals, indices=idx,
                               value_dtype=value_dtype)
    return torch.from_numpy(idx[:count].copy()), vals[:count].clone(), count, torch.as_tensor(ef.residual("x"))


# ----------------------------------------------------------------------------- the cases

class Runner:
    def __init__(self, verbose: bool):
        self.verbose, self.passed, self.failed = verbose, 0, []

    def case(self, name: str, fn: Callable[[], None]) -> None:
        try:
            fn()
        except Mismatch as exc:
            self.failed.append(name)
            print(f"MISMATCH {name}: {exc}", flush=True)
        except Exception as exc:  # noqa: BLE001  (every case runs; each failure is printed)
            self.failed.append(name)
            print(f"ERROR    {name}: {type(exc).__name__}: {exc}", flush=True)
            if self.verbose:
                traceback.print_exc()
        else:
            self.passed += 1
            if self.verbose:
                print(f"ok       {name}", flush=True)


def check_select(ops, dev, xs, **kw) -> None:
    import torch

    costs = kw.get("costs")
    dcosts = None if costs is None else [c.to(dev) if isinstance(c, torch.Tensor) else c for c in costs]
    idx, vals, counts = ops.select([x.to(dev) for x in xs], **dict(kw, costs=dcosts))
    ridx, rvals, rcounts = cpu_select(xs, **kw)
    if idx.device != dev or vals.device != dev:
        raise Mismatch(f"results on {idx.device} / {vals.device}, not on {dev}")
    same("indices", idx, ridx)
    same("values", vals, rvals)
    if counts is not None and list(counts) != rcounts:
        raise Mismatch(f"counts {list(counts)}, CPU {rcounts}")
    if counts is None and (len(xs) != 1 or kw["kind"] != "count"):
        raise Mismatch("counts is None outside a count budget on one tensor")


SELECT_SIZES = {
    "full": ((1, "grad"), (7, "ties"), (4097, "special"), (50_000, "grad"), (50_000, "narrow"), (200_000, "ties"),
             (20_000, "sorted"), (20_000, "reverse")),
    "small": ((1, "grad"), (4097, "special"), (50_000, "narrow"), (200_000, "ties")),
    "tiny": ((7, "ties"), (4097, "special")),
}


def select_cases(r: Runner, ops, dev, level: str) -> None:
    for dt in DTYPES if level != "tiny" else ("float32", "bfloat16"):
        for mode in MODES:
            for n, kind in SELECT_SIZES[level]:
                x = data(kind, n, dt, 1)
                ks = {1, max(1, n // 100), n} if level == "full" else {max(1, n // 100), n}
                for k in sorted(ks):
                    r.case(f"select count {dt} {mode} n={n} {kind} k={k}",
                           lambda x=x, k=k, mode=mode: check_select(ops, dev, [x], kind="count", k=k, mode=mode))
    import torch

    import gradsparse as gs

    xs = [data("grad", n, "float32", 2 + i) for i, n in enumerate((3000, 1, 40_000, 517))]
    r.case("select count, 4 tensors", lambda: check_select(ops, dev, xs, kind="count", k=400))
    r.case("select energy, 4 tensors", lambda: check_select(ops, dev, xs, kind="energy", energy=300.0))
    r.case("select threshold, 4 tensors", lambda: check_select(ops, dev, xs, kind="threshold", tau=2.0))
    x = data("special", 30_000, "float32", 3)
    r.case("select threshold, specials", lambda: check_select(ops, dev, [x], kind="threshold", tau=0.5))
    rng = np.random.default_rng(4)
    c32 = [torch.from_numpy(rng.uniform(0.5, 2.0, t.numel()).astype(np.float32)) for t in xs]
    c64 = [c.double() for c in c32]
    prepared = [gs.PreparedCost(c.numpy()) for c in c32]
    scalars = [0.37, 1.5, 2.0, 0.9]
    cost_sets = (("scalar", scalars), ("float32 array", c32), ("float64 array", c64), ("prepared", prepared),
                 ("mixed", [0.37, None, c32[2], prepared[3]]))
    qa = ((2.0, 1.0), (1.0, 1.0), (2.0, 0.0), (3.0, 0.5))
    if level != "full":
        cost_sets, qa = cost_sets[1:2] + cost_sets[-1:], qa[:1] + qa[-1:]
    for cname, cs in cost_sets:
        for q, alpha in qa:
            for kind, extra in (("count", {"k": 500}), ("energy", {"energy": 900.0})):
                r.case(f"select {kind} costs={cname} q={q} alpha={alpha}",
                       lambda cs=cs, q=q, alpha=alpha, kind=kind, extra=extra:
                       check_select(ops, dev, xs, kind=kind, costs=cs, q=q, alpha=alpha, **extra))


def topk_cases(r: Runner, ops, dev, level: str) -> None:
    shapes = ((4, 1000, "special"), (3, 5000, "ties"), (1, 1, "grad"), (8, 333, "grad"))
    dtypes = ("float32", "bfloat16", "float64", "float16")
    if level != "full":
        shapes, dtypes = shapes[:2], dtypes[:2]
    for dt in dtypes:
        for rows, n, kind in shapes:
            x = data(kind, rows * n, dt, 5).reshape(rows, n)
            for k in sorted({1, max(1, n // 10), n} if level != "tiny" else {max(1, n // 10)}):
                for mode in MODES:
                    for s in (True, False):
                        def run(x=x, k=k, mode=mode, s=s):
                            vals, idx = ops.topk_rows(x.to(dev), k, mode, s)
                            rv, ri = cpu_topk_rows(x, k, mode, s)
                            same("values", vals, rv)
                            same("indices", idx, ri)
                        r.case(f"topk_rows {dt} {rows}x{n} {kind} k={k} {mode} sorted={s}", run)


def rank_cases(r: Runner, ops, dev, level: str) -> None:
    for dt in ("float32", "bfloat16"):
        x = data("ties", 5000, dt, 6)
        x[7] = -0.0
        x[9] = 0.0
        idx, vals, _ = cpu_select([x], kind="count", k=800)
        for mode in MODES:
            def run(vals=vals, idx=idx, mode=mode):
                v, i = ops.rank_order(vals.to(dev), idx.to(dev), mode)
                rv, ri = cpu_rank_order(vals, idx, mode)
                same("values", v, rv)
                same("indices", i, ri)
            r.case(f"rank_order {dt} {mode}", run)


def feedback_cases(r: Runner, ops, dev, level: str) -> None:
    import torch

    for n in (1, 4097, 100_000) if level != "tiny" else (4097,):
        g = data("grad", n, "float32", 7)
        e = data("ties", n, "float32", 8) * 0.25
        for vd in ("float32", "bfloat16"):
            for kw in ({"k": max(1, n // 100)}, {"k": n}, {"tau": 1.0}):
                def run(g=g, e=e, vd=vd, kw=kw):
                    ri, rv, rc, re = cpu_feedback(g, e, value_dtype=vd, **kw)
                    ed = e.to(dev, copy=True)
                    idx, vals, count = ops.feedback_select(g.to(dev), ed, value_dtype=vd, **kw)
                    if "tau" in kw and count != rc:
                        raise Mismatch(f"count {count}, CPU {rc}")
                    m = rc if count is None else count
                    same("indices", idx[:m], ri)
                    same("values", vals[:m], rv)
                    same("residual", ed, re)
                r.case(f"feedback_select n={n} values={vd} {kw}", run)
    g = data("grad", 10_000, "float32", 9)
    e = torch.zeros(10_000)

    def reuse():
        ov, oi = torch.empty(100, device=dev), torch.empty(100, dtype=torch.int32, device=dev)
        idx, vals, count = ops.feedback_select(g.to(dev), e.to(dev, copy=True), k=100, out_values=ov, out_indices=oi)
        if count is not None or idx.data_ptr() != oi.data_ptr() or vals.data_ptr() != ov.data_ptr():
            raise Mismatch("out_values / out_indices were not used (or count was not None)")
        ri, rv, _, _ = cpu_feedback(g, e, k=100)
        same("indices", idx, ri)
        same("values", vals, rv)
    r.case("feedback_select into out_values / out_indices", reuse)


def scatter_cases(r: Runner, ops, dev, level: str) -> None:
    import torch

    from gradsparse import _core
    from gradsparse.errors import ArgumentError

    n = 5000
    rng = np.random.default_rng(10)
    for vd in ("float32", "bfloat16"):
        vals, idxs = [], []
        for p in range(3):
            i = np.sort(rng.choice(n, 400, replace=False)).astype(np.int32)
            i[-10:] = -1  # padding
            vals.append(torch.from_numpy(rng.standard_normal(400).astype(np.float32)).to(getattr(torch, vd)))
            idxs.append(torch.from_numpy(i))
        clear = torch.from_numpy(np.concatenate([rng.choice(n, 50, replace=False), [-1, -1]]).astype(np.int32))
        base = torch.from_numpy(rng.standard_normal(n).astype(np.float32))

        def run(vals=vals, idxs=idxs, clear=clear, base=base, vd=vd):
            out = base.to(dev, copy=True)
            ops.scatter_mean(out, clear.to(dev), [v.to(dev) for v in vals], [i.to(dev) for i in idxs], 3.0)
            ref = base.numpy().copy()
            host_vals = [v.numpy() if vd == "float32" else v.view(torch.int16).numpy() for v in vals]
            _core.scatter_mean(ref, clear.numpy(), host_vals, [i.numpy() for i in idxs], 3.0)
            same("out", out, torch.from_numpy(ref))
        r.case(f"scatter_mean {vd} values, clear, padding", run)

    def out_of_range():
        out = torch.zeros(10, device=dev)
        try:
            ops.scatter_mean(out, None, [torch.ones(2, device=dev)], [torch.tensor([1, 10], dtype=torch.int32,
                                                                                     device=dev)], 1.0)
        except ArgumentError:
            return
        raise Mismatch("an index outside [0, n) was not refused")
    r.case("scatter_mean refuses an index outside [0, n)", out_of_range)


def random_cases(r: Runner, ops, dev, level: str) -> None:
    import torch

    from gradsparse import _core

    for n, k, seed in ((1, 1, 0), (1000, 10, 1), (100_000, 1000, 2**63 + 5)):
        def run(n=n, k=k, seed=seed):
            got = ops.random_k_indices(n, k, seed, dev)
            same("indices", got, torch.from_numpy(_core.random_k(n, k, seed).astype(np.int64)))
        r.case(f"random_k_indices n={n} k={k}", run)


def public_cases(r: Runner, dev) -> None:
    import gradsparse as gs

    x = data("special", 20_000, "float32", 11)
    xs = [data("grad", n, "bfloat16", 12) for n in (100, 7000, 3)]

    def pairs(got, want, what):
        same(f"{what} indices", got.indices, want.indices)
        same(f"{what} values", got.values, want.values)

    r.case("public sparsify", lambda: pairs(gs.sparsify(x.to(dev), 200), gs.sparsify(x, 200), "sparsify"))
    r.case("public sparsify cost", lambda: pairs(gs.sparsify(x.to(dev), 200, cost=0.5),
                                                 gs.sparsify(x, 200, cost=0.5), "sparsify"))
    r.case("public sparsify_many", lambda: [pairs(a, b, "sparsify_many") for a, b in zip(
        gs.sparsify_many([t.to(dev) for t in xs], 70), gs.sparsify_many(xs, 70))])
    r.case("public threshold", lambda: pairs(gs.threshold(x.to(dev), 1.5), gs.threshold(x, 1.5), "threshold"))
    r.case("public random_k", lambda: pairs(gs.random_k(x.to(dev), 50, 3), gs.random_k(x, 50, 3), "random_k"))

    def topk():
        m = data("ties", 4 * 999, "float32", 13).reshape(4, 999)
        got, want = gs.topk(m.to(dev), 17, dim=1), gs.topk(m, 17, dim=1)
        same("topk values", got.values, want.values)
        same("topk indices", got.indices, want.indices)
        if got.values.device != dev:
            raise Mismatch(f"topk of a tensor on {dev} returned one on {got.values.device}")
    r.case("public topk", topk)


def main(argv: List[str]) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("-v", "--verbose", action="store_true", help="print every case and tracebacks")
    p.add_argument("--size", choices=("full", "small", "tiny"), default="full",
                   help="how many select / topk_rows cases: full (default), small (compute-sanitizer memcheck), "
                        "tiny (racecheck)")
    args = p.parse_args(argv)
    try:
        import torch
    except ImportError as exc:
        print(f"cuda_smoke: cannot run: torch is missing ({exc})")
        return 2
    import gradsparse.cuda as gcuda

    info = gcuda.info()
    if not gcuda.available() or not torch.cuda.is_available():
        print(f"cuda_smoke: cannot run: gradsparse CUDA {info}; torch.cuda.is_available() = "
              f"{torch.cuda.is_available()}")
        return 2
    from gradsparse.cuda import _ops

    dev = torch.device("cuda", torch.cuda.current_device())
    print(f"cuda_smoke: {torch.cuda.get_device_name(dev)}; gradsparse CUDA {info}", flush=True)
    r = Runner(args.verbose)
    for group in (select_cases, topk_cases, rank_cases, feedback_cases, scatter_cases, random_cases):
        group(r, _ops, dev, args.size)
    public_cases(r, dev)
    torch.cuda.synchronize()
    print(f"cuda_smoke: {r.passed} cases equal to the CPU engine, {len(r.failed)} failed"
          + (f": {', '.join(r.failed[:10])}{' ...' if len(r.failed) > 10 else ''}" if r.failed else ""))
    return 1 if r.failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
