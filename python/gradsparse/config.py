"""Build facts, SIMD level, thread count and the memory pool.

Thread safety: set_simd_level / set_num_threads / set_pool_limit change process-wide
settings. The context managers simd_level() and num_threads() are per thread: they change
the setting of the calling thread only (and of the engine threads its calls start), so
threads using them at the same time do not see or undo each other's settings.
"""
from __future__ import annotations

import contextlib
import importlib.util
import os
from typing import Any, Dict, Iterator, List

from . import _core
from . import cuda as _cuda
from .errors import ArgumentError, ArgumentTypeError


def cuda_available() -> bool:
    """Whether CUDA tensors can be processed here: the CUDA backend is built and a device is
    usable (``gradsparse.cuda.available()``; never raises, never imports torch)."""
    return _cuda.available()


def compiled_simd_levels() -> List[str]:
    """SIMD levels this build has kernels for."""
    return list(_core.compiled_simd_levels())


def available_simd_levels() -> List[str]:
    """SIMD levels compiled in and supported by this CPU and OS."""
    return list(_core.available_simd_levels())


_BEST_FIRST = ("avx512", "avx2", "neon", "scalar")


def get_simd_level() -> str:
    """The SIMD level in use in the calling thread ('scalar', 'avx2', 'avx512' or 'neon'):
    the level of an enclosing simd_level() context, else the process-wide level."""
    return _core.get_simd_level()


def set_simd_level(level: str) -> None:
    """Forces the process-wide SIMD level; 'auto' returns to the best available. The
    environment variable GRADSPARSE_SIMD sets the initial level (the best available one not
    above it). A thread inside a simd_level() context keeps the context's level."""
    if not isinstance(level, str):
        raise ArgumentTypeError(f"level: expected a str, got {type(level).__name__}")
    if level.lower() == "auto":
        _core.reset_simd_level()
    else:
        _core.set_simd_level(level)


@contextlib.contextmanager
def simd_level(level: str) -> Iterator[None]:
    """Context manager running its body at a given SIMD level ('auto': the best available).
    Per thread: it sets the level of the calling thread only (and of the engine threads its
    calls start); other threads and the process-wide level are unaffected. Nests."""
    if not isinstance(level, str):
        raise ArgumentTypeError(f"level: expected a str, got {type(level).__name__}")
    if level.lower() == "auto":
        available = set(available_simd_levels())
        level = next(name for name in _BEST_FIRST if name in available)
    before = _core.get_thread_simd_level()
    _core.set_thread_simd_level(level)
    try:
        yield
    finally:
        _core.set_thread_simd_level(before)


def get_num_threads() -> int:
    """Threads the engine may use in the calling thread: the count of an enclosing
    num_threads() context, else the process-wide count (default: all hardware threads, or
    GRADSPARSE_NUM_THREADS)."""
    return _core.get_num_threads()


def _check_threads(n: Any) -> None:
    if isinstance(n, bool) or not isinstance(n, int):
        raise ArgumentTypeError(f"n: expected an int, got {type(n).__name__}")
    if not 1 <= n <= 1024:
        raise ArgumentError(f"n: thread count must be in [1, 1024], got {n}")


def set_num_threads(n: int) -> None:
    """Sets the process-wide number of threads (>= 1). A thread inside a num_threads()
    context keeps the context's count."""
    _check_threads(n)
    _core.set_num_threads(n)


@contextlib.contextmanager
def num_threads(n: int) -> Iterator[None]:
    """Context manager running its body with n threads. Per thread: it sets the count of the
    calling thread only; other threads and the process-wide count are unaffected. Nests."""
    _check_threads(n)
    before = _core.get_thread_num_threads()
    _core.set_thread_num_threads(n)
    try:
        yield
    finally:
        _core.set_thread_num_threads(before)


# ----------------------------------------------------------------------------- memory pool

def pool_bytes() -> int:
    """Bytes the engine's scratch/output buffer pool keeps for reuse now (outside calls)."""
    return int(_core.pool_bytes())


def get_pool_limit() -> int:
    """The most bytes the buffer pool keeps between calls. Default: 256 MiB, at most 1/16 of
    physical memory, or the environment variable GRADSPARSE_POOL_BYTES (read at import)."""
    return int(_core.get_pool_limit())


