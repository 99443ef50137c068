"""The counter-based generators (Philox-4x32-10 and SplitMix64, cpp/src/core/rng.hpp) give
the same numbers for the same seed in every version: outputs of each user pinned here
(random_k and Philox's known answers are pinned in their own test files)."""
from __future__ import annotations

import hashlib

import numpy as np

import gradsparse
from gradsparse import _core

X = np.linspace(-3, 3, 1000).astype(np.float32)


def test_wire_stochastic_rounding_pinned():
    # SplitMix64 per element (value_codecs.cpp)
    payload = gradsparse.wire.encode(gradsparse.sparsify(X, 100), value_codec="qsgd", bits=4, seed=12345)
    assert hashlib.sha256(bytes(payload)).hexdigest() == "3da4c6a118f3535f018ee620feca9d1c32ef72dcfd7ceeef99a9e41bf6e01059"


def test_qsgd_pinned():
    # Philox words (atomo sampling.cpp)
    codes = np.ascontiguousarray(_core.qsgd(X, 4, 5)[0]).tobytes()
    assert hashlib.sha256(codes).hexdigest() == "c60cc9d1832d16b4e01a26e36b0c1c84a838fd6a9e1afb01f68e5d4da58e535e"


def test_randomized_svd_pinned():
    # the Gaussian test matrix: Box-Muller on Philox words (decomp svd.cpp)
    a = np.arange(48 * 20, dtype=np.float32).reshape(48, 20) % 7 - 3
    s = _core.svd_randomized(a, 3, 4, 1, 77)[1]
    np.testing.assert_allclose(s, [36.39893341064453, 35.18484878540039, 20.374919891357422], rtol=1e-5)
