"""The compressor interface and its registry.

A compressor turns a model update -- an ordered dict ``name -> float array`` (numpy, or
torch CPU tensors) -- into a payload (``bytes`` from :func:`gradsparse.encode`) and back,
and says per tensor how many coordinates the update touches (for an energy account).
All selection goes through gradsparse's engine, all payloads through the wire format, so
``len(payload)`` is the real message size. With ``feedback=ErrorFeedback()`` the
compressor runs inside error feedback (see :mod:`gradsparse.compress.feedback`).

Adding one: subclass :class:`Compressor`, set ``name``, ``params`` (parameter -> default)
and ``biased``, implement ``_compress`` (its input is already checked) and, if it needs
to, ``validate`` (check and resolve ``self.p``); decorate with :func:`register`.
"""
from __future__ import annotations

import json
import time
from typing import Any, Dict, List, Mapping, Optional, Tuple, Type

import numpy as np

from .._convert import BF16, as_flat, bf16_to_f32, is_tensor
from ..sparse import Sparse
from ..wire import decode, encode
from .feedback import ErrorFeedback
from ..errors import ArgumentError, ArgumentTypeError

__all__ = ["Compressor", "Compressed", "register", "make_compressor", "check_compressor", "check_update",
           "available_compressors", "compressor_class", "decode_dense", "feedback_enabled"]

Update = Dict[str, np.ndarray]

_REGISTRY: Dict[str, Type["Compressor"]] = {}


class Compressed:
    """One compressed update: the payload bytes and, per tensor, how many of its
    coordinates the update touches (for the energy account). `sent`, when a compressor
    knows it without decoding, is what the payload decodes to (name -> Sparse or dense
    array); None means "decode the payload"."""

    __slots__ = ("payload", "selected", "encode_s", "sent")

    def __init__(self, payload: bytes, selected: Dict[str, int], encode_s: float = 0.0,
                 sent: Optional[Dict[str, Any]] = None):
        self.payload = payload
        self.selected = selected
        self.encode_s = encode_s  #: seconds spent building the payload (the rest is selection)
        self.sent = sent

    @property
    def nbytes(self) -> int:
        return len(self.payload)


class Compressor:
    """Base class. ``params`` maps each parameter to its default; ``validate`` checks (and
    may resolve) them in ``self.p``; ``settings()`` is the result as plain JSON data."""

    name = ""
    biased = True
    #: whether what is sent depends on the per-tensor costs (then a run's energy cannot be
    #: re-accounted under another profile: its selection would differ)
    reads_costs = False
    params: Dict[str, Any] = {}

    def __init__(self, **kwargs: Any):
        self.p = {**self.params, **kwargs}
        self.validate()
        try:
            json.dumps(self.p, allow_nan=False)
        except (TypeError, ValueError) as e:
            raise ArgumentError(f"params: compressor {self.name!r} needs JSON values (numbers, strings, true/false, "
                             f"null): {e}") from None

    # -- to override
    def validate(self) -> None:
        pass

    def _compress(self, update: Update, *, seed: int, costs: Optional[Mapping[str, float]]) -> Compressed:
        """The compressor itself; `update` is already checked (see :meth:`compress`)."""
        raise NotImplementedError

    # -- the public entry points
    def settings(self) -> Dict[str, Any]:
        """Every parameter with its default resolved: a JSON-serialisable copy."""
        return json.loads(json.dumps(self.p))

    def compress(self, update: Mapping[str, Any], *, seed: int, costs: Optional[Mapping[str, float]] = None,
                 feedback: Optional[ErrorFeedback] = None) -> Compressed:
        """The payload of `update` (name -> non-empty, finite float array or CPU tensor),
        seeded by `seed`; `costs` (name -> joules per coordinate) is used by cost-aware
        compressors. With `feedback` (an :class:`ErrorFeedback`), compresses update +
        residual and leaves in the residual what the payload does not carry. Bad input
        raises TypeError/ValueError naming the tensor, before any residual changes."""
        checked = check_update(update)
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
            raise ArgumentError(f"seed: expected an integer >= 0, got {seed!r}")
        if costs is not None:
            if not isinstance(costs, Mapping):
                raise ArgumentTypeError(f"costs: expected a dict name -> cost, got {type(costs).__name__}")
            missing = [n for n in checked if n not in costs]
            if missing:
                raise ArgumentError(f"costs: no cost for tensor(s) {', '.join(map(repr, missing[:3]))}")
        seed = int(seed)
        if feedback is None:
            return self._compress(checked, seed=seed, costs=costs)
        if not isinstance(feedback, ErrorFeedback):
            raise ArgumentTypeError(f"feedback: expected a gradsparse.ErrorFeedback, got {type(feedback).__name__}")
        self._precheck(checked, costs)

        def send(acc: Update) -> Tuple[Compressed, Mapping[str, Any]]:
            out = self._compress(acc, seed=seed, costs=costs)
            return out, (out.sent if out.sent is not None else self.decompress(out.payload, acc))

        return feedback.apply(checked, send)

    def decompress(self, payload: bytes, like: Mapping[str, Any]) -> Update:
        """Dense float32 arrays shaped like `like` (decoding validates the bytes)."""
        return decode_dense(payload, like)

    # -- helpers
    def _precheck(self, update: Update, costs: Optional[Mapping[str, float]]) -> None:
        """Raises for arguments `_compress` would refuse (before a residual changes)."""

    def _ratio(self) -> float:
        r = self.p["ratio"]
        if isinstance(r, bool) or not isinstance(r, (int, float)) or not (0 < float(r) <= 1):
            raise ArgumentError(f"ratio: must be in (0, 1], got {r!r}")
        return float(r)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in self.p.items())})"


