"""gradsparse.compress, the compression layer: importable without torch, one registry of
every compressor (real payloads, settings as JSON), and one error feedback --
``Compressor.compress(..., feedback=ef)``, ``ErrorFeedback.compress_many`` and
``ErrorFeedback.apply`` -- checked against plain numpy."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

import gradsparse as gs
from gradsparse import compress
from gradsparse.compress import Compressor, ErrorFeedback, available_compressors, make_compressor
from inputs import DTYPES, bits, gen, make, requires_torch, to_f64, torch
from reference import sparsify_ref

ALL = ["none", "topk", "cwmp", "randomk", "threshold", "dgc", "qsgd", "qsgd-l2", "terngrad", "sign",
       "atomo-entry", "atomo-svd", "atomo-fourier"]


def _update(seed=0, dtype=np.float32):
    rng = np.random.default_rng(seed)
    return {"w": rng.standard_normal((16, 3, 3, 3)).astype(dtype), "b": rng.standard_normal(16).astype(dtype),
            "fc": rng.standard_normal((10, 40)).astype(dtype)}


COSTS = {"w": 2.0, "b": 1.0, "fc": 3.0}


# ----------------------------------------------------------------------------- the layer

def test_import_does_not_import_torch():
    code = ("import sys, gradsparse, gradsparse.compress, gradsparse.feedback, gradsparse.fl.compressors; "
            "assert 'torch' not in sys.modules, 'torch imported'; print('ok')")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"


def test_one_error_feedback_and_one_registry():
    import gradsparse.feedback
    import gradsparse.fl.compressors as flc
    assert gs.ErrorFeedback is ErrorFeedback is gradsparse.feedback.ErrorFeedback
    assert flc.make_compressor is make_compressor and flc.Compressor is Compressor
    assert flc.available_compressors() == available_compressors() == sorted(ALL)


@pytest.mark.parametrize("name", ALL)
def test_every_compressor_sends_a_real_payload(name):
    upd = _update()
    comp = make_compressor(name, {"tau": 0.5} if name == "threshold" else {})
    out = comp.compress(upd, seed=3, costs=COSTS)
    assert isinstance(out.payload, bytes) and out.nbytes == len(out.payload) > 0
    if name == "qsgd-l2":  # u32 length, then two gradsparse.encode messages (norms, sign-coded codes)
        n = int.from_bytes(out.payload[:4], "little")
        assert isinstance(gs.decode(out.payload[4:4 + n]), dict) and isinstance(gs.decode(out.payload[4 + n:]), dict)
    else:
        assert isinstance(gs.decode(out.payload), dict)  # a gradsparse.encode message
    assert set(out.selected) == set(upd)
    assert all(0 <= out.selected[n] <= upd[n].size for n in upd)
    dec = comp.decompress(out.payload, upd)
    assert {n: v.shape for n, v in dec.items()} == {n: v.shape for n, v in upd.items()}
    assert all(v.dtype == np.float32 for v in dec.values())
    # deterministic for a seed
    assert comp.compress(upd, seed=3, costs=COSTS).payload == out.payload


@pytest.mark.parametrize("name", ALL)
def test_settings_are_json_with_resolved_defaults(name):
    comp = make_compressor(name)
    s = comp.settings()
    assert json.loads(json.dumps(s)) == s
    assert set(s) == set(type(comp).params)
    for k, v in type(comp).params.items():
        if v is not None:
            assert s[k] == v
    s["new"] = 1  # a copy
    assert "new" not in comp.settings()


def test_cwmp_settings_resolve_the_default_ratio():
    assert make_compressor("cwmp").settings()["ratio"] == 0.01
    assert make_compressor("cwmp", {"energy": 0.1}).settings()["ratio"] is None


def test_parameters_must_be_json():
    class Free(Compressor):  # not registered
        name, params = "free", {"x": 1}

    assert Free(x=[1, "a", None]).settings() == {"x": [1, "a", None]}
    with pytest.raises(ValueError, match="params"):
        Free(x=object())
    with pytest.raises(ValueError, match="params"):
        Free(x=float("nan"))


def test_unknown_names_and_parameters():
    with pytest.raises(ValueError, match="unknown compressor"):
        make_compressor("nope")
    with pytest.raises(ValueError, match="has no parameter"):
        make_compressor("topk", {"bits": 4})


@requires_torch
@pytest.mark.parametrize("name", ["topk", "cwmp", "qsgd", "sign", "atomo-svd"])
def test_torch_tensors_give_the_numpy_payload(name):
    upd = _update(1)
    comp = make_compressor(name)
    ref = comp.compress(upd, seed=5, costs=COSTS).payload
    got = comp.compress({n: torch.from_numpy(v.copy()) for n, v in upd.items()}, seed=5, costs=COSTS).payload
    assert got == ref


@requires_torch
def test_bfloat16_tensors_are_widened_exactly():
    upd = {n: torch.from_numpy(v).to(torch.bfloat16) for n, v in _update(2).items()}
    as32 = {n: t.float().numpy() for n, t in upd.items()}
    comp = make_compressor("topk", {"ratio": 0.1})
    assert comp.compress(upd, seed=0).payload == comp.compress(as32, seed=0).payload


# ----------------------------------------------------------------------------- feedback around a compressor

@pytest.mark.parametrize("name", ALL)
def test_feedback_keeps_what_the_payload_does_not_carry(name):
    comp = make_compressor(name, {"tau": 0.5} if name == "threshold" else {})
    ef = ErrorFeedback()
    e = {n: np.zeros(v.shape, np.float32) for n, v in _update().items()}
    for step in range(3):
        upd = _update(10 + step)
        acc = {n: e[n] + upd[n] for n in upd}  # float32, as the residual is
        out = comp.compress(upd, seed=step, costs=COSTS, feedback=ef)
        assert out.payload == comp.compress(acc, seed=step, costs=COSTS).payload
        sent = comp.decompress(out.payload, upd)
        for n in upd:
            e[n] = acc[n] - sent[n]
            got = ef.residual(n)
            assert got.dtype == np.float32 and got.shape == upd[n].shape
            np.testing.assert_array_equal(got, e[n])


@pytest.mark.parametrize("dtype", [np.float16, np.float64])
def test_feedback_residual_precision(dtype):
    upd = _update(3, dtype)
    ef = ErrorFeedback()
    comp = make_compressor("topk", {"ratio": 0.05})
    out = comp.compress(upd, seed=0, feedback=ef)
    want = np.float64 if dtype == np.float64 else np.float32
    for n, v in upd.items():
        r = ef.residual(n)
        assert r.dtype == want
        sent = comp.decompress(out.payload, upd)[n]
        np.testing.assert_array_equal(r + sent, v.astype(want))


def test_rejected_call_leaves_the_residuals_untouched():
    ef = ErrorFeedback()
    comp = make_compressor("cwmp")
    comp.compress(_update(), seed=0, costs=COSTS, feedback=ef)
    before = ef.state_dict()
    for kw, err in [({"seed": -1, "costs": COSTS}, ValueError), ({"seed": 0}, ValueError),  # cwmp needs costs
                    ({"seed": 0, "costs": {"w": 1.0}}, ValueError)]:
        with pytest.raises(err):
            comp.compress(_update(1), feedback=ef, **kw)
    bad = _update(1)
    bad["b"][3] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        comp.compress(bad, seed=0, costs=COSTS, feedback=ef)
    with pytest.raises(TypeError, match="feedback"):
        comp.compress(_update(1), seed=0, costs=COSTS, feedback={})
    after = ef.state_dict()
    assert set(after) == set(before)
    for n in before:
        np.testing.assert_array_equal(after[n], before[n])


def test_apply_checks_what_send_returns():
    ef = ErrorFeedback()
    with pytest.raises(TypeError, match="send"):
        ef.apply({"a": np.ones(3, np.float32)}, None)
    with pytest.raises(ValueError, match="send"):
        ef.apply({"a": np.ones(3, np.float32)}, lambda acc: (None, {}))
    # a Sparse or a dense array per name; exact sends leave 0
    x = np.array([3.0, -1.0, 0.5], np.float32)
    res = ef.apply({"b": x}, lambda acc: ("r", {"b": gs.Sparse(np.array([0]), acc["b"][:1].copy(), (3,))}))
    assert res == "r"
    np.testing.assert_array_equal(ef.residual("b"), [0.0, -1.0, 0.5])
    ef.apply({"b": x}, lambda acc: (None, {"b": np.full(3, 0.25, np.float32)}))
    np.testing.assert_array_equal(ef.residual("b"), [2.75, -2.25, 0.75])
    with pytest.raises(ValueError, match="shape"):
        ef.apply({"b": x}, lambda acc: (None, {"b": gs.Sparse(np.array([0]), np.ones(1, np.float32), (4,))}))


def test_feedback_state_round_trips():
    comp = make_compressor("topk", {"ratio": 0.05})
    a, b = ErrorFeedback(), ErrorFeedback()
    comp.compress(_update(0), seed=0, feedback=a)
    b.load_state_dict(a.state_dict())
    pa = comp.compress(_update(1), seed=1, feedback=a).payload
    pb = comp.compress(_update(1), seed=1, feedback=b).payload
    assert pa == pb
    for n in a.names():
        np.testing.assert_array_equal(a.residual(n), b.residual(n))


# ----------------------------------------------------------------------------- compress_many

def _round_sent(kept: np.ndarray, dtype: str) -> np.ndarray:
    """The values sent for accumulated float32/float64 `kept`, in x's dtype, as floats."""
    if dtype == "float16":
        return kept.astype(np.float16).astype(np.float32)
    if dtype == "bfloat16":
        return torch.from_numpy(np.ascontiguousarray(kept, np.float32)).to(torch.bfloat16).float().numpy()
    return kept


