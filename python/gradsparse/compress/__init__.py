"""gradsparse.compress: the compression layer -- the :class:`Compressor` interface, the
registry of every built-in compressor, and :class:`ErrorFeedback`, the one error-feedback
implementation. The FL harness, the DDP hook and your own training loop all use it.

Works on numpy alone; torch CPU tensors are accepted as inputs (this package never imports
torch). ::

    from gradsparse.compress import ErrorFeedback, make_compressor

    comp = make_compressor("topk", {"ratio": 0.01})
    ef = ErrorFeedback()
    out = comp.compress(update, seed=step, feedback=ef)    # update: name -> array
    send(out.payload)                                      # bytes of gradsparse.encode
    received = comp.decompress(out.payload, like=update)   # name -> dense float32

See docs/compress.md for the built-in compressors and how to add one.
"""
from __future__ import annotations

from .base import (Compressed, Compressor, available_compressors, check_compressor, check_update, compressor_class,
                   decode_dense, feedback_enabled, make_compressor, register)
from .combine import scatter_mean
from .feedback import ErrorFeedback
from . import methods as _methods  # noqa: F401  (registers the built-in compressors)
from . import atomic as _atomic  # noqa: F401

__all__ = ["Compressed", "Compressor", "ErrorFeedback", "available_compressors", "check_compressor", "check_update",
           "compressor_class", "decode_dense", "feedback_enabled", "make_compressor", "register", "scatter_mean"]
