"""How well one EvoFed round encodes the clients' mean update: cos(-g, mean delta) for the
plain and partitioned variants, with the noise shared by every chunk (the official code)
or independent per chunk, over many seeds (docs/results.md, EvoFed).

    python bench/evofed_fidelity.py [--d 878538] [--seeds 20] [--clients 5]

The updates are gradient-like (normal values times a lognormal scale per 4,096-element
block, so chunks differ in size, as layers do), small against sigma * ||z|| as in training;
the shaping is the official z-score. Prints mean [95% t interval] of the cosine per
setting, the paired difference shared - independent, and the reference 0.7 sqrt(N P / d)
(the P = 1 rule applied per chunk).
"""
from __future__ import annotations

import argparse
import math

import numpy as np

from gradsparse import evofed


def updates(rng: np.random.Generator, k: int, d: int) -> np.ndarray:
    scale = np.repeat(rng.lognormal(0.0, 1.0, size=-(-d // 4096)), 4096)[:d]
    common = rng.standard_normal(d) * scale  # clients share a direction, as in training
    return np.stack([(0.6 * common + 0.8 * rng.standard_normal(d) * scale) * 1e-3 for _ in range(k)]).astype(np.float32)


def cosine(pop: evofed.Population, rnd: int, deltas: np.ndarray) -> float:
    f = evofed.fitness(pop, rnd, deltas, shaping=evofed.Shaping(zscore=True))
    g = evofed.gradient(pop, rnd, f.mean(axis=0), deltas.shape[1]).astype(np.float64)
    m = deltas.mean(axis=0, dtype=np.float64)
    return float(-(g @ m) / (np.linalg.norm(g) * np.linalg.norm(m)))


def interval(x) -> str:
    x = np.asarray(x)
    t = {4: 2.776, 9: 2.262, 19: 2.093, 29: 2.045}.get(x.size - 1, 1.96)
    h = t * x.std(ddof=1) / math.sqrt(x.size)
    return f"{x.mean():.4f} [{x.mean() - h:.4f}, {x.mean() + h:.4f}]"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--d", type=int, default=878_538)
    ap.add_argument("--seeds", type=int, default=20)
    ap.add_argument("--clients", type=int, default=5)
    ap.add_argument("--population", type=int, default=32)
    a = ap.parse_args(argv)
    settings = [("P=1", 1, True), ("P=200 shared", 200, True), ("P=200 independent", 200, False)]
    res = {name: [] for name, _, _ in settings}
    for seed in range(a.seeds):
        deltas = updates(np.random.default_rng(seed), a.clients, a.d)
        for name, p, shared in settings:
            pop = evofed.Population(a.population, 0.35, seed=1000 + seed, partitions=p, shared_noise=shared)
            res[name].append(cosine(pop, 1, deltas))
    print(f"d = {a.d:,}, N = {a.population}, K = {a.clients}, {a.seeds} seeds; cos(-g, mean delta):")
    for name, p, _ in settings:
        print(f"  {name:<20} {interval(res[name])}   (0.7 sqrt(N P / d) = {0.7 * math.sqrt(a.population * p / a.d):.4f})")
    diff = np.array(res["P=200 shared"]) - np.array(res["P=200 independent"])
    print(f"  shared - independent (paired): {interval(diff)}, shared higher in {int((diff > 0).sum())} of {diff.size}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
