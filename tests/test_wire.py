"""The wire format (gradsparse.encode / decode / encoded_size and the index-section
primitives), tested against plain numpy references written from docs/format.md, not
against the implementation:

* a reference parser walks every payload the encoder makes and checks the header, the
  CRC32C (a bitwise reference), every record field and every section byte for byte against
  reference encoders (raw, varint, Golomb-Rice, bitmap; float32/64, float16, bfloat16 by
  exact round-to-nearest-even; the quantizer's grid and scales; sign + mean |v|);
* decoded values are compared bit for bit with the reference's decoding of the same bytes;
* every SIMD level must produce the same bytes and decode the same values;
* `auto` must pick the smallest codec, Rice must come close to the entropy bound;
* float16 / bfloat16 rounding is checked exhaustively (all 65536 halves) and on edge sets;
* the quantizer must be unbiased (Hoeffding bound over seeds), sign must be +-mean|v|;
* bad arguments and crafted, malformed payloads must raise ValueError/TypeError naming
  the problem, quickly and without large allocations.
"""
from __future__ import annotations

import math
import re
import struct
import time

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import gradsparse
from gradsparse import _core
from inputs import is_tensor, need_torch, requires_torch, torch

LEVELS = gradsparse.available_simd_levels()
INDEX_CODECS = ["raw32", "raw64", "varint", "rice", "bitmap", "auto"]
VALUE_CODECS = ["float32", "float64", "float16", "bfloat16", "qsgd", "sign"]
DTYPES = ["float32", "float64", "float16", "bfloat16"]
#: dtypes this environment can build inputs of (bfloat16 needs torch)
HAVE_DTYPES = DTYPES if torch is not None else DTYPES[:3]
#: array types decode can return here
LIKES = ("numpy", "torch") if torch is not None else ("numpy",)
#: decode into torch where torch is installed (it holds every dtype, bfloat16 included)
LIKE = LIKES[-1]

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
    """fn(*a, **kw) raises exactly `exc` whose message names `arg` (a word or phrase)."""
    with pytest.raises(exc) as info:
        fn(*a, **kw)
    assert type(info.value) is exc, f"{type(info.value).__name__}: {info.value}"
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


@requires_torch
@pytest.mark.parametrize("vcodec", VALUE_CODECS)
@pytest.mark.parametrize("icodec", INDEX_CODECS)
@settings(max_examples=N_EXAMPLES)
@given(data=st.data())
def test_roundtrip_sparse(icodec, vcodec, data):
    """Every (index codec x value codec): the payload matches the reference byte for byte,
    its size is what encoded_size said, and decode returns the exact indices and the values
    the reference decodes from those bytes (exactly the input for lossless combinations)."""
    lossy_input = vcodec in ("qsgd", "sign")
    dtype = data.draw(st.sampled_from(DTYPES), label="dtype")
    huge = icodec != "bitmap" and data.draw(st.integers(0, 9), label="huge?") == 0
    if huge:
        numel, idx = data.draw(huge_positions(), label="huge positions")
        shape = (numel >> 20, 1 << 20)
    else:
        shape = data.draw(shapes(), label="shape")
        numel = numel_of(shape)
        idx = data.draw(positions(numel), label="positions")
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1), label="value seed"))
    v64 = gen_values(rng, idx.size, dtype, finite=lossy_input)
    use_torch = dtype == "bfloat16" or data.draw(st.booleans(), label="torch?")
    values = make_values(v64, dtype, use_torch)
    idx_in = torch.from_numpy(idx.copy()) if use_torch and data.draw(st.booleans()) else idx
    update = gradsparse.Sparse(idx_in, values, shape)
    bits = data.draw(st.sampled_from([1, 2, 4, 8]), label="bits")
    block = data.draw(st.sampled_from([1, 3, 64, 512, 10**6]), label="block")
    seed = data.draw(st.integers(0, 2**64 - 1), label="seed")
    kw = dict(index_codec=icodec, value_codec=vcodec, bits=bits, block=block, seed=seed)

    gaps_ok = idx.size == 0 or int(gaps(idx).max()) < 2**32
    if icodec == "raw32" and numel > 2**32:
        raises(ValueError, "index_codec", gradsparse.encode, update, **kw)
        raises(ValueError, "index_codec", gradsparse.encoded_size, update, **kw)
        return
    if icodec == "varint" and not gaps_ok:
        raises(ValueError, "index_codec", gradsparse.encode, update, **kw)
        raises(ValueError, "index_codec", gradsparse.encoded_size, update, **kw)
        return

    payload = gradsparse.encode(update, **kw)
    assert isinstance(payload, bytes)
    assert len(payload) == gradsparse.encoded_size(update, **kw)
    flags, (rec,) = parse_ref(payload)
    assert flags == 1 and rec["name"] == b""
    assert rec["dtype"] == DTYPE_ID[dtype] and rec["shape"] == shape and rec["nnz"] == idx.size
    assert rec["vcodec"] == VALUE_ID[vcodec]
    chosen = ID_INDEX[rec["icodec"]]
    if icodec == "auto":
        assert chosen == auto_choice_ref(idx, numel)
        assert gradsparse.wire.chosen_index_codecs(update) == {"": chosen}
    else:
        assert chosen == icodec
    check_index_section(chosen, rec["isec"], idx, numel)
    check_values(vcodec, rec["vsec"], v64, bits=bits, block=block)

    expect = expected_decoded(vcodec, rec["vsec"], idx.size, dtype)
    if vcodec in LOSSLESS and dtype in LOSSLESS[vcodec]:
        same_values(expect, v64, "lossless combination")
    for like in LIKES:
        out = gradsparse.decode(payload, like=like)
        assert isinstance(out, gradsparse.Sparse) and out.shape == shape
        assert np.array_equal(as_idx(out.indices), idx)
        if like == "torch":
            assert is_tensor(out.values) and out.values.dtype == _TORCH[dtype]
        else:
            assert isinstance(out.values, np.ndarray)
            assert out.values.dtype == (np.float32 if dtype == "bfloat16" else np.dtype(dtype))
        same_values(as_f64(out.values), expect, f"decode(like={like})")


@requires_torch
@pytest.mark.parametrize("vcodec", VALUE_CODECS)
@settings(max_examples=N_EXAMPLES)
@given(data=st.data())
def test_roundtrip_dense(vcodec, data):
    """A dense array / tensor decodes to a dense array of the same shape (record codec 0)."""
    dtype = data.draw(st.sampled_from(DTYPES), label="dtype")
    shape = data.draw(shapes(max_numel=30_000), label="shape")
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    v64 = gen_values(rng, numel_of(shape), dtype, finite=vcodec in ("qsgd", "sign"))
    use_torch = dtype == "bfloat16" or data.draw(st.booleans(), label="torch?")
    x = make_values(v64, dtype, use_torch)
    x = x.reshape(shape)
    bits, block = data.draw(st.sampled_from([1, 2, 4, 8])), data.draw(st.sampled_from([1, 7, 512]))
    kw = dict(value_codec=vcodec, bits=bits, block=block, seed=1234)
    payload = gradsparse.encode(x, **kw)
    assert len(payload) == gradsparse.encoded_size(x, **kw)
    flags, (rec,) = parse_ref(payload)
    assert flags == 1 and rec["icodec"] == 0 and rec["isec"] == b"" and rec["shape"] == shape
    assert rec["nnz"] == v64.size
    check_values(vcodec, rec["vsec"], v64, bits=bits, block=block)
    expect = expected_decoded(vcodec, rec["vsec"], v64.size, dtype)
    out = gradsparse.decode(payload)
    assert isinstance(out, np.ndarray) and out.shape == shape
    same_values(as_f64(out), expect, "dense numpy")
    out_t = gradsparse.decode(payload, like="torch")
    assert is_tensor(out_t) and tuple(out_t.shape) == shape and out_t.dtype == _TORCH[dtype]
    same_values(as_f64(out_t), expect, "dense torch")


