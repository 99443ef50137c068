"""Plain numpy references for the EvoFed tests.

* ``StandIn``: the three core functions (``evofed_noise``, ``evofed_stats``,
  ``evofed_update``) in numpy, with ``z`` drawn from ``np.random.default_rng((seed, round,
  j))`` -- the same shapes and chunk rules as the core, NOT the same numbers. The tests
  patch it into ``gradsparse._core`` only while the build has no EvoFed core.
* float64 references of distances, shaping, fitness and the update, computed from a
  materialised (N, d) population -- what the library must equal.
"""
from __future__ import annotations

import numpy as np


# ----------------------------------------------------------------------------- stand-in core

def _z(seed, rnd, member, stop):
    return np.random.default_rng((seed, rnd, member)).standard_normal(stop, dtype=np.float32)


def _chunk_noise(seed, rnd, j, d, partitions, shared):
    """z_j(t) for t < d, with the chunk rule applied (float32)."""
    if not shared or partitions == 1:
        return _z(seed, rnd, j, d)
    b = (np.arange(partitions + 1) * d) // partitions
    block = _z(seed, rnd, j, int(np.diff(b).max()))
    return np.concatenate([block[: b[c + 1] - b[c]] for c in range(partitions)])


class StandIn:
    """numpy twins of the core's EvoFed functions (slow; small d only)."""

    @staticmethod
    def evofed_noise(seed, rnd, member, start, out):
        out[:] = _z(seed, rnd, member, start + out.size)[start:]

    @staticmethod
    def evofed_stats(deltas, theta, seed, rnd, half, partitions, shared_noise):
        k, d = deltas.shape
        b = (np.arange(partitions + 1) * d) // partitions
        z = np.stack([_chunk_noise(seed, rnd, j, d, partitions, shared_noise) for j in range(half)]).astype(np.float64)
        D = deltas.astype(np.float64)
        zd = np.empty((k, partitions, half))
        zz = np.empty((partitions, half))
        dd = np.empty((k, partitions))
        zt = None if theta is None else np.empty((partitions, half))
        tt = None if theta is None else np.empty(partitions)
        for c in range(partitions):
            s = slice(b[c], b[c + 1])
            zd[:, c] = D[:, s] @ z[:, s].T
            zz[c] = (z[:, s] ** 2).sum(1)
            dd[:, c] = (D[:, s] ** 2).sum(1)
            if theta is not None:
                t = theta[s].astype(np.float64)
                zt[c] = z[:, s] @ t
                tt[c] = t @ t
        return zd, zz, zt, dd, tt

    @staticmethod
    def evofed_update(coef, d, seed, rnd, partitions, shared_noise, out):
        b = (np.arange(partitions + 1) * d) // partitions
        c_of_t = np.repeat(np.arange(partitions), np.diff(b))
        acc = np.zeros(d, np.float32)
        for j in range(coef.shape[1]):
            acc += coef[c_of_t, j].astype(np.float32) * _chunk_noise(seed, rnd, j, d, partitions, shared_noise)
        out[:] = acc


# ----------------------------------------------------------------------------- float64 references

def bounds(d, partitions):
    return (np.arange(partitions + 1) * d) // partitions


def distances(Z, sigma, deltas, partitions):
    """(K, P, N) ||sigma z_j - delta_k|| per chunk, from the materialised population Z (N, d)."""
    Z = Z.astype(np.float64)
    D = np.atleast_2d(deltas).astype(np.float64)
    b = bounds(Z.shape[1], partitions)
    out = np.empty((D.shape[0], partitions, Z.shape[0]))
    for c in range(partitions):
        s = slice(b[c], b[c + 1])
        diff = sigma * Z[None, :, s] - D[:, None, s]
        out[:, c] = np.sqrt((diff ** 2).sum(-1))
    return out


def member_sq_means(Z, sigma, theta, partitions):
    """(P, N) mean over chunk c of (theta + sigma z_j)^2."""
    X = theta.astype(np.float64)[None, :] + sigma * Z.astype(np.float64)
    b = bounds(Z.shape[1], partitions)
    return np.stack([(X[:, b[c]:b[c + 1]] ** 2).mean(1) for c in range(partitions)])


def shape(values, centered_ranks=False, rank_factor=1, zscore=True, weight=0.0, sq_means=None):
    """The official shaping of +distances along the last axis, one row at a time."""
    out = np.empty_like(values, dtype=np.float64)
    n = values.shape[-1]
    for idx in np.ndindex(values.shape[:-1]):
        f = values[idx].astype(np.float64)
        if centered_ranks:
            order = sorted(range(n), key=lambda i: (f[i], i))
            ranks = np.empty(n)
            for r, i in enumerate(order):
                ranks[i] = r // rank_factor
            f = ranks / (n - 1) - 0.5
        if zscore:
            sd = f.std()
            f = np.zeros(n) if sd == 0 else (f - f.mean()) / sd
        if weight:
            f = f - weight * sq_means[idx[-1]]
        out[idx] = f
    return out


def gradient(Z, F, sigma, partitions):
    """(d,) (1/(N sigma)) sum_j F[c(t), j] z_j(t), float64."""
    n, d = Z.shape
    b = bounds(d, partitions)
    g = np.empty(d)
    for c in range(partitions):
        s = slice(b[c], b[c + 1])
        g[s] = F[c] @ Z[:, s].astype(np.float64) / (n * sigma)
    return g
