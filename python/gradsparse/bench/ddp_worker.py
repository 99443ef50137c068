"""One rank of the DDP step-time benchmark: ``python -m gradsparse.bench.ddp_worker --rank R
--init tcp://ADDR:PORT ...``, started twice by :mod:`gradsparse.bench.ddp` (inside a network
namespace for the shaped links). Rank 0 writes the results as JSON to ``--out``.

Per process: one torch thread; the link measured first (gloo all-reduce of 1 KB and 16 MB);
then per model: every method's DDP model built from one initialisation, ``--warmup`` steps
each, one step of the floor with its buckets captured, ``--rounds`` rounds of ``--steps``
steps per method (the order rotated by one each round; a barrier before every step; a step
is forward + backward + optimizer step, timed on each rank; the slower rank's time counts),
the parameters compared across ranks, and the hooks' CPU work timed on the captured buckets
(rank 0 alone, the other rank waiting).
"""
from __future__ import annotations

import argparse
import copy
import datetime
import hashlib
import json
import os
import sys
import time
from typing import Any, Callable, Dict, List, Optional

import numpy as np

from . import ddp_methods as dm

SMALL_BYTES = 1024
BIG_BYTES = 16 * 1024 * 1024
WORLDS = (2, 8, 64)  # gradsparse's local pass is timed for these world sizes (the model's input)


def log(rank: int, text: str) -> None:
    """Progress, from rank 0 only."""
    if rank == 0:
        print(f"  [ddp] {text}", flush=True)


def stats(xs: List[float]) -> Dict[str, float]:
    """Median, p25, p75 (seconds) of `xs`."""
    a = np.asarray(xs, dtype=np.float64)
    return {"median_s": float(np.median(a)), "p25_s": float(np.percentile(a, 25)),
            "p75_s": float(np.percentile(a, 75)), "n": int(a.size)}


def measure_link(torch, dist, reps: int) -> Dict[str, Any]:
    """gloo all-reduce of 1 KB and of 16 MB (median of `reps`, the slower rank's), and the
    alpha-beta fit of a 2-rank ring all-reduce, t(n) = 2 alpha + n beta."""
    out: Dict[str, Any] = {}
    for label, nbytes in (("small", SMALL_BYTES), ("big", BIG_BYTES)):
        t = torch.zeros(nbytes // 4)
        times = []
        for i in range(reps + 2):
            dist.barrier()
            t0 = time.perf_counter()
            dist.all_reduce(t)
            if i >= 2:
                times.append(time.perf_counter() - t0)
        med = torch.tensor([float(np.median(times))], dtype=torch.float64)
        dist.all_reduce(med, op=dist.ReduceOp.MAX)
        out[f"{label}_s"] = float(med)
    out["alpha_s"] = out["small_s"] / 2
    out["beta_s_per_byte"] = max(out["big_s"] - out["small_s"], 1e-12) / (BIG_BYTES - SMALL_BYTES)
    out["source"] = "bench (all-reduce 1 KB / 16 MB)"
    return out


class Entry:
    """One method's DDP model, optimizer, hook state and step times."""

    def __init__(self, method: dm.Method, ddp: Any, opt: Any, state: Any) -> None:
        self.method, self.ddp, self.opt, self.state = method, ddp, opt, state
        self.times: List[List[float]] = []

    def counters(self) -> Dict[str, Any]:
        """Bytes sent so far (gradsparse), elements all-reduced (PowerSGD), schemes chosen."""
        st = self.state
        if isinstance(st, dm.PowerSGDPerBucket):
            return {"elements": st.elements_sent()}
        if self.method.kind == "gradsparse":
            return {"bytes": int(st.sent_bytes), "schemes": dict(getattr(st, "schemes_used", {}) or {})}
        return {}


def build(torch, dist, spec: dm.ModelSpec, methods: List[dm.Method], groups, link) -> tuple:
    """Every method's DDP model (one initialisation, deep-copied) and the floor's state."""
    from torch.nn.parallel import DistributedDataParallel as DDP

    torch.manual_seed(0)
    base = spec.build()
    entries, floor = [], None
    for m in methods:
        net = copy.deepcopy(base)
        ddp = DDP(net, bucket_cap_mb=spec.bucket_cap_mb)
        state: Any = None
        if m.kind == "noop":
            state = floor = dm.Floor()
            ddp.register_comm_hook(state, dm.noop_hook)
        elif m.kind == "bf16":
            ddp.register_comm_hook(None, dm.bf16_hook)
        elif m.kind == "powersgd":
            state = dm.PowerSGDPerBucket(groups)
            ddp.register_comm_hook(state, dm.powersgd_hook)
        elif m.kind == "gradsparse":
            from ..integrations.ddp import topk_hook

            state = dm.topk_state(m, link)
            ddp.register_comm_hook(state, topk_hook)
        opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9)
        entries.append(Entry(m, ddp, opt, state))
    return entries, floor, base


