"""Checkpoint files with an integrity check (no torch needed).

A checkpoint is one file, written atomically (a temporary file, fsync, rename)::

    gradsparse.fl checkpoint\\n                          magic line
    {"format": 1, "sha256": "<hex>", "size": N}\\n      header: one JSON line
    <N bytes of payload>                                 (torch.save of the run's state)

:func:`read` checks the magic line, the header, the payload's length and its SHA-256 before
returning the payload, so a truncated, bit-flipped or foreign file is refused instead of
being loaded: torch.load does not verify what it reads. Every failure -- missing,
unreadable, a directory, damaged, another format -- is a ValueError naming the file.
"""
from __future__ import annotations

import hashlib
import json
import os
from typing import Optional
from ..errors import ArgumentError

__all__ = ["write", "read", "atomic_write", "MAGIC"]

MAGIC = b"gradsparse.fl checkpoint\n"
FORMAT = 1
_HEADER_MAX = 1024  # bytes of the header line, newline included


def atomic_write(path: str, data: bytes) -> None:
    """Writes `data` to a temporary file beside `path`, syncs it, and renames it over `path`."""
    tmp = f"{path}.tmp{os.getpid()}"
    try:
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def write(path: str, payload: bytes) -> None:
    """Writes `payload` as a checkpoint file (magic, header with its SHA-256, payload), atomically."""
    header = json.dumps({"format": FORMAT, "sha256": hashlib.sha256(payload).hexdigest(), "size": len(payload)},
                        sort_keys=True).encode() + b"\n"
    atomic_write(path, MAGIC + header + payload)


def _bad(path: str, what: str) -> ValueError:
    return ValueError(f"checkpoint: {path!r} {what}; move it away (or delete the run directory) to start over")


def read(path: str) -> bytes:
    """The verified payload of the checkpoint at `path`; raises ValueError naming the file
    when it cannot be read or fails a check."""
    try:
        with open(path, "rb") as fh:
            data = fh.read()
    except IsADirectoryError:
        raise _bad(path, "is a directory, not a checkpoint file") from None
    except OSError as e:
        raise ArgumentError(f"checkpoint: cannot read {path!r} ({e.strerror or e})") from None
    if not data:
        raise _bad(path, "is empty (damaged)")
    if not data.startswith(MAGIC):
        if MAGIC.startswith(data):
            raise _bad(path, f"is truncated ({len(data)} bytes)")
        raise _bad(path, "is not a gradsparse.fl checkpoint with an integrity header (another file, or one "
                         "written by an older version, which cannot be verified)")
    end = data.find(b"\n", len(MAGIC), len(MAGIC) + _HEADER_MAX)
    if end < 0:
        if len(data) < len(MAGIC) + _HEADER_MAX:
            raise _bad(path, f"is truncated ({len(data)} bytes)")
        raise _bad(path, "has a damaged header")
    header = _header(data[len(MAGIC):end])
    if header is None:
        raise _bad(path, "has a damaged header")
    if header["format"] != FORMAT:
        raise _bad(path, f"has format {header['format']}; this version reads format {FORMAT}")
    payload = memoryview(data)[end + 1:]
    if len(payload) != header["size"]:
        kind = "truncated" if len(payload) < header["size"] else "longer than its header says"
        raise _bad(path, f"is {kind} ({len(payload)} payload bytes, expected {header['size']})")
    if hashlib.sha256(payload).hexdigest() != header["sha256"]:
        raise _bad(path, "is damaged (its SHA-256 does not match the header)")
    return bytes(payload)


def _header(line: bytes) -> Optional[dict]:
    try:
        h = json.loads(line.decode("ascii"))
    except (UnicodeDecodeError, ValueError):
        return None
    if not isinstance(h, dict):
        return None
    fmt, digest, size = h.get("format"), h.get("sha256"), h.get("size")
    if not (isinstance(fmt, int) and not isinstance(fmt, bool) and isinstance(size, int)
            and not isinstance(size, bool) and size >= 0 and isinstance(digest, str) and len(digest) == 64
            and all(c in "0123456789abcdef" for c in digest)):
        return None
    return h
