"""ATOMO benchmark: ``python -m gradsparse.bench.atomo [--quick] [--repeats N]``, also run by
``python -m gradsparse.bench --suite atomo`` (and ``python bench/run_bench.py --suite atomo``).

1. Exact thin SVD (float32) on CIFAR-10 layer shapes 64x576, 128x1152, 256x2304,
   512x4608, 256x4096 vs ``numpy.linalg.svd(full_matrices=False)`` and ``torch.linalg.svd``
   (torch at gradsparse's thread count, if torch is installed); randomized rank-8 mode
   (oversampling 8, 2 power iterations) vs the same baselines.
2. Real FFT vs ``numpy.fft.rfft`` for power-of-two and other lengths; orthonormal DCT vs
   ``scipy.fft.dct`` if scipy is installed.
   Also the path ``atomo.sample(atoms="svd")`` takes: all singular values and the singular
   vectors of the sampled atoms only (``_core.svd_atomo``, budget 2).
3. End to end: spectral ATOMO of a whole CIFAR-10 CNN update (VGG-like conv layers, a
   fully connected layer and biases; budget 2 atoms per tensor) vs a plain numpy
   implementation of the same algorithm (numpy SVD, Algorithm 1 in numpy, numpy Bernoulli).
   gradsparse computes every singular value but singular vectors only for the sampled
   atoms; this is verified before timing (singular values and probabilities vs numpy, the
   same atoms as the full-SVD route with the same seed, orthonormal sampled triplets with
   A^T u = s v).

Every figure is printed beside its baseline from the same run. Results are verified before
timing (singular values vs numpy to 1e-4 relative; randomized: orthonormal factors, Ritz
values between 0.9x and 1x numpy's top 8 on these flat-spectrum Gaussian matrices; FFT to
1e-5; full-budget ATOMO equal to the input); a mismatch aborts.
"""
from __future__ import annotations

import argparse
import sys
from typing import Any, Callable, Dict, List, Optional, Tuple

import numpy as np

import gradsparse as gs
from gradsparse import _core, atomo

from .common import timeit

SHAPES = [(64, 576), (128, 1152), (256, 2304), (512, 4608), (256, 4096)]
FFT_LENGTHS = [1 << 12, 1 << 16, 1 << 20, 1000, 100_000, 1_000_003]
CNN = {  # a VGG-like CIFAR-10 model: conv weights, biases, one classifier matrix
    "conv1.weight": (64, 3, 3, 3), "conv1.bias": (64,),
    "conv2.weight": (64, 64, 3, 3), "conv2.bias": (64,),
    "conv3.weight": (128, 128, 3, 3), "conv3.bias": (128,),
    "conv4.weight": (256, 256, 3, 3), "conv4.bias": (256,),
    "conv5.weight": (512, 512, 3, 3), "conv5.bias": (512,),
    "fc1.weight": (256, 4096), "fc1.bias": (256,),
    "fc2.weight": (10, 256), "fc2.bias": (10,),
}


class AtomoVerificationError(Exception):
    """A result differed from its reference before timing."""


VERIFIED: List[str] = []


def check(cond: bool, what: str) -> None:
    if not cond:
        raise AtomoVerificationError(what)
    VERIFIED.append(what)


def bench_svd(repeats: int, torch, out: Callable[..., None] = print) -> List[Dict]:
    rng = np.random.default_rng(0)
    rows = []
    for m, n in SHAPES:
        a = rng.standard_normal((m, n)).astype(np.float32)
        ref = np.linalg.svd(a.astype(np.float64), compute_uv=False)
        u, s, vt = _core.svd(a)
        check(np.allclose(s, ref, rtol=1e-4), f"svd singular values {m}x{n}")
        check(np.linalg.norm((u * s) @ vt - a) <= 1e-5 * np.linalg.norm(a), f"svd reconstruction {m}x{n}")
        ur, sr, vr = _core.svd_randomized(a, 8, 8, 2, 1)
        check(ur.shape == (m, 8) and vr.shape == (8, n), f"randomized shape {m}x{n}")
        check(np.all(sr <= ref[:8] * (1 + 1e-5)) and np.all(sr >= 0.9 * ref[:8]), f"randomized sigma {m}x{n}")
        check(np.allclose(_core.svd_values(a), ref, rtol=1e-4), f"svd_values {m}x{n}")
        check(np.allclose(ur.T @ ur, np.eye(8), atol=1e-5) and np.allclose(vr @ vr.T, np.eye(8), atol=1e-5),
              f"randomized orthonormal {m}x{n}")
        row = {"shape": f"{m}x{n}",
               "gs": timeit(lambda: _core.svd(a), repeats),
               "gs_rand8": timeit(lambda: _core.svd_randomized(a, 8, 8, 2, 1), repeats),
               "gs_atomo2": timeit(lambda: _core.svd_atomo(a, 2.0, 1, 3), repeats),
               "numpy": timeit(lambda: np.linalg.svd(a, full_matrices=False), repeats)}
        if torch is not None:
            t = torch.from_numpy(a)
            row["torch"] = timeit(lambda: torch.linalg.svd(t, full_matrices=False), repeats)
        rows.append(row)
        tt = f"{row['torch'] * 1e3:9.1f}" if "torch" in row else "      n/a"
        tr = f", x{row['torch'] / row['gs_rand8']:.1f} vs torch" if "torch" in row else ""
        out(f"  {row['shape']:>9}  gradsparse {row['gs'] * 1e3:8.1f} ms  numpy {row['numpy'] * 1e3:8.1f} ms"
            f"  torch {tt} ms  | x{row['numpy'] / row['gs']:.2f} vs numpy"
            f"  | randomized r=8 {row['gs_rand8'] * 1e3:7.2f} ms (x{row['numpy'] / row['gs_rand8']:.1f} vs numpy{tr})"
            f"  | all sigma + 2 sampled atoms {row['gs_atomo2'] * 1e3:7.2f} ms (x{row['numpy'] / row['gs_atomo2']:.1f})")
    return rows


