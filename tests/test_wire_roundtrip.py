"""The wire format, end to end: encode -> decode round trips of sparse, dense and dict
updates for every index and value codec (every section checked byte for byte by the
reference parser, decoded values bit for bit), the documented example payloads, and
`auto` picking the smallest index codec, with Rice near the entropy bound."""
from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import gradsparse
from gradsparse import _core
from inputs import is_tensor, requires_torch, torch

from wire_reference import _quiet_numpy_casts  # noqa: F401  (autouse fixture)
from wire_reference import (
    INDEX_CODECS,
    VALUE_CODECS,
    DTYPES,
    OUTPUTS,
    DTYPE_ID,
    VALUE_ID,
    ID_INDEX,
    LOSSLESS,
    HEADER,
    MAX_RICE_B,
    N_EXAMPLES,
    raises,
    crc32c_ref,
    same_values,
    gaps,
    varint_ref,
    rice_size_ref,
    parse_ref,
    _TORCH,
    make_values,
    as_f64,
    as_idx,
    gen_values,
    shapes,
    numel_of,
    positions,
    huge_positions,
    check_index_section,
    auto_choice_ref,
    check_values,
    expected_decoded,
    _payload_values,
)


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
    for to in OUTPUTS:
        out = gradsparse.decode(payload, to=to)
        assert isinstance(out, gradsparse.Sparse) and out.shape == shape
        assert np.array_equal(as_idx(out.indices), idx)
        if to == "torch":
            assert is_tensor(out.values) and out.values.dtype == _TORCH[dtype]
        else:
            assert isinstance(out.values, np.ndarray)
            assert out.values.dtype == (np.float32 if dtype == "bfloat16" else np.dtype(dtype))
        same_values(as_f64(out.values), expect, f"decode(to={to})")


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
    out_t = gradsparse.decode(payload, to="torch")
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
    for to in OUTPUTS:
        out = gradsparse.decode(payload, to=to)
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
        out = gradsparse.decode(gradsparse.encode(x), to="torch" if is_tensor(x) else "numpy")
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