def hook_cpu(torch, entries: List[Entry], buckets: List[dm.CapturedBucket], own_group,
             repeats: int, link: Any) -> Dict[str, Dict[str, Any]]:
    """The hooks' CPU work alone on the captured buckets, per step (all buckets), without
    communication: plain = DDP's division by the world size; bf16 = the cast to bfloat16,
    the division and the cast back; PowerSGD = torch's hook on a one-rank gloo group (its
    error feedback, matmuls, orthogonalisation and copies; its all-reduces are trivial);
    gradsparse = ``local_pass(state, bucket, W)`` for W in 2, 8, 64; and the floor pass
    e += g. Round-robin samples, every bucket restored from the capture before each."""
    from torch.distributed.algorithms.ddp_comm_hooks.powerSGD_hook import powerSGD_hook

    from ..integrations.ddp import local_pass

    W = 2
    tmp = [torch.empty_like(b.data) for b in buckets]
    acc = [torch.zeros_like(b.data) for b in buckets]
    fns: Dict[str, Callable[[], None]] = {}
    notes: Dict[str, str] = {}

    def floor_pass() -> None:
        for b, e in zip(buckets, acc):
            e.add_(b.work)

    fns["floor-pass"] = floor_pass
    for e in entries:
        m = e.method
        if m.kind == "plain":
            fns[m.name] = lambda: [torch.div(b.work, W, out=t) for b, t in zip(buckets, tmp)]
        elif m.kind == "bf16":
            fns[m.name] = lambda: [t.copy_(b.work.to(torch.bfloat16).div_(W)) for b, t in zip(buckets, tmp)]
        elif m.kind == "powersgd":
            local = dm.PowerSGDPerBucket([own_group])
            fns[m.name] = lambda st=local.state: [powerSGD_hook(st, b).wait() for b in buckets]
            notes[m.name] = "torch's hook on a one-rank group"
        elif m.kind == "gradsparse":
            for w in WORLDS:
                st = dm.topk_state(m, link)  # "auto" picks at W what the hook would on this link
                fns[f"{m.name}@{w}"] = lambda st=st, w=w: [local_pass(st, b.work, w) for b in buckets]
    names = list(fns)
    samples: Dict[str, List[float]] = {n: [] for n in names}
    for warm in range(dm.POWERSGD_START + 1):  # PowerSGD compresses from its third pass on
        for n in names:
            for b in buckets:
                b.restore()
            fns[n]()
    for s in range(repeats):
        for n in names[s % len(names):] + names[:s % len(names)]:
            for b in buckets:
                b.restore()
            t0 = time.perf_counter()
            fns[n]()
            samples[n].append(time.perf_counter() - t0)
    out: Dict[str, Dict[str, Any]] = {}
    for n in names:
        base, _, w = n.partition("@")
        out.setdefault(base, {"note": notes.get(base)})[w or "2"] = stats(samples[n])
    for n, note in notes.items():
        out.setdefault(n, {"note": note})
    return out


