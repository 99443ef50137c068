"""The compression-layer benchmark (python -m gradsparse.bench --suite compress) runs every
registered compressor through the registry and error feedback, and verifies each result."""
from __future__ import annotations

import numpy as np
import pytest

from gradsparse import compress as gc
from gradsparse.bench import compress as bench_compress
from gradsparse.bench.common import Out


def test_compress_suite_covers_the_registry_and_verifies():
    out = Out()
    res = bench_compress.run(out, quick=True, repeats=1)
    names = [r["compressor"] for r in res["rows"]]
    assert names == gc.available_compressors()
    assert res["verified"] == [f"compress:{n}" for n in names]
    for r in res["rows"]:
        assert r["bytes"] > 0 and r["compress_s"] > 0 and r["decompress_s"] > 0
    assert any("topk" in line for line in out.lines)


def test_compress_check_catches_a_wrong_residual(monkeypatch):
    """The check is not vacuous: a compressor whose payload and residual disagree fails."""
    comp = gc.make_compressor("topk", {"ratio": 0.01})
    update = {"w": np.random.default_rng(0).standard_normal(1000).astype(np.float32)}
    real = comp.decompress

    def lying_decompress(payload, like):
        got = real(payload, like)
        return {n: a * 2 for n, a in got.items()}

    monkeypatch.setattr(comp, "decompress", lying_decompress)
    with pytest.raises(bench_compress.CompressVerificationError, match="sent \\+ residual"):
        bench_compress._check("topk", comp, update, {"w": 1.0}, 0)
