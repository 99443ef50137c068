"""The wire format: ``encode`` sparse (or dense) updates into compact, checksummed bytes,
``decode`` them back, and ``encoded_size`` without building the bytes.

One payload carries one tensor or a whole model update (a dict of named tensors). Index
codecs: ``raw32``, ``raw64``, ``varint`` (byte-aligned delta codes, multi-GB/s), ``rice``
(delta + Golomb-Rice, parameter chosen per tensor, within a few tenths of a percent of the
entropy bound on random positions), ``bitmap``, and ``auto`` (the smallest of them for each
tensor). Value codecs: ``float32``, ``float64``, ``float16``, ``bfloat16`` (round to nearest
even), ``qsgd`` (unbiased stochastic ``bits``-bit quantizer with a float32 scale per
``block`` values) and ``sign`` (one bit per value and one float32 scale, mean |v|).

The byte layout is specified in docs/format.md. :func:`decode` treats its input as
untrusted: anything malformed raises ``ValueError`` saying what is wrong.
"""
from __future__ import annotations

import numbers
import warnings
from typing import Any, Dict, List, Mapping, Optional, Tuple, Union

import numpy as np

from . import _core
from ._convert import as_flat, bf16_to_f32, is_tensor, tensor_to_numpy, torch_module
from .sparse import Sparse
from .errors import ArgumentError, ArgumentTypeError

__all__ = ["encode", "decode", "encoded_size", "INDEX_CODECS", "VALUE_CODECS", "FORMAT_VERSION"]

#: index codec names accepted by :func:`encode` (``auto`` picks one per tensor)
INDEX_CODECS = ("auto", "raw32", "raw64", "varint", "rice", "bitmap")
#: value codec names accepted by :func:`encode`
VALUE_CODECS = ("float32", "float64", "float16", "bfloat16", "qsgd", "sign")
#: the format version this build writes and reads
FORMAT_VERSION = int(_core.WIRE_FORMAT_VERSION)

_DTYPE_NAMES = {0: "float32", 1: "float64", 2: "float16", 3: "bfloat16"}

Update = Union[Sparse, Any, Mapping[str, Any]]


def _index_array(indices: Any) -> np.ndarray:
    if is_tensor(indices):
        indices = tensor_to_numpy(indices, "indices")
    arr = np.asarray(indices)
    if arr.dtype.kind not in "iu":
        raise ArgumentTypeError(f"indices: expected an integer array, got dtype {arr.dtype}")
    if arr.ndim != 1:
        raise ArgumentError(f"indices: expected a 1-D array, got shape {arr.shape}")
    if arr.dtype.kind == "u" and arr.size and int(arr.max()) > np.iinfo(np.int64).max:
        raise ArgumentError("indices: out of range")
    return np.ascontiguousarray(arr, dtype=np.int64)


def _record(name: str, item: Any, what: str) -> Tuple[Any, ...]:
    if isinstance(item, Sparse):
        flat = as_flat(item.values, f"{what}.values")
        idx = _index_array(item.indices)
        if idx.size != flat.size:
            raise ArgumentError(f"{what}: has {idx.size} indices and {flat.size} values")
        shape = tuple(int(s) for s in item.shape)
        if any(s < 0 or s >= 2**63 for s in shape):
            raise ArgumentError(f"{what}: shape {shape} has a negative or too large dimension")
        return (name, _DTYPE_NAMES[flat.code], shape, False, idx, flat.array)
    if isinstance(item, (np.ndarray, np.generic)) or is_tensor(item):
        flat = as_flat(item, what)
        return (name, _DTYPE_NAMES[flat.code], flat.shape, True, None, flat.array)
    raise ArgumentTypeError(f"{what}: expected a Sparse, a numpy array or a torch tensor, got {type(item).__name__}")


def _records(update: Update) -> Tuple[List[Tuple[Any, ...]], bool]:
    if isinstance(update, Mapping):
        recs = []
        for name, item in update.items():
            if not isinstance(name, str):
                raise ArgumentTypeError(f"update: tensor names must be str, got {type(name).__name__}")
            try:
                name.encode("utf-8")
            except UnicodeEncodeError:
                raise ArgumentError(f"update: tensor name {name!r} is not valid UTF-8") from None
            recs.append(_record(name, item, f"update[{name!r}]"))
        return recs, False
    return [_record("", update, "update")], True


def _options(index_codec: Any, value_codec: Any, bits: Any, block: Any, seed: Any) -> Tuple[str, str, int, int, int]:
    if not isinstance(index_codec, str) or index_codec not in INDEX_CODECS:
        raise ArgumentError(f"index_codec: expected one of {', '.join(INDEX_CODECS)}, got {index_codec!r}")
    if not isinstance(value_codec, str) or value_codec not in VALUE_CODECS:
        raise ArgumentError(f"value_codec: expected one of {', '.join(VALUE_CODECS)}, got {value_codec!r}")
    for name, v in (("bits", bits), ("block", block)):
        if isinstance(v, (bool, np.bool_)) or not isinstance(v, numbers.Integral):
            raise ArgumentTypeError(f"{name}: expected an integer, got {type(v).__name__}")
    if int(bits) not in (1, 2, 4, 8):
        raise ArgumentError(f"bits: must be 1, 2, 4 or 8, got {bits}")
    if not 1 <= int(block) < 2**32:
        raise ArgumentError(f"block: must be in [1, 2^32), got {block}")
    if seed is None:
        # Fresh OS entropy: stochastic rounding must differ between calls unless seeded.
        seed = int(np.random.SeedSequence().generate_state(1, np.uint64)[0]) if value_codec == "qsgd" else 0
    elif isinstance(seed, (bool, np.bool_)) or not isinstance(seed, numbers.Integral):
        raise ArgumentTypeError(f"seed: expected an integer or None, got {type(seed).__name__}")
    elif not 0 <= int(seed) < 2**64:
        raise ArgumentError(f"seed: must be in [0, 2^64), got {seed}")
    return index_codec, value_codec, int(bits), int(block), int(seed)


