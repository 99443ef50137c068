"""The wire format's value codecs: float16 / bfloat16 rounding checked exhaustively (all
65536 halves) and on edge sets, decode rounding once into narrower dtypes, the quantizer
(grid, scales, determinism, unbiasedness) and the sign codec."""
from __future__ import annotations

import math
import struct

import numpy as np
import pytest

import gradsparse
from inputs import need_torch, requires_torch, torch

from wire_reference import _quiet_numpy_casts  # noqa: F401  (autouse fixture)
from wire_reference import (
    LEVELS,
    HAVE_DTYPES,
    OUTPUT,
    DTYPE_ID,
    VALUE_ID,
    raises,
    FMT,
    round_to,
    fmt_bytes,
    bf16_bits_from_f32_ref,
    widen_bf16,
    same_values,
    qsgd_scale_ref,
    sign_scale_ref,
    parse_ref,
    make_values,
    as_f64,
    gen_values,
    check_values,
    check_qsgd,
    expected_decoded,
    _payload_values,
    record,
    message,
)


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
    back = gradsparse.decode(gradsparse.encode(t, value_codec="bfloat16"), to="torch")
    assert back.dtype == torch.bfloat16 and torch.equal(back.view(torch.int16), t.view(torch.int16))


@pytest.mark.parametrize("src", ["float64", "float16"])
def test_bfloat16_from_float64_and_float16(simd, src):
    if src == "float64":
        x = np.concatenate([_f64_halfway_set("bfloat16"), np.random.default_rng(4).standard_normal(50_000) * 1e3])
    else:
        x = ALL_HALVES[~HALF_NAN].astype(np.float64)
    exact = fmt_bytes(round_to(x, "bfloat16"), "bfloat16")
    got = np.frombuffer(_payload_values(gradsparse.encode(x.astype(src), value_codec="bfloat16")), "<u2")
    bad = np.flatnonzero(got != exact)
    assert bad.size == 0, f"{simd}: {bad.size} wrong, e.g. {x[bad[:5]]!r} -> {got[bad[:5]]} not {exact[bad[:5]]}"


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
        out = gradsparse.decode(payload, to=OUTPUT)
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
        same_values(as_f64(gradsparse.decode(p1, to=OUTPUT).values),
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
            out = as_f64(gradsparse.decode(payload, to="torch"))
            exp = round_to(np.where(np.signbit(v64), -s, s), dtype if dtype != "float64" else "float64")
            same_values(out, exp, f"sign {dtype} n={n}")
    x = np.array([3.0, -1.0, -0.0, 0.0, 2.0])
    out = gradsparse.decode(gradsparse.encode(x, value_codec="sign"))
    s = float(np.float32(1.2))
    assert out.tolist() == [s, -s, -s, s, s] and np.signbit(out).tolist() == [False, True, True, False, False]