def bench_fft(repeats: int, out: Callable[..., None] = print) -> List[Dict]:
    try:
        import scipy.fft as sfft
    except ImportError:  # pragma: no cover - optional
        sfft = None
    rng = np.random.default_rng(1)
    rows = []
    for n in FFT_LENGTHS:
        x = rng.standard_normal(n)
        ref = np.fft.rfft(x)
        check(np.abs(_core.rfft(x) - ref).max() <= 1e-5 * np.abs(ref).max(), f"rfft n={n}")
        g = timeit(lambda: _core.rfft(x), repeats)
        b = timeit(lambda: np.fft.rfft(x), repeats)
        row = {"n": n, "gs": g, "numpy": b}
        line = f"  n={n:>9}  rfft gradsparse {g * 1e3:8.3f} ms  numpy {b * 1e3:8.3f} ms  ratio {g / b:5.2f}"
        if sfft is not None:
            check(np.allclose(_core.dct(x), sfft.dct(x, norm="ortho"), atol=1e-9 * np.abs(x).sum()), f"dct n={n}")
            gd = timeit(lambda: _core.dct(x), repeats)
            bd = timeit(lambda: sfft.dct(x, norm="ortho"), repeats)
            row.update(gs_dct=gd, scipy_dct=bd)
            line += f"  | dct gradsparse {gd * 1e3:8.3f} ms  scipy {bd * 1e3:8.3f} ms"
        rows.append(row)
        out(line)
    return rows


def numpy_atomo(update: Dict[str, np.ndarray], budget: float, rng: np.random.Generator) -> Dict[str, np.ndarray]:
    """Plain numpy spectral ATOMO (the reference implementation the core is timed against)."""
    out = {}
    for name, x in update.items():
        if x.ndim == 1:
            lam = x.astype(np.float64)
            p = _np_probabilities(lam, budget)
            keep = rng.random(lam.size) < p
            est = np.zeros_like(lam)
            est[keep] = lam[keep] / p[keep]
            out[name] = est.astype(np.float32)
            continue
        mat = x.reshape(x.shape[0], -1)
        u, s, vt = np.linalg.svd(mat, full_matrices=False)
        p = _np_probabilities(s.astype(np.float64), budget)
        keep = rng.random(s.size) < p
        out[name] = ((u[:, keep] * (s[keep] / p[keep])) @ vt[keep]).reshape(x.shape).astype(np.float32)
    return out


def _np_probabilities(lam: np.ndarray, s: float) -> np.ndarray:
    mag = np.abs(lam)
    order = np.argsort(-mag)
    srt = mag[order]
    suffix = np.cumsum(srt[::-1])[::-1]
    p_sorted = np.zeros_like(srt)
    i = 0
    while i < srt.size:
        if srt[i] * s <= suffix[i]:
            if suffix[i] > 0:
                p_sorted[i:] = s * srt[i:] / suffix[i]
            break
        p_sorted[i] = 1.0
        s -= 1
        i += 1
    p = np.empty_like(p_sorted)
    p[order] = p_sorted
    return p


