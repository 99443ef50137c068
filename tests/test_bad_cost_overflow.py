"""A bad cost (0, negative, inf, NaN) is reported as ValueError naming `cost` also when the
filter pass stops early because its candidate buffer overflowed before reaching it (the
sampled bracket missed): the retries and the radix fallback still check every cost."""
from __future__ import annotations

import numpy as np
import pytest

import gradsparse

N = 1 << 20


def _adversarial(dtype):
    """Small values in the sampled blocks, large ones elsewhere: the bracket taken from the
    sample is far too high, so the first filter passes overflow."""
    m = min(65536, max(4096, N // 64))
    blocks = m // 16
    x = np.full(N, 10.0, dtype)
    rng = np.random.default_rng(0)
    for b in range(blocks):
        centre = (2 * b + 1) * N // (2 * blocks)
        start = min(max(centre - 8, 0), N - 16)
        x[start:start + 16] = rng.random(16)
    return x


@pytest.mark.parametrize("bad", [0.0, -1.0, np.inf, np.nan])
@pytest.mark.parametrize("cost_dtype", [np.float32, np.float64])
@pytest.mark.parametrize("budget", ["k", "energy"])
def test_bad_cost_after_overflow(bad, cost_dtype, budget):
    x = _adversarial(np.float32)
    cost = np.ones(N, cost_dtype)
    cost[-1] = bad
    kw = dict(k=1000) if budget == "k" else dict(budget=1000.0)
    with pytest.raises(ValueError, match="cost"):
        gradsparse.sparsify(x, cost=cost, **kw)
    with pytest.raises(ValueError, match="cost"):
        gradsparse.sparsify_many([x[: N // 2], x[N // 2:]], costs=[cost[: N // 2], cost[N // 2:]], **kw)
    good = np.ones(N, cost_dtype)
    r = gradsparse.sparsify(x, cost=good, **kw)  # the same input with good costs selects
    assert r.indices.size == 1000