@pytest.mark.parametrize("dtype", DTYPES)
def test_compress_many_is_global_selection_with_feedback(dtype):
    sizes, names, k = (33, 1, 100), ["p", "q", "r"], 20
    rdt = np.float64 if dtype == "float64" else np.float32
    e = [np.zeros(n, rdt) for n in sizes]
    ef = ErrorFeedback()
    for step in range(3):
        vs = [gen("ties" if step == 1 else "random", n, dtype, seed=70 + 3 * step + i) for i, n in enumerate(sizes)]
        xs = [make(v, dtype) for v in vs]
        acc = [(ei + v.astype(rdt)).astype(rdt) for ei, v in zip(e, vs)]
        idx = sparsify_ref(np.concatenate(acc), k=k)  # ties by position in the concatenation
        got = ef.compress_many(dict(zip(names, xs)), k)
        assert list(got) == names
        off = 0
        for i, n in enumerate(names):
            sel = idx[(idx >= off) & (idx < off + sizes[i])] - off
            off += sizes[i]
            np.testing.assert_array_equal(np.asarray(got[n].indices), sel)
            assert got[n].values.dtype == xs[i].dtype
            sent = _round_sent(acc[i][sel], dtype)
            np.testing.assert_array_equal(to_f64(got[n].values), sent.astype(np.float64))
            e[i] = acc[i].copy()
            e[i][sel] = acc[i][sel] - sent
            r = ef.residual(n)
            assert r.dtype == (torch.float64 if dtype == "float64" else torch.float32) if dtype == "bfloat16" \
                else r.dtype == rdt
            np.testing.assert_array_equal(bits(to_f64(r).astype(rdt)), bits(e[i]))


