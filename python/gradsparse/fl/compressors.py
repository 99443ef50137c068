"""The FL harness's compressors are :mod:`gradsparse.compress`'s: this module keeps the old
import path (``gradsparse.fl.compressors``) and adds nothing of its own."""
from __future__ import annotations

from ..compress import (Compressed, Compressor, available_compressors, check_compressor, check_update,
                        decode_dense, feedback_enabled, make_compressor, register)
from ..compress.base import ef_enabled  # noqa: F401  (the old name of feedback_enabled)

__all__ = ["Compressor", "Compressed", "register", "make_compressor", "check_compressor", "check_update",
           "available_compressors", "decode_dense", "feedback_enabled"]