@settings(max_examples=2 * N_EXAMPLES)
@given(data=st.data())
def test_roundtrip_dict(data):
    """Dict messages: many tensors, sparse and dense mixed; names and order kept."""
    names = data.draw(st.lists(st.text(st.characters(codec="utf-8"), max_size=12), unique=True, max_size=60),
                      label="names")
    icodec = data.draw(st.sampled_from(INDEX_CODECS), label="index codec")
    vcodec = data.draw(st.sampled_from(["float32", "float64", "float16", "bfloat16", "sign"]), label="value codec")
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    update, truth = {}, {}
    for name in names:
        dtype = DTYPES[int(rng.integers(0, 4))]
        shape = tuple(int(d) for d in rng.integers(0, 9, int(rng.integers(0, 4))))
        numel = numel_of(shape)
        if rng.random() < 0.3:
            v64 = gen_values(rng, numel, dtype, finite=True)
            update[name] = make_values(v64, dtype, dtype == "bfloat16").reshape(shape)
            truth[name] = (None, v64, dtype, shape)
        else:
            idx = np.flatnonzero(rng.random(numel) < rng.random()).astype(np.int64)
            v64 = gen_values(rng, idx.size, dtype, finite=True)
            update[name] = gradsparse.Sparse(idx, make_values(v64, dtype, dtype == "bfloat16"), shape)
            truth[name] = (idx, v64, dtype, shape)
    payload = gradsparse.encode(update, index_codec=icodec, value_codec=vcodec)
    assert len(payload) == gradsparse.encoded_size(update, index_codec=icodec, value_codec=vcodec)
    flags, recs = parse_ref(payload)
    assert flags == 0 and [r["name"].decode("utf-8") for r in recs] == names
    chosen = gradsparse.wire.chosen_index_codecs(update, index_codec=icodec)
    assert list(chosen) == names
    for rec, name in zip(recs, names):
        idx, v64, dtype, shape = truth[name]
        assert rec["shape"] == shape and rec["dtype"] == DTYPE_ID[dtype]
        assert ID_INDEX[rec["icodec"]] == chosen[name]
        if idx is None:
            assert chosen[name] == "dense"
        else:
            check_index_section(chosen[name], rec["isec"], idx, numel_of(shape))
        check_values(vcodec, rec["vsec"], v64)
    for like in LIKES:
        out = gradsparse.decode(payload, like=like)
        assert isinstance(out, dict) and list(out) == names
        for rec, name in zip(recs, names):
            idx, v64, dtype, shape = truth[name]
            expect = expected_decoded(vcodec, rec["vsec"], v64.size, dtype)
            item = out[name]
            if idx is None:
                assert tuple(item.shape) == shape and not isinstance(item, gradsparse.Sparse)
                same_values(as_f64(item), expect, name)
            else:
                assert isinstance(item, gradsparse.Sparse) and item.shape == shape
                assert np.array_equal(as_idx(item.indices), idx)
                same_values(as_f64(item.values), expect, name)


DOC_EXAMPLE = bytes.fromhex(  # docs/format.md, section 6 (annotated there byte by byte)
    "47535057 0100 0000 02000000 83fb7dff 6800000000000000"
    "0100 77 01 02 03 03 0400000000000000 6400000000000000 0400000000000000 0600000000000000"
    "0800000000000000 40 02 00 03 2401 0038 00bc 0040 ff7b"
    "0100 62 01 01 00 03 0200000000000000 0200000000000000 0000000000000000 0400000000000000"
    "003c 00b8")


def test_documented_examples():
    """The payload and sections shown in docs/format.md, checked by hand there, are what
    this build writes and reads (version 1 is frozen: these bytes must keep decoding)."""
    w = np.array([0.5, -1.0, 2.0, 65504.0], np.float32)
    update = {"w": gradsparse.Sparse(np.array([2, 3, 7, 300]), w, (4, 100)), "b": np.array([1.0, -0.5], np.float32)}
    assert gradsparse.encode(update, index_codec="varint", value_codec="float16") == DOC_EXAMPLE
    assert crc32c_ref(DOC_EXAMPLE[24:]) == 0xFF7DFB83
    out = gradsparse.decode(DOC_EXAMPLE)
    assert list(out) == ["w", "b"]
    assert out["w"].shape == (4, 100) and out["w"].indices.tolist() == [2, 3, 7, 300]
    assert out["w"].values.dtype == np.float32 and out["w"].values.tolist() == [0.5, -1.0, 2.0, 65504.0]
    assert out["b"].dtype == np.float32 and out["b"].tolist() == [1.0, -0.5]
    idx = np.array([3, 4, 10, 25, 40])
    for codec, hexed in [("raw32", "03000000040000000a0000001900000028000000"), ("varint", "00000300050e0e"),
                         ("rice", "03436d57"), ("bitmap", "1804000200010000")]:
        assert _core.index_encode(codec, idx, 64).hex() == hexed
        assert _core.index_decode(codec, bytes.fromhex(hexed), 5, 64).tolist() == idx.tolist()
    x = np.array([0.3, -1.2, 0.05, 0.9])
    q = gradsparse.encode(x, value_codec="qsgd", bits=2, block=2, seed=7)
    assert _payload_values(q).hex() == "0200000002000000" "9a99993f" "6766663f" "e2"
    s0, s1 = float(np.float32(1.2)), float(np.nextafter(np.float32(0.9), np.float32(1)))  # max |v| rounded up
    assert gradsparse.decode(q).tolist() == [s0 * (2 * 2 / 3 - 1), -s0, s1 * (2 * 2 / 3 - 1), s1]
    assert _payload_values(gradsparse.encode(x, value_codec="sign")).hex() == "cdcc1c3f" "02"


@requires_torch
def test_empty_dict_and_edge_messages():
    payload = gradsparse.encode({})
    assert payload == HEADER.pack(b"GSPW", 1, 0, 0, crc32c_ref(b""), 0)
    assert gradsparse.decode(payload) == {}
    assert gradsparse.encoded_size({}) == 24
    # 0-d dense, 0-d sparse, zero-size dims
    for x in (np.float32(2.5), np.array(-1.0), torch.tensor(3.0, dtype=torch.bfloat16)):
        out = gradsparse.decode(gradsparse.encode(x), like="torch" if is_tensor(x) else "numpy")
        assert tuple(out.shape) == () and as_f64(out)[0] == as_f64(x)[0]
    s = gradsparse.decode(gradsparse.encode(gradsparse.Sparse(np.array([0]), np.array([7.0]), ())))
    assert s.shape == () and s.indices.tolist() == [0] and s.values.tolist() == [7.0]
    empty = gradsparse.Sparse(np.zeros(0, np.int64), np.zeros(0, np.float16), (4, 0, 3))
    z = gradsparse.decode(gradsparse.encode(empty))
    assert z.shape == (4, 0, 3) and z.nnz == 0 and z.values.dtype == np.float16
    # a name of exactly 65535 UTF-8 bytes is fine
    name = "é" * 32767 + "a"
    assert len(name.encode()) == 65535
    assert list(gradsparse.decode(gradsparse.encode({name: np.ones(2, np.float32)}))) == [name]


# ===================================================================== SIMD levels agree

def _simd_cases():
    rng = np.random.default_rng(7)
    cases = []
    for n in list(range(0, 70)) + [1000, 4099]:
        numel = 40 * n + 1
        cases.append((numel, np.sort(rng.choice(numel, n, replace=False)).astype(np.int64)))
    # gaps of every varint length (1..4 bytes), in long runs and mixed
    g = np.concatenate([rng.integers(0, 1 << (8 * int(w)), 257) for w in rng.integers(1, 5, 40)])
    mixed = np.cumsum(g + 1) - 1
    cases.append((int(mixed[-1]) + 1, mixed.astype(np.int64)))
    cases.append((1 << 40, np.sort(rng.choice(1 << 40, 5000, replace=False)).astype(np.int64)))
    dense_run = np.arange(3, 100_003, dtype=np.int64)
    cases.append((100_010, dense_run))
    return cases


