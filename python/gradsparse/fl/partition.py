"""Client partitions of a labelled dataset: Dirichlet label skew, shards, IID, class pairs
(numpy only).

Every function takes the labels and a ``numpy.random.Generator`` and returns one sorted
int64 index array per client; the same seed gives the same partition.
"""
from __future__ import annotations

from typing import List

import numpy as np
from ..errors import ArgumentError

__all__ = ["dirichlet", "shards", "iid", "class_pairs", "partition", "label_histograms", "validation_split"]


def dirichlet(labels: np.ndarray, num_clients: int, alpha: float, rng: np.random.Generator,
              min_size: int = 10, max_tries: int = 1000) -> List[np.ndarray]:
    """Label skew: for every class, the shares of the clients are drawn from
    Dirichlet(alpha, ..., alpha) and the class's (shuffled) samples are cut accordingly.
    The draw is repeated until every client holds at least `min_size` samples (as Flower's
    DirichletPartitioner); after `max_tries` draws it fails with a ValueError."""
    if alpha <= 0:
        raise ArgumentError(f"alpha: must be > 0, got {alpha}")
    n = labels.size
    if num_clients * min_size > n:
        raise ArgumentError(f"min_partition_size: {num_clients} clients x {min_size} > {n} samples")
    classes = np.unique(labels)
    by_class = [np.flatnonzero(labels == c) for c in classes]
    for _ in range(max_tries):
        parts: List[List[np.ndarray]] = [[] for _ in range(num_clients)]
        for idx in by_class:
            idx = rng.permutation(idx)
            shares = rng.dirichlet(np.full(num_clients, float(alpha)))
            cuts = (np.cumsum(shares)[:-1] * idx.size).astype(np.int64)
            for c, piece in enumerate(np.split(idx, cuts)):
                parts[c].append(piece)
        out = [np.sort(np.concatenate(p)).astype(np.int64) for p in parts]
        if min(p.size for p in out) >= min_size:
            return out
    raise ArgumentError(f"alpha: no Dirichlet({alpha}) partition with >= {min_size} samples per client "
                     f"in {max_tries} draws; lower min_partition_size or raise alpha")


def shards(labels: np.ndarray, num_clients: int, per_client: int, rng: np.random.Generator) -> List[np.ndarray]:
    """Sort by label, cut into ``num_clients * per_client`` equal shards, deal
    ``per_client`` random shards to each client (McMahan et al.; EvoFed uses 2)."""
    count = num_clients * per_client
    if count > labels.size:
        raise ArgumentError(f"shards_per_client: {count} shards > {labels.size} samples")
    order = np.argsort(labels, kind="stable")
    pieces = np.array_split(order, count)
    deal = rng.permutation(count).reshape(num_clients, per_client)
    return [np.sort(np.concatenate([pieces[j] for j in row])).astype(np.int64) for row in deal]


def iid(labels: np.ndarray, num_clients: int, rng: np.random.Generator) -> List[np.ndarray]:
    if num_clients > labels.size:
        raise ArgumentError(f"num_clients: {num_clients} clients > {labels.size} samples")
    return [np.sort(p).astype(np.int64) for p in np.array_split(rng.permutation(labels.size), num_clients)]


def class_pairs(labels: np.ndarray, num_clients: int) -> List[np.ndarray]:
    """EvoFed's split: client ``i`` holds every sample whose label ``c`` has
    ``c mod num_clients == i`` (10 classes, 5 clients: classes {i, i + 5}). Deterministic
    (no seed); more clients than classes, or a client left without samples, is refused."""
    classes = np.unique(labels)
    if num_clients > classes.size:
        raise ArgumentError(f"num_clients: the class-pairs partition needs at most one client per class; "
                            f"{num_clients} clients > {classes.size} classes")
    owner = np.asarray(labels, np.int64) % num_clients
    out = [np.flatnonzero(owner == i).astype(np.int64) for i in range(num_clients)]
    empty = [i for i, p in enumerate(out) if p.size == 0]
    if empty:
        raise ArgumentError(f"num_clients: with the class-pairs partition client(s) {empty} hold no sample "
                            "(no label c with c mod num_clients == i in the training data)")
    return out


def partition(kind: str, labels: np.ndarray, num_clients: int, *, alpha: float = 0.5, min_size: int = 10,
              shards_per_client: int = 2, seed: int = 0) -> List[np.ndarray]:
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0xA11CE]))
    if kind == "dirichlet":
        return dirichlet(labels, num_clients, alpha, rng, min_size)
    if kind == "shards":
        return shards(labels, num_clients, shards_per_client, rng)
    if kind == "iid":
        return iid(labels, num_clients, rng)
    if kind == "class-pairs":
        return class_pairs(labels, num_clients)
    raise ArgumentError(f"partition: expected 'dirichlet', 'shards', 'iid' or 'class-pairs', got {kind!r}")


def label_histograms(labels: np.ndarray, parts: List[np.ndarray], num_classes: int = 10) -> np.ndarray:
    """(clients, classes) counts."""
    return np.stack([np.bincount(labels[p], minlength=num_classes) for p in parts])


def validation_split(labels: np.ndarray, fraction: float, seed: int):
    """(kept, held out) sorted int64 index arrays: ``round(fraction * count)`` images of every
    class held out at random (stratified), seeded by `seed`; fraction 0 holds out nothing."""
    n = labels.size
    if fraction <= 0:
        return np.arange(n, dtype=np.int64), np.zeros(0, np.int64)
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0x7A1]))
    held = []
    for c in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == c))
        held.append(idx[:int(round(fraction * idx.size))])
    out = np.sort(np.concatenate(held)).astype(np.int64)
    mask = np.ones(n, bool)
    mask[out] = False
    return np.flatnonzero(mask).astype(np.int64), out
