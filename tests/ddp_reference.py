"""Plain numpy references of the DDP hook's traffic schemes (float32 buckets), written from
the package docstring, one loop at a time: a rank's selection with error feedback, the
allgather and dense sums, and the split scheme's regions, reduction and re-selection."""
from __future__ import annotations

from typing import Dict, List, Sequence, Tuple

import numpy as np


def top(acc: np.ndarray, k: int) -> np.ndarray:
    """Ascending positions of the k largest |acc| (ties by the lower index)."""
    return np.sort(np.argsort(-np.abs(acc.astype(np.float64)), kind="stable")[:min(k, acc.size)])


def bf16(x: np.ndarray) -> np.ndarray:
    """float32 -> bfloat16 (round to nearest even) -> float32."""
    b = x.astype(np.float32).view(np.uint32).astype(np.uint64)
    r = ((b + 0x7FFF + ((b >> 16) & 1)) >> 16).astype(np.uint32) << 16
    return r.astype(np.uint32).view(np.float32)


def mean_into(n: int, parts: Sequence[Tuple[np.ndarray, np.ndarray]], world: int) -> np.ndarray:
    """out[i] += v / W over the parts in order (float32, one addition at a time)."""
    out = np.zeros(n, np.float32)
    w = np.float32(world)
    for idx, vals in parts:
        for i, v in zip(idx, vals):
            out[i] = np.float32(out[i] + np.float32(v) / w)
    return out


class Ranks:
    """Every rank's residual per bucket (by bucket name)."""

    def __init__(self, world: int) -> None:
        self.world = world
        self.e: List[Dict[str, np.ndarray]] = [{} for _ in range(world)]

    def acc(self, r: int, name: str, x: np.ndarray) -> np.ndarray:
        e = self.e[r].setdefault(name, np.zeros(x.size, np.float32))
        e += x
        return e

    def allgather(self, name: str, ins: Sequence[np.ndarray], k: int, value_dtype: str = "float32") -> np.ndarray:
        parts = []
        for r, x in enumerate(ins):
            e = self.acc(r, name, x)
            sel = top(e, k)
            sent = bf16(e[sel]) if value_dtype == "bfloat16" else e[sel].copy()
            e[sel] -= sent
            parts.append((sel, sent))
        return mean_into(ins[0].size, parts, self.world)

    def split(self, name: str, ins: Sequence[np.ndarray], k: int) -> np.ndarray:
        n, w = ins[0].size, self.world
        m, cap = -(-n // w), -(-k // w)
        shares: List[List[Tuple[np.ndarray, np.ndarray]]] = [[] for _ in range(w)]  # owner -> parts
        for r, x in enumerate(ins):
            e = self.acc(r, name, x)
            for o in range(w):
                lo, hi = min(o * m, n), min((o + 1) * m, n)
                sel = top(e[lo:hi], cap) + lo
                shares[o].append((sel, e[sel].copy()))
                e[sel] = 0
        final = []
        for o in range(w):
            sums: Dict[int, np.float32] = {}
            for sel, vals in shares[o]:  # rank order
                for i, v in zip(sel, vals):
                    sums[int(i)] = np.float32(sums.get(int(i), np.float32(0)) + v)
            where = np.array(sorted(sums), dtype=np.int64)
            s = np.array([sums[i] for i in where], dtype=np.float32)
            keep = top(s, cap)
            final.append((where[keep], s[keep]))
            dropped = np.setdiff1d(np.arange(where.size), keep)
            self.e[o][name][where[dropped]] += s[dropped]  # back to the owner's own residual
        return mean_into(n, final, w)


class FakeBucket:
    """The parts of dist.GradBucket the hook reads (for calling the hook directly)."""

    def __init__(self, buf, params):
        self._buf, self._params = buf, params

    def buffer(self):
        return self._buf

    def parameters(self):
        return self._params

    def index(self):
        return 0

    def is_last(self):
        return True
