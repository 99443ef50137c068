"""The exceptions gradsparse raises for bad arguments.

gradsparse reports a bad argument the Python way -- a ValueError or TypeError whose
message names the argument -- and, at the same time, the way torch does, so that code
written for ``torch.topk`` keeps working after the swap:

=====================  ======================================  ==========================
class                  is an instance of                       raised for
=====================  ======================================  ==========================
``ArgumentError``      ``ValueError``, ``RuntimeError``        a bad value (k out of
                                                               range, a bad shape, ...)
``ArgumentTypeError``  ``TypeError``, ``RuntimeError``         a bad type or dtype
``DimensionError``     ``ArgumentError`` (so ``ValueError``,   a dim out of range
                       ``RuntimeError``) and ``IndexError``
=====================  ======================================  ==========================

Every argument error of the public API is one of these, whether the Python layer or the
C++ core found it. Corrupt payloads and checkpoints are ``ArgumentError`` too, and so is a
torch tensor that requires grad, given while grad mode is on, to a function that does not
propagate gradients (every function but ``topk``; torch raises RuntimeError for
``Tensor.numpy()`` on such a tensor): pass ``x.detach()`` or call it under ``torch.no_grad()``.
"""
from __future__ import annotations

from ._core import ArgumentError, ArgumentTypeError, DimensionError

__all__ = ["ArgumentError", "ArgumentTypeError", "DimensionError"]
