"""gradsparse benchmark: ``python -m gradsparse.bench [--quick] [--suite all|select|wire|dropin|atomo|compress] [--json PATH] ...``

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

(``--suite evofed`` runs the EvoFed benchmark of :mod:`gradsparse.bench.evofed`: encode +
decode for 5 clients at the official FMNIST and CIFAR sizes against an official-style numpy
implementation, the best materialising numpy and the noise-generation floor, with CPU time
and peak extra memory; ``--threads`` applies to gradsparse and the floor. Not part of ``all``.)

(``python -m gradsparse.bench ddp [...]`` runs the DDP step-time benchmark of
:mod:`gradsparse.bench.ddp` instead -- two gloo ranks training ResNet-18 and an MLP with plain
DDP, bf16, PowerSGD and gradsparse's hook, on loopback and on shaped veth links; its own
options, see ``python -m gradsparse.bench ddp --help``. Not part of ``all``.)

(``python -m gradsparse.bench cuda [...]`` runs the CUDA suite of :mod:`gradsparse.bench.cuda`
instead -- the CUDA backend's selection, global selection and error-feedback step against
torch.topk + gather, torch.cat + topk and one read of the input on the GPU, CUDA-event timed,
checked against the CPU engine first; without a GPU or the CUDA build it says why and exits 0.
Not part of ``all``.)

(``--suite dropin`` times ``gradsparse.topk`` itself against ``torch.topk`` as a drop-in
replacement -- 1-D, 2-D row-wise, 3-D/4-D along dim=1, k in {1, 0.1%, 1%, 10%}, sorted and
unsorted, float32 and bfloat16, and the fused ``key="abs"`` path -- see
:mod:`gradsparse.bench.dropin`. ``all`` runs its quick subset; ``--suite dropin`` the full
grid, or the same quick subset with ``--quick``. ``--threads`` and ``--repeats`` apply to it
(at least 7 samples unless ``--quick``); ``--sizes``/``--ratios`` do not.)

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
import json
import os
import platform
import sys
import time
from typing import Any, Dict, Optional, Sequence

import numpy as np

import gradsparse as gs

from . import atomo as bench_atomo, compress as bench_compress, dropin as bench_dropin, wire as bench_wire
from . import evofed as bench_evofed
from .common import (
    BLOCK,
    SEED,
    SCALAR_COST,
    TARGETS,
    VerificationError,
    parse_sizes,
    parse_ratios,
    all_threads,
    parse_threads,
    cpu_model,
    cpu_caches,
    mem_total,
    core_info,
    load_avg,
    busy_cpu_s,
    own_cpu_s,
    load_torch,
    Out,
)
from .select import Bench, summarize


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
    p.add_argument("--suite", choices=("all", "select", "wire", "dropin", "atomo", "compress", "evofed"), default="all",
                   help="which benchmarks: selection (top-k, CWMP, global), wire format, gradsparse.topk as a "
                        "drop-in for torch.topk (dropin: the full grid; all runs its quick subset), all three "
                        "(all, the default), the ATOMO benchmark (SVD, FFT, end to end; not part of all), "
                        "every compressor of gradsparse.compress on a ResNet-18 update (not part of all), or "
                        "EvoFed encode + decode against materialising numpy and the noise floor (not part of all)")
    return p


def main(argv: Optional[Sequence[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["ddp"]:  # the DDP step-time suite has options of its own
        from . import ddp as bench_ddp

        return bench_ddp.main(argv[1:])
    if argv[:1] == ["cuda"]:  # the CUDA suite: its own options, never part of the default run
        from . import cuda as bench_cuda

        return bench_cuda.main(argv[1:])
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
    compress_res: Dict[str, Any] = {}
    evofed_res: Dict[str, Any] = {}
    dropin_res: Dict[str, Any] = {}
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
        if args.suite in ("all", "dropin"):
            if args.suite == "all":
                out()
            dropin_repeats = args.repeats if args.quick else max(bench_dropin.MIN_REPEATS, args.repeats)
            dropin_res = bench_dropin.run(out, bench, torch, quick=args.quick or args.suite == "all",
                                          repeats=dropin_repeats, threads=args.threads)
        if args.suite == "atomo":
            atomo_res = bench_atomo.run(out, quick=args.quick, repeats=args.repeats,
                                        torch=torch if torch is not None else None)
        if args.suite == "compress":
            compress_res = bench_compress.run(out, quick=args.quick, repeats=args.repeats)
        if args.suite == "evofed":
            evofed_res = bench_evofed.run(out, quick=args.quick, repeats=args.repeats, threads=args.threads)
    except (VerificationError, bench_wire.WireVerificationError, bench_atomo.AtomoVerificationError,
            bench_compress.CompressVerificationError, bench_evofed.EvofedVerificationError) as exc:
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
        "compress": compress_res,
        "evofed": evofed_res,
        "dropin": dropin_res,
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
    retimings = bench.attempts_total - bench.groups + evofed_res.get("retimings", 0)
    out(f"re-timings because other processes were busy: {retimings}; rows still disturbed after "
        f"{bench.max_attempts} attempts (marked *): {bench.disturbed_rows + evofed_res.get('disturbed_rows', 0)}")
    out(f"{len(bench.verified) + len(wire.get('verified', [])) + len(atomo_res.get('verified', [])) + len(compress_res.get('verified', [])) + len(evofed_res.get('verified', []))} results verified; total time {elapsed:.0f} s; JSON: {args.json or '-'}")
    return 0

