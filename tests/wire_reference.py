"""Plain numpy references for the wire format, written from docs/format.md and not from the
implementation, shared by the tests/test_wire_*.py files: a reference parser of whole
payloads, the CRC32C, bit-exact round-to-nearest-even into float16/bfloat16, reference
encoders and decoders of every index and value section, builders of crafted records and
messages, hypothesis strategies for shapes and positions, and the checks that compare an
encoder's sections with the references.
"""
from __future__ import annotations

import math
import re
import struct

import numpy as np
import pytest
from hypothesis import settings
from hypothesis import strategies as st

import gradsparse
from gradsparse import _core
from inputs import is_tensor, need_torch, torch


LEVELS = gradsparse.available_simd_levels()


INDEX_CODECS = ["raw32", "raw64", "varint", "rice", "bitmap", "auto"]


VALUE_CODECS = ["float32", "float64", "float16", "bfloat16", "qsgd", "sign"]


DTYPES = ["float32", "float64", "float16", "bfloat16"]


#: dtypes this environment can build inputs of (bfloat16 needs torch)
HAVE_DTYPES = DTYPES if torch is not None else DTYPES[:3]


#: array types decode can return here (its `to=` argument)
OUTPUTS = ("numpy", "torch") if torch is not None else ("numpy",)


#: decode into torch where torch is installed (it holds every dtype, bfloat16 included)
OUTPUT = OUTPUTS[-1]


# wire ids (docs/format.md)
DTYPE_ID = {"float32": 1, "float64": 2, "float16": 3, "bfloat16": 4}


INDEX_ID = {"dense": 0, "raw32": 1, "raw64": 2, "varint": 3, "rice": 4, "bitmap": 5}


VALUE_ID = {"float32": 1, "float64": 2, "float16": 3, "bfloat16": 4, "qsgd": 5, "sign": 6}


ID_INDEX = {v: k for k, v in INDEX_ID.items()}


LOSSLESS = {"float32": {"float32", "float16", "bfloat16"}, "float64": set(DTYPES),
            "float16": {"float16"}, "bfloat16": {"bfloat16"}}  # value codec -> dtypes kept exactly


HEADER = struct.Struct("<4sHHIIQ")  # magic, version, flags, record count, CRC32C, body length


assert HEADER.size == 24


MAX_RICE_B = 56


