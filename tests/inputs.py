"""Test inputs: adversarial value generators per dtype, and conversions between the arrays
gradsparse takes (numpy for float32/float64/float16, torch for bfloat16) and the float64
numpy copies the reference works on."""
from __future__ import annotations

import contextlib

import numpy as np
import pytest

try:  # torch is optional: bfloat16 inputs and torch-tensor cases skip without it
    import torch
except ImportError:  # pragma: no cover - exercised by the torch-less CI venv
    torch = None

TORCH_REASON = "needs torch (optional; install it with: pip install torch==2.13.0)"
#: decorator for tests that use torch directly
requires_torch = pytest.mark.skipif(torch is None, reason=TORCH_REASON)


def need_torch() -> None:
    """Skips the calling test (with the visible reason) when torch is not installed."""
    if torch is None:
        pytest.skip(TORCH_REASON)


def torch_params(factory) -> list:
    """Parameter values that are torch objects, built only when torch is installed: `factory`
    returns the list; without torch, one skipped parameter stands in for them (so the skip
    and its reason show in the report)."""
    if torch is None:
        return [pytest.param(None, id="torch-cases", marks=pytest.mark.skip(reason=TORCH_REASON))]
    return list(factory())


@contextlib.contextmanager
def at_engine(level: str, threads=None):
    """Runs the block at SIMD `level` (and `threads` engine threads, if given); an assertion
    failing inside names them. For tests whose expensive reference is shared by every level
    (the per-level fixtures `simd` / `engine` in conftest.py are the usual way)."""
    import gradsparse

    where = f"simd={level}" + (f" threads={threads}" if threads is not None else "")
    with gradsparse.simd_level(level), (gradsparse.num_threads(threads) if threads is not None
                                        else contextlib.nullcontext()):
        try:
            yield
        except AssertionError as e:
            raise AssertionError(f"at {where}: {e}") from None


def is_tensor(x) -> bool:
    return torch is not None and isinstance(x, torch.Tensor)


DTYPES = ["float32", "float64", "float16", "bfloat16"]
NUMPY_DTYPES = ["float32", "float64", "float16"]

#: sizes around the vector widths (8 and 16 float32 lanes, 32/64-element unrolls, the
#: 32768-element boundary of the engine's "full" path comes in test_large.py)
SIZES = [1, 2, 3, 7, 8, 9, 15, 16, 17, 31, 32, 33, 63, 64, 65, 1000, 4097, 100003]

KINDS = ["random", "constant", "sorted", "reverse", "ties", "signed_zeros", "nan", "inf",
         "denormal", "zeros", "huge", "tiny", "mixed"]

_TORCH = ({"float32": torch.float32, "float64": torch.float64, "float16": torch.float16,
           "bfloat16": torch.bfloat16} if torch is not None else {})
_INT_VIEW = {2: torch.int16, 4: torch.int32, 8: torch.int64} if torch is not None else {}


class _BF16Info:
    """bfloat16's limits (numpy has no bfloat16): 8 exponent bits, 7 mantissa bits."""
    max = float.fromhex("0x1.fep127")
    tiny = 2.0**-126
    eps = 2.0**-7


def finfo(dtype: str):
    if dtype == "bfloat16":
        return _BF16Info
    return np.finfo(np.dtype(dtype))


def _round_bf16(values: np.ndarray) -> np.ndarray:
    """float64 -> bfloat16 (round to nearest even, through float32 as torch does) -> float64."""
    with np.errstate(over="ignore", invalid="ignore"):
        f = values.astype(np.float32)
    u = f.view(np.uint32).astype(np.uint64)
    nan = np.isnan(f)
    rounded = ((u + 0x7FFF + ((u >> 16) & 1)) >> 16) << 16
    out = (rounded & 0xFFFFFFFF).astype(np.uint32).view(np.float32).astype(np.float64)
    out[nan] = np.array([0xFFFF0000], np.uint32).view(np.float32)[0]  # the NaN torch gives
    return out


def smallest_subnormal(dtype: str) -> float:
    return {"float32": 2.0**-149, "float64": 2.0**-1074, "float16": 2.0**-24, "bfloat16": 2.0**-133}[dtype]


def round_to(values: np.ndarray, dtype: str) -> np.ndarray:
    """float64 values rounded to `dtype` and back (exactly representable afterwards)."""
    values = np.asarray(values, dtype=np.float64)
    with np.errstate(over="ignore", invalid="ignore"):
        if dtype == "bfloat16":
            return _round_bf16(values)
        return values.astype(dtype).astype(np.float64)


def make(values: np.ndarray, dtype: str, *, torch_input: bool = False):
    """The array gradsparse is given: numpy of `dtype`, or torch (always for bfloat16).
    `values` must already be representable in `dtype` (see round_to)."""
    values = np.asarray(values, dtype=np.float64)
    if dtype == "bfloat16" or torch_input:
        need_torch()
        t = torch.from_numpy(values.copy())
        return t.to(_TORCH[dtype])
    with np.errstate(over="ignore", invalid="ignore"):
        return values.astype(dtype)


def to_f64(x) -> np.ndarray:
    """Any numpy array / torch tensor -> float64 numpy (exact)."""
    if is_tensor(x):
        return x.detach().to(torch.float64).numpy()
    return np.asarray(x, dtype=np.float64)


