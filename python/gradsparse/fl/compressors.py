"""Uplink/downlink compressors behind one small interface, registered by name.

A compressor turns a model update -- an ordered dict ``name -> float32 numpy array`` -- into
a payload (``bytes`` from :func:`gradsparse.encode`) and back. All selection goes through
gradsparse's engine, all payloads through the wire format, so the bytes a run reports are
``len(payload)`` of real messages.

======================  =========================================================  ======
name                    what is sent                                               EF
======================  =========================================================  ======
``none``                every value (``value_codec``: float32 / float16 / bfloat16)  off
``topk``                the ``ratio`` largest magnitudes; ``scope`` global / layer   on
``cwmp``                best ``|g|^q / c^alpha`` by count (``ratio``), by a fraction   on
                        ``energy`` of the dense update's cost, or by ``budget`` joules
``randomk``             ``ratio`` coordinates drawn uniformly (``scale`` d/k option)   on
``threshold``           every ``|g| >= tau``                                           on
``dgc``                 DGC's sampled threshold: the k-th magnitude estimated from a   on
                        ``sample`` fraction, then a threshold pass (approximate k)
``qsgd``                dense, unbiased stochastic ``bits``-bit codes per ``block``    off
``terngrad``            TernGrad: max-norm scaled stochastic ternary values            off
``sign``                one sign bit per value and one scale per tensor (EF-signSGD)   on
``atomo-entry``         ATOMO over element atoms, expected ``ratio`` atoms per tensor  off
``atomo-svd``           ATOMO over singular vectors (``ratio`` of the rank)           off
``atomo-fourier``       ATOMO over orthonormal DCT coefficients                        off
======================  =========================================================  ======

"EF" is whether error feedback is applied under ``error_feedback="auto"``: biased
compressors get it, unbiased estimators do not. Every compressor is deterministic for a
given ``seed``.

Adding one: subclass :class:`Compressor`, set ``name``, ``params`` (parameter -> default)
and ``biased``, implement ``_compress`` (its input is already checked); decorate with
:func:`register`.
"""
from __future__ import annotations

import math
import time
from typing import Any, Dict, List, Mapping, Optional, Tuple, Type

import numpy as np

import gradsparse as gs

__all__ = ["Compressor", "Compressed", "register", "make_compressor", "check_compressor", "check_update",
           "available_compressors", "decode_dense"]

Update = Dict[str, np.ndarray]

_REGISTRY: Dict[str, Type["Compressor"]] = {}


class Compressed:
    """One compressed update: the payload bytes and, per tensor, how many of its
    coordinates the update touches (for the energy account)."""

    __slots__ = ("payload", "selected", "encode_s")

    def __init__(self, payload: bytes, selected: Dict[str, int], encode_s: float = 0.0):
        self.payload = payload
        self.selected = selected
        self.encode_s = encode_s  #: seconds spent building the payload (the rest is selection)

    @property
    def nbytes(self) -> int:
        return len(self.payload)


class Compressor:
    """Base class. ``params`` maps each parameter to its default; ``validate`` checks them."""

    name = ""
    biased = True
    params: Dict[str, Any] = {}

    def __init__(self, **kwargs: Any):
        self.p = {**self.params, **kwargs}
        self.validate()

    # -- to override
    def validate(self) -> None:
        pass

    def _compress(self, update: Update, *, seed: int, costs: Optional[Mapping[str, float]]) -> Compressed:
        """The compressor itself; `update` is already checked (see :meth:`compress`)."""
        raise NotImplementedError

    # -- the public entry point
    def compress(self, update: Mapping[str, Any], *, seed: int,
                 costs: Optional[Mapping[str, float]] = None) -> Compressed:
        """The payload of `update` (name -> non-empty, finite float numpy array), seeded by
        `seed`; `costs` (name -> joules per coordinate) is used by cost-aware compressors.
        Bad input raises TypeError/ValueError naming the tensor."""
        checked = check_update(update)
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
            raise ValueError(f"seed: expected an integer >= 0, got {seed!r}")
        if costs is not None:
            if not isinstance(costs, Mapping):
                raise TypeError(f"costs: expected a dict name -> cost, got {type(costs).__name__}")
            missing = [n for n in checked if n not in costs]
            if missing:
                raise ValueError(f"costs: no cost for tensor(s) {', '.join(map(repr, missing[:3]))}")
        return self._compress(checked, seed=int(seed), costs=costs)

    def decompress(self, payload: bytes, like: Update) -> Update:
        """Dense float32 arrays shaped like `like` (decoding validates the bytes)."""
        return decode_dense(payload, like)

    # -- helpers
    def _ratio(self) -> float:
        r = self.p["ratio"]
        if isinstance(r, bool) or not isinstance(r, (int, float)) or not (0 < float(r) <= 1):
            raise ValueError(f"ratio: must be in (0, 1], got {r!r}")
        return float(r)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in self.p.items())})"