def register(cls: Type[Compressor]) -> Type[Compressor]:
    """Class decorator: makes `cls` available by ``cls.name``."""
    if not cls.name:
        raise ArgumentError("register: the compressor class needs a name")
    _REGISTRY[cls.name] = cls
    return cls


def available_compressors() -> List[str]:
    """The registered compressor names, sorted."""
    return sorted(_REGISTRY)


def compressor_class(name: str) -> Type[Compressor]:
    """The registered class of `name` (its ``params`` are the defaults); ValueError if unknown."""
    if not isinstance(name, str) or name not in _REGISTRY:
        raise ArgumentError(f"name: unknown compressor {name!r}; expected one of {', '.join(available_compressors())}")
    return _REGISTRY[name]


def make_compressor(name: str, params: Optional[Mapping[str, Any]] = None) -> Compressor:
    """The compressor `name` with `params` (unknown names and parameters raise ValueError)."""
    return check_compressor(name, params or {}, "method")


def check_compressor(name: Any, params: Mapping[str, Any], what: str = "method") -> Compressor:
    if not isinstance(name, str) or name not in _REGISTRY:
        raise ArgumentError(f"{what}: unknown compressor {name!r}; expected one of {', '.join(available_compressors())}")
    cls = _REGISTRY[name]
    unknown = sorted(set(params) - set(cls.params))
    if unknown:
        raise ArgumentError(f"{what}: compressor {name!r} has no parameter(s) {', '.join(map(repr, unknown))}; "
                         f"it takes {', '.join(cls.params) or 'none'}")
    return cls(**dict(params))


def decode_dense(payload: bytes, like: Update) -> Update:
    """Decodes `payload` (untrusted) into dense float32 arrays shaped like `like`; every
    tensor of `like` must be present with its shape, and nothing else."""
    msg = decode(payload)
    if not isinstance(msg, dict):
        raise ArgumentError("payload: expected a multi-tensor message")
    out: Update = {}
    for name, ref in like.items():
        item = msg.get(name)
        if item is None:
            raise ArgumentError(f"payload: tensor {name!r} is missing")
        if isinstance(item, Sparse):
            if tuple(item.shape) != ref.shape:
                raise ArgumentError(f"payload: tensor {name!r} has shape {tuple(item.shape)}, expected {ref.shape}")
            out[name] = np.asarray(item.to_dense(), dtype=np.float32)
        else:
            arr = np.asarray(item, dtype=np.float32)
            if arr.shape != ref.shape:
                raise ArgumentError(f"payload: tensor {name!r} has shape {arr.shape}, expected {ref.shape}")
            out[name] = arr
    extra = sorted(set(msg) - set(like))
    if extra:
        raise ArgumentError(f"payload: unexpected tensor(s) {', '.join(map(repr, extra[:3]))}")
    return out


def check_update(update: Any) -> Update:
    """`update` as an ordered dict name -> float numpy array, after checking that it is a
    non-empty mapping of str names to non-empty, finite float arrays (torch CPU tensors and
    bfloat16 arrays are converted: bfloat16 widened to float32, exactly)."""
    if not isinstance(update, Mapping):
        raise ArgumentTypeError(f"update: expected a dict name -> array, got {type(update).__name__}")
    if not update:
        raise ArgumentError("update: no tensors")
    out: Update = {}
    for name, a in update.items():
        if not isinstance(name, str):
            raise ArgumentTypeError(f"update: tensor names must be str, got {type(name).__name__}")
        if is_tensor(a) or (isinstance(a, np.ndarray) and a.dtype.name == "bfloat16"):
            flat = as_flat(a, f"update[{name!r}]")
            a = (bf16_to_f32(flat.array) if flat.code == BF16 else flat.array).reshape(flat.shape)
        if not isinstance(a, np.ndarray):
            raise ArgumentTypeError(f"update[{name!r}]: expected a numpy array or torch tensor, got {type(a).__name__}")
        if a.dtype.kind != "f":
            raise ArgumentTypeError(f"update[{name!r}]: expected a float array, got dtype {a.dtype}")
        if a.size == 0:
            raise ArgumentError(f"update[{name!r}]: tensor is empty")
        if not np.isfinite(a).all():
            raise ArgumentError(f"update[{name!r}]: contains NaN or infinity (a diverged client?)")
        out[name] = a
    return out


def _sizes(update: Update) -> Dict[str, int]:
    return {k: int(v.size) for k, v in update.items()}


def _timed_encode(update: Mapping[str, Any], selected: Dict[str, int], **kw: Any) -> Compressed:
    """``encode(update, **kw)`` as a :class:`Compressed`, with the encoding time."""
    t0 = time.perf_counter()
    payload = encode(dict(update), **kw)
    return Compressed(payload, selected, time.perf_counter() - t0)


def _encode_sparse(parts: Dict[str, Sparse], value_codec: str = "float32") -> Compressed:
    """The payload of sparse `parts`; with a lossless value codec for the parts' values the
    parts themselves are what the receiver gets (no decoding needed for error feedback)."""
    out = _timed_encode(parts, {k: int(s.nnz) for k, s in parts.items()}, value_codec=value_codec)
    if value_codec == "float32" and all(np.asarray(s.values).dtype == np.float32 for s in parts.values()):
        out.sent = dict(parts)
    return out


def _check_codec(value: Any, allowed: Tuple[str, ...], what: str = "value_codec") -> None:
    if value not in allowed:
        raise ArgumentError(f"{what}: expected one of {', '.join(allowed)}, got {value!r}")


def feedback_enabled(comp: Compressor, setting: str) -> bool:
    """Whether error feedback applies: ``on``/``off``, or ``auto`` = the compressor is biased."""
    if setting == "on":
        return True
    if setting == "off":
        return False
    return bool(comp.biased)


ef_enabled = feedback_enabled  # the name gradsparse.fl used
