"""ATOMO as compressors: ``atomo-entry``, ``atomo-svd``, ``atomo-fourier`` (unbiased
estimators over element, singular-vector and DCT atoms; see :mod:`gradsparse.atomo`)."""
from __future__ import annotations

from typing import Any, Dict

import numpy as np

from .. import atomo as _atomo
from ..wire import decode
from .base import Compressor, _timed_encode, register
from ..errors import ArgumentError

__all__ = ["AtomoEntry", "AtomoSVD", "AtomoFourier"]


# ----------------------------------------------------------------------------- ATOMO

class _Atomo(Compressor):
    biased = False
    atoms = ""
    #: ``vector``: 1-D tensors (biases) under svd atoms are sampled element-wise ("entry") at
    #: the same ratio, or sent dense ("dense": a few hundred floats, no added variance)
    params = {"ratio": 0.05, "svd": "exact", "rank": 8, "vector": "entry"}

    def validate(self) -> None:
        self._ratio()
        if self.p["vector"] not in ("entry", "dense"):
            raise ArgumentError(f"vector: expected 'entry' or 'dense', got {self.p['vector']!r}")
        if self.p["svd"] not in ("exact", "randomized"):
            raise ArgumentError(f"svd: expected 'exact' or 'randomized', got {self.p['svd']!r}")
        r = self.p["rank"]
        if isinstance(r, bool) or not isinstance(r, int) or r < 1:
            raise ArgumentError(f"rank: must be an integer >= 1, got {r!r}")

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
            u = _atomo.sample(a, self.atoms, budget=self._budget(a), seed=(seed * 1000003 + i) % 2**63,
                              svd=self.p["svd"], rank=int(self.p["rank"]), vector=self.p["vector"])
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
        msg = decode(payload)
        if not isinstance(msg, dict):
            raise ArgumentError("payload: expected a multi-tensor message")
        out = {}
        for name, ref in like.items():
            u = _atomo.AtomicUpdate.from_payload(msg, name)
            if tuple(u.shape) != ref.shape:
                raise ArgumentError(f"payload: tensor {name!r} has shape {tuple(u.shape)}, expected {ref.shape}")
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