def check_fast_path(mat: np.ndarray, ref_s: np.ndarray, budget: float, seed: int, name: str) -> None:
    """The timed path (atomo.sample -> _core.svd_atomo: all singular values, vectors of the
    sampled atoms only) against numpy and against the full-SVD route with the same seed."""
    idx, u, vals, vt, S, p = _core.svd_atomo(mat, budget, seed, 3)
    big = ref_s >= 1e-3 * ref_s[0]
    check(np.allclose(S[big], ref_s[big], rtol=1e-4), f"fast-path singular values {name}")
    check(np.allclose(p, _np_probabilities(ref_s, budget), rtol=1e-5, atol=1e-12), f"fast-path p {name}")
    _, s_full, _ = _core.svd(mat)
    want = _core.bernoulli_sample(_core.atomo_probabilities(s_full.astype(np.float64), budget), seed, 3)
    got = atomo.sample(mat, atoms="svd", budget=budget, seed=seed)
    check(np.array_equal(got.indices, want) and np.array_equal(idx, want), f"fast-path same atoms as full SVD {name}")
    if len(idx):
        s_kept = vals.astype(np.float64) * p[idx]
        a64 = mat.astype(np.float64)
        ok = (np.allclose(s_kept, ref_s[idx], rtol=1e-4)
              and np.allclose(u.T @ u, np.eye(len(idx)), atol=1e-5) and np.allclose(vt @ vt.T, np.eye(len(idx)), atol=1e-5)
              and np.linalg.norm(a64.T @ u - vt.T * s_kept) <= 1e-5 * np.linalg.norm(a64))
        check(ok, f"fast-path sampled singular triplets {name}")


def bench_end_to_end(repeats: int, out: Callable[..., None] = print) -> Tuple[float, float]:
    rng = np.random.default_rng(2)
    update = {k: rng.standard_normal(v).astype(np.float32) * 0.01 for k, v in CNN.items()}
    # Verify: with a budget above every rank both reproduce the update exactly.
    for name, x in update.items():
        full = atomo.sample(x, atoms="svd", budget=1e6, seed=0).to_dense()
        check(np.allclose(full, x, rtol=1e-4, atol=1e-6), f"full-budget gradsparse {name}")
    ref = numpy_atomo(update, 1e6, np.random.default_rng(0))
    check(all(np.allclose(ref[k], update[k], rtol=1e-4, atol=1e-6) for k in update), "full-budget numpy")
    for i, (name, x) in enumerate(update.items()):  # same probabilities as the numpy Algorithm 1
        if x.ndim > 1:
            mat = x.reshape(x.shape[0], -1)
            s = np.linalg.svd(mat.astype(np.float64), compute_uv=False)
            check(np.allclose(atomo.probabilities(s, 2.0), _np_probabilities(s, 2.0), rtol=1e-6), f"p {name}")
            check_fast_path(mat, s, 2.0, i, name)

    def run_gs():
        return {k: atomo.sample(v, atoms="svd", budget=2.0, seed=i) for i, (k, v) in enumerate(update.items())}

    g = timeit(run_gs, repeats)
    b = timeit(lambda: numpy_atomo(update, 2.0, np.random.default_rng(0)), repeats)
    n_params = sum(int(np.prod(v)) for v in CNN.values())
    out(f"  CNN update ({n_params / 1e6:.2f} M params, {len(CNN)} tensors, budget 2 atoms/tensor): "
        f"gradsparse {g * 1e3:.1f} ms  plain numpy {b * 1e3:.1f} ms  speed-up x{b / g:.2f}")
    return g, b


def load_torch():
    try:
        import torch
        torch.set_num_threads(gs.get_num_threads())
    except ImportError:  # pragma: no cover - optional
        torch = None
    return torch


def run(out: Callable[..., None] = print, quick: bool = False, repeats: int = 5,
        skip: Optional[set] = None, torch: Any = "auto") -> Dict[str, Any]:
    """Runs the ATOMO tables (SVD, FFT/DCT, end to end); returns their rows. Raises
    AtomoVerificationError when a result differs from its reference before timing."""
    skip = skip or set()
    repeats = 2 if quick else repeats
    if torch == "auto":
        torch = load_torch()
    elif torch is not None:
        torch.set_num_threads(gs.get_num_threads())  # same thread count as gradsparse
    out(f"ATOMO: gradsparse {gs.__version__}  threads {gs.get_num_threads()}  simd {gs.get_simd_level()}"
        f"  numpy {np.__version__}  torch {getattr(torch, '__version__', 'n/a')}")
    res: Dict[str, Any] = {"repeats": repeats}
    if "svd" not in skip:
        out("Thin SVD, float32 (median of %d):" % repeats)
        res["svd"] = bench_svd(repeats, torch, out)
    if "fft" not in skip:
        out("Real FFT / DCT, float64 (median of %d):" % repeats)
        res["fft"] = bench_fft(repeats, out)
    if "e2e" not in skip:
        out("End-to-end spectral ATOMO (median of %d):" % repeats)
        g, b = bench_end_to_end(repeats, out)
        res["e2e"] = {"gs": g, "numpy": b}
    res["verified"] = list(VERIFIED)
    return res


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="fewer repeats and sizes")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--skip", default="", help="comma-separated: svd,fft,e2e")
    args = ap.parse_args(argv)
    skip = set(filter(None, args.skip.split(",")))

    def out(*a):
        print(*a, flush=True)

    try:
        run(out, quick=args.quick, repeats=args.repeats, skip=skip)
    except AtomoVerificationError as exc:
        sys.exit(f"verification failed: {exc}")


if __name__ == "__main__":
    main()