def set_pool_limit(nbytes: int) -> None:
    """Sets the most bytes the buffer pool keeps between calls (process-wide); kept buffers
    beyond it are freed now. 0 disables the pool (every call allocates afresh)."""
    if isinstance(nbytes, bool) or not isinstance(nbytes, int):
        raise ArgumentTypeError(f"nbytes: expected an int, got {type(nbytes).__name__}")
    if nbytes < 0:
        raise ArgumentError(f"nbytes: must be >= 0, got {nbytes}")
    _core.set_pool_limit(min(nbytes, 2**63 - 1))


def release_memory() -> None:
    """Frees every buffer the pool keeps (and, with glibc, returns freed heap pages to the
    system). Arrays returned by gradsparse stay valid; their memory comes back to the pool
    when they are freed."""
    _core.release_memory()


def config() -> Dict[str, Any]:
    """The build and run-time configuration as a dict; the CUDA backend's facts
    (``gradsparse.cuda.info()``) as ``cuda_built``, ``cuda_devices``, ``cuda_archs``,
    ``cuda_runtime``, ``cuda_driver`` and ``cuda_reason`` (why it cannot be used, or "")."""
    env = os.environ.get("GRADSPARSE_SIMD")
    info: Dict[str, Any] = {
        "version": _core.__version__,
        "simd_compiled": compiled_simd_levels(),
        "simd_available": available_simd_levels(),
        "simd_level": get_simd_level(),
        "simd_env": env,
        "num_threads": get_num_threads(),
        "pool_limit": get_pool_limit(),
        "pool_bytes": pool_bytes(),
        "cuda_built": bool(_core.cuda_built),
        "torch_installed": importlib.util.find_spec("torch") is not None,
    }
    cuda = _cuda.info()
    info["cuda_built"] = info["cuda_built"] and bool(cuda["built"])
    for key in ("devices", "archs", "runtime", "driver", "reason"):
        info[f"cuda_{key}"] = cuda[key]
    if env:
        names = {"scalar", "avx2", "avx512", "avx-512", "neon"}
        if env.lower() not in names:
            info["simd_env_error"] = f"GRADSPARSE_SIMD={env!r} is not a SIMD level; ignored"
    pool_env = os.environ.get("GRADSPARSE_POOL_BYTES")
    if pool_env is not None and not pool_env.isdigit():
        info["pool_env_error"] = f"GRADSPARSE_POOL_BYTES={pool_env!r} is not a byte count; ignored"
    return info


def show_config() -> None:
    """Prints version, SIMD levels (compiled, available, in use), threads and the CUDA
    backend (built, devices, compiled architectures, versions, or why it cannot be used)."""
    info = config()
    lines = [
        f"gradsparse {info['version']}",
        f"  SIMD compiled : {', '.join(info['simd_compiled'])}",
        f"  SIMD available: {', '.join(info['simd_available'])}",
        f"  SIMD in use   : {info['simd_level']}" + (f" (GRADSPARSE_SIMD={info['simd_env']})" if info["simd_env"] else ""),
        f"  threads       : {info['num_threads']}",
        f"  buffer pool   : {info['pool_bytes'] / 2**20:.1f} MiB kept, limit {info['pool_limit'] / 2**20:.1f} MiB",
        f"  CUDA built    : {'yes' if info['cuda_built'] else 'no'}",
        f"  CUDA devices  : {info['cuda_devices']}",
        f"  CUDA archs    : {info['cuda_archs'] or '-'}",
        f"  CUDA runtime  : {info['cuda_runtime'] or '-'} (driver {info['cuda_driver'] or '-'})",
    ]
    if info["cuda_reason"]:
        lines.append(f"  CUDA unusable : {info['cuda_reason']}")
    lines += [
        f"  torch         : {'installed' if info['torch_installed'] else 'not installed'} (never imported by gradsparse)",
    ]
    for key in ("simd_env_error", "pool_env_error"):
        if key in info:
            lines.append(f"  warning       : {info[key]}")
    print("\n".join(lines))