# Hypothesis budget per parametrised test: part of the profile's (ci profile: 40 examples).
N_EXAMPLES = max(8, settings().max_examples * 2 // 5)


@pytest.fixture(autouse=True)
def _quiet_numpy_casts():
    """The references cast NaNs, infinities and out-of-range values between float formats
    on purpose; numpy's RuntimeWarnings about that are not failures here."""
    with np.errstate(all="ignore"):
        yield


def raises(exc, arg, fn, *a, **kw):
    """fn(*a, **kw) raises `exc` as gradsparse's argument error class (gradsparse.errors),
    whose message names `arg` (a word or phrase)."""
    with pytest.raises(exc) as info:
        fn(*a, **kw)
    want = {ValueError: gradsparse.errors.ArgumentError, TypeError: gradsparse.errors.ArgumentTypeError}[exc]
    assert isinstance(info.value, want), f"{type(info.value).__name__}: {info.value}"
    assert re.search(rf"(^|\W){re.escape(arg)}(\W|$)", str(info.value)), str(info.value)
    return info.value


# =========================================================================== references
# ---- CRC32C: the Castagnoli polynomial 0x1EDC6F41, bit-reflected, init/xorout ~0 -------

_POLY_REFLECTED = int(f"{0x1EDC6F41:032b}"[::-1], 2)


assert _POLY_REFLECTED == 0x82F63B78


def _crc_table():
    table = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ (_POLY_REFLECTED if c & 1 else 0)
        table.append(c)
    return table


_CRC_TABLE = _crc_table()


def crc32c_ref(data: bytes) -> int:
    c = 0xFFFFFFFF
    for b in data:
        c = (c >> 8) ^ _CRC_TABLE[(c ^ b) & 0xFF]
    return c ^ 0xFFFFFFFF


def crc_of(body: bytes) -> int:
    """Reference CRC for small bodies; the library's (itself checked against the reference
    at every SIMD level in test_crc32c_*) for large ones, to keep the suite fast."""
    return crc32c_ref(body) if len(body) <= 1 << 13 else _core.crc32c(body)


# ---- exact round-to-nearest-even into a binary float format ----------------------------

FMT = {  # significand bits (with the implicit one), smallest normal exponent, largest finite
    "float32": (24, -126, float(np.finfo(np.float32).max)),
    "float16": (11, -14, 65504.0),
    "bfloat16": (8, -126, float.fromhex("0x1.fep127")),
}


def round_to(x, fmt: str) -> np.ndarray:
    """float64 values rounded once, to nearest even, into `fmt` (returned as exact float64).
    Scaling by a power of two is exact, np.rint rounds half to even: no double rounding."""
    x = np.array(x, dtype=np.float64, copy=True).reshape(-1)
    if fmt == "float64":
        return x
    p, emin, vmax = FMT[fmt]
    fin = np.isfinite(x) & (x != 0)
    xf = x[fin]
    _, e = np.frexp(xf)  # |x| in [2^(e-1), 2^e)
    q = np.maximum(e - 1, emin) - (p - 1)  # exponent of one unit in the last place
    r = np.ldexp(np.rint(np.ldexp(xf, -q)), q)
    r[np.abs(r) > vmax] = np.copysign(np.inf, r[np.abs(r) > vmax])
    x[fin] = r
    return x


def fmt_bytes(x64: np.ndarray, fmt: str) -> np.ndarray:
    """Little-endian element bit patterns (unsigned ints) of values exactly representable in
    `fmt` (NaN positions carry an arbitrary NaN; callers mask them)."""
    with np.errstate(all="ignore"):
        if fmt == "float64":
            return x64.astype("<f8").view("<u8")
        if fmt == "float32":
            return x64.astype("<f4").view("<u4")
        if fmt == "float16":
            return x64.astype("<f2").view("<u2")
        return (x64.astype("<f4").view("<u4") >> 16).astype("<u2")


def bf16_bits_from_f32_ref(f32: np.ndarray) -> np.ndarray:
    """The brief's reference: RNE on the float32 bits, NaN stays NaN."""
    u = np.ascontiguousarray(f32, dtype=np.float32).view(np.uint32).astype(np.uint64)
    r = ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype(np.uint16)
    nan = np.isnan(f32)
    r[nan] = ((u[nan] >> 16) | 0x40).astype(np.uint16)
    return r


def widen_bf16(bits: np.ndarray) -> np.ndarray:
    return (bits.astype(np.uint32) << 16).view(np.float32).astype(np.float64)


def same_values(actual64, expected64, what=""):
    """Bitwise equality of float64 arrays (signed zeros distinguished), NaN only as NaN."""
    a = np.asarray(actual64, np.float64).reshape(-1)
    e = np.asarray(expected64, np.float64).reshape(-1)
    assert a.shape == e.shape, what
    nan = np.isnan(e)
    bad = np.flatnonzero(np.isnan(a) != nan)
    assert bad.size == 0, f"{what}: NaN mismatch at {bad[:5]}: {a[bad[:5]]} vs {e[bad[:5]]}"
    diff = np.flatnonzero(a[~nan].view(np.uint64) != e[~nan].view(np.uint64))
    if diff.size:
        i = np.flatnonzero(~nan)[diff[:5]]
        raise AssertionError(f"{what}: {diff.size} values differ, e.g. at {i}: {a[i]!r} vs {e[i]!r}")


# ---- index sections -----------------------------------------------------------------------

def gaps(idx) -> np.ndarray:
    """delta-1 gaps g_i = idx[i] - idx[i-1] - 1 with idx[-1] = -1 (uint64)."""
    idx = np.asarray(idx, np.int64)
    return (np.diff(idx, prepend=-1) - 1).astype(np.uint64)


def bitpack(bits: np.ndarray) -> bytes:
    return np.packbits(np.asarray(bits, np.uint8), bitorder="little").tobytes()


def bitunpack(data: bytes) -> np.ndarray:
    return np.unpackbits(np.frombuffer(data, np.uint8), bitorder="little")


def raw_ref(idx, width: int) -> bytes:
    return np.asarray(idx, np.int64).astype("<u4" if width == 4 else "<u8").tobytes()


def bitmap_ref(idx, numel: int) -> bytes:
    bits = np.zeros(numel, np.uint8)
    bits[np.asarray(idx, np.int64)] = 1
    return bitpack(bits)


def varint_ref(idx) -> bytes:
    g = gaps(idx)
    k = g.size
    assert k == 0 or int(g.max()) < 2**32
    code = ((g > 0xFF).astype(np.uint8) + (g > 0xFFFF) + (g > 0xFFFFFF)).astype(np.uint8)
    padded = np.zeros(-(-k // 4) * 4, np.uint16)
    padded[:k] = code
    ctrl = (padded.reshape(-1, 4) << np.array([0, 2, 4, 6], np.uint16)).sum(axis=1).astype(np.uint8)
    data = g.astype("<u4").view(np.uint8).reshape(k, 4)[np.arange(4)[None, :] <= code[:, None]]
    return ctrl.tobytes() + data.tobytes()


def rice_size_ref(idx, b: int) -> int:
    g = gaps(idx)
    k = g.size
    return 1 + (k * b + 7) // 8 + (int((g >> np.uint64(b)).sum()) + k + 7) // 8


def rice_ref(idx, b: int) -> bytes:
    g = gaps(idx)
    k = g.size
    q = g >> np.uint64(b)
    r = g & np.uint64((1 << b) - 1)
    rem_bits = ((r[:, None] >> np.arange(b, dtype=np.uint64)[None, :]) & np.uint64(1)).reshape(-1)
    unary = b""
    if k:
        ones = np.cumsum(q + np.uint64(1)).astype(np.int64) - 1
        bits = np.zeros(int(ones[-1]) + 1, np.uint8)
        bits[ones] = 1
        unary = bitpack(bits)
    return bytes([b]) + bitpack(rem_bits) + unary


def index_ref(codec: str, idx, numel: int, rice_b: int = 0) -> bytes:
    if codec == "raw32":
        return raw_ref(idx, 4)
    if codec == "raw64":
        return raw_ref(idx, 8)
    if codec == "bitmap":
        return bitmap_ref(idx, numel)
    if codec == "varint":
        return varint_ref(idx)
    assert codec == "rice"
    return rice_ref(idx, rice_b)


def index_decode_ref(codec: str, sec: bytes, k: int, numel: int) -> np.ndarray:
    """Reference decoder (asserts the section is well formed)."""
    if codec in ("raw32", "raw64"):
        w = 4 if codec == "raw32" else 8
        assert len(sec) == w * k
        out = np.frombuffer(sec, "<u4" if w == 4 else "<u8").astype(np.int64)
    elif codec == "bitmap":
        assert len(sec) == (numel + 7) // 8
        bits = bitunpack(sec)
        assert not bits[numel:].any(), "bitmap padding bits"
        out = np.flatnonzero(bits[:numel]).astype(np.int64)
    elif codec == "varint":
        nc = (k + 3) // 4
        ctrl = np.frombuffer(sec[:nc], np.uint8).astype(np.int64)
        i = np.arange(k)
        lens = ((ctrl[i >> 2] >> (2 * (i & 3))) & 3) + 1 if k else np.zeros(0, np.int64)
        if k % 4:
            assert ctrl[-1] >> (2 * (k % 4)) == 0, "varint control padding"
        assert nc + int(lens.sum()) == len(sec)
        starts = nc + np.concatenate([[0], np.cumsum(lens)[:-1]]).astype(np.int64)
        buf = np.frombuffer(sec, np.uint8)
        g = np.zeros(k, np.uint64)
        for j in range(4):
            m = lens > j
            g[m] |= buf[starts[m] + j].astype(np.uint64) << np.uint64(8 * j)
        out = np.cumsum(g.astype(np.int64) + 1) - 1
    else:
        b = sec[0]
        assert b <= MAX_RICE_B
        rb = (k * b + 7) // 8
        rbits = bitunpack(sec[1:1 + rb])
        assert not rbits[k * b:].any(), "Rice remainder padding"
        rem = rbits[:k * b].reshape(k, b).astype(np.uint64)
        r = (rem << np.arange(b, dtype=np.uint64)).sum(axis=1, dtype=np.uint64) if b else np.zeros(k, np.uint64)
        ones = np.flatnonzero(bitunpack(sec[1 + rb:]))
        assert ones.size == k
        assert len(sec) - 1 - rb == (int(ones[-1]) // 8 + 1 if k else 0), "Rice unary trailing bytes"
        q = (np.diff(ones, prepend=-1) - 1).astype(np.uint64)
        out = np.cumsum(((q << np.uint64(b)) + r).astype(np.int64) + 1) - 1
    out = np.asarray(out, np.int64)
    assert np.all(np.diff(out) > 0) and (k == 0 or (out[0] >= 0 and out[-1] < numel))
    return out


# ---- value sections -------------------------------------------------------------------

def qsgd_scale_ref(block_abs_max: float) -> float:
    """float32 scale: the block's max |v| rounded up to float32."""
    s = np.float32(block_abs_max)
    if float(s) < block_abs_max:
        s = np.nextafter(s, np.float32(np.inf))
    return float(s)


def sign_scale_ref(v64: np.ndarray) -> float:
    """mean |v| summed left to right in double (np.cumsum is sequential), rounded to float32."""
    if v64.size == 0:
        return 0.0
    total = float(np.cumsum(np.abs(v64))[-1])
    return float(np.float32(total / v64.size))


def values_decode_ref(codec: str, sec: bytes, n: int) -> np.ndarray:
    """Wire values of a value section as exact float64 (asserts it is well formed)."""
    if codec == "float32":
        assert len(sec) == 4 * n
        return np.frombuffer(sec, "<f4").astype(np.float64)
    if codec == "float64":
        assert len(sec) == 8 * n
        return np.frombuffer(sec, "<f8").astype(np.float64)
    if codec == "float16":
        assert len(sec) == 2 * n
        return np.frombuffer(sec, "<f2").astype(np.float64)
    if codec == "bfloat16":
        assert len(sec) == 2 * n
        return widen_bf16(np.frombuffer(sec, "<u2"))
    if codec == "sign":
        assert len(sec) == 4 + (n + 7) // 8
        (s,) = struct.unpack_from("<f", sec, 0)
        bits = bitunpack(sec[4:])
        assert not bits[n:].any()
        return np.where(bits[:n] == 1, -float(s), float(s))
    bits_, r0, r1, r2, block = struct.unpack_from("<BBBBI", sec, 0)
    assert bits_ in (1, 2, 4, 8) and (r0, r1, r2) == (0, 0, 0) and block >= 1
    nb = -(-n // block)
    assert len(sec) == 8 + 4 * nb + (n * bits_ + 7) // 8
    scales = np.frombuffer(sec[8:8 + 4 * nb], "<f4").astype(np.float64)
    assert np.all(np.isfinite(scales) & (scales >= 0))
    cbits = bitunpack(sec[8 + 4 * nb:])
    assert not cbits[n * bits_:].any(), "qsgd padding bits"
    codes = (cbits[:n * bits_].reshape(n, bits_).astype(np.int64) << np.arange(bits_)).sum(axis=1)
    levels = (1 << bits_) - 1
    s = np.repeat(scales, block)[:n]
    return s * (2.0 * codes / levels - 1.0)


# ---- payload parsing --------------------------------------------------------------------

def parse_ref(payload: bytes):
    """Walks a payload per docs/format.md; returns (flags, [record dicts])."""
    magic, version, flags, count, crc, body_len = HEADER.unpack_from(payload, 0)
    assert magic == b"GSPW" and version == 1 and flags in (0, 1)
    assert body_len == len(payload) - 24
    assert crc == crc_of(payload[24:]), "CRC32C of the body"
    pos, recs = 24, []
    for _ in range(count):
        (nlen,) = struct.unpack_from("<H", payload, pos)
        name = payload[pos + 2:pos + 2 + nlen]
        pos += 2 + nlen
        dt, ndim, ic, vc = struct.unpack_from("<4B", payload, pos)
        pos += 4
        shape = struct.unpack_from(f"<{ndim}Q", payload, pos)
        pos += 8 * ndim
        nnz, ilen, vlen = struct.unpack_from("<3Q", payload, pos)
        pos += 24
        isec, vsec = payload[pos:pos + ilen], payload[pos + ilen:pos + ilen + vlen]
        pos += ilen + vlen
        recs.append(dict(name=name, dtype=dt, shape=shape, icodec=ic, vcodec=vc, nnz=nnz, isec=isec, vsec=vsec))
    assert pos == len(payload)
    assert flags == 0 or count == 1
    return flags, recs


# ---- building inputs and reading results -------------------------------------------------

_TORCH = ({"float32": torch.float32, "float64": torch.float64, "float16": torch.float16, "bfloat16": torch.bfloat16}
          if torch is not None else {})


def make_values(v64: np.ndarray, dtype: str, use_torch: bool):
    """An array of `dtype` holding v64 (already representable in it)."""
    if dtype == "bfloat16" or use_torch:
        need_torch()
    if dtype == "bfloat16":
        bits = fmt_bytes(v64, "bfloat16").astype(np.int16)
        return torch.from_numpy(bits.copy()).view(torch.bfloat16)
    with np.errstate(all="ignore"):
        a = v64.astype(dtype)
    return torch.from_numpy(a.copy()) if use_torch else a


def as_f64(x) -> np.ndarray:
    if is_tensor(x):
        return x.detach().to(torch.float64).numpy().reshape(-1)
    return np.asarray(x, np.float64).reshape(-1)


def tbits(t) -> np.ndarray:
    """Bit patterns of a tensor's or array's elements (compares NaN payloads and signed zeros)."""
    if not is_tensor(t):
        return np.ascontiguousarray(t).reshape(-1).view({2: np.int16, 4: np.int32, 8: np.int64}[np.asarray(t).itemsize]).astype(np.int64)
    flat = t.detach().reshape(-1).clone()
    if flat.numel() == 0:
        return np.zeros(0, np.int64)
    return flat.view({2: torch.int16, 4: torch.int32, 8: torch.int64}[flat.element_size()]).numpy()


def as_idx(x) -> np.ndarray:
    if is_tensor(x):
        assert x.dtype == torch.int64
        return x.numpy()
    assert x.dtype == np.int64
    return np.asarray(x)


def gen_values(rng, n: int, dtype: str, finite: bool) -> np.ndarray:
    """n float64 values representable in dtype: mostly normals of varied scale, plus zeros of
    both signs, subnormals, the largest finite, and (finite=False) infinities and NaNs."""
    v = rng.standard_normal(n) * 10.0 ** rng.integers(-4, 5, n)
    fmt = dtype if dtype != "float64" else None
    tiny = {"float32": 2.0**-149, "float64": 2.0**-1074, "float16": 2.0**-24, "bfloat16": 2.0**-133}[dtype]
    big = {"float32": FMT["float32"][2], "float64": 1e300, "float16": 65504.0, "bfloat16": FMT["bfloat16"][2]}[dtype]
    special = [0.0, -0.0, tiny, -3 * tiny, big, -big, 1.0, -1.0]
    if not finite:
        special += [np.inf, -np.inf, np.nan]
    if n:
        m = rng.random(n) < 0.1
        v[m] = rng.choice(special, int(m.sum()))
    if finite and dtype == "float64":
        v = np.clip(v, -1e30, 1e30)  # qsgd needs |v| within float32; sign a finite float32 mean
    return round_to(v, fmt) if fmt else v


# ============================================================================ strategies

@st.composite
def shapes(draw, max_numel=100_000):
    kind = draw(st.sampled_from(["1d", "2d", "1d", "2d", "3d", "1d-small", "empty", "0d"]))
    if kind == "0d":
        return ()
    if kind == "1d-small":
        return (draw(st.integers(1, 80)),)
    if kind == "1d":  # log-uniform up to max_numel
        decade = draw(st.sampled_from(range(int(math.log10(max_numel)) + 1)))
        return (draw(st.integers(10**decade, min(max_numel, 10 ** (decade + 1)))),)
    if kind == "2d":
        a = draw(st.integers(1, 300))
        decade = draw(st.sampled_from(range(int(math.log10(max_numel // a)) + 1)))
        return (a, draw(st.integers(10**decade, min(max_numel // a, 10 ** (decade + 1)))))
    if kind == "3d":
        return tuple(draw(st.lists(st.integers(1, 40), min_size=3, max_size=3)))
    dims = draw(st.lists(st.integers(0, 6), min_size=1, max_size=4))
    dims[draw(st.integers(0, len(dims) - 1))] = 0
    return tuple(dims)


def numel_of(shape) -> int:
    return math.prod(shape)


@st.composite
def positions(draw, numel: int):
    """Strictly increasing flat positions below numel: none, one, all, a count, a density,
    or clustered runs."""
    if numel == 0:
        return np.zeros(0, np.int64)
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    mode = draw(st.sampled_from(["density", "runs", "count", "density", "all", "one", "none"]))
    if mode == "none":
        return np.zeros(0, np.int64)
    if mode == "all":
        return np.arange(numel, dtype=np.int64)
    if mode == "runs":
        starts = rng.integers(0, numel, rng.integers(1, 20))
        lens = rng.integers(1, 300, starts.size)
        pos = np.unique(np.concatenate([np.arange(s, min(s + n, numel)) for s, n in zip(starts, lens)]))
        return pos.astype(np.int64)
    if mode == "one":
        k = 1
    elif mode == "count":
        k = draw(st.integers(0, min(numel, 80)))
    else:
        k = max(1, int(round(numel * draw(st.sampled_from([0.1, 0.5, 0.01, 0.9, 1e-3, 0.3, 0.999, 1e-4])))))
    if k * 2 > numel:
        keep = np.ones(numel, bool)
        keep[rng.choice(numel, numel - k, replace=False)] = False
        return np.flatnonzero(keep).astype(np.int64)
    return np.sort(rng.choice(numel, k, replace=False)).astype(np.int64)


@st.composite
def huge_positions(draw):
    """Few positions in a tensor of 2^33 .. 2^50 elements (no dense array ever exists)."""
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    numel = 1 << draw(st.integers(33, 50))
    k = draw(st.integers(0, 3000))
    if draw(st.booleans()):  # gaps below 2^32: varint applies
        g = rng.integers(0, 1 << draw(st.integers(1, 32)), k).astype(np.int64)
        pos = np.cumsum(g + 1) - 1 + int(rng.integers(0, 1 << 20))
        pos = pos[pos < numel]
    else:
        pos = np.unique(rng.integers(0, numel, k))
    return numel, pos.astype(np.int64)


# ========================================================================= round trips

def check_index_section(codec: str, sec: bytes, idx: np.ndarray, numel: int):
    """The section equals the reference encoding (Rice: with the parameter it chose)."""
    b = sec[0] if codec == "rice" and sec else 0
    assert b <= MAX_RICE_B
    assert sec == index_ref(codec, idx, numel, b), f"{codec} section differs from the reference"
    assert np.array_equal(index_decode_ref(codec, sec, idx.size, numel), idx)


def auto_choice_ref(idx: np.ndarray, numel: int) -> str:
    """The codec `auto` must choose: smallest of the applicable codecs, ties to the first of
    (raw32 | raw64), bitmap, varint, rice (sizes from index_size per codec)."""
    raw = "raw32" if numel <= 2**32 else "raw64"
    cands = [raw, "bitmap"]
    if idx.size == 0 or int(gaps(idx).max()) < 2**32:
        cands.append("varint")
    cands.append("rice")
    sizes = [_core.index_size(c, idx, numel)[0] for c in cands]
    return cands[int(np.argmin(sizes))]


def check_values(vcodec: str, rec_vsec: bytes, v64: np.ndarray, *, bits=8, block=512):
    """The value section of v64 (the exact input values) against the reference."""
    n = v64.size
    if vcodec in ("float32", "float64", "float16", "bfloat16"):
        with np.errstate(all="ignore"):
            ref = round_to(v64, vcodec)
        w = {"float32": "<u4", "float64": "<u8", "float16": "<u2", "bfloat16": "<u2"}[vcodec]
        got = np.frombuffer(rec_vsec, w)
        exp = fmt_bytes(ref, vcodec)
        nan = np.isnan(v64)
        assert got.size == n
        bad = np.flatnonzero((got != exp) & ~nan)
        assert bad.size == 0, f"{vcodec}: {bad.size} values encoded wrongly, e.g. {v64[bad[:3]]!r}"
        assert np.all(np.isnan(values_decode_ref(vcodec, rec_vsec, n)[nan]))
    elif vcodec == "sign":
        s = sign_scale_ref(v64)
        exp = struct.pack("<f", s) + bitpack(np.signbit(v64).astype(np.uint8))
        assert rec_vsec == exp, "sign section differs from the reference"
    else:
        check_qsgd(rec_vsec, v64, bits, block)


def check_qsgd(sec: bytes, v64: np.ndarray, bits: int, block: int):
    """Layout, exact scales, and every value on one of the two grid points around it."""
    n = v64.size
    assert sec[:8] == struct.pack("<BBBBI", bits, 0, 0, 0, block)
    nb = -(-n // block)
    scales = np.frombuffer(sec[8:8 + 4 * nb], "<f4").astype(np.float64)
    for j in range(nb):
        blk = v64[j * block:(j + 1) * block]
        assert scales[j] == qsgd_scale_ref(float(np.abs(blk).max())), f"scale of block {j}"
    dec = values_decode_ref("qsgd", sec, n)
    levels = (1 << bits) - 1
    s = np.repeat(scales, block)[:n]
    with np.errstate(all="ignore"):
        u = np.where(s > 0, (v64 + s) / (2 * s) * levels, 0.0)
        j = np.where(s > 0, np.rint((dec / np.where(s > 0, s, 1) + 1) * levels / 2), 0)
    assert np.all((j >= 0) & (j <= levels))
    assert np.all(np.abs(dec - s * (2 * j / levels - 1)) <= 1e-12 * s), "off the grid"
    assert np.all((j >= np.floor(u - 1e-9)) & (j <= np.ceil(u + 1e-9))), "not a neighbouring level"


def expected_decoded(vcodec: str, vsec: bytes, n: int, dtype: str) -> np.ndarray:
    """What decode must return: the reference decoding of the section, rounded once to dtype."""
    wire = values_decode_ref(vcodec, vsec, n)
    with np.errstate(all="ignore"):
        return round_to(wire, dtype if dtype != "float64" else "float64")


# ================================================================= float16 and bfloat16

def _payload_values(payload: bytes) -> bytes:
    _, (rec,) = parse_ref(payload)
    return rec["vsec"]


# ============================================================ crafted, malformed payloads

def record(name=b"", dtype=1, shape=(10,), icodec=1, vcodec=1, nnz=None, isec=b"", vsec=b"",
           ndim=None, ilen=None, vlen=None) -> bytes:
    nnz = (len(isec) // 4 if icodec == 1 else 0) if nnz is None else nnz
    ndim = len(shape) if ndim is None else ndim
    ilen = len(isec) if ilen is None else ilen
    vlen = len(vsec) if vlen is None else vlen
    return (struct.pack("<H", len(name)) + name + struct.pack("<4B", dtype, ndim, icodec, vcodec)
            + struct.pack(f"<{len(shape)}Q", *shape) + struct.pack("<3Q", nnz, ilen, vlen) + isec + vsec)


def message(records, *, magic=b"GSPW", version=1, flags=0, count=None, crc=None, body_len=None) -> bytes:
    body = b"".join(records)
    count = len(records) if count is None else count
    crc = crc32c_ref(body) if crc is None else crc
    body_len = len(body) if body_len is None else body_len
    return HEADER.pack(magic, version, flags, count, crc, body_len) + body


def bad_payload(data, *words, verify=True):
    """decode(data) raises ValueError whose message contains every word."""
    with pytest.raises(ValueError) as info:
        gradsparse.decode(data, verify_checksum=verify)
    assert isinstance(info.value, gradsparse.errors.ArgumentError), type(info.value)
    msg = str(info.value)
    assert msg.startswith("payload"), msg
    for w in words:
        assert w in msg, f"{w!r} not in {msg!r}"


IDX = np.array([1, 4, 9], np.int64)


F32 = np.array([1.5, -2.0, 0.25], np.float32).tobytes()


def good_record(**kw):
    base = dict(name=b"w", shape=(10,), icodec=1, vcodec=1, nnz=3, isec=raw_ref(IDX, 4), vsec=F32)
    base.update(kw)
    return record(**base)
