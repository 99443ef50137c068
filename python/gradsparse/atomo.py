"""ATOMO atomic sparsification (Wang et al., NeurIPS 2018) and the QSGD / TernGrad baselines.

Write a tensor as ``g = sum_i lam_i a_i`` over unit-norm atoms, keep atom ``i`` with
probability ``p_i`` (ATOMO's Algorithm 1: the variance-optimal ``p`` with ``sum p = budget``)
and send ``lam_i / p_i`` for the kept ones: the result is an unbiased estimate of ``g``.
Atoms: ``"entry"`` (the coordinates), ``"fourier"`` (the orthonormal DCT-II basis of the
flattened tensor) and ``"svd"`` (rank-one ``u v^T`` of the tensor reshaped to a matrix;
conv weights ``(c_out, c_in, kh, kw)`` become ``(c_out, c_in*kh*kw)``). Decompositions,
probabilities and the Philox-4x32-10 sampling run in the C++ core; the same seed gives the
same atoms on every SIMD level and thread count.

    >>> upd = gradsparse.atomo.sample(grad, atoms="svd", budget=2, seed=step)
    >>> payload = gradsparse.encode(upd.to_payload("conv1.weight"))
    >>> est = AtomicUpdate.from_payload(gradsparse.decode(payload), "conv1.weight").to_dense()
"""
from __future__ import annotations

import math
import numbers
import warnings
from typing import Any, Dict, Mapping, Optional, Tuple

import numpy as np

from . import _core
from ._convert import is_tensor, tensor_to_numpy
from .sparse import Sparse
from .errors import ArgumentError, ArgumentTypeError

__all__ = ["AtomicUpdate", "QuantizedUpdate", "probabilities", "sample", "qsgd", "terngrad", "ATOMS"]

#: atom families accepted by :func:`sample`
ATOMS = ("entry", "fourier", "svd")
_STREAM = {"entry": 1, "fourier": 2, "svd": 3}
_MASK64 = (1 << 64) - 1


def _array(x: Any, name: str, dtype=np.float32) -> np.ndarray:
    if is_tensor(x):
        x = tensor_to_numpy(x, name)  # bfloat16 -> float32 (exact widening)
    if isinstance(x, (bool, np.bool_)) or x is None:
        raise ArgumentTypeError(f"{name}: expected an array, got {type(x).__name__}")
    arr = np.asarray(x)
    if arr.dtype.kind not in "fiu":
        raise ArgumentTypeError(f"{name}: expected a real floating-point array, got dtype {arr.dtype}")
    arr = np.ascontiguousarray(arr, dtype=dtype)
    if arr.size == 0:
        raise ArgumentError(f"{name}: must be non-empty")
    if not np.isfinite(arr).all():
        raise ArgumentError(f"{name}: contains NaN or infinity")
    return arr


def _budget(budget: Any) -> float:
    # A real number only: no str ("2" would parse), no bool, no complex.
    if isinstance(budget, (bool, np.bool_)) or not isinstance(budget, numbers.Real):
        raise ArgumentTypeError(f"budget: expected a number, got {type(budget).__name__}")
    b = float(budget)
    if not (b > 0 and math.isfinite(b)):
        raise ArgumentError(f"budget: must be a finite number > 0, got {budget!r}")
    return b


def _seed(seed: Any) -> int:
    if isinstance(seed, (bool, np.bool_)) or not isinstance(seed, (int, np.integer)):
        raise ArgumentTypeError(f"seed: expected an int, got {type(seed).__name__}")
    if not 0 <= int(seed) <= _MASK64:
        raise ArgumentError(f"seed: must be in [0, 2^64), got {seed}")
    return int(seed)


