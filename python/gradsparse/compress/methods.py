"""The built-in compressors that select, send dense or quantize: ``none``, ``topk``,
``cwmp``, ``randomk``, ``threshold``, ``dgc``, ``qsgd``, ``qsgd-l2``, ``terngrad``, ``sign``."""
from __future__ import annotations

import math
from typing import Any, Dict

import numpy as np

from .. import atomo as _atomo
from .. import wire as _wire
from ..selection import k_from_ratio, random_k, sparsify, sparsify_many, threshold
from ..sparse import Sparse
from .base import Compressed, Compressor, _check_codec, _encode_sparse, _sizes, _timed_encode, register
from ..errors import ArgumentError

__all__ = ["NoCompression", "TopK", "CWMP", "RandomK", "Threshold", "DGC", "QSGD", "QSGDL2", "TernGrad", "Sign"]


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
    reads_costs = True
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
class QSGDL2(Compressor):
    """QSGD as QSGD's and ATOMO's papers ran it: per bucket of ``bucket`` values (0: the
    whole tensor) the scale is the bucket's L2 norm, and each value is stochastically rounded
    to ``norm * sign(v) * l / levels`` with ``l`` in ``0..levels`` (unbiased). Most codes
    are 0 for ``levels`` much below ``sqrt(bucket)``, so the codes travel sparse.

    Payload: ``u32 n`` (little endian), then a wire message of ``n`` bytes holding each
    tensor's bucket norms (``<name>#norm``, float32), then a wire message holding, per tensor
    and level ``l``, the indices whose code is ``+-l`` with their signs (``<name>#<l>``,
    ``sign`` codec: one bit per value, scale ``l`` exactly). The decoded value is
    ``float32(norm) * code / levels`` in float32, as :meth:`gradsparse.atomo.QuantizedUpdate.to_dense`."""

    name = "qsgd-l2"
    biased = False
    params = {"levels": 1, "bucket": 512}

    def validate(self) -> None:
        lv = self.p["levels"]
        if isinstance(lv, bool) or not isinstance(lv, int) or not 1 <= lv <= 127:
            raise ArgumentError(f"levels: must be an integer in [1, 127], got {lv!r}")
        b = self.p["bucket"]
        if isinstance(b, bool) or not isinstance(b, int) or b < 0:
            raise ArgumentError(f"bucket: must be an integer >= 0 (0: the whole tensor), got {b!r}")

    def _compress(self, update, *, seed, costs=None):
        import time
        from .. import _core
        levels, bucket = int(self.p["levels"]), int(self.p["bucket"])
        norms, codes_msg, selected = {}, {}, {}
        for i, (name, a) in enumerate(update.items()):
            flat = np.ascontiguousarray(a, np.float32).reshape(-1)
            b = bucket or flat.size
            nb = -(-flat.size // b)
            scale = np.empty(nb, np.float32)
            codes = np.empty(flat.size, np.int32)
            base = (seed * 1000003 + i) % 2**63
            for j in range(nb):
                c, nrm = _core.qsgd(flat[j * b:(j + 1) * b], levels, (base * 7919 + j) % 2**64)
                codes[j * b:(j + 1) * b] = c
                scale[j] = nrm
            norms[f"{name}#norm"] = scale
            mag = np.abs(codes)
            selected[name] = int(np.count_nonzero(mag))  # a zero code leaves its coordinate alone
            for lv in range(1, levels + 1):
                idx = np.flatnonzero(mag == lv)
                codes_msg[f"{name}#{lv}"] = Sparse(idx.astype(np.int64),
                                                   (np.sign(codes[idx]) * lv).astype(np.float32), (flat.size,))
        t1 = time.perf_counter()
        head = _wire.encode(norms)
        body = _wire.encode(codes_msg, value_codec="sign")
        payload = len(head).to_bytes(4, "little") + head + body
        return Compressed(payload, selected, encode_s=time.perf_counter() - t1)

    def decompress(self, payload, like):
        if not isinstance(payload, (bytes, bytearray, memoryview)) or len(payload) < 4:
            raise ArgumentError("payload: not a qsgd-l2 payload (shorter than its 4-byte header)")
        payload = bytes(payload)
        n = int.from_bytes(payload[:4], "little")
        if n > len(payload) - 4:
            raise ArgumentError(f"payload: qsgd-l2 header says {n} bytes of norms, only {len(payload) - 4} follow")
        norms, codes = _wire.decode(payload[4:4 + n]), _wire.decode(payload[4 + n:])
        if not isinstance(norms, dict) or not isinstance(codes, dict):
            raise ArgumentError("payload: expected two multi-tensor messages")
        levels, bucket = int(self.p["levels"]), int(self.p["bucket"])
        out = {}
        for name, ref in like.items():
            size = int(np.prod(ref.shape))
            b = bucket or size
            nrm = norms.get(f"{name}#norm")
            if not isinstance(nrm, np.ndarray) or nrm.shape != (-(-size // b),):
                raise ArgumentError(f"payload: tensor {name!r} has no bucket norms of the expected shape")
            code = np.zeros(size, np.float32)
            for lv in range(1, levels + 1):
                part = codes.get(f"{name}#{lv}")
                if not isinstance(part, Sparse) or tuple(part.shape) != (size,):
                    raise ArgumentError(f"payload: tensor {name!r} level {lv} is missing or misshapen")
                code[part.indices] = part.values
            scale = np.repeat(nrm.astype(np.float32), b)[:size]
            out[name] = (scale * code / np.float32(levels)).astype(np.float32).reshape(ref.shape)
        return out


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
