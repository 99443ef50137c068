"""The wire format at every SIMD level: the same index sections, the same messages and the
same decoded values at every level, and the CRC32C against its bitwise reference."""
from __future__ import annotations

import time

import numpy as np
import pytest

import gradsparse
from gradsparse import _core

from wire_reference import _quiet_numpy_casts  # noqa: F401  (autouse fixture)
from wire_reference import (
    LEVELS,
    VALUE_CODECS,
    DTYPES,
    OUTPUT,
    crc32c_ref,
    gaps,
    make_values,
    tbits,
    gen_values,
    check_index_section,
)


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
                    assert _core.index_encode(codec, idx, numel) == sec, f"{codec} at {level}"
                decs.append(_core.index_decode(real, sec, idx.size, numel))
                into = np.empty(idx.size, np.int64)
                _core.index_decode(real, sec, idx.size, numel, out=into)
                assert np.array_equal(into, idx), f"{codec} decode(out=) at {level}"
        for level, o, s, d in zip(LEVELS, outs, sizes, decs):
            assert o == outs[0], f"{codec} bytes differ between {level} and {LEVELS[0]} (n={idx.size})"
            assert s == sizes[0], f"{codec} section size differs between {level} and {LEVELS[0]}"
            assert np.array_equal(d, idx), f"{codec} decodes wrongly at {level}"
        assert sizes[0][0] == len(outs[0])
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
            decoded.append(gradsparse.decode(payloads[-1], to=OUTPUT))
    for level, p in zip(LEVELS, payloads):
        assert p == payloads[0], f"payload bytes differ between {level} and {LEVELS[0]}"
    for level, d in zip(LEVELS[1:], decoded[1:]):
        for name, item in d.items():
            ref = decoded[0][name]
            a, b = (item.values, ref.values) if isinstance(item, gradsparse.Sparse) else (item, ref)
            assert np.array_equal(tbits(a), tbits(b)), f"{name}: decoded values differ between {level} and {LEVELS[0]}"


def test_crc32c_reference_and_levels(simd):
    assert crc32c_ref(b"123456789") == 0xE3069283
    rng = np.random.default_rng(3)
    blobs = [b"", b"a", b"123456789"] + [rng.integers(0, 256, n, dtype=np.uint8).tobytes()
                                         for n in list(range(1, 40)) + [255, 1000, 4093]]
    assert _core.crc32c(b"123456789") == 0xE3069283
    for blob in blobs:
        assert _core.crc32c(blob) == crc32c_ref(blob), len(blob)
        cut = len(blob) // 3
        assert _core.crc32c(blob[cut:], _core.crc32c(blob[:cut])) == crc32c_ref(blob), len(blob)
    assert _core.crc32c(bytearray(b"123456789")) == 0xE3069283
    assert _core.crc32c(memoryview(b"xx123456789")[2:]) == 0xE3069283
