"""EvoFed (Rahimi et al., NeurIPS 2023): population-based gradient encoding with fitness
vectors, streamed -- the (N, d) population is never built.

Every party shares a seed. Per round each client sends N fitness values per chunk (how
close each member ``theta + sigma z_j`` of an antithetic Gaussian population is to its
locally trained model), the server averages them, and every party applies the same update
``g = (1/(N sigma)) sum_j F_j z_j`` through the same optimizer. The noise comes from the
core's counter-based generator (bit-identical at every SIMD level and thread count).

    >>> evo = gradsparse.evofed.EvoFed(gradsparse.evofed.Population(32, 0.4, seed=1))
    >>> up = [evo.encode(theta, local[k] - theta, rnd, client=k) for k in range(K)]
    >>> theta = evo.step(theta, evo.aggregate(up, rnd), rnd)

Parts: :class:`Population` (parameters, chunk rule, ``materialize`` for small d),
:class:`Shaping` (official order), :func:`distances` / :func:`fitness` / :func:`gradient`
(the streamed kernels), :class:`Adam` / :class:`LaggedMomentum` (official optimizers) and
:class:`EvoFed` (payloads, fitness sparsification, presets). See docs/methods.md section 4
for the official code's behaviour and where this differs.
"""
from __future__ import annotations

from .fitness import Shaping, distances, fitness, gradient
from .optimizers import Adam, LaggedMomentum
from .population import Population
from .protocol import BITS, EvoFed

__all__ = ["Adam", "BITS", "EvoFed", "LaggedMomentum", "Population", "Shaping", "distances", "fitness", "gradient"]
