"""The shared antithetic population: its parameters, chunk rule and (for small d) the
materialised noise. All noise comes from the core's counter-based generator
``z(seed, round, member, element)``; nothing here draws random numbers."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from .. import _core
from ..errors import ArgumentError
from . import _args

#: materialize() refuses populations of more elements than this (512 MiB of float32)
MATERIALIZE_LIMIT = 2**27
#: the generator's element counter: element indices must stay below this
ELEMENT_LIMIT = 2**34


@dataclass(frozen=True)
class Population:
    """N antithetic members ``x_j = theta + sigma z_j``: ``z_j`` for ``j < N/2`` are the
    generator's noise for (seed, round, j), member ``N/2 + j`` is ``-z_j``.

    ``partitions`` (P) cuts the d parameters into P contiguous chunks,
    chunk c = ``[c*d//P, (c+1)*d//P)`` (sizes differ by at most 1, no padding), each with
    its own fitness vector. ``shared_noise=True`` reuses the noise of elements
    ``0 .. size_c - 1`` in every chunk, as the official code does; ``False`` gives every
    element its own noise (element t uses index t). With P = 1 both are the same.

    Immutable (a frozen dataclass), so safe to share between threads. Arguments are checked
    on construction (``size`` even and >= 2, ``sigma`` finite and > 0, ``seed`` in
    [0, 2^64), ``partitions`` >= 1; ``partitions <= d`` is checked where d is known).
    """

    size: int
    sigma: float
    seed: int = 0
    partitions: int = 1
    shared_noise: bool = True

    def __post_init__(self):
        size = _args.integer(self.size, "size", 2, 2**33)
        if size % 2:
            raise ArgumentError(f"size: the population size must be even (antithetic pairs), got {size}")
        set_ = object.__setattr__
        set_(self, "size", size)
        set_(self, "sigma", _args.real(self.sigma, "sigma", lo=0.0, lo_open=True))
        set_(self, "seed", _args.integer(self.seed, "seed", 0, _args.U64 - 1))
        set_(self, "partitions", _args.integer(self.partitions, "partitions", 1, ELEMENT_LIMIT))
        set_(self, "shared_noise", _args.flag(self.shared_noise, "shared_noise"))

    @property
    def half(self) -> int:
        """H = N/2, the number of independent noise vectors."""
        return self.size // 2

    def with_sigma(self, sigma: float) -> "Population":
        """The same population with another noise scale (the sigma schedule uses it)."""
        return dataclasses.replace(self, sigma=sigma)

    def check_dim(self, d) -> int:
        """`d` checked as a parameter count for this population (1 <= P <= d < 2^34)."""
        d = _args.integer(d, "d", 1, ELEMENT_LIMIT - 1)
        if self.partitions > d:
            raise ArgumentError(f"partitions: must be <= d = {d}, got {self.partitions}")
        return d

    def bounds(self, d) -> np.ndarray:
        """The P + 1 chunk boundaries ``b_c = c*d // P`` (int64)."""
        d = self.check_dim(d)
        return (np.arange(self.partitions + 1, dtype=np.int64) * d) // self.partitions

    def noise(self, round, member, count, start=0) -> np.ndarray:
        """float32 ``z(seed, round, member, start + n)`` for n < count -- the raw stream,
        without the chunk rule; members >= N/2 give the negated noise of member - N/2."""
        round = _args.round_number(round)
        member = _args.integer(member, "member", 0, self.size - 1)
        count = _args.integer(count, "count", 0, ELEMENT_LIMIT)
        start = _args.integer(start, "start", 0, ELEMENT_LIMIT - count)
        out = np.empty(count, np.float32)
        if count:
            _core.evofed_noise(self.seed, round, member % self.half, start, out)
        if member >= self.half:
            np.negative(out, out=out)
        return out

    def materialize(self, round, d) -> np.ndarray:
        """The whole population's noise, float32 (N, d): row j is ``z_j`` over all d
        elements with the chunk rule applied (so ``theta + sigma * Z[j]`` is member j).
        For tests and teaching: refuses N*d > 2^27; the library itself never builds it."""
        round = _args.round_number(round)
        d = self.check_dim(d)
        if self.size * d > MATERIALIZE_LIMIT:
            raise ArgumentError(f"d: the population ({self.size} x {d}) exceeds {MATERIALIZE_LIMIT} elements")
        b = self.bounds(d)
        out = np.empty((self.size, d), np.float32)
        h = self.half
        for j in range(h):
            if self.shared_noise:
                block = self.noise(round, j, int(np.diff(b).max()))
                for c in range(self.partitions):
                    out[j, b[c]:b[c + 1]] = block[: b[c + 1] - b[c]]
            else:
                out[j] = self.noise(round, j, d)
        np.negative(out[:h], out=out[h:])
        return out
