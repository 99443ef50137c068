"""Markers for tests that need the CUDA backend and a GPU: they skip, with the reason shown
in the summary, where either is missing (this is every CPU-only machine and CI)."""
from __future__ import annotations

import pytest

import gradsparse.cuda as gcuda


def cuda_ready() -> bool:
    """The backend is built, a device is usable and torch sees it."""
    if not gcuda.available():
        return False
    try:
        import torch
    except ImportError:
        return False
    return bool(torch.cuda.is_available())


def _reason() -> str:
    info = gcuda.info()
    if not info["built"]:
        return "CUDA backend not built (GRADSPARSE_CUDA=ON)"
    if info["devices"] == 0:
        return f"no CUDA device: {info['reason']}"
    return "torch is missing or cannot see the CUDA device"


requires_cuda = pytest.mark.skipif(not cuda_ready(), reason=_reason() if not cuda_ready() else "")