def bits(x) -> np.ndarray:
    """Raw bit patterns of a float array or tensor (compares NaN payloads and -0.0)."""
    if is_tensor(x):
        x = x.detach().contiguous()
        return x.view(_INT_VIEW[x.element_size()]).numpy().copy()
    x = np.ascontiguousarray(x)
    return x.view({2: np.int16, 4: np.int32, 8: np.int64}[x.itemsize])


def gen(kind: str, n: int, dtype: str, seed: int = 0) -> np.ndarray:
    """n float64 values of an adversarial `kind`, exactly representable in `dtype`."""
    rng = np.random.default_rng([seed, n, KINDS.index(kind), DTYPES.index(dtype)])
    fi = finfo(dtype)
    sign = np.where(rng.random(n) < 0.5, -1.0, 1.0)
    if kind == "random":
        v = rng.standard_normal(n)
    elif kind == "constant":
        v = np.full(n, -1.5)
    elif kind == "sorted":
        v = np.sort(rng.standard_normal(n))
    elif kind == "reverse":
        v = np.sort(rng.standard_normal(n))[::-1].copy()
    elif kind == "ties":
        v = rng.integers(-3, 4, n).astype(np.float64)
    elif kind == "signed_zeros":
        v = np.where(rng.random(n) < 0.5, -0.0, 0.0)
        few = rng.random(n) < 0.1
        v[few] = rng.integers(-2, 3, int(few.sum()))
    elif kind == "nan":
        v = rng.standard_normal(n)
        v[rng.random(n) < 0.1] = np.nan
        neg = rng.random(n) < 0.05
        v[neg] = -np.nan
    elif kind == "inf":
        v = rng.standard_normal(n)
        v[rng.random(n) < 0.1] = np.inf
        v[rng.random(n) < 0.1] = -np.inf
    elif kind == "denormal":
        v = sign * rng.integers(0, 50, n) * smallest_subnormal(dtype)
    elif kind == "zeros":
        v = np.zeros(n)
    elif kind == "huge":
        v = sign * fi.max * rng.uniform(0.25, 1.0, n)
    elif kind == "tiny":
        v = sign * fi.tiny * rng.uniform(1.0, 4.0, n)
    elif kind == "mixed":
        pool = np.array([0.0, -0.0, np.nan, np.inf, -np.inf, 1.0, -1.0, fi.max, -fi.max, fi.tiny,
                         smallest_subnormal(dtype), -smallest_subnormal(dtype), 2.5, -2.5])
        v = pool[rng.integers(0, pool.size, n)]
        few = rng.random(n) < 0.3
        v[few] = rng.standard_normal(int(few.sum()))
    else:
        raise ValueError(kind)
    return round_to(v, dtype)


def costs_for(n: int, seed: int = 0, dtype=np.float64, kind: str = "random") -> np.ndarray:
    """Positive finite per-element costs: 'random' (log-uniform), 'ties' (few values)."""
    rng = np.random.default_rng([seed, n, 7])
    if kind == "random":
        c = np.exp(rng.uniform(-3, 3, n))
    elif kind == "ties":
        c = rng.choice([0.5, 1.0, 2.0, 4.0], n)
    else:
        raise ValueError(kind)
    return c.astype(dtype)


def assert_sparse(res, x, expected) -> None:
    """`res` (a gradsparse.Sparse of input `x`) keeps exactly the flat positions `expected`
    (ascending) with x's bit-exact values, dtype, array type and shape."""
    import gradsparse

    assert isinstance(res, gradsparse.Sparse)
    expected = np.asarray(expected, dtype=np.int64)
    is_torch = is_tensor(x)
    assert isinstance(res.indices, torch.Tensor if is_torch else np.ndarray)
    assert isinstance(res.values, torch.Tensor if is_torch else np.ndarray)
    assert res.values.dtype == x.dtype
    assert res.indices.dtype == (torch.int64 if is_torch else np.int64)
    assert res.shape == tuple(x.shape)
    idx = res.indices.numpy() if is_torch else res.indices
    np.testing.assert_array_equal(idx, expected)
    flat = x.reshape(-1)
    np.testing.assert_array_equal(bits(res.values), bits(flat[torch.from_numpy(expected)] if is_torch else flat[expected]))


def run_isolated(module: str, func: str, timeout: float = 300, args: tuple = ()) -> str:
    """Runs tests/<module>.py's `func(*args)` (args: literals) in a fresh interpreter and fails the calling test
    if it raises or crashes: for checks that have crashed the process (heap corruption in
    the extension), so that one crash cannot end the whole test run."""
    import os
    import subprocess
    import sys

    here = os.path.dirname(os.path.abspath(__file__))
    code = f"import sys; sys.path.insert(0, {here!r}); import {module} as m; m.{func}(*{args!r})"
    env = dict(os.environ)
    env["PYTHONWARNINGS"] = "error"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=timeout, env=env)
    if proc.returncode != 0:
        raise AssertionError(f"{module}.{func} failed in a subprocess (exit code {proc.returncode}):\n"
                             f"{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}")
    return proc.stdout
