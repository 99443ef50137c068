"""The wire format refuses bad input: argument errors of encode / encoded_size / decode,
and crafted, malformed payloads (bad headers, records, sections, huge claims, mutated
bytes) raise ValueError/TypeError naming the problem, quickly and without large
allocations."""
from __future__ import annotations

import struct
import time

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import gradsparse
from gradsparse import _core

from wire_reference import _quiet_numpy_casts  # noqa: F401  (autouse fixture)
from wire_reference import (
    LEVELS,
    INDEX_CODECS,
    VALUE_CODECS,
    INDEX_ID,
    VALUE_ID,
    N_EXAMPLES,
    raises,
    crc32c_ref,
    fmt_bytes,
    raw_ref,
    bitmap_ref,
    varint_ref,
    rice_ref,
    index_ref,
    record,
    message,
    bad_payload,
    IDX,
    F32,
    good_record,
)


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
    raises(ValueError, "to", gradsparse.decode, good, to="jax")
    raises(ValueError, "to", gradsparse.decode, good, to=np.array([1, 2]))
    # like= is the deprecated old name of to=: still accepted and checked, with a warning
    with pytest.warns(DeprecationWarning, match="like"):
        raises(ValueError, "like", gradsparse.decode, good, like="jax")
    with pytest.warns(DeprecationWarning, match="like"):
        raises(TypeError, "like", gradsparse.decode, good, to="numpy", like="numpy")
    with pytest.warns(DeprecationWarning, match=r"decode\(to=\.\.\.\)"):
        old = gradsparse.decode(good, like="numpy")
    np.testing.assert_array_equal(old.indices, gradsparse.decode(good, to="numpy").indices)
    # every buffer type works
    for buf in (bytearray(good), memoryview(good), np.frombuffer(good, np.uint8)):
        assert gradsparse.decode(buf).indices.tolist() == [0, 1, 2, 3]


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