def register(cls: Type[Compressor]) -> Type[Compressor]:
    """Class decorator: makes `cls` available by ``cls.name``."""
    if not cls.name:
        raise ValueError("register: the compressor class needs a name")
    _REGISTRY[cls.name] = cls
    return cls


def available_compressors() -> List[str]:
    return sorted(_REGISTRY)


def make_compressor(name: str, params: Optional[Mapping[str, Any]] = None) -> Compressor:
    """The compressor `name` with `params` (unknown names and parameters raise ValueError)."""
    return check_compressor(name, params or {}, "method")


def check_compressor(name: Any, params: Mapping[str, Any], what: str = "method") -> Compressor:
    if not isinstance(name, str) or name not in _REGISTRY:
        raise ValueError(f"{what}: unknown compressor {name!r}; expected one of {', '.join(available_compressors())}")
    cls = _REGISTRY[name]
    unknown = sorted(set(params) - set(cls.params))
    if unknown:
        raise ValueError(f"{what}: compressor {name!r} has no parameter(s) {', '.join(map(repr, unknown))}; "
                         f"it takes {', '.join(cls.params) or 'none'}")
    return cls(**dict(params))


def decode_dense(payload: bytes, like: Update) -> Update:
    """Decodes `payload` (untrusted) into dense float32 arrays shaped like `like`; every
    tensor of `like` must be present with its shape, and nothing else."""
    msg = gs.decode(payload)
    if not isinstance(msg, dict):
        raise ValueError("payload: expected a multi-tensor message")
    out: Update = {}
    for name, ref in like.items():
        item = msg.get(name)
        if item is None:
            raise ValueError(f"payload: tensor {name!r} is missing")
        if isinstance(item, gs.Sparse):
            if tuple(item.shape) != ref.shape:
                raise ValueError(f"payload: tensor {name!r} has shape {tuple(item.shape)}, expected {ref.shape}")
            out[name] = np.asarray(item.to_dense(), dtype=np.float32)
        else:
            arr = np.asarray(item, dtype=np.float32)
            if arr.shape != ref.shape:
                raise ValueError(f"payload: tensor {name!r} has shape {arr.shape}, expected {ref.shape}")
            out[name] = arr
    extra = sorted(set(msg) - set(like))
    if extra:
        raise ValueError(f"payload: unexpected tensor(s) {', '.join(map(repr, extra[:3]))}")
    return out


def check_update(update: Any) -> Update:
    """`update` as an ordered dict name -> float numpy array, after checking that it is a
    non-empty mapping of str names to non-empty, finite float arrays."""
    if not isinstance(update, Mapping):
        raise TypeError(f"update: expected a dict name -> array, got {type(update).__name__}")
    if not update:
        raise ValueError("update: no tensors")
    out: Update = {}
    for name, a in update.items():
        if not isinstance(name, str):
            raise TypeError(f"update: tensor names must be str, got {type(name).__name__}")
        if not isinstance(a, np.ndarray):
            raise TypeError(f"update[{name!r}]: expected a numpy array, got {type(a).__name__}")
        if a.dtype.kind != "f":
            raise TypeError(f"update[{name!r}]: expected a float array, got dtype {a.dtype}")
        if a.size == 0:
            raise ValueError(f"update[{name!r}]: tensor is empty")
        if not np.isfinite(a).all():
            raise ValueError(f"update[{name!r}]: contains NaN or infinity (a diverged client?)")
        out[name] = a
    return out


def _sizes(update: Update) -> Dict[str, int]:
    return {k: int(v.size) for k, v in update.items()}


