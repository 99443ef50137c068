"""The built-in compressors that select, send dense or quantize: ``none``, ``topk``,
``cwmp``, ``randomk``, ``threshold``, ``dgc``, ``qsgd``, ``terngrad``, ``sign``."""
from __future__ import annotations

import math
from typing import Any, Dict

import numpy as np

from .. import atomo as _atomo
from ..selection import k_from_ratio, random_k, sparsify, sparsify_many, threshold
from ..sparse import Sparse
from .base import Compressor, _check_codec, _encode_sparse, _sizes, _timed_encode, register
from ..errors import ArgumentError

__all__ = ["NoCompression", "TopK", "CWMP", "RandomK", "Threshold", "DGC", "QSGD", "TernGrad", "Sign"]


# ----------------------------------------------------------------------------- dense

@register
class NoCompression(Compressor):
    name = "none"
    biased = False
    params = {"value_codec": "float32"}

    def validate(self) -> None:
        _check_codec(self.p["value_codec"], ("float32", "float16", "bfloat16"))
        # rounding to 16 bits is biased: error feedback corrects it under "auto"
        self.biased = self.p["value_codec"] != "float32"

    def _compress(self, update, *, seed, costs=None):
        return _timed_encode(update, _sizes(update), value_codec=self.p["value_codec"])


# ----------------------------------------------------------------------------- selection

@register
class TopK(Compressor):
    name = "topk"
    params = {"ratio": 0.01, "scope": "global", "value_codec": "float32"}

    def validate(self) -> None:
        self._ratio()
        if self.p["scope"] not in ("global", "layer"):
            raise ArgumentError(f"scope: expected 'global' or 'layer', got {self.p['scope']!r}")
        _check_codec(self.p["value_codec"], ("float32", "float16", "bfloat16"))

    def _compress(self, update, *, seed, costs=None):
        names, arrays = list(update), list(update.values())
        r = self._ratio()
        if self.p["scope"] == "global":
            parts = sparsify_many(arrays, ratio=r)
        else:
            parts = [sparsify(a, ratio=r) for a in arrays]
        return _encode_sparse(dict(zip(names, parts)), self.p["value_codec"])


@register
class CWMP(Compressor):
    """Cost-weighted magnitude pruning with the run's per-tensor energy costs."""

    name = "cwmp"
    params = {"ratio": None, "energy": None, "budget": None, "q": 2.0, "alpha": 1.0, "value_codec": "float32"}

    def validate(self) -> None:
        given = [k for k in ("ratio", "energy", "budget") if self.p[k] is not None]
        if not given:
            self.p["ratio"] = 0.01
            given = ["ratio"]
        if len(given) != 1:
            raise ArgumentError(f"ratio, energy, budget: give exactly one of them, got {', '.join(given)}")
        if self.p["ratio"] is not None:
            self._ratio()
        if self.p["energy"] is not None:
            e = self.p["energy"]
            if isinstance(e, bool) or not isinstance(e, (int, float)) or not (0 < float(e) <= 1):
                raise ArgumentError(f"energy: the fraction of the dense update's cost must be in (0, 1], got {e!r}")
        if self.p["budget"] is not None:
            b = self.p["budget"]
            if isinstance(b, bool) or not isinstance(b, (int, float)) or not (float(b) > 0 and math.isfinite(b)):
                raise ArgumentError(f"budget: must be a finite number of joules > 0, got {b!r}")
        for k in ("q", "alpha"):
            v = self.p[k]
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
                raise ArgumentError(f"{k}: must be a finite number >= 0, got {v!r}")
        _check_codec(self.p["value_codec"], ("float32", "float16", "bfloat16"))

    def _precheck(self, update, costs):
        if costs is None:
            raise ArgumentError("costs: cwmp needs a cost per tensor (the run's energy model)")

    def _compress(self, update, *, seed, costs=None):
        self._precheck(update, costs)
        names, arrays = list(update), list(update.values())
        cs = [float(costs[n]) for n in names]
        kw = {"q": float(self.p["q"]), "alpha": float(self.p["alpha"])}
        if self.p["ratio"] is not None:
            parts = sparsify_many(arrays, ratio=float(self.p["ratio"]), costs=cs, **kw)
        else:
            if self.p["energy"] is not None:
                total = sum(c * a.size for c, a in zip(cs, arrays))
                budget = float(self.p["energy"]) * total
            else:
                budget = float(self.p["budget"])
            parts = sparsify_many(arrays, budget=budget, costs=cs, **kw)
        return _encode_sparse(dict(zip(names, parts)), self.p["value_codec"])