def encode(
    update: Update,
    *,
    index_codec: str = "auto",
    value_codec: str = "float32",
    bits: int = 8,
    block: int = 512,
    seed: Optional[int] = None,
) -> bytes:
    """The payload (bytes) of `update`: a :class:`Sparse`, a dense numpy array / torch
    tensor, or a dict ``name -> Sparse | array`` (a whole model update).

    ``index_codec`` applies to every sparse tensor (``auto``: the smallest codec for each).
    ``value_codec`` applies to every tensor; ``bits`` and ``block`` parameterise ``qsgd``,
    whose stochastic rounding is drawn from ``seed`` (fresh randomness when None; the same
    seed gives the same bytes). Indices must be strictly increasing and inside the shape.

    The arrays are read without copying while the GIL is released: another thread must not
    modify them during the call. If one does, the call raises ValueError ("indices: changed
    during encoding") or returns a valid payload of the values it read; it never writes
    outside the payload.
    """
    recs, single = _records(update)
    opts = _options(index_codec, value_codec, bits, block, seed)
    return _core.wire_encode(recs, *opts, single)


def encoded_size(
    update: Update,
    *,
    index_codec: str = "auto",
    value_codec: str = "float32",
    bits: int = 8,
    block: int = 512,
    seed: Optional[int] = None,
) -> int:
    """``len(encode(update, ...))``, computed without building the payload."""
    recs, single = _records(update)
    opts = _options(index_codec, value_codec, bits, block, 0 if seed is None else seed)
    return int(_core.wire_encoded_size(recs, *opts, single)[0])


def chosen_index_codecs(update: Update, *, index_codec: str = "auto") -> Dict[str, str]:
    """The index codec each tensor would be written with (``dense`` for dense arrays)."""
    recs, _ = _records(update)
    opts = _options(index_codec, "float32", 8, 512, 0)
    names = _core.wire_encoded_size(recs, *opts, False)[1]
    return {r[0]: c for r, c in zip(recs, names)}


_NOT_GIVEN = object()


def _wrap(values: np.ndarray, dtype: str, to: str):
    if to == "torch":
        torch = torch_module()
        if torch is None:
            import torch  # noqa: F811  (to="torch" asks for it explicitly)
        if dtype == "bfloat16":
            return torch.from_numpy(values.view(np.int16)).view(torch.bfloat16)
        return torch.from_numpy(values)
    if dtype == "bfloat16":
        return bf16_to_f32(values)  # numpy has no bfloat16: exact widening
    return values


def _output_kind(to: Any, like: Any) -> str:
    """``to``, or the deprecated ``like`` it replaces (with a DeprecationWarning)."""
    if like is not _NOT_GIVEN:
        warnings.warn("decode(like=...) is deprecated and will be removed in the next release; "
                      "use decode(to=...) (like= is numpy's array-creation keyword, a different thing)",
                      DeprecationWarning, stacklevel=3)
        if to is not None:
            raise ArgumentTypeError("like: give to= only (like= is its deprecated old name)")
        if not isinstance(like, str) or like not in ("numpy", "torch"):
            raise ArgumentError(f"like: expected 'numpy' or 'torch', got {like!r}")
        return like
    if to is None:
        return "numpy"
    if not isinstance(to, str) or to not in ("numpy", "torch"):
        raise ArgumentError(f"to: expected 'numpy' or 'torch', got {to!r}")
    return to


def decode(data: Any, *, to: Optional[str] = None, verify_checksum: bool = True, like: Any = _NOT_GIVEN):
    """Decodes a payload made by :func:`encode`.

    Returns what was encoded: a :class:`Sparse` (or a dense array) for a single tensor,
    else a dict ``name -> Sparse | array`` in the order written. ``to="torch"`` returns
    torch tensors (bfloat16 stays bfloat16); the default, ``to="numpy"``, returns numpy
    arrays, which hold bfloat16 values as float32 (exact). Values come back in the tensor's
    original dtype, carrying the precision of the value codec. Raises ValueError naming the
    problem for any malformed payload. ``like=`` is the deprecated old name of ``to=``.
    """
    to = _output_kind(to, like)
    if not isinstance(verify_checksum, (bool, np.bool_)):
        raise ArgumentTypeError(f"verify_checksum: expected a bool, got {type(verify_checksum).__name__}")
    if isinstance(data, str):
        raise ArgumentTypeError("data: expected bytes, bytearray or memoryview, got str")
    single, records = _core.wire_decode(data, bool(verify_checksum))
    out: Dict[str, Any] = {}
    for raw_name, dtype, shape, _ic, _vc, idx, vals in records:
        try:
            name = raw_name.decode("utf-8")
        except UnicodeDecodeError:
            raise ArgumentError("payload: a tensor name is not valid UTF-8") from None
        values = _wrap(vals, dtype, to)
        if idx is None:
            item = values.reshape(shape)
        else:
            if to == "torch":
                idx = torch_module().from_numpy(idx)
            item = Sparse(idx, values, shape)
        out[name] = item
    if single:
        return next(iter(out.values()))
    return out