def _timed_encode(update: Mapping[str, Any], selected: Dict[str, int], **kw: Any) -> Compressed:
    """``gs.encode(update, **kw)`` as a :class:`Compressed`, with the encoding time."""
    t0 = time.perf_counter()
    payload = gs.encode(dict(update), **kw)
    return Compressed(payload, selected, time.perf_counter() - t0)


def _encode_sparse(parts: Dict[str, gs.Sparse], value_codec: str = "float32") -> Compressed:
    return _timed_encode(parts, {k: int(s.nnz) for k, s in parts.items()}, value_codec=value_codec)


def _check_codec(value: Any, allowed: Tuple[str, ...], what: str = "value_codec") -> None:
    if value not in allowed:
        raise ValueError(f"{what}: expected one of {', '.join(allowed)}, got {value!r}")


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
            raise ValueError(f"scope: expected 'global' or 'layer', got {self.p['scope']!r}")
        _check_codec(self.p["value_codec"], ("float32", "float16", "bfloat16"))

    def _compress(self, update, *, seed, costs=None):
        names, arrays = list(update), list(update.values())
        r = self._ratio()
        if self.p["scope"] == "global":
            parts = gs.sparsify_many(arrays, ratio=r)
        else:
            parts = [gs.sparsify(a, ratio=r) for a in arrays]
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
            raise ValueError(f"ratio, energy, budget: give exactly one of them, got {', '.join(given)}")
        if self.p["ratio"] is not None:
            self._ratio()
        if self.p["energy"] is not None:
            e = self.p["energy"]
            if isinstance(e, bool) or not isinstance(e, (int, float)) or not (0 < float(e) <= 1):
                raise ValueError(f"energy: the fraction of the dense update's cost must be in (0, 1], got {e!r}")
        if self.p["budget"] is not None:
            b = self.p["budget"]
            if isinstance(b, bool) or not isinstance(b, (int, float)) or not (float(b) > 0 and math.isfinite(b)):
                raise ValueError(f"budget: must be a finite number of joules > 0, got {b!r}")
        for k in ("q", "alpha"):
            v = self.p[k]
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
                raise ValueError(f"{k}: must be a finite number >= 0, got {v!r}")
        _check_codec(self.p["value_codec"], ("float32", "float16", "bfloat16"))

    def _compress(self, update, *, seed, costs=None):
        if costs is None:
            raise ValueError("costs: cwmp needs a cost per tensor (the run's energy model)")
        names, arrays = list(update), list(update.values())
        cs = [float(costs[n]) for n in names]
        kw = {"q": float(self.p["q"]), "alpha": float(self.p["alpha"])}
        if self.p["ratio"] is not None:
            parts = gs.sparsify_many(arrays, ratio=float(self.p["ratio"]), costs=cs, **kw)
        else:
            if self.p["energy"] is not None:
                total = sum(c * a.size for c, a in zip(cs, arrays))
                budget = float(self.p["energy"]) * total
            else:
                budget = float(self.p["budget"])
            parts = gs.sparsify_many(arrays, budget=budget, costs=cs, **kw)
        return _encode_sparse(dict(zip(names, parts)), self.p["value_codec"])


@register
class RandomK(Compressor):
    name = "randomk"
    params = {"ratio": 0.01, "scale": False}

    def validate(self) -> None:
        self._ratio()
        if not isinstance(self.p["scale"], bool):
            raise ValueError(f"scale: expected true or false, got {self.p['scale']!r}")
        self.biased = not self.p["scale"]

    def _compress(self, update, *, seed, costs=None):
        r = self._ratio()
        parts = {}
        for i, (name, a) in enumerate(update.items()):
            k = gs.k_from_ratio(r, a.size)
            parts[name] = gs.random_k(a, k, seed=(seed * 1000003 + i) % 2**64, scale=self.p["scale"])
        return _encode_sparse(parts)