def _int_arg(value: Any, name: str, lo: int, hi: int) -> int:
    """An int argument in [lo, hi] (bool, float and other types rejected), naming it."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise ArgumentTypeError(f"{name}: expected an int, got {type(value).__name__}")
    if not lo <= int(value) <= hi:
        raise ArgumentError(f"{name}: must be in [{lo}, {hi}], got {value}")
    return int(value)


def _choice(value: Any, name: str, options: Tuple[str, ...]) -> str:
    if not isinstance(value, str) or value not in options:
        raise ArgumentError(f"{name}: expected one of {options}, got {value!r}")
    return value


def probabilities(lam: Any, budget: float) -> np.ndarray:
    """ATOMO Algorithm 1: float64 probabilities ``p`` (same length as ``lam``) minimising
    ``sum lam_i^2 / p_i`` subject to ``sum p_i = budget`` and ``0 <= p_i <= 1``; zero
    coefficients get ``p = 0`` and ``sum p = min(budget, #non-zero)``."""
    arr = _array(lam, "lam", np.float64)
    if arr.ndim != 1:
        raise ArgumentError(f"lam: expected a 1-D array, got shape {arr.shape}")
    return _core.atomo_probabilities(arr, _budget(budget))


def _finite_values(vals: np.ndarray) -> np.ndarray:
    """The kept atoms' values lam / p must be float32 numbers (they are sent as float32)."""
    with np.errstate(over="ignore"):
        ok = np.isfinite(vals.astype(np.float32)).all()
    if not ok:
        raise ArgumentError("x: the unbiased value lam / p of a kept atom overflows float32 (|x| / budget is above "
                         "the float32 range; scale x down or raise budget)")
    return vals


def _matrix_shape(shape: Tuple[int, ...], layout: str) -> Tuple[int, int]:
    if len(shape) == 2:
        return shape[0], shape[1]
    if len(shape) == 4:
        c_out, c_in, kh, kw = shape
        if layout == "atomo":  # the original ATOMO code: (c_out*c_in/2, 2*kh*kw)
            if (c_out * c_in) % 2:
                raise ArgumentError(f"layout: 'atomo' needs c_out*c_in even, got shape {shape}")
            return c_out * c_in // 2, 2 * kh * kw
        return c_out, c_in * kh * kw
    raise ArgumentError(f"x: atoms='svd' needs a matrix, a 4-D conv weight or a 1-D vector, got {len(shape)}-D shape {shape}")


class AtomicUpdate:
    """A sampled ATOMO update: the kept atoms and their unbiased coefficients ``lam_i / p_i``.

    ``kind`` is ``"entry"``, ``"fourier"``, ``"svd"`` or ``"dense"`` (1-D tensors sent as is
    under ``atoms="svd"``). For entry/fourier atoms ``indices`` index the flattened tensor
    (or its DCT coefficients); for svd atoms ``u`` is ``(m, k)``, ``vt`` is ``(k, n)`` and
    ``values`` holds ``sigma_i / p_i`` for the ``k`` kept triplets."""

    __slots__ = ("kind", "shape", "indices", "values", "u", "vt", "matrix_shape")

    def __init__(self, kind: str, shape: Tuple[int, ...], indices: Optional[np.ndarray], values: np.ndarray,
                 u: Optional[np.ndarray] = None, vt: Optional[np.ndarray] = None,
                 matrix_shape: Optional[Tuple[int, int]] = None):
        self.kind = kind
        self.shape = tuple(int(s) for s in shape)
        self.indices = indices
        self.values = values
        self.u = u
        self.vt = vt
        self.matrix_shape = matrix_shape

    @property
    def num_atoms(self) -> int:
        """Atoms sent (for ``dense``: the number of values)."""
        return int(len(self.values))

    @property
    def bits(self) -> int:
        """Bits of a plain float32 encoding: entry/fourier 32-bit value + 32-bit index per
        atom; svd ``32 * (m + n + 1)`` per atom; dense 32 per value (plus no header)."""
        if self.kind in ("entry", "fourier"):
            return 64 * self.num_atoms
        if self.kind == "svd":
            m, n = self.matrix_shape
            return 32 * (m + n + 1) * self.num_atoms
        return 32 * self.num_atoms

    def to_dense(self) -> np.ndarray:
        """The unbiased estimate ``sum_i (lam_i t_i / p_i) a_i`` as a float32 array of ``shape``."""
        numel = int(np.prod(self.shape)) if self.shape else 1
        if self.kind == "dense":
            return self.values.astype(np.float32).reshape(self.shape)
        if self.kind == "svd":
            if self.num_atoms == 0:
                return np.zeros(self.shape, np.float32)
            return ((self.u * self.values[None, :]) @ self.vt).astype(np.float32).reshape(self.shape)
        out = np.zeros(numel, np.float64 if self.kind == "fourier" else np.float32)
        out[self.indices] = self.values
        if self.kind == "fourier":
            out = _core.idct(out).astype(np.float32)
        return out.reshape(self.shape)

    def to_payload(self, name: str = "x") -> Dict[str, Any]:
        """A dict of named tensors for :func:`gradsparse.encode`: ``name/entry`` or
        ``name/fourier`` (a :class:`Sparse`), ``name/sigma`` + ``name/u`` + ``name/v``, or
        ``name/dense``; plus ``name/shape`` (float64 dims) where the shape is not implied."""
        if self.kind in ("entry", "fourier"):
            return {f"{name}/{self.kind}": Sparse(self.indices, self.values.astype(np.float32), self.shape)}
        if self.kind == "dense":
            return {f"{name}/dense": self.values.astype(np.float32).reshape(self.shape)}
        return {f"{name}/sigma": self.values.astype(np.float32), f"{name}/u": self.u, f"{name}/v": self.vt,
                f"{name}/shape": np.asarray(self.shape, np.float64)}

    @classmethod
    def from_payload(cls, payload: Mapping[str, Any], name: str = "x") -> "AtomicUpdate":
        """Rebuilds the update named ``name`` from :func:`gradsparse.decode`'s dict."""
        for kind in ("entry", "fourier"):
            item = payload.get(f"{name}/{kind}")
            if item is not None:
                if not isinstance(item, Sparse):
                    raise ArgumentError(f"payload: {name}/{kind} must be a sparse record")
                return cls(kind, item.shape, np.asarray(item.indices, np.int64), np.asarray(item.values, np.float32))
        if f"{name}/dense" in payload:
            d = np.asarray(payload[f"{name}/dense"], np.float32)
            return cls("dense", d.shape, None, d.reshape(-1))
        try:
            sigma = np.asarray(payload[f"{name}/sigma"], np.float32).reshape(-1)
            u = np.asarray(payload[f"{name}/u"], np.float32)
            vt = np.asarray(payload[f"{name}/v"], np.float32)
            dims = np.asarray(payload[f"{name}/shape"], np.float64)
        except KeyError:
            raise ArgumentError(f"payload: no ATOMO update named {name!r}") from None
        if u.ndim != 2 or vt.ndim != 2 or u.shape[1] != sigma.size or vt.shape[0] != sigma.size:
            raise ArgumentError(f"payload: inconsistent svd factors for {name!r}")
        shape = tuple(int(s) for s in dims)
        if int(np.prod(shape)) != u.shape[0] * vt.shape[1]:
            raise ArgumentError(f"payload: shape {shape} does not match the factors of {name!r}")
        return cls("svd", shape, None, sigma, u, vt, (u.shape[0], vt.shape[1]))

    def __repr__(self) -> str:
        return f"AtomicUpdate(kind={self.kind!r}, shape={self.shape}, atoms={self.num_atoms})"


def sample(x: Any, atoms: str = "entry", *, budget: float, seed: int = 0, layout: str = "matrix",
             vector: str = "entry", svd: str = "exact", rank: int = 8, oversample: int = 8,
             power_iters: int = 2) -> AtomicUpdate:
    """An :class:`AtomicUpdate`: an unbiased ATOMO sample of ``x`` with ``budget`` atoms expected.

    (Named apart from :func:`gradsparse.sparsify`, which keeps the top k exactly and returns a
    :class:`~gradsparse.Sparse`.)

    ``atoms``: ``"entry"``, ``"fourier"`` or ``"svd"``. For ``"svd"``: ``layout`` ``"matrix"``
    (conv -> ``(c_out, c_in*kh*kw)``) or ``"atomo"`` (the original code's
    ``(c_out*c_in/2, 2*kh*kw)``); 1-D tensors are sampled element-wise (``vector="entry"``)
    or sent dense (``vector="dense"``); ``svd="exact"`` computes every singular value (for the
    probabilities) but singular vectors only for the sampled atoms -- the same atoms, for the
    same seed, as from the full :func:`_core.svd`; ``svd="randomized"`` decomposes only the top ``rank``
    directions (unbiased for the rank-``rank`` approximation, not for ``x``): randomized subspace
    iteration with ``rank + oversample`` columns and ``power_iters`` power iterations (Halko,
    Martinsson & Tropp 2011) -- exact when ``x`` has rank <= ``rank + oversample``, otherwise its
    singular values are lower bounds that tighten as (sigma_{l+1} / sigma_rank)^(2 q + 1)."""
    _choice(atoms, "atoms", ATOMS)
    arr = _array(x, "x")
    b, s = _budget(budget), _seed(seed)
    shape = arr.shape
    if atoms == "svd" and arr.ndim <= 1:
        if _choice(vector, "vector", ("entry", "dense")) == "dense":
            return AtomicUpdate("dense", shape, None, arr.reshape(-1).copy())
        atoms = "entry"
    if atoms == "entry":
        idx, vals, _ = _core.atomo_sample(arr.reshape(-1), b, s, _STREAM["entry"])
        return AtomicUpdate("entry", shape, idx, vals)
    if atoms == "fourier":
        lam = _core.dct(arr.reshape(-1).astype(np.float64))
        p = _core.atomo_probabilities(lam, b)
        idx = _core.bernoulli_sample(p, s, _STREAM["fourier"])
        return AtomicUpdate("fourier", shape, idx, _finite_values((lam[idx] / p[idx]).astype(np.float64)))
    _choice(layout, "layout", ("matrix", "atomo"))
    _choice(svd, "svd", ("exact", "randomized"))
    m, n = _matrix_shape(shape, layout)
    mat = arr.reshape(m, n)
    if svd == "exact":
        # All singular values, the same probabilities and Philox draws as with the full SVD,
        # but singular vectors only for the kept atoms (svd.cpp, svd_atoms).
        idx, u, vals, vt, _, _ = _core.svd_atomo(mat, b, s, _STREAM["svd"])
        return AtomicUpdate("svd", shape, idx, _finite_values(vals), u, vt, (m, n))
    r = _int_arg(rank, "rank", 1, 2**31 - 1)
    o = _int_arg(oversample, "oversample", 0, 2**31 - 1)
    it = _int_arg(power_iters, "power_iters", 0, 2**31 - 1)
    u, sig, vt = _core.svd_randomized(mat, r, o, it, s ^ 0x52414E44)
    if not np.isfinite(sig).all():
        raise ArgumentError("x: a singular value overflows float32 (scale x down)")
    p = _core.atomo_probabilities(sig.astype(np.float64), b)
    idx = _core.bernoulli_sample(p, s, _STREAM["svd"])
    with np.errstate(over="ignore"):
        vals = _finite_values((sig[idx].astype(np.float64) / p[idx]).astype(np.float32))
    return AtomicUpdate("svd", shape, idx, vals, np.ascontiguousarray(u[:, idx]), np.ascontiguousarray(vt[idx]), (m, n))


def sparsify(x: Any, atoms: str = "entry", **kwargs: Any) -> AtomicUpdate:
    """Deprecated old name of :func:`sample` (it returns an :class:`AtomicUpdate`, not the
    :class:`~gradsparse.Sparse` of :func:`gradsparse.sparsify`); removed in the next release."""
    warnings.warn("gradsparse.atomo.sparsify is deprecated and will be removed in the next release; "
                  "use gradsparse.atomo.sample (same arguments, same result)", DeprecationWarning, stacklevel=2)
    return sample(x, atoms, **kwargs)


class QuantizedUpdate:
    """A QSGD or TernGrad update: integer ``codes`` and one float32 ``scale``;
    ``to_dense() = scale * codes / levels``."""

    __slots__ = ("method", "shape", "codes", "scale", "levels")

    def __init__(self, method: str, shape: Tuple[int, ...], codes: np.ndarray, scale: float, levels: int):
        self.method, self.shape, self.codes, self.scale, self.levels = method, tuple(shape), codes, float(scale), levels

    @property
    def bits(self) -> int:
        """Bits of a fixed-width encoding: 32 for the scale, plus ``ceil(log2(2*levels+1))``
        per element for QSGD, or 8 bits per 5 trits (3^5 = 243 <= 256) for TernGrad."""
        n = int(self.codes.size)
        if self.method == "terngrad":
            return 32 + 8 * ((n + 4) // 5)
        return 32 + n * int(math.ceil(math.log2(2 * self.levels + 1)))

    def to_dense(self) -> np.ndarray:
        """The unbiased estimate, float32 of ``shape``."""
        with np.errstate(over="ignore", invalid="ignore"):
            out = np.float32(self.scale) * self.codes.astype(np.float32) / np.float32(self.levels)
        if not np.isfinite(out).all():
            # scale * code overflows float32 before the division for a scale near the float32
            # maximum; every |result| <= scale, so float64 gives it exactly in range.
            out = (np.float64(self.scale) * self.codes.astype(np.float64) / self.levels).astype(np.float32)
        return out.reshape(self.shape)

    def __repr__(self) -> str:
        return f"QuantizedUpdate({self.method}, shape={self.shape}, levels={self.levels}, bits={self.bits})"


def qsgd(x: Any, levels: int, seed: int = 0) -> QuantizedUpdate:
    """QSGD (Alistarh et al. 2017): ``||x||_2 * sign(x_i) * l_i / levels`` with ``l_i`` the
    unbiased stochastic rounding of ``levels * |x_i| / ||x||_2``."""
    arr = _array(x, "x")
    if isinstance(levels, (bool, np.bool_)) or not isinstance(levels, (int, np.integer)) or not 1 <= levels < 2**31:
        raise ArgumentError(f"levels: must be an int in [1, 2^31), got {levels!r}")
    codes, norm = _core.qsgd(arr.reshape(-1), int(levels), _seed(seed))
    return QuantizedUpdate("qsgd", arr.shape, codes, norm, int(levels))


def terngrad(x: Any, seed: int = 0) -> QuantizedUpdate:
    """TernGrad (Wen et al. 2017): ``max|x| * sign(x_i) * Bernoulli(|x_i| / max|x|)``."""
    arr = _array(x, "x")
    codes, scale = _core.terngrad(arr.reshape(-1), _seed(seed))
    return QuantizedUpdate("terngrad", arr.shape, codes, scale, 1)
