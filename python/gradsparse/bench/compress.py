"""The compression-layer benchmark (``python -m gradsparse.bench --suite compress``).

Every compressor of the registry (:mod:`gradsparse.compress`), with its default settings
and ratio 1%, compresses the same ResNet-18-shaped update (the 62 tensors of the CIFAR
variant, 11.2M float32 parameters) inside error feedback, as the FL harness runs it.
Each row gives the median time of ``compress`` (selection + encoding + the residual
update) and of ``decompress``, and the payload's size against the dense float32 update.

Cost-aware compressors (cwmp) get one cost per tensor, U[0.5, 2), seeded. Before timing,
every result is checked: the payload decodes (its wire messages verified), and error feedback's
invariant holds -- what is sent plus the new residual equals the update plus the old
residual (to float32 rounding of the accumulation).
"""
from __future__ import annotations

from typing import Any, Dict, List

import numpy as np

from .. import compress as gc
from .common import SEED, Out, resnet18_shapes, resnet_data, timeit

__all__ = ["run", "CompressVerificationError"]

#: settings per compressor (the rest stay at their defaults)
RATIO = 0.01


class CompressVerificationError(RuntimeError):
    """A compressor's output failed its check; the benchmark stops."""


def _settings(name: str) -> Dict[str, Any]:
    params = gc.compressor_class(name).params
    return {"ratio": RATIO} if "ratio" in params else {}


def _check(name: str, comp: Any, update: Dict[str, np.ndarray], costs: Dict[str, float],
           seed: int) -> Dict[str, np.ndarray]:
    """One compress inside error feedback, verified; returns the decoded update."""
    ef = gc.ErrorFeedback()
    before = {n: np.zeros(a.size, np.float64) for n, a in update.items()}
    out = comp.compress(update, seed=seed, costs=costs, feedback=ef)
    # decompress decodes the payload's message(s): header, sections and checksum verified
    # (raises otherwise)
    got = comp.decompress(out.payload, update)
    for n, a in update.items():
        res = ef.residual(n)
        sent = np.asarray(got[n], np.float64).reshape(-1)
        total = sent + (np.zeros(a.size) if res is None else np.asarray(res, np.float64).reshape(-1))
        want = a.astype(np.float64).reshape(-1) + before[n]
        # residual = float32(update + old residual) - sent, in float32: two roundings
        tol = 4 * np.finfo(np.float32).eps * (np.abs(want) + np.abs(sent)) + 1e-30
        if not np.all(np.abs(total - want) <= tol):
            raise CompressVerificationError(f"{name}: sent + residual != update for {n}")
    return got


def run(out: Out, *, quick: bool = False, repeats: int = 7) -> Dict[str, Any]:
    shapes = resnet18_shapes()
    if quick:
        shapes = shapes[:20]
    xs = resnet_data(shapes)
    update = {name: x for (name, _), x in zip(shapes, xs)}
    rng = np.random.default_rng(SEED)
    costs = {name: float(c) for name, c in zip(update, rng.uniform(0.5, 2.0, len(update)))}
    dense = sum(x.nbytes for x in xs)
    params = sum(x.size for x in xs)
    reps = max(1, min(repeats, 3 if quick else repeats))
    out(f"== compression layer: every registered compressor on a ResNet-18 update ({len(update)} tensors, "
        f"{params:,} float32 parameters, {dense / 2**20:.1f} MiB), inside error feedback; "
        f"ratio {RATIO:g} where it applies, other settings default")
    out("   median ms of compress (selection + encoding + residual update) and decompress; bytes = len(payload)")
    hdr = f"{'compressor':>14} | {'compress':>9} {'decompress':>10} | {'bytes':>11} {'of dense':>8}"
    out(hdr)
    out("-" * len(hdr))
    rows: List[Dict[str, Any]] = []
    verified: List[str] = []
    for name in gc.available_compressors():
        comp = gc.make_compressor(name, _settings(name))
        _check(name, comp, update, costs, SEED)
        verified.append(name)
        ef = gc.ErrorFeedback()
        step = iter(range(10**9))
        last: Dict[str, Any] = {}

        def do_compress() -> None:
            last["out"] = comp.compress(update, seed=next(step), costs=costs, feedback=ef)

        t_c = timeit(do_compress, reps)
        payload = last["out"].payload
        t_d = timeit(lambda: comp.decompress(payload, update), reps)
        row = dict(compressor=name, settings=comp.settings(), compress_s=t_c, decompress_s=t_d,
                   bytes=len(payload), dense_bytes=dense)
        rows.append(row)
        out(f"{name:>14} | {1e3 * t_c:9.2f} {1e3 * t_d:10.2f} | {len(payload):11,} {len(payload) / dense:8.2%}")
    return {"rows": rows, "verified": [f"compress:{n}" for n in verified]}