@pytest.mark.parametrize("dtype", DTYPES)
def test_compress_many_of_one_tensor_is_compress(dtype):
    a, b = ErrorFeedback(), ErrorFeedback()
    for step in range(3):
        x = make(gen(["random", "ties", "signed_zeros"][step], 257, dtype, seed=80 + step), dtype)
        one = a.compress("x", x, 9)
        many = b.compress_many({"x": x}, 9)["x"]
        np.testing.assert_array_equal(bits(one.values), bits(many.values))
        np.testing.assert_array_equal(np.asarray(one.indices), np.asarray(many.indices))
        np.testing.assert_array_equal(bits(a.residual("x")), bits(b.residual("x")))


def test_compress_many_arguments():
    ef = ErrorFeedback()
    x = {"a": np.ones(4, np.float32)}
    with pytest.raises(ValueError, match="exactly one"):
        ef.compress_many(x)
    with pytest.raises(ValueError, match="costs"):
        ef.compress_many(x, 2, costs=[1.0, 2.0])
    with pytest.raises(TypeError, match="update"):
        ef.compress_many([np.ones(4)], 2)
    with pytest.raises(ValueError, match="empty"):
        ef.compress_many({"a": np.ones(0, np.float32)}, 1)
    assert ef.residual("a") is None  # nothing was touched
    got = ef.compress_many({"a": np.array([1, 2, 3, 4], np.float32), "b": np.array([9], np.float32)}, 2,
                           costs=[1.0, 100.0])
    np.testing.assert_array_equal(got["a"].indices, [2, 3])  # b is too expensive
    np.testing.assert_array_equal(ef.residual("b"), [9])