@register
class Threshold(Compressor):
    name = "threshold"
    params = {"tau": 1e-3}

    def validate(self) -> None:
        t = self.p["tau"]
        if isinstance(t, bool) or not isinstance(t, (int, float)) or not (math.isfinite(t) and t >= 0):
            raise ValueError(f"tau: must be a finite number >= 0, got {t!r}")

    def _compress(self, update, *, seed, costs=None):
        return _encode_sparse({n: gs.threshold(a, float(self.p["tau"])) for n, a in update.items()})


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
            raise ValueError(f"sample: must be in (0, 1], got {s!r}")

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
        return _encode_sparse({n: gs.threshold(a, tau) for n, a in update.items()})


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
            raise ValueError(f"bits: must be 1, 2, 4 or 8, got {self.p['bits']!r}")
        b = self.p["block"]
        if isinstance(b, bool) or not isinstance(b, int) or b < 1:
            raise ValueError(f"block: must be an integer >= 1, got {b!r}")

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
            q = gs.atomo.terngrad(a, seed=(seed * 1000003 + i) % 2**63)
            codes = q.codes.reshape(-1)
            idx = np.flatnonzero(codes)
            vals = (codes[idx].astype(np.float32) * np.float32(q.scale))
            parts[name] = gs.Sparse(idx.astype(np.int64), vals, a.shape)
        return _encode_sparse(parts, "sign")


@register
class Sign(Compressor):
    """signSGD with a scale: one bit per value and one float32 scale (mean |v|) per tensor;
    with error feedback (EF-signSGD) under ``auto``."""

    name = "sign"
    params: Dict[str, Any] = {}

    def _compress(self, update, *, seed, costs=None):
        return _timed_encode(update, _sizes(update), value_codec="sign")


# ----------------------------------------------------------------------------- ATOMO

class _Atomo(Compressor):
    biased = False
    atoms = ""
    params = {"ratio": 0.05, "svd": "exact", "rank": 8}

    def validate(self) -> None:
        self._ratio()
        if self.p["svd"] not in ("exact", "randomized"):
            raise ValueError(f"svd: expected 'exact' or 'randomized', got {self.p['svd']!r}")
        r = self.p["rank"]
        if isinstance(r, bool) or not isinstance(r, int) or r < 1:
            raise ValueError(f"rank: must be an integer >= 1, got {r!r}")

    def _budget(self, a: np.ndarray) -> float:
        if self.atoms == "svd" and a.ndim >= 2:
            m = a.shape[0]
            n = a.size // m
            return max(1.0, self._ratio() * min(m, n))
        return max(1.0, self._ratio() * a.size)

    def _compress(self, update, *, seed, costs=None):
        msg: Dict[str, Any] = {}
        selected = {}
        for i, (name, a) in enumerate(update.items()):
            u = gs.atomo.sparsify(a, self.atoms, budget=self._budget(a), seed=(seed * 1000003 + i) % 2**63,
                                  svd=self.p["svd"], rank=int(self.p["rank"]))
            msg.update(u.to_payload(name))
            # an element atom touches one coordinate; an svd or Fourier atom (dense in the
            # original basis) touches every coordinate of its tensor
            if u.kind == "entry":
                selected[name] = int(u.num_atoms)
            elif u.kind == "dense" or u.num_atoms > 0:
                selected[name] = int(a.size)
            else:
                selected[name] = 0
        return _timed_encode(msg, selected)

    def decompress(self, payload, like):
        msg = gs.decode(payload)
        if not isinstance(msg, dict):
            raise ValueError("payload: expected a multi-tensor message")
        out = {}
        for name, ref in like.items():
            u = gs.atomo.AtomicUpdate.from_payload(msg, name)
            if tuple(u.shape) != ref.shape:
                raise ValueError(f"payload: tensor {name!r} has shape {tuple(u.shape)}, expected {ref.shape}")
            out[name] = np.asarray(u.to_dense(), np.float32).reshape(ref.shape)
        return out


@register
class AtomoEntry(_Atomo):
    name = "atomo-entry"
    atoms = "entry"


@register
class AtomoSVD(_Atomo):
    name = "atomo-svd"
    atoms = "svd"


@register
class AtomoFourier(_Atomo):
    name = "atomo-fourier"
    atoms = "fourier"


def ef_enabled(comp: Compressor, setting: str) -> bool:
    """Whether error feedback applies: ``on``/``off``, or ``auto`` = the compressor is biased."""
    if setting == "on":
        return True
    if setting == "off":
        return False
    return bool(comp.biased)
