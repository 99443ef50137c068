"""How a gradsparse payload rides in a Flower message.

A payload (the bytes of :func:`gradsparse.encode`) travels as one Flower ``Array`` of dtype
``uint8`` and shape ``(len,)`` whose ``stype`` names the format and its version,
:data:`PAYLOAD_STYPE`. Flower serialises it like any other Array (in simulation and over
gRPC); Flower's own strategies refuse it (``Array.numpy()`` raises for a stype that is not
numpy's), so a payload is never averaged as bytes by accident.
"""
from __future__ import annotations

from typing import Any

from ._flwr import Array
from ...errors import ArgumentError, ArgumentTypeError

__all__ = ["PAYLOAD_STYPE", "UPDATE_KEY", "DENSE_KEY", "payload_array", "payload_bytes", "is_payload"]

PAYLOAD_STYPE = "gradsparse.wire/1"  #: the stype of a payload Array: gradsparse's wire format, version 1
UPDATE_KEY = "gradsparse.update"  #: the Array holding the compressed update
DENSE_KEY = "gradsparse.dense"  #: the Array holding the arrays sent as they are (dense float32)


def payload_array(payload: bytes) -> Array:
    """`payload` as a Flower Array (uint8, shape (len,), stype PAYLOAD_STYPE)."""
    if not isinstance(payload, (bytes, bytearray, memoryview)):
        raise ArgumentTypeError(f"payload: expected bytes, got {type(payload).__name__}")
    data = bytes(payload)
    return Array(dtype="uint8", shape=(len(data),), stype=PAYLOAD_STYPE, data=data)


def is_payload(array: Any) -> bool:
    return isinstance(array, Array) and array.stype == PAYLOAD_STYPE


def payload_bytes(array: Any, what: str = "payload") -> bytes:
    """The payload carried by `array` (checked: an Array of stype PAYLOAD_STYPE, uint8, 1-D,
    with as many bytes as its shape says). The bytes themselves are validated when decoded."""
    if not isinstance(array, Array):
        raise ArgumentTypeError(f"{what}: expected a flwr Array, got {type(array).__name__}")
    if array.stype != PAYLOAD_STYPE:
        raise ArgumentError(f"{what}: stype {array.stype!r} is not {PAYLOAD_STYPE!r} (another format or version)")
    shape = tuple(array.shape)
    if array.dtype != "uint8" or len(shape) != 1:
        raise ArgumentError(f"{what}: expected a 1-D uint8 Array, got dtype {array.dtype!r} shape {shape}")
    data = array.data
    if not isinstance(data, bytes) or len(data) != shape[0]:
        raise ArgumentError(f"{what}: holds {len(data) if isinstance(data, bytes) else '?'} bytes, "
                            f"its shape says {shape[0]}")
    return data