@register
class RandomK(Compressor):
    name = "randomk"
    params = {"ratio": 0.01, "scale": False}

    def validate(self) -> None:
        self._ratio()
        if not isinstance(self.p["scale"], bool):
            raise ArgumentError(f"scale: expected true or false, got {self.p['scale']!r}")
        self.biased = not self.p["scale"]

    def _compress(self, update, *, seed, costs=None):
        r = self._ratio()
        parts = {}
        for i, (name, a) in enumerate(update.items()):
            k = k_from_ratio(r, a.size)
            parts[name] = random_k(a, k, seed=(seed * 1000003 + i) % 2**64, scale=self.p["scale"])
        return _encode_sparse(parts)


@register
class Threshold(Compressor):
    name = "threshold"
    params = {"tau": 1e-3}

    def validate(self) -> None:
        t = self.p["tau"]
        if isinstance(t, bool) or not isinstance(t, (int, float)) or not (math.isfinite(t) and t >= 0):
            raise ArgumentError(f"tau: must be a finite number >= 0, got {t!r}")

    def _compress(self, update, *, seed, costs=None):
        return _encode_sparse({n: threshold(a, float(self.p["tau"])) for n, a in update.items()})


@register
class DGC(Compressor):
    """Deep Gradient Compression's sampled threshold: the global k-th magnitude is estimated
    from a uniform sample of ``sample`` of the coordinates (at least 1000), then every
    coordinate at or above it is sent. The count is close to ``ratio * d``, not exact."""

    name = "dgc"
    params = {"ratio": 0.01, "sample": 0.01}

    def validate(self) -> None:
        self._ratio()
        s = self.p["sample"]
        if isinstance(s, bool) or not isinstance(s, (int, float)) or not (0 < float(s) <= 1):
            raise ArgumentError(f"sample: must be in (0, 1], got {s!r}")

    def _compress(self, update, *, seed, costs=None):
        r = self._ratio()
        arrays = [a.reshape(-1) for a in update.values()]
        d = sum(a.size for a in arrays)
        m = min(d, max(1000, int(round(float(self.p["sample"]) * d))))
        rng = np.random.default_rng(seed)
        pos = rng.integers(0, d, size=m)
        offsets = np.cumsum([0] + [a.size for a in arrays])
        which = np.searchsorted(offsets, pos, side="right") - 1
        sample = np.empty(m, dtype=np.float32)
        for t, a in enumerate(arrays):
            sel = which == t
            sample[sel] = np.abs(a[pos[sel] - offsets[t]])
        kk = max(1, int(math.ceil(r * m)))
        tau = float(np.partition(sample, m - kk)[m - kk])
        return _encode_sparse({n: threshold(a, tau) for n, a in update.items()})


# ----------------------------------------------------------------------------- quantizers

@register
class QSGD(Compressor):
    """Dense, unbiased stochastic quantization with the wire format's ``qsgd`` codec: per
    block of ``block`` values one float32 scale (max |v|) and ``bits``-bit codes on the
    uniform grid ``s * (2j / (2^bits - 1) - 1)``."""

    name = "qsgd"
    biased = False
    params = {"bits": 4, "block": 512}

    def validate(self) -> None:
        if self.p["bits"] not in (1, 2, 4, 8) or isinstance(self.p["bits"], bool):
            raise ArgumentError(f"bits: must be 1, 2, 4 or 8, got {self.p['bits']!r}")
        b = self.p["block"]
        if isinstance(b, bool) or not isinstance(b, int) or b < 1:
            raise ArgumentError(f"block: must be an integer >= 1, got {b!r}")

    def _compress(self, update, *, seed, costs=None):
        return _timed_encode(update, _sizes(update), value_codec="qsgd", bits=int(self.p["bits"]),
                             block=int(self.p["block"]), seed=seed % 2**64)


@register
class TernGrad(Compressor):
    """TernGrad: ``max|g| * sign(g_i) * Bernoulli(|g_i| / max|g|)`` per tensor, sent as the
    indices of the non-zero trits (index codec ``auto``) with the ``sign`` value codec, whose
    one scale (mean |v|) is the tensor's max |g|."""

    name = "terngrad"
    biased = False
    params: Dict[str, Any] = {}

    def _compress(self, update, *, seed, costs=None):
        parts = {}
        for i, (name, a) in enumerate(update.items()):
            q = _atomo.terngrad(a, seed=(seed * 1000003 + i) % 2**63)
            codes = q.codes.reshape(-1)
            idx = np.flatnonzero(codes)
            vals = (codes[idx].astype(np.float32) * np.float32(q.scale))
            parts[name] = Sparse(idx.astype(np.int64), vals, a.shape)
        return _encode_sparse(parts, "sign")


@register
class Sign(Compressor):
    """signSGD with a scale: one bit per value and one float32 scale (mean |v|) per tensor;
    with error feedback (EF-signSGD) under ``auto``."""

    name = "sign"
    params: Dict[str, Any] = {}

    def _compress(self, update, *, seed, costs=None):
        return _timed_encode(update, _sizes(update), value_codec="sign")
