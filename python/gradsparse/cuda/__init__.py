"""The CUDA backend: what this build has, and whether a GPU can use it.

The backend is optional: it is compiled only when the package is built with the CMake
define ``GRADSPARSE_CUDA=ON`` (``GRADSPARSE_CUDA=ON pip install .``, or
``pip install . -C cmake.define.GRADSPARSE_CUDA=ON``; nvcc must be on PATH), and it is used
only for torch tensors that live on a CUDA device. Nothing here imports torch, and every
function here works without the backend and without a GPU (``docs/cuda.md``).

Thread safety: these functions only read build facts and the driver's device count.
"""
from __future__ import annotations

import importlib
from typing import Any, Dict, Optional

from ..errors import ArgumentError

__all__ = ["available", "built", "device_count", "info", "require"]

_BUILD_HINT = ("build gradsparse with the CUDA backend: GRADSPARSE_CUDA=ON pip install . "
               "(nvcc on PATH; see docs/cuda.md)")


def _module() -> Optional[Any]:
    """The compiled `_cuda` extension, or None in a build without it."""
    try:
        return importlib.import_module("gradsparse._cuda")
    except ImportError:
        return None


def built() -> bool:
    """Whether this build contains the CUDA backend."""
    return _module() is not None


def device_count() -> int:
    """CUDA devices the backend can use: 0 without the backend, a driver or a device."""
    mod = _module()
    return int(mod.device_count()) if mod is not None else 0


def available() -> bool:
    """Whether CUDA tensors can be processed: the backend is built and a device is usable."""
    return device_count() > 0


def info() -> Dict[str, Any]:
    """Build and device facts: built, devices, archs (compiled GPU architectures), runtime
    and driver versions, and a reason when the backend cannot be used."""
    mod = _module()
    if mod is None:
        return {"built": False, "devices": 0, "archs": "", "runtime": "", "driver": "",
                "reason": "not built: " + _BUILD_HINT}
    devices = int(mod.device_count())
    return {
        "built": True,
        "devices": devices,
        "archs": str(mod.archs()),
        "runtime": _version(int(mod.runtime_version())),
        "driver": _version(int(mod.driver_version())),
        "reason": "" if devices > 0 else str(mod.device_error()),
    }


def _version(v: int) -> str:
    return f"{v // 1000}.{(v % 1000) // 10}" if v > 0 else "none"


def require(what: str) -> None:
    """Raises ArgumentError naming `what` unless CUDA tensors can be processed here."""
    mod = _module()
    if mod is None:
        raise ArgumentError(f"{what}: a CUDA tensor needs the CUDA backend, which this build of "
                            f"gradsparse does not have; {_BUILD_HINT}")
    if int(mod.device_count()) == 0:
        raise ArgumentError(f"{what}: the CUDA backend is built but no CUDA device is usable "
                            f"({mod.device_error()})")
