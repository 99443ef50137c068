"""float64 numpy references for the EvoFed tests: distances, shaping, the weight term
and the update, computed from a materialised (N, d) population (``Population.materialize``,
the core's own noise) -- what the streamed library must equal."""
from __future__ import annotations

import numpy as np


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