SIMD_CASES = _simd_cases()


@pytest.mark.parametrize("codec", ["raw32", "raw64", "varint", "rice", "bitmap", "auto"])
def test_index_sections_identical_at_every_level(codec):
    for numel, idx in SIMD_CASES:
        if (codec == "bitmap" and numel > 1 << 24) or (codec == "raw32" and numel > 2**32):
            continue
        if codec == "varint" and idx.size and int(gaps(idx).max()) >= 2**32:
            continue
        outs, sizes, decs = [], [], []
        for level in LEVELS:
            with gradsparse.simd_level(level):
                sizes.append(_core.index_size(codec, idx, numel))
                nbytes, real = sizes[-1]
                # varint asks for room for its worst case, ceil(k/4) + 4k bytes
                buf = np.zeros(max(nbytes, (idx.size + 3) // 4 + 4 * idx.size), np.uint8)
                n_out = _core.index_encode(codec, idx, numel, out=buf)
                sec = bytes(buf[:n_out])
                outs.append(sec)
                if numel <= 1 << 24:  # (larger: see test_index_encode_allocation_follows_the_section)
                    assert _core.index_encode(codec, idx, numel) == sec
                decs.append(_core.index_decode(real, sec, idx.size, numel))
                into = np.empty(idx.size, np.int64)
                _core.index_decode(real, sec, idx.size, numel, out=into)
                assert np.array_equal(into, idx)
        assert all(o == outs[0] for o in outs), f"{codec} bytes differ between {LEVELS} (n={idx.size})"
        assert all(s == sizes[0] for s in sizes) and sizes[0][0] == len(outs[0])
        assert all(np.array_equal(d, idx) for d in decs)
        check_index_section(sizes[0][1], outs[0], idx, numel)


@pytest.mark.parametrize("codec", ["rice", "auto"])
def test_index_encode_allocation_follows_the_section(codec):
    """index_encode (no `out`) must size its buffer by the section, not by numel: two
    hundred indices in 2^50 positions make a ~150-byte Rice section, not a 2^47-byte buffer."""
    idx = np.cumsum(np.random.default_rng(0).integers(500, 2000, 100)).astype(np.int64)
    for numel in (2**20, 2**50):
        t0 = time.perf_counter()
        sec = _core.index_encode(codec, idx, numel)
        assert time.perf_counter() - t0 < 0.5
        nbytes, chosen = _core.index_size(codec, idx, numel)
        assert chosen == "rice" and len(sec) == nbytes < 200
        check_index_section("rice", sec, idx, numel)


@pytest.mark.parametrize("vcodec", VALUE_CODECS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_messages_identical_at_every_level(vcodec, dtype):
    rng = np.random.default_rng(11)
    update = {}
    for n in [0, 1, 7, 8, 9, 15, 16, 17, 31, 33, 1000, 4101]:
        v64 = gen_values(rng, n, dtype, finite=vcodec in ("qsgd", "sign"))
        numel = 3 * n + 5
        idx = np.sort(rng.choice(numel, n, replace=False)).astype(np.int64)
        update[f"s{n}"] = gradsparse.Sparse(idx, make_values(v64, dtype, False), (numel,))
        update[f"d{n}"] = make_values(v64, dtype, False)
    if dtype != "bfloat16" and vcodec not in ("qsgd", "sign"):  # NaNs: both signs, quiet and signalling
        ebits, mbits, utype = {"float16": (5, 10, np.uint16), "float32": (8, 23, np.uint32),
                               "float64": (11, 52, np.uint64)}[dtype]
        mant = rng.integers(1, 1 << mbits, 200, dtype=np.uint64)
        sign = rng.integers(0, 2, 200, dtype=np.uint64) << np.uint64(ebits + mbits)
        update["nan"] = (mant | np.uint64(((1 << ebits) - 1) << mbits) | sign).astype(utype).view(dtype)
    payloads, decoded = [], []
    for level in LEVELS:
        with gradsparse.simd_level(level):
            payloads.append(gradsparse.encode(update, value_codec=vcodec, bits=2, block=13, seed=99))
            decoded.append(gradsparse.decode(payloads[-1], like=LIKE))
    assert all(p == payloads[0] for p in payloads), f"payload bytes differ between {LEVELS}"
    for d in decoded[1:]:
        for name, item in d.items():
            ref = decoded[0][name]
            a, b = (item.values, ref.values) if isinstance(item, gradsparse.Sparse) else (item, ref)
            assert np.array_equal(tbits(a), tbits(b)), name


def test_crc32c_reference_and_levels():
    assert crc32c_ref(b"123456789") == 0xE3069283
    rng = np.random.default_rng(3)
    blobs = [b"", b"a", b"123456789"] + [rng.integers(0, 256, n, dtype=np.uint8).tobytes()
                                         for n in list(range(1, 40)) + [255, 1000, 4093]]
    for level in LEVELS:
        with gradsparse.simd_level(level):
            assert _core.crc32c(b"123456789") == 0xE3069283
            for blob in blobs:
                assert _core.crc32c(blob) == crc32c_ref(blob), (level, len(blob))
                cut = len(blob) // 3
                assert _core.crc32c(blob[cut:], _core.crc32c(blob[:cut])) == crc32c_ref(blob)
            assert _core.crc32c(bytearray(b"123456789")) == 0xE3069283
            assert _core.crc32c(memoryview(b"xx123456789")[2:]) == 0xE3069283


# ================================================================ auto and the entropy bound

@settings(max_examples=4 * N_EXAMPLES)
@given(data=st.data())
def test_auto_picks_the_smallest(data):
    if data.draw(st.booleans(), label="huge?"):
        numel, idx = data.draw(huge_positions())
    else:
        numel = data.draw(st.integers(0, 200_000), label="numel")
        idx = data.draw(positions(numel))
    sizes = {}
    for codec in ["raw32", "raw64", "bitmap", "varint", "rice"]:
        applicable = not ((codec == "raw32" and numel > 2**32) or
                          (codec == "varint" and idx.size and int(gaps(idx).max()) >= 2**32))
        if applicable:
            n, name = _core.index_size(codec, idx, numel)
            assert name == codec
            sizes[codec] = n
            if codec in ("raw32", "raw64", "bitmap"):
                assert n == {"raw32": 4 * idx.size, "raw64": 8 * idx.size, "bitmap": (numel + 7) // 8}[codec]
            elif codec == "varint":
                assert n == len(varint_ref(idx))
        else:
            raises(ValueError, "index_codec", _core.index_size, codec, idx, numel)
    n_auto, chosen = _core.index_size("auto", idx, numel)
    assert n_auto == min(sizes.values()) == sizes[chosen]
    order = ["raw32", "raw64", "bitmap", "varint", "rice"]
    assert chosen == min((c for c in sizes if sizes[c] == n_auto), key=order.index)
    if numel <= 1 << 24:  # (larger: see test_index_encode_allocation_follows_the_section)
        sec = _core.index_encode("auto", idx, numel)
        assert len(sec) == n_auto
        check_index_section(chosen, sec, idx, numel)


@pytest.mark.parametrize("density", [0.001, 0.01, 0.1])
def test_rice_and_auto_near_entropy_bound(density):
    d = 10**6
    k = int(d * density)
    idx = np.sort(np.random.default_rng(int(density * 1e4)).choice(d, k, replace=False)).astype(np.int64)
    bound = (math.lgamma(d + 1) - math.lgamma(k + 1) - math.lgamma(d - k + 1)) / math.log(2) / k
    for codec in ("rice", "auto"):
        n, chosen = _core.index_size(codec, idx, d)
        sec = _core.index_encode(codec, idx, d)
        assert len(sec) == n
        bpi = 8 * n / k
        assert bpi <= 1.02 * bound, f"{codec} ({chosen}): {bpi:.4f} bits/index, bound {bound:.4f}"
    sec = _core.index_encode("rice", idx, d)
    check_index_section("rice", sec, idx, d)
    # the parameter is the best of all of them for random positions
    assert len(sec) == min(rice_size_ref(idx, b) for b in range(MAX_RICE_B + 1))


# ================================================================= float16 and bfloat16

def _payload_values(payload: bytes) -> bytes:
    _, (rec,) = parse_ref(payload)
    return rec["vsec"]


ALL_HALVES = np.arange(65536, dtype=np.uint32).astype(np.uint16).view(np.float16)
HALF_NAN = np.isnan(ALL_HALVES)


@pytest.mark.parametrize("level", LEVELS)
def test_float16_widening_exhaustive(level):
    """All 65536 halves: float16 -> float32/float64 wire values are exact widenings, and a
    float16 section decodes to the exact float32/float64 values (NaN stays NaN)."""
    wide32 = ALL_HALVES.astype(np.float32)
    with gradsparse.simd_level(level):
        for codec, w in (("float32", "<f4"), ("float64", "<f8")):
            got = np.frombuffer(_payload_values(gradsparse.encode(ALL_HALVES, value_codec=codec)), w)
            same_values(got, ALL_HALVES.astype(np.float64), f"float16 -> {codec}")
            back = gradsparse.decode(gradsparse.encode(ALL_HALVES, value_codec=codec))
            assert back.dtype == np.float16
            nn = ~HALF_NAN
            assert np.array_equal(back.view(np.uint16)[nn], ALL_HALVES.view(np.uint16)[nn])
            assert np.all(np.isnan(back[HALF_NAN]))
        # float32 holding every half: the float16 section carries the half bits exactly
        payload = gradsparse.encode(wide32, value_codec="float16")
        sec = np.frombuffer(_payload_values(payload), "<u2")
        assert np.array_equal(sec[~HALF_NAN], ALL_HALVES.view(np.uint16)[~HALF_NAN])
        assert np.all(np.isnan(sec.view(np.float16)[HALF_NAN]))
        out = gradsparse.decode(payload)
        assert out.dtype == np.float32
        same_values(out, wide32.astype(np.float64), "float16 section -> float32")
        out64 = gradsparse.decode(gradsparse.encode(ALL_HALVES.astype(np.float64), value_codec="float16"))
        same_values(out64, ALL_HALVES.astype(np.float64), "float16 section -> float64")


def _f32_narrowing_set():
    rng = np.random.default_rng(5)
    h = ALL_HALVES[np.isfinite(ALL_HALVES)].astype(np.float64)
    h = np.unique(h)
    mids = (h[:-1] + h[1:]) / 2  # every half-way point (exact in float32)
    mid32 = mids.astype(np.float32)
    assert np.array_equal(mid32.astype(np.float64), mids)
    near = np.concatenate([mid32, np.nextafter(mid32, np.float32(np.inf)), np.nextafter(mid32, np.float32(-np.inf)),
                           h.astype(np.float32)])
    edges = np.array([0.0, -0.0, 65504, 65519, 65519.996, 65520, 65536, 1e6, 3e38, np.inf, -np.inf,
                      2.0**-24, 2.0**-25, 2.0**-25 * 1.0000001, 2.0**-26, 2.0**-14, 2.0**-14 * (1 - 2.0**-11),
                      1e-45, 1.1754942e-38, -65520, -2.0**-25], np.float32)
    edges = np.concatenate([edges, np.nextafter(edges, np.float32(np.inf)), np.nextafter(edges, np.float32(-np.inf))])
    rnd = rng.integers(0, 2**32, 400_000, dtype=np.uint64).astype(np.uint32).view(np.float32)
    around = (rng.standard_normal(200_000) * 10.0 ** rng.uniform(-9, 5, 200_000)).astype(np.float32)
    return np.concatenate([near, edges, rnd, around])


F32_SET = _f32_narrowing_set()


@pytest.mark.parametrize("level", LEVELS)
def test_float16_narrowing_from_float32(level):
    """float32 -> float16 equals numpy's astype (round to nearest even) bit for bit and the
    exact reference; overflow to inf, subnormals, +-0; NaN stays NaN."""
    x = F32_SET
    nan = np.isnan(x)
    with np.errstate(all="ignore"):
        np_ref = x.astype(np.float16).view(np.uint16)
        exact = fmt_bytes(round_to(x.astype(np.float64), "float16"), "float16")
    assert np.array_equal(np_ref[~nan], exact[~nan])
    with gradsparse.simd_level(level):
        for chunk in (x, x[:1001], x[3:20]):  # vector bodies and scalar tails
            got = np.frombuffer(_payload_values(gradsparse.encode(chunk, value_codec="float16")), "<u2")
            with np.errstate(all="ignore"):
                ref = chunk.astype(np.float16).view(np.uint16)
            cn = np.isnan(chunk)
            bad = np.flatnonzero((got != ref) & ~cn)
            assert bad.size == 0, f"{bad.size} wrong, e.g. {chunk[bad[:5]]!r} -> {got[bad[:5]]} not {ref[bad[:5]]}"
            assert np.all(np.isnan(got.view(np.float16)[cn]))


def _f64_halfway_set(fmt: str):
    """float64 values at, and just around, the half-way points between neighbours of `fmt`,
    including offsets too small for float32 (double rounding through float32 fails there)."""
    if fmt == "float16":
        grid = np.unique(ALL_HALVES[np.isfinite(ALL_HALVES)].astype(np.float64))
    else:
        rng = np.random.default_rng(9)
        b = np.concatenate([rng.integers(0, 0x7F80, 30_000), np.arange(0, 300), np.arange(0x7F00, 0x7F80)])
        grid = np.unique(widen_bf16(np.concatenate([b, b | 0x8000]).astype(np.uint16)))
    lo, hi = grid[:-1], grid[1:]
    mids = (lo + hi) / 2
    step = hi - lo
    out = [mids]
    for rel in (2.0**-30, 2.0**-40, 2.0**-50):
        out += [mids + step * rel, mids - step * rel]
    out += [np.nextafter(mids, np.inf), np.nextafter(mids, -np.inf), grid]
    top = FMT[fmt][2]
    half_ulp = 2.0**(15 - 11) if fmt == "float16" else 2.0**(127 - 8)
    out.append(np.array([top + half_ulp, np.nextafter(top + half_ulp, 0), top + half_ulp * (1 - 2.0**-40),
                         -(top + half_ulp), 1e300, -1e300, 5e-324, -5e-324, 0.0, -0.0, np.inf, -np.inf]))
    return np.concatenate(out)


@pytest.mark.parametrize("level", LEVELS)
def test_float16_from_float64_single_rounding(level):
    rng = np.random.default_rng(2)
    x = np.concatenate([_f64_halfway_set("float16"), rng.standard_normal(100_000) * 10.0 ** rng.uniform(-9, 5, 100_000)])
    with np.errstate(all="ignore"):
        np_ref = x.astype(np.float16).view(np.uint16)
    exact = fmt_bytes(round_to(x, "float16"), "float16")
    assert np.array_equal(np_ref, exact)  # numpy's double -> half is one correct rounding
    with gradsparse.simd_level(level):
        got = np.frombuffer(_payload_values(gradsparse.encode(x, value_codec="float16")), "<u2")
    bad = np.flatnonzero(got != exact)
    assert bad.size == 0, f"{bad.size} wrong, e.g. {x[bad[:5]]!r} -> {got[bad[:5]]} not {exact[bad[:5]]}"
    nan64 = np.array([np.nan, -np.nan, struct.unpack("<d", struct.pack("<Q", 0x7FF0000000000001))[0]])
    got = np.frombuffer(_payload_values(gradsparse.encode(nan64, value_codec="float16")), "<u2")
    assert np.all(np.isnan(got.view(np.float16)))


@requires_torch
@pytest.mark.parametrize("level", LEVELS)
def test_bfloat16_from_float32(level):
    x = F32_SET
    nan = np.isnan(x)
    ref = bf16_bits_from_f32_ref(x)
    with np.errstate(all="ignore"):
        exact = fmt_bytes(round_to(x.astype(np.float64), "bfloat16"), "bfloat16")
    assert np.array_equal(ref[~nan], exact[~nan])
    tref = torch.from_numpy(x.copy()).to(torch.bfloat16).view(torch.int16).numpy().view(np.uint16)
    assert np.array_equal(tref[~nan], ref[~nan])
    with gradsparse.simd_level(level):
        payload = gradsparse.encode(x, value_codec="bfloat16")
    got = np.frombuffer(_payload_values(payload), "<u2")
    bad = np.flatnonzero((got != ref) & ~nan)
    assert bad.size == 0, f"{bad.size} wrong, e.g. {x[bad[:5]]!r} -> {got[bad[:5]]} not {ref[bad[:5]]}"
    assert np.all(np.isnan(widen_bf16(got[nan])))
    out = gradsparse.decode(payload)  # numpy: bfloat16 comes back as float32, exactly
    same_values(out[~nan], widen_bf16(ref[~nan]), "bfloat16 -> float32")
    # from bfloat16 tensors: the bits travel unchanged
    t = torch.from_numpy(ref.astype(np.int16)).view(torch.bfloat16)
    back = gradsparse.decode(gradsparse.encode(t, value_codec="bfloat16"), like="torch")
    assert back.dtype == torch.bfloat16 and torch.equal(back.view(torch.int16), t.view(torch.int16))


@pytest.mark.parametrize("src", ["float64", "float16"])
def test_bfloat16_from_float64_and_float16(src):
    if src == "float64":
        x = np.concatenate([_f64_halfway_set("bfloat16"), np.random.default_rng(4).standard_normal(50_000) * 1e3])
    else:
        x = ALL_HALVES[~HALF_NAN].astype(np.float64)
    exact = fmt_bytes(round_to(x, "bfloat16"), "bfloat16")
    for level in LEVELS:
        with gradsparse.simd_level(level):
            got = np.frombuffer(_payload_values(gradsparse.encode(x.astype(src), value_codec="bfloat16")), "<u2")
        bad = np.flatnonzero(got != exact)
        assert bad.size == 0, f"{level}: {bad.size} wrong, e.g. {x[bad[:5]]!r} -> {got[bad[:5]]} not {exact[bad[:5]]}"


def _crafted_values_payload(vcodec: str, dtype: str, wire_bytes: bytes, n: int) -> bytes:
    rec = record(dtype=DTYPE_ID[dtype], shape=(n,), icodec=0, vcodec=VALUE_ID[vcodec], nnz=n, vsec=wire_bytes)
    return message([rec], flags=1)


def test_decode_rounds_once_into_narrower_dtypes():
    """Crafted payloads whose value section is wider than the record dtype: decode must round
    each value once (float64 -> float16/bfloat16/float32, float32 -> float16/bfloat16)."""
    x16 = _f64_halfway_set("float16")
    xbf = _f64_halfway_set("bfloat16")
    cases = [("float64", "float16", x16), ("float64", "bfloat16", xbf), ("float64", "float32", xbf),
             ("float32", "float16", F32_SET.astype(np.float64)), ("float32", "bfloat16", F32_SET.astype(np.float64))]
    for vcodec, dtype, x in cases:
        w = "<f8" if vcodec == "float64" else "<f4"
        with np.errstate(all="ignore"):
            wire = x.astype(w)
        payload = _crafted_values_payload(vcodec, dtype, wire.tobytes(), x.size)
        if dtype == "bfloat16":
            need_torch()
        out = gradsparse.decode(payload, like=LIKE)
        exp = round_to(wire.astype(np.float64), dtype)
        same_values(as_f64(out), exp, f"{vcodec} section into {dtype}")


# ======================================================================= qsgd and sign

@pytest.mark.parametrize("bits", [1, 2, 4, 8])
@pytest.mark.parametrize("block", [1, 5, 64, 512])
def test_qsgd_grid_scales_and_determinism(bits, block):
    rng = np.random.default_rng(bits * 1000 + block)
    for dtype in HAVE_DTYPES:
        v64 = gen_values(rng, 700, dtype, finite=True)
        idx = np.sort(rng.choice(5000, 700, replace=False)).astype(np.int64)
        u = gradsparse.Sparse(idx, make_values(v64, dtype, False), (5000,))
        p1 = gradsparse.encode(u, value_codec="qsgd", bits=bits, block=block, seed=42)
        assert p1 == gradsparse.encode(u, value_codec="qsgd", bits=bits, block=block, seed=42)
        p2 = gradsparse.encode(u, value_codec="qsgd", bits=bits, block=block, seed=43)
        _, (r1,) = parse_ref(p1)
        _, (r2,) = parse_ref(p2)
        check_qsgd(r1["vsec"], v64, bits, block)
        check_qsgd(r2["vsec"], v64, bits, block)
        if block > 1:  # (with one value per block every value is +-scale: nothing is random)
            assert r1["vsec"] != r2["vsec"], "different seeds gave the same stochastic rounding"
        assert len(p1) == gradsparse.encoded_size(u, value_codec="qsgd", bits=bits, block=block)
        assert len(r1["vsec"]) == 8 + 4 * -(-700 // block) + (700 * bits + 7) // 8
        same_values(as_f64(gradsparse.decode(p1, like=LIKE).values),
                    expected_decoded("qsgd", r1["vsec"], 700, dtype), "qsgd decode")
    # unseeded encodes draw fresh randomness
    x = np.linspace(-1, 1, 999)
    assert gradsparse.encode(x, value_codec="qsgd", bits=1) != gradsparse.encode(x, value_codec="qsgd", bits=1)


@pytest.mark.parametrize("bits", [1, 2, 4, 8])
def test_qsgd_unbiased(bits):
    """The mean over n seeds of each decoded value converges to the input. Each decoded value
    lies in an interval of width D (one grid step) around it, so by Hoeffding
    P(|mean - v| >= t) <= 2 exp(-2 n t^2 / D^2); with t = D sqrt(ln(2 m / alpha) / (2 n)) the
    chance that any of the m values fails (union bound) is below alpha = 1e-6."""
    rng = np.random.default_rng(bits)
    m, block, n = 600, 50, 400
    v = rng.standard_normal(m) * np.repeat(10.0 ** rng.uniform(-3, 3, m // block), block)
    total, lo, hi = np.zeros(m), np.full(m, np.inf), np.full(m, -np.inf)
    for seed in range(n):
        d = gradsparse.decode(gradsparse.encode(v, value_codec="qsgd", bits=bits, block=block, seed=seed))
        total += d
        lo, hi = np.minimum(lo, d), np.maximum(hi, d)
    mean = total / n
    s = np.repeat([qsgd_scale_ref(float(np.abs(v[i:i + block]).max())) for i in range(0, m, block)], block)
    step = 2 * s / ((1 << bits) - 1)
    tol = step * math.sqrt(math.log(2 * m / 1e-6) / (2 * n)) + 1e-12 * s
    err = np.abs(mean - v)
    assert np.all(err <= tol), f"max err/tol {np.max(err / tol):.3f} at {np.argmax(err / tol)}"
    # and it is really stochastic: values between two levels are rounded both ways
    assert np.mean(hi > lo) > 0.9
    assert np.all(hi - lo <= step * (1 + 1e-9))


@pytest.mark.parametrize("codec", ["qsgd", "sign"])
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_lossy_codecs_need_finite_values(codec, bad):
    for dtype in ("float32", "float64", "float16"):
        x = np.ones(10, dtype)
        x[7] = bad
        raises(ValueError, "values", gradsparse.encode, x, value_codec=codec)
        raises(ValueError, "values", gradsparse.encode, gradsparse.Sparse(np.arange(10), x, (20,)), value_codec=codec)
    raises(ValueError, "values", gradsparse.encode, np.array([1e300, 1.0]), value_codec="qsgd")


def test_sign_codec():
    rng = np.random.default_rng(8)
    for dtype in HAVE_DTYPES:
        for n in (0, 1, 7, 8, 9, 1000):
            v64 = gen_values(rng, n, dtype, finite=True)
            payload = gradsparse.encode(make_values(v64, dtype, True), value_codec="sign")
            _, (rec,) = parse_ref(payload)
            check_values("sign", rec["vsec"], v64)
            s = sign_scale_ref(v64)
            out = as_f64(gradsparse.decode(payload, like="torch"))
            exp = round_to(np.where(np.signbit(v64), -s, s), dtype if dtype != "float64" else "float64")
            same_values(out, exp, f"sign {dtype} n={n}")
    x = np.array([3.0, -1.0, -0.0, 0.0, 2.0])
    out = gradsparse.decode(gradsparse.encode(x, value_codec="sign"))
    s = float(np.float32(1.2))
    assert out.tolist() == [s, -s, -s, s, s] and np.signbit(out).tolist() == [False, True, True, False, False]


# ================================================================ argument errors (encode)

def _u(n=4):
    return gradsparse.Sparse(np.arange(n, dtype=np.int64), np.ones(n, np.float32), (10,))


@pytest.mark.parametrize("fn", [gradsparse.encode, gradsparse.encoded_size])
def test_encode_argument_errors(fn):
    u = _u()
    raises(ValueError, "index_codec", fn, u, index_codec="zip")
    raises(ValueError, "index_codec", fn, u, index_codec="dense")
    raises(ValueError, "index_codec", fn, u, index_codec=3)
    raises(ValueError, "value_codec", fn, u, value_codec="int8")
    raises(ValueError, "value_codec", fn, u, value_codec=None)
    for b in (0, 3, 16, -1):
        raises(ValueError, "bits", fn, u, value_codec="qsgd", bits=b)
    raises(TypeError, "bits", fn, u, value_codec="qsgd", bits=2.0)
    raises(TypeError, "bits", fn, u, value_codec="qsgd", bits=True)
    for blk in (0, -5, 2**32):
        raises(ValueError, "block", fn, u, value_codec="qsgd", block=blk)
    raises(TypeError, "block", fn, u, value_codec="qsgd", block="8")
    raises(ValueError, "seed", fn, u, value_codec="qsgd", seed=-1)
    raises(ValueError, "seed", fn, u, value_codec="qsgd", seed=2**64)
    raises(TypeError, "seed", fn, u, value_codec="qsgd", seed=1.5)
    raises(TypeError, "update", fn, {1: u})
    raises(TypeError, "update", fn, {b"a": u})
    raises(TypeError, "update", fn, [u])
    raises(TypeError, "update", fn, "abc")
    raises(ValueError, "update", fn, {"\ud800": u})
    raises(ValueError, "update", fn, {"x" * 65536: u})
    raises(TypeError, "update['a']", fn, {"a": np.arange(4)})


@pytest.mark.parametrize("codec", ["raw32", "raw64", "varint", "rice", "bitmap", "auto"])
def test_bad_indices(codec):
    f32 = np.ones(3, np.float32)
    for idx in ([0, 2, 2], [3, 2, 5], [-1, 2, 3], [0, 1, 10], [0, 1, 2**62], [5, 4, 3]):
        u = gradsparse.Sparse(np.array(idx, np.int64), f32, (10,))
        raises(ValueError, "indices", gradsparse.encode, u, index_codec=codec)
        raises(ValueError, "indices", gradsparse.encoded_size, u, index_codec=codec)
        raises(ValueError, "indices", _core.index_size, codec, np.array(idx, np.int64), 10)
        raises(ValueError, "indices", _core.index_encode, codec, np.array(idx, np.int64), 10)
    S = gradsparse.Sparse
    raises(TypeError, "indices", gradsparse.encode, S(np.array([0.0, 1.0, 2.0]), f32, (10,)), index_codec=codec)
    raises(ValueError, "indices", gradsparse.encode, S(np.array([[0, 1, 2]]), f32[:1], (10,)), index_codec=codec)
    raises(ValueError, "indices", gradsparse.encode, S(np.array([0, 1, 2**63], np.uint64), f32, (10,)), index_codec=codec)
    # indices and values of different lengths (Sparse checks it; so does encode, for
    # objects changed after construction)
    raises(ValueError, "values", gradsparse.Sparse, np.arange(3), np.ones(2), (10,))
    u = gradsparse.Sparse(np.arange(3), f32, (10,))
    u.values = np.ones(4, np.float32)
    raises(ValueError, "update", gradsparse.encode, u, index_codec=codec)
    raises(ValueError, "update['t']", gradsparse.encode, {"t": u}, index_codec=codec)


def test_shape_limits_and_codec_applicability():
    one = np.ones(1, np.float32)
    raises(ValueError, "update", gradsparse.encode, gradsparse.Sparse(np.array([0]), one, (2**30, 2**30, 2**30)))
    S = gradsparse.Sparse
    raises(ValueError, "index_codec", gradsparse.encode, S(np.array([0]), one, (2**33,)), index_codec="raw32")
    raises(ValueError, "index_codec", gradsparse.encode, S(np.array([0, 2**33]), np.ones(2), (2**34,)), index_codec="varint")
    ok = gradsparse.Sparse(np.array([0, 2**32]), np.ones(2), (2**34,))  # gap - 1 = 2^32 - 1 fits
    assert gradsparse.decode(gradsparse.encode(ok, index_codec="varint")).indices.tolist() == [0, 2**32]
    raises(TypeError, "update", gradsparse.encode, gradsparse.Sparse(np.array([0]), np.array([1], np.int32), (3,)))


def test_low_level_argument_errors():
    idx = np.array([1, 5, 9], np.int64)
    raises(ValueError, "codec", _core.index_encode, "nope", idx, 10)
    raises(ValueError, "codec", _core.index_size, "nope", idx, 10)
    raises(ValueError, "codec", _core.index_decode, "nope", b"\x00" * 12, 3, 10)
    raises(ValueError, "codec", _core.index_decode, "auto", b"\x00" * 12, 3, 10)
    raises(ValueError, "k", _core.index_decode, "raw32", b"\x00" * 12, 11, 10)
    raises(ValueError, "k", _core.index_decode, "rice", b"\x00" * 2, 10**12, 2**50)
    raises(ValueError, "numel", _core.index_size, "rice", idx, 2**57)
    raises(TypeError, "data", _core.index_decode, "raw32", "abc", 3, 10)
    raises(TypeError, "data", _core.crc32c, "abc")
    raises(ValueError, "out", _core.index_encode, "raw64", idx, 10, out=np.zeros(8, np.uint8))
    raises(ValueError, "out", _core.index_decode, "raw32", raw_ref(idx, 4), 3, 10, out=np.zeros(2, np.int64))


def test_decode_argument_errors():
    good = gradsparse.encode(_u())
    raises(TypeError, "data", gradsparse.decode, good.hex())
    raises(TypeError, "data", gradsparse.decode, 12)
    raises(TypeError, "data", gradsparse.decode, None)
    raises(ValueError, "like", gradsparse.decode, good, like="jax")
    # every buffer type works
    for buf in (bytearray(good), memoryview(good), np.frombuffer(good, np.uint8)):
        assert gradsparse.decode(buf).indices.tolist() == [0, 1, 2, 3]


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
    assert type(info.value) is ValueError
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


def test_crafted_reference_payloads_decode():
    """The builder itself is right: hand-made payloads of every codec decode as intended."""
    for name, icodec in INDEX_ID.items():
        if name == "dense":
            continue
        sec = index_ref(name, IDX, 10, 2)
        out = gradsparse.decode(message([good_record(icodec=icodec, isec=sec)]))
        assert out["w"].indices.tolist() == [1, 4, 9] and out["w"].values.tolist() == [1.5, -2.0, 0.25]
    vals = np.array([1.5, -2.0, 0.25])
    for vcodec, sec in [("float64", vals.tobytes()), ("float16", vals.astype("<f2").tobytes()),
                        ("bfloat16", fmt_bytes(vals, "bfloat16").tobytes()),
                        ("sign", struct.pack("<f", 0.5) + bytes([0b010])),
                        ("qsgd", struct.pack("<BBBBI2fB", 2, 0, 0, 0, 2, 2.0, 1.0, 0b00_00_11))]:
        out = gradsparse.decode(message([good_record(vcodec=VALUE_ID[vcodec], vsec=sec)]))
        exp = {"sign": [0.5, -0.5, 0.5], "qsgd": [2.0, -2.0, -1.0]}.get(vcodec, vals.tolist())
        assert out["w"].values.tolist() == exp, vcodec
    # dense record, single flag
    dense = record(dtype=2, shape=(3,), icodec=0, vcodec=2, nnz=3, vsec=vals.tobytes())
    out = gradsparse.decode(message([dense], flags=1))
    assert isinstance(out, np.ndarray) and out.tolist() == vals.tolist()
    # a record may declare a huge sparse shape with no entries (nothing proportional to it is built)
    t0 = time.perf_counter()
    out = gradsparse.decode(message([record(shape=(10**12,), icodec=4, vcodec=1, nnz=0, isec=b"\x00")], flags=1))
    assert out.shape == (10**12,) and out.nnz == 0 and time.perf_counter() - t0 < 0.5


def test_bad_header():
    good = message([good_record()])
    gradsparse.decode(good)
    bad_payload(b"XSPW" + good[4:], "magic")
    bad_payload(b"", "truncated")
    for v in (0, 2, 0xFFFF):
        bad_payload(message([good_record()], version=v), "version", str(v))
    for f in (2, 4, 0x8000, 3):
        bad_payload(message([good_record()], flags=f), "flags")
    bad_payload(message([good_record(), good_record(name=b"v")], flags=1), "single")
    bad_payload(message([], flags=1), "single")
    for cut in range(len(good)):
        bad_payload(good[:cut], "truncated")
    bad_payload(good + b"\x00", "trailing")
    bad_payload(good + b"\x00" * 100, "trailing")
    bad_payload(message([good_record()], body_len=len(good) - 23), "truncated")
    bad_payload(message([good_record()], body_len=len(good) - 25), "trailing")
    bad = message([good_record()], crc=crc32c_ref(good[24:]) ^ 1)
    bad_payload(bad, "checksum")
    assert gradsparse.decode(bad, verify_checksum=False)["w"].indices.tolist() == [1, 4, 9]
    # every single bit flip is caught (by the CRC, or by the header checks), except the
    # "single" flag: the CRC covers the body only, and a one-record message is valid either
    # way (it then decodes as the bare tensor instead of a one-entry dict)
    for pos in range(len(good)):
        for bit in range(8):
            flipped = bytearray(good)
            flipped[pos] ^= 1 << bit
            if (pos, bit) == (6, 0):
                assert gradsparse.decode(bytes(flipped)).indices.tolist() == [1, 4, 9]
                continue
            bad_payload(bytes(flipped))


def test_bad_record_header():
    bad_payload(message([good_record()], count=2), "truncated")
    bad_payload(message([good_record()], count=0), "bytes after the last record")
    bad_payload(message([good_record()], count=10**9), "records")
    for dt in (0, 5, 255):
        bad_payload(message([good_record(dtype=dt)]), "dtype", str(dt))
    for ic in (6, 7, 128, 255):
        bad_payload(message([good_record(icodec=ic)]), "index codec", str(ic))
    for vc in (0, 7, 255):
        bad_payload(message([good_record(vcodec=vc)]), "value codec", str(vc))
    bad_payload(message([good_record(shape=(1,) * 33)]), "dimensions")
    bad_payload(message([good_record(shape=(2**28,) * 3)]), "2^56")
    bad_payload(message([good_record(nnz=11)]), "11")
    bad_payload(message([good_record(), good_record()]), "duplicate")
    bad_payload(message([good_record(name=b""), good_record(name=b"x"), good_record(name=b"")]), "duplicate")
    bad_payload(message([good_record(name=b"\xff\xfe")]), "UTF-8")
    bad_payload(message([record(dtype=1, shape=(3,), icodec=0, vcodec=1, nnz=2, vsec=F32[:8])]), "dense")
    bad_payload(message([record(dtype=1, shape=(3,), icodec=0, vcodec=1, nnz=3, isec=b"\0" * 4, vsec=F32)]), "dense")
    bad_payload(message([good_record(ilen=len(raw_ref(IDX, 4)) + len(F32) + 1)]), "longer than the rest")
    bad_payload(message([good_record(vlen=len(F32) + 1)]), "longer than the rest")
    bad_payload(message([good_record(ilen=2**64 - 1)]), "longer than the rest")
    bad_payload(message([good_record(vlen=2**64 - 1)]), "longer than the rest")
    # a record header cut inside the shape
    bad_payload(message([good_record(shape=(1, 1, 1, 10))[:40]]), "truncated record header")


def test_every_declared_dimension_is_bounded():
    """A zero dimension makes numel 0, but the other dimensions must still be in range
    (the decoded shape has to be a valid numpy / torch shape)."""
    bad_payload(message([record(shape=(0, 2**60), icodec=4, vcodec=1, nnz=0, isec=b"\0")]), "2^56")
    bad_payload(message([record(shape=(2**63, 0), icodec=0, vcodec=1, nnz=0)]), "2^56")


def test_error_messages_survive_names_that_are_not_utf8():
    """Errors quote the record's name; a name that is not UTF-8 must still give a clean
    ValueError saying what is wrong (not a UnicodeDecodeError about the message itself)."""
    bad_payload(message([good_record(name=b"\xff\xfe", dtype=0)]), "dtype")
    bad_payload(message([good_record(name=b"a\xc3", nnz=11)]), "11 entries")
    bad_payload(message([good_record(name=b"\xff"), good_record(name=b"\xff")]), "duplicate")
    bad_payload(message([good_record(name=b"\xe9t\xe9", isec=raw_ref([1, 4, 4], 4))]), "increasing")


@pytest.mark.parametrize("icodec", ["dense", "raw32", "raw64", "varint", "rice", "bitmap"])
@pytest.mark.parametrize("vcodec", VALUE_CODECS)
def test_huge_claims_refused_fast(icodec, vcodec):
    """A ~60-byte message whose record claims 10^12 entries is refused at once: every codec
    needs some bytes per entry, so nothing is allocated for what the payload cannot hold."""
    n = 10**12
    rec = record(shape=(n,), icodec=INDEX_ID[icodec], vcodec=VALUE_ID[vcodec], nnz=n,
                 isec=b"" if icodec == "dense" else b"\x01" * 8, vsec=b"\x01" * 8)
    payload = message([rec], flags=1)
    assert len(payload) < 100
    t0 = time.perf_counter()
    for verify in (True, False):
        bad_payload(payload, verify=verify)
    assert time.perf_counter() - t0 < 0.5


def test_index_sections_must_match_their_counts():
    rec = lambda **kw: message([good_record(**kw)])  # noqa: E731
    raw = raw_ref(IDX, 4)
    bad_payload(rec(isec=raw + b"\0" * 4), "raw", "12")
    bad_payload(rec(icodec=2, isec=raw_ref(IDX, 8) + b"\0" * 8), "raw")
    bad_payload(rec(isec=raw_ref([1, 4, 4], 4)), "increasing")
    bad_payload(rec(isec=raw_ref([4, 1, 9], 4)), "increasing")
    bad_payload(rec(isec=raw_ref([1, 4, 10], 4)), "range")
    bad_payload(rec(icodec=2, isec=raw_ref([1, 4, 2**40], 8)), "range")
    v = varint_ref(IDX)
    bad_payload(rec(icodec=3, isec=v + b"\0"), "varint", "trailing")
    bad_payload(rec(icodec=3, isec=bytes([v[0] | 0b01]) + v[1:] + b"\0"), "varint")  # lengths disagree
    bad_payload(rec(icodec=3, isec=bytes([v[0] | 0b01_00_00_00]) + v[1:]), "varint", "padding")
    bad_payload(rec(icodec=3, isec=v[:1] + bytes([1, 2, 200])), "varint", "range")
    bad_payload(rec(icodec=3, isec=bytes([0b11]) + b"\xff\xff\xff\xff\0\0"), "varint", "range")
    r = rice_ref(IDX, 2)
    bad_payload(rec(icodec=4, isec=r + b"\0"), "Rice", "trailing")
    bad_payload(rec(icodec=4, isec=r[:-1] + bytes([r[-1] | 0x80])), "Rice", "more codes")
    bad_payload(rec(icodec=4, isec=bytes([57]) + r[1:]), "Rice", "parameter")
    bad_payload(rec(icodec=4, isec=bytes([200]) + b"\0" * 40), "Rice", "parameter")
    bad_payload(rec(icodec=4, isec=r[:1] + bytes([r[1] | 0x80]) + r[2:]), "Rice", "padding")  # 6 remainder bits
    bad_payload(rec(icodec=4, isec=rice_ref([1, 4], 2) + b"\0"), "Rice")
    bad_payload(rec(icodec=4, isec=rice_ref(IDX, 0)[:1] + b"\x00\x00\x80"), "Rice", "range")
    bad_payload(rec(icodec=5, isec=bitmap_ref([1, 4, 9, 6], 10)), "bitmap", "more set bits")
    bad_payload(rec(icodec=5, isec=bitmap_ref([1, 4], 10)), "bitmap", "2")
    bad_payload(rec(icodec=5, isec=bytes([0b00010010, 0b110])), "bitmap", "past the last")
    bad_payload(rec(icodec=5, isec=bitmap_ref(IDX, 10) + b"\0"), "bitmap")
    # the same sections through the low-level decoder
    raises(ValueError, "payload", _core.index_decode, "varint", v + b"\0", 3, 10)
    raises(ValueError, "payload", _core.index_decode, "rice", r + b"\0", 3, 10)
    raises(ValueError, "payload", _core.index_decode, "bitmap", bitmap_ref([1, 4], 10), 3, 10)
    raises(ValueError, "payload", _core.index_decode, "raw64", raw_ref(IDX, 8), 3, 9)


def test_value_sections_must_match_their_counts():
    rec = lambda **kw: message([good_record(**kw)])  # noqa: E731
    bad_payload(rec(vsec=F32 + b"\0" * 4), "float32", "12")
    bad_payload(rec(vcodec=2, vsec=F32), "value section is too short")
    bad_payload(rec(vcodec=2, vsec=F32 * 3), "float64", "36", "24")
    bad_payload(rec(vcodec=3, vsec=b"\0" * 8), "float16")
    bad_payload(rec(vcodec=4, vsec=b"\0" * 4), "value section")
    def q(bits, block, scales, codes, reserved=(0, 0, 0)):
        return struct.pack(f"<BBBBI{len(scales)}f", bits, *reserved, block, *scales) + codes

    gradsparse.decode(rec(vcodec=5, vsec=q(4, 2, [1, 1], b"\x12\x03")))
    for b in (0, 3, 5, 16):
        bad_payload(rec(vcodec=5, vsec=q(b, 2, [1, 1], b"\x12\x03")), "bits")
    bad_payload(rec(vcodec=5, vsec=q(4, 2, [1, 1], b"\x12\x03", (1, 0, 0))), "reserved")
    bad_payload(rec(vcodec=5, vsec=q(4, 0, [1, 1], b"\x12\x03")), "block")
    bad_payload(rec(vcodec=5, vsec=q(4, 2, [1, 1], b"\x12\x03\x00")), "quantized")
    bad_payload(rec(vcodec=5, vsec=q(4, 2, [1], b"\x12\x03\x00\x00\x00")), "quantized", "17", "18")
    bad_payload(rec(vcodec=5, vsec=q(4, 2, [1, 1], b"\x12\x13")), "padding")
    for s in (-1.0, np.inf, np.nan, -0.5):
        bad_payload(rec(vcodec=5, vsec=q(4, 2, [1, s], b"\x12\x03")), "scale")
        bad_payload(rec(vcodec=6, vsec=struct.pack("<f", s) + b"\x01"), "scale")
    gradsparse.decode(rec(vcodec=6, vsec=struct.pack("<f", -0.0) + b"\x01"))
    bad_payload(rec(vcodec=6, vsec=struct.pack("<f", 1) + b"\x09"), "padding")
    bad_payload(rec(vcodec=6, vsec=struct.pack("<f", 1) + b"\x01\x00"), "sign")
    bad_payload(rec(vcodec=5, vsec=b"\x04\0\0"), "short")


@settings(max_examples=3 * N_EXAMPLES)
@given(data=st.data())
def test_mutated_payloads_decode_or_raise_valueerror(data):
    """Random byte edits of valid payloads (CRC fixed up, or not checked): decode either
    refuses with ValueError or returns well-formed results; never anything else."""
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    upd = {}
    for j in range(int(rng.integers(1, 4))):
        numel = int(rng.integers(1, 300))
        idx = np.flatnonzero(rng.random(numel) < rng.random()).astype(np.int64)
        upd[f"t{j}"] = gradsparse.Sparse(idx, rng.standard_normal(idx.size).astype(np.float32), (numel,))
    payload = bytearray(gradsparse.encode(upd, index_codec=data.draw(st.sampled_from(INDEX_CODECS)),
                                          value_codec=data.draw(st.sampled_from(VALUE_CODECS)), seed=1))
    for _ in range(data.draw(st.integers(1, 4))):
        pos = data.draw(st.integers(24, len(payload) - 1)) if len(payload) > 24 else 0
        payload[pos] = data.draw(st.integers(0, 255))
    fix = data.draw(st.booleans())
    if fix:
        struct.pack_into("<I", payload, 12, crc32c_ref(bytes(payload[24:])))
    level = data.draw(st.sampled_from(LEVELS))
    with gradsparse.simd_level(level):
        try:
            out = gradsparse.decode(bytes(payload), verify_checksum=fix)
        except ValueError as e:
            assert str(e).startswith("payload"), str(e)
            return
    assert isinstance(out, dict)
    for item in out.values():
        if isinstance(item, gradsparse.Sparse):
            assert np.all(np.diff(item.indices) > 0)
            assert item.nnz == 0 or (item.indices[0] >= 0 and item.indices[-1] < item.numel)
            assert len(item.values) == item.nnz