def params_check(torch, dist, entries: List[Entry]) -> Dict[str, str]:
    """'identical' when every rank holds the same parameter bits, else the largest
    difference; 'n/a' for the floor (it does not communicate: its ranks diverge)."""
    flats = {e.method.name: torch.cat([p.detach().reshape(-1) for p in e.ddp.module.parameters()]) for e in entries}
    mine = {n: hashlib.sha256(f.numpy().tobytes()).hexdigest() for n, f in flats.items()}
    every: List[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(every, mine)
    out = {}
    for e in entries:
        n = e.method.name
        if e.method.kind == "noop":
            out[n] = "n/a (no communication)"
            continue
        if not all(h[n] == mine[n] for h in every):  # the same answer on every rank
            got = [torch.empty_like(flats[n]) for _ in every]
            dist.all_gather(got, flats[n])
            out[n] = f"DIFFER (max |diff| {float((got[0] - got[1]).abs().max()):.3g})"
        else:
            out[n] = "identical"
    return out


def run_model(torch, dist, args, spec: dm.ModelSpec, methods, groups, own_group, link) -> Dict[str, Any]:
    """Builds, warms up, times and checks every method on one model."""
    import torch.nn.functional as F

    rank = dist.get_rank()
    entries, floor, base = build(torch, dist, spec, methods, groups, link)
    gen = torch.Generator().manual_seed(1000 + rank)
    data = [(torch.randn(spec.batch, 3, 32, 32, generator=gen), torch.randint(0, 10, (spec.batch,), generator=gen))
            for _ in range(4)]
    nstep = [0]

    def step(e: Entry) -> float:
        x, y = data[nstep[0] % len(data)]
        nstep[0] += 1
        dist.barrier()
        t0 = time.perf_counter()
        e.opt.zero_grad()
        F.cross_entropy(e.ddp(x), y).backward()
        e.opt.step()
        return time.perf_counter() - t0

    log(rank, f"{spec.name}: {len(entries)} methods, warm-up {args.warmup} steps each")
    for e in entries:
        for _ in range(args.warmup):
            step(e)
    floor_entry = next(e for e in entries if e.method.kind == "noop")
    floor.capture = []
    step(floor_entry)
    buckets, floor.capture = sorted(floor.capture, key=lambda b: b.index()), None
    before = {e.method.name: e.counters() for e in entries}
    for r in range(args.rounds):
        t0 = time.perf_counter()
        k = r % len(entries)
        for e in entries[k:] + entries[:k]:
            e.times.append([step(e) for _ in range(args.steps)])
        log(rank, f"{spec.name}: round {r + 1}/{args.rounds} ({time.perf_counter() - t0:.1f} s)")
    nsteps = args.rounds * args.steps
    dense = sum(b.data.numel() * b.data.element_size() for b in buckets)
    res: Dict[str, Any] = {"params": sum(p.numel() for p in base.parameters()), "batch": spec.batch,
                           "bucket_cap_mb": spec.bucket_cap_mb,
                           "buckets": [b.data.numel() for b in buckets], "dense_bytes": dense,
                           "methods": {}}
    every: List[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(every, {e.method.name: e.times for e in entries})
    checks = params_check(torch, dist, entries)
    for e in entries:
        m, c0, c1 = e.method, before[e.method.name], e.counters()
        per_rank = [every[q][m.name] for q in range(len(every))]
        times = [[max(vals) for vals in zip(*[pr[r] for pr in per_rank])] for r in range(args.rounds)]
        info: Dict[str, Any] = {"label": m.label, "kind": m.kind, "ratio": m.ratio, "scheme": m.scheme,
                                "value_dtype": m.value_dtype, "step_s": times, "params": checks[m.name]}
        if m.kind == "plain":
            info["bytes_per_step"] = dense
        elif m.kind == "bf16":
            info["bytes_per_step"] = dense // 2
        elif m.kind == "noop":
            info["bytes_per_step"] = 0
        elif m.kind == "powersgd":
            info["bytes_per_step"] = (c1["elements"] - c0["elements"]) * 4 / nsteps
        else:
            info["bytes_per_step"] = (c1["bytes"] - c0["bytes"]) / nsteps
            info["schemes"] = {s: n - c0["schemes"].get(s, 0) for s, n in c1["schemes"].items()}
        res["methods"][m.name] = info
    if rank == 0:
        log(rank, f"{spec.name}: hook CPU alone on the {len(buckets)} captured buckets")
        cpu = hook_cpu(torch, entries, buckets, own_group, args.cpu_repeats, link)
        res["hook_cpu"] = cpu
    dist.barrier()
    return res


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m gradsparse.bench.ddp_worker")
    p.add_argument("--rank", type=int, required=True)
    p.add_argument("--init", required=True, help="tcp://ADDR:PORT of rank 0's rendezvous")
    p.add_argument("--models", default="resnet18,mlp")
    p.add_argument("--methods", default="")
    p.add_argument("--rounds", type=int, default=6)
    p.add_argument("--steps", type=int, default=4)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--cpu-repeats", type=int, default=7)
    p.add_argument("--link-reps", type=int, default=10)
    p.add_argument("--quick", action="store_true")
    p.add_argument("--timeout", type=float, default=1800.0, help="seconds any collective may wait")
    p.add_argument("--out", default=None, help="rank 0 writes the results here (JSON)")
    return p


def main(argv: Optional[List[str]] = None) -> None:
    """Runs one rank; exits the process (gloo's teardown at interpreter exit aborts now and
    then with this torch: see tests/gloo.py)."""
    args = build_parser().parse_args(argv)
    import torch
    import torch.distributed as dist

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=args.init, rank=args.rank, world_size=2,
                            timeout=datetime.timedelta(seconds=args.timeout))
    rank = args.rank
    groups = [dist.new_group([0, 1]) for _ in range(8)]  # PowerSGD: one per bucket index
    own = [dist.new_group([q]) for q in range(2)][rank]  # PowerSGD's local pass
    link = measure_link(torch, dist, 3 if args.quick else args.link_reps)
    from ..integrations.ddp import measure_link as gs_measure_link

    link["gradsparse"] = list(gs_measure_link())
    link["alpha_s"], link["beta_s_per_byte"] = link["gradsparse"]
    link["source"] = "gradsparse.integrations.ddp.measure_link"
    log(rank, f"link: all-reduce 1 KB {link['small_s'] * 1e3:.3f} ms, 16 MB {link['big_s'] * 1e3:.1f} ms")
    specs = dm.model_specs(args.quick)
    methods = dm.select_methods([m for m in args.methods.split(",") if m])
    out: Dict[str, Any] = {"link": link, "torch": torch.__version__, "models": {},
                           "settings": {k: getattr(args, k) for k in ("rounds", "steps", "warmup", "cpu_repeats",
                                                                      "quick")}}
    for name in [m for m in args.models.split(",") if m]:
        out["models"][name] = run_model(torch, dist, args, specs[name], methods, groups, own,
                                        (link["alpha_s"], link["beta_s_per_byte"]))
    if rank == 0 and args.out:
        with open(args.out, "w") as f:
            json.dump(out, f)
    dist.barrier()
    dist.destroy_process_group()
    sys.stdout.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
