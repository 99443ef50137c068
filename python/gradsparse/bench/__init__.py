"""The benchmark suites, kept apart from the library: ``python -m gradsparse.bench``.

``cli`` parses the options and dispatches the suites: ``select`` (top-k, CWMP, global
selection), ``wire`` (index and value codecs), ``dropin`` (``gradsparse.topk`` against
``torch.topk``), ``atomo`` (SVD, FFT, end-to-end ATOMO) and ``compress`` (the compressors);
``python -m gradsparse.bench ddp`` and ``python -m gradsparse.bench cuda`` start the DDP
step-time suite and the CUDA suite, each with options of its own (never part of the default run);
``common`` holds what they share (data, timing, reference checks, machine description).
Nothing here is imported by ``import gradsparse``; the submodules load on first use.
"""
from __future__ import annotations

from typing import Optional, Sequence

__all__ = ["build_parser", "main"]


def build_parser():
    """The argument parser of ``python -m gradsparse.bench``."""
    from .cli import build_parser as _build_parser

    return _build_parser()


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Runs ``python -m gradsparse.bench`` with `argv`; returns the exit status."""
    from .cli import main as _main

    return _main(argv)
