"""Build facts, SIMD level and thread count."""
from __future__ import annotations

import contextlib
import importlib.util
import os
from typing import Any, Dict, Iterator, List

from . import _core


def compiled_simd_levels() -> List[str]:
    """SIMD levels this build has kernels for."""
    return list(_core.compiled_simd_levels())


def available_simd_levels() -> List[str]:
    """SIMD levels compiled in and supported by this CPU and OS."""
    return list(_core.available_simd_levels())


def get_simd_level() -> str:
    """The SIMD level in use ('scalar', 'avx2', 'avx512' or 'neon')."""
    return _core.get_simd_level()


def set_simd_level(level: str) -> None:
    """Forces a SIMD level; 'auto' returns to the best available. The environment variable
    GRADSPARSE_SIMD sets the initial level (the best available one not above it)."""
    if not isinstance(level, str):
        raise TypeError(f"level: expected a str, got {type(level).__name__}")
    if level.lower() == "auto":
        _core.reset_simd_level()
    else:
        _core.set_simd_level(level)


@contextlib.contextmanager
def simd_level(level: str) -> Iterator[None]:
    """Context manager running its body at a given SIMD level."""
    before = get_simd_level()
    set_simd_level(level)
    try:
        yield
    finally:
        _core.set_simd_level(before)


def get_num_threads() -> int:
    """Threads the engine may use (default: all hardware threads, or GRADSPARSE_NUM_THREADS)."""
    return _core.get_num_threads()


def set_num_threads(n: int) -> None:
    """Sets the number of threads (>= 1)."""
    if isinstance(n, bool) or not isinstance(n, int):
        raise TypeError(f"n: expected an int, got {type(n).__name__}")
    if not 1 <= n < 2**31:
        raise ValueError(f"n: must be in [1, 2^31), got {n}")
    _core.set_num_threads(n)


@contextlib.contextmanager
def num_threads(n: int) -> Iterator[None]:
    """Context manager running its body with n threads."""
    before = get_num_threads()
    set_num_threads(n)
    try:
        yield
    finally:
        _core.set_num_threads(before)


def config() -> Dict[str, Any]:
    """The build and run-time configuration as a dict."""
    env = os.environ.get("GRADSPARSE_SIMD")
    info: Dict[str, Any] = {
        "version": _core.__version__,
        "simd_compiled": compiled_simd_levels(),
        "simd_available": available_simd_levels(),
        "simd_level": get_simd_level(),
        "simd_env": env,
        "num_threads": get_num_threads(),
        "cuda_built": bool(_core.cuda_built),
        "torch_installed": importlib.util.find_spec("torch") is not None,
    }
    if env:
        names = {"scalar", "avx2", "avx512", "avx-512", "neon"}
        if env.lower() not in names:
            info["simd_env_error"] = f"GRADSPARSE_SIMD={env!r} is not a SIMD level; ignored"
    return info


def show_config() -> None:
    """Prints version, SIMD levels (compiled, available, in use), threads and CUDA status."""
    info = config()
    lines = [
        f"gradsparse {info['version']}",
        f"  SIMD compiled : {', '.join(info['simd_compiled'])}",
        f"  SIMD available: {', '.join(info['simd_available'])}",
        f"  SIMD in use   : {info['simd_level']}" + (f" (GRADSPARSE_SIMD={info['simd_env']})" if info["simd_env"] else ""),
        f"  threads       : {info['num_threads']}",
        f"  CUDA built    : {'yes' if info['cuda_built'] else 'no'}",
        f"  torch         : {'installed' if info['torch_installed'] else 'not installed'} (never imported by gradsparse)",
    ]
    if "simd_env_error" in info:
        lines.append(f"  warning       : {info['simd_env_error']}")
    print("\n".join(lines))
