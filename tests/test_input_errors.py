"""Hostile arguments to the public API: every bad input raises ValueError or TypeError whose
message names the argument ("name: what is wrong"), never another exception type (a
pybind11 "incompatible function arguments" dump, numpy's "truth value of an array is
ambiguous", OverflowError, RuntimeError from torch), and finite inputs never give silent
NaN/inf outputs.

The sweep below is a table: for each call, a base of valid arguments and the parameters
to attack; every hostile value replaces one parameter at a time. A call may also accept a
value (some are valid, e.g. a scalar x is a 0-d array); if it raises, the message must
start with the parameter's name (or one of its aliases).
"""
from __future__ import annotations

import re

import numpy as np
import pytest

import gradsparse as gs
from gradsparse import atomo

HOSTILE = [-1, 0, 2**70, -(2**70), 1.5, float("nan"), float("inf"), -0.5, True, False, None, "2", b"x", [1], (2,),
           np.int64(3), np.float32(2.0), object(), 1 + 1j, np.array([1, 2])]

X2 = np.arange(1, 17, dtype=np.float32).reshape(4, 4)
V = np.arange(1, 9, dtype=np.float32)
SP = gs.Sparse(np.array([1, 3]), np.array([1.0, 2.0], np.float32), (8,))
PAYLOAD = gs.encode(SP)


def _ef_compress(**kw):
    return gs.ErrorFeedback().compress(**kw)


def _ef_load(state):
    return gs.ErrorFeedback().load_state_dict(state)


# (label, function, valid keyword arguments, parameters to attack)
CALLS = [
    ("sparsify", gs.sparsify, dict(x=V, k=2), ["x", "k"]),
    ("sparsify ratio", gs.sparsify, dict(x=V, ratio=0.5), ["ratio", "q", "alpha"]),
    ("sparsify budget", gs.sparsify, dict(x=V, budget=2.0, cost=1.0), ["budget", "cost"]),
    ("sparsify_many", gs.sparsify_many, dict(xs=[V, V], k=2), ["xs", "k"]),
    ("topk", gs.topk, dict(input=X2, k=2), ["input", "k", "dim", "largest", "sorted"]),
    ("threshold", gs.threshold, dict(x=V, tau=1.0), ["x", "tau"]),
    ("random_k", gs.random_k, dict(x=V, k=2, seed=1), ["x", "k", "seed", "scale"]),
    ("k_from_ratio", gs.k_from_ratio, dict(ratio=0.5, n=10), ["ratio", "n"]),
    ("encode", gs.encode, dict(update=SP), ["update", "index_codec", "value_codec", "bits", "block", "seed"]),
    ("encode qsgd", gs.encode, dict(update=SP, value_codec="qsgd"), ["bits", "block", "seed"]),
    ("encoded_size", gs.encoded_size, dict(update=SP), ["update", "index_codec", "value_codec", "bits", "block",
                                                        "seed"]),
    ("decode", gs.decode, dict(data=PAYLOAD), ["data", "to", "verify_checksum"]),
    ("set_num_threads", gs.set_num_threads, dict(n=1), ["n"]),
    ("set_simd_level", gs.set_simd_level, dict(level="scalar"), ["level"]),
    ("Sparse", gs.Sparse, dict(indices=[1], values=[1.0], shape=(4,)), ["indices", "values", "shape"]),
    ("StreamingSelector", gs.StreamingSelector, dict(k=2), ["k", "q", "alpha"]),
    ("StreamingSelector ratio", gs.StreamingSelector, dict(ratio=0.5, total=10), ["ratio", "total"]),
    ("PreparedCost", gs.PreparedCost, dict(cost=V), ["cost"]),
    ("ErrorFeedback.compress", _ef_compress, dict(name="a", x=V, k=2), ["name", "x", "k"]),
    ("ErrorFeedback.load_state_dict", _ef_load, dict(state={"a": V}), ["state"]),
    ("atomo.sample", atomo.sample, dict(x=X2, budget=2), ["x", "atoms", "budget", "seed"]),
    ("atomo.sample svd", atomo.sample, dict(x=X2, atoms="svd", budget=2), ["layout", "vector", "svd"]),
    ("atomo.sample randomized", atomo.sample, dict(x=X2, atoms="svd", budget=2, svd="randomized"),
     ["rank", "oversample", "power_iters", "seed"]),
    ("atomo.sample vector", atomo.sample, dict(x=V, atoms="svd", budget=2), ["vector"]),
    ("atomo.probabilities", atomo.probabilities, dict(lam=V, budget=2), ["lam", "budget"]),
    ("atomo.qsgd", atomo.qsgd, dict(x=V, levels=4), ["x", "levels", "seed"]),
    ("atomo.terngrad", atomo.terngrad, dict(x=V), ["x", "seed"]),
]

# Names a message may lead with for a parameter, besides its own: `input` is called x in
# messages, decode reports a bad payload as "payload: ...", and some messages name a
# group ("k, ratio, budget: give exactly one of them"). For x (and topk's input), a scalar
# is a valid 0-d array, so the error may name k (k > 1 element).
ALIASES = {"input": ("input", "x", "k"), "data": ("data", "payload"), "x": ("x", "k"), "ratio": ("ratio", "k"),
           "budget": ("budget", "k")}


def _names_argument(msg: str, param: str) -> bool:
    head = msg.split(":", 1)[0]
    return any(re.search(rf"(^|[\s,\[(]){re.escape(n)}\b", head) for n in ALIASES.get(param, (param,)))


@pytest.mark.parametrize("label,fn,base,param",
                         [(c[0], c[1], c[2], p) for c in CALLS for p in c[3]],
                         ids=[f"{c[0]}-{p}" for c in CALLS for p in c[3]])
def test_hostile_arguments_name_the_argument(label, fn, base, param):
    level, threads = gs.get_simd_level(), gs.get_num_threads()
    problems = []
    try:
        for h in HOSTILE:
            kw = dict(base)
            kw[param] = h
            try:
                fn(**kw)
            except (TypeError, ValueError) as e:
                msg = str(e)
                if "incompatible function arguments" in msg or not _names_argument(msg, param):
                    problems.append(f"{param}={h!r}: {type(e).__name__}: {msg[:120]}")
            except Exception as e:  # noqa: BLE001 - any other type is the bug under test
                problems.append(f"{param}={h!r}: {type(e).__name__}: {str(e)[:120]}")
    finally:
        gs.set_simd_level(level)
        gs.set_num_threads(threads)
    assert not problems, f"{label}:\n" + "\n".join(problems)


# ---------------------------------------------------------------- specific cases from the review

@pytest.mark.parametrize("budget,exc", [("2", TypeError), (True, TypeError), (np.bool_(True), TypeError),
                                        (1 + 0j, TypeError), (-1, ValueError), (float("inf"), ValueError)])
def test_atomo_budget_must_be_a_real_number(budget, exc):
    with pytest.raises(exc, match="^budget"):
        atomo.sample(V, budget=budget)
    with pytest.raises(exc, match="^budget"):
        atomo.probabilities(V, budget)


@pytest.mark.parametrize("seed", [-1, 2**64, -(2**70)])
def test_atomo_seed_out_of_range(seed):
    for call in (lambda: atomo.sample(V, budget=2, seed=seed), lambda: atomo.qsgd(V, 2, seed),
                 lambda: atomo.terngrad(V, seed)):
        with pytest.raises(ValueError, match="^seed"):
            call()


def test_atomo_seed_full_range_accepted():
    atomo.sample(V, budget=2, seed=2**64 - 1)
    atomo.qsgd(V, 2, 2**64 - 1)


@pytest.mark.parametrize("name,value", [("rank", 2**70), ("rank", 0), ("oversample", -1), ("power_iters", -(2**70)),
                                        ("rank", 2.0), ("oversample", None), ("power_iters", float("inf"))])
def test_atomo_randomized_ints(name, value):
    with pytest.raises((TypeError, ValueError), match=f"^{name}"):
        atomo.sample(X2, atoms="svd", budget=2, svd="randomized", **{name: value})


def test_atomo_levels_huge():
    with pytest.raises(ValueError, match="^levels"):
        atomo.qsgd(V, 2**70)


def test_set_num_threads_huge():
    with pytest.raises(ValueError, match="^n"):
        gs.set_num_threads(2**70)


def test_string_choices_given_arrays():
    with pytest.raises(ValueError, match="^atoms"):
        atomo.sample(V, atoms=np.array(["entry", "svd"]), budget=2)
    with pytest.raises(ValueError, match="^to"):
        gs.decode(PAYLOAD, to=np.array([1, 2]))
    with pytest.warns(DeprecationWarning), pytest.raises(ValueError, match="^like"):
        gs.decode(PAYLOAD, like=np.array([1, 2]))  # the deprecated old name of to=
    with pytest.raises(TypeError, match="^verify_checksum"):
        gs.decode(PAYLOAD, verify_checksum=np.array([1, 2]))
    with pytest.raises(TypeError, match="^scale"):
        gs.random_k(V, 2, 0, scale=np.array([1, 2]))


# ---------------------------------------------------------------- torch tensors of other kinds

def _torch():
    return pytest.importorskip("torch", reason="torch tensor inputs")


def _tensor_calls(torch):
    return [
        ("x", lambda t: gs.sparsify(t, 1)),
        ("x", lambda t: gs.threshold(t, 0.5)),
        ("x", lambda t: gs.random_k(t, 1, 0)),
        ("input", lambda t: gs.topk(t, 1)),
        ("update", lambda t: gs.encode(t)),
        ("x", lambda t: gs.ErrorFeedback().compress("a", t, 1)),
        ("x", lambda t: atomo.sample(t, budget=1)),
        ("x", lambda t: atomo.qsgd(t, 2)),
        ("cost", lambda t: gs.PreparedCost(t)),
        ("indices", lambda t: gs.encode(gs.Sparse(t, torch.ones(2), (10,)))),
        ("values", lambda t: gs.encode(gs.Sparse(torch.arange(2), t, (10,)))),
    ]


@pytest.mark.parametrize("kind", ["nested", "sparse_coo", "sparse_csr"])
def test_torch_nested_and_sparse_tensors(kind):
    torch = _torch()
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if kind == "nested":
            t = torch.nested.nested_tensor([torch.rand(2), torch.rand(3)])
        elif kind == "sparse_coo":
            t = torch.rand(6).to_sparse()
        else:
            t = torch.rand(2, 3).to_sparse_csr()
    for name, call in _tensor_calls(torch):
        with pytest.raises(TypeError, match=f"^{name}: .*(nested|sparse)"):
            call(t)


def test_torch_negative_views_are_read_as_their_values():
    torch = _torch()
    base = torch.tensor([3.0, -1.0, 4.0, -1.5, 0.5, 9.0])
    neg = torch._neg_view(base)
    assert neg.is_neg()
    plain = -base
    r1, r2 = gs.sparsify(neg, 2), gs.sparsify(plain, 2)
    assert torch.equal(r1.indices, r2.indices) and torch.equal(r1.values, r2.values)
    assert gs.encode(neg) == gs.encode(plain)
    np.testing.assert_array_equal(atomo.sample(neg, budget=3, seed=1).to_dense(),
                                  atomo.sample(plain, budget=3, seed=1).to_dense())
    assert torch.equal(gs.threshold(neg, 2.0).values, gs.threshold(plain, 2.0).values)
    idx_neg = torch._neg_view(torch.tensor([-1, -4]))
    assert gs.decode(gs.encode(gs.Sparse(idx_neg, torch.ones(2), (10,)))).indices.tolist() == [1, 4]


def test_torch_negative_view_as_topk_out_is_refused():
    torch = _torch()
    x = torch.rand(3, 5)
    vals = torch._neg_view(torch.empty(3, 2))
    with pytest.raises(ValueError, match="^out"):
        gs.topk(x, 2, out=(vals, torch.empty(3, 2, dtype=torch.int64)))


def test_error_feedback_state_with_bfloat16_names_the_entry():
    torch = _torch()
    ef = gs.ErrorFeedback()
    with pytest.raises(TypeError, match=r"^state\['w'\]: .*bfloat16"):
        ef.load_state_dict({"w": torch.ones(3, dtype=torch.bfloat16)})
    with pytest.raises(TypeError, match=r"^state\['w'\]"):
        ef.load_state_dict({"w": None})
    ef.load_state_dict({"w": torch._neg_view(torch.ones(3))})  # a neg view is read as its values
    np.testing.assert_array_equal(ef.residual("w").numpy(), -np.ones(3, np.float32))


def test_atomo_accepts_bfloat16_tensor():
    torch = _torch()
    x = torch.tensor([1.0, -2.0, 3.0], dtype=torch.bfloat16)
    assert atomo.sample(x, budget=3, seed=0).to_dense().tolist() == [1.0, -2.0, 3.0]


# ---------------------------------------------------------------- finite in, finite out

def test_qsgd_norm_overflowing_float32_is_refused():
    x = np.full(16, 2e38, np.float32)  # finite, but ||x||_2 = 8e38 is not a float32
    with pytest.raises(ValueError, match="^x: .*norm"):
        atomo.qsgd(x, 4)


def test_qsgd_large_finite_norm_decodes_finite():
    x = np.zeros(4, np.float32)
    x[0] = 3e38  # the norm is 3e38: scale * code overflows float32 before the division
    for seed in range(4):
        d = atomo.qsgd(x, 4, seed).to_dense()
        assert np.isfinite(d).all()
        assert d[0] == np.float32(3e38)
    q = atomo.QuantizedUpdate("qsgd", (2,), np.array([4, -3], np.int32), 3.3e38, 4)
    np.testing.assert_array_equal(q.to_dense(), np.array([3.3e38, -3.3e38 * 3 / 4], np.float32))


def test_qsgd_ordinary_results_unchanged():
    x = np.random.default_rng(3).standard_normal(50).astype(np.float32)
    q = atomo.qsgd(x, 4, 7)
    expect = (np.float32(q.scale) * q.codes.astype(np.float32) / np.float32(4)).reshape(q.shape)
    np.testing.assert_array_equal(q.to_dense(), expect)


def test_atomo_entry_value_overflow_is_refused():
    x = np.full(100, 1e37, np.float32)  # lam / p = sum |x| / budget = 1e39
    with pytest.raises(ValueError, match="^x: .*overflows float32"):
        atomo.sample(x, budget=1, seed=1)


def test_random_k_scale_float16_large_ratio_is_finite():
    n, k = 100_000, 1  # n / k = 1e5 is not a float16
    x = np.full(n, 0.001, np.float16)
    got = gs.random_k(x, k, 3, scale=True).values
    assert got.dtype == np.float16 and np.isfinite(got).all()
    assert got[0] == np.float16(np.float32(x[0]) * np.float32(n / k))


@pytest.mark.parametrize("dtype,big", [(np.float16, 60000.0), (np.float32, 3e38), (np.float64, 1.5e308)])
def test_random_k_scale_overflow_is_refused(dtype, big):
    x = np.full(10, big, dtype)
    with pytest.raises(ValueError, match="^scale: .*overflows"):
        gs.random_k(x, 2, 3, scale=True)


def test_random_k_scale_bfloat16_overflow_is_refused():
    torch = _torch()
    x = torch.full((10,), 3e38, dtype=torch.bfloat16)
    with pytest.raises(ValueError, match="^scale: .*bfloat16"):
        gs.random_k(x, 2, 3, scale=True)


def test_random_k_scale_float16_ordinary_unchanged():
    x = (np.random.default_rng(1).standard_normal(1000)).astype(np.float16)
    s = gs.random_k(x, 3, 5, scale=True)
    plain = gs.random_k(x, 3, 5)
    np.testing.assert_array_equal(s.values, (plain.values * np.float16(1000 / 3)).astype(np.float16))


def test_random_k_inf_input_stays_inf():
    x = np.array([np.inf, 1.0, 2.0, 3.0], np.float32)
    got = gs.random_k(x, 4, 0, scale=True)
    assert np.isinf(got.values[0]) and np.isfinite(got.values[1:]).all()


@pytest.mark.parametrize("svd", ["exact", "randomized"])
def test_atomo_svd_singular_value_overflow_names_x(svd):
    x = np.full((4, 4), 3e38, np.float32)  # sigma = 1.2e39
    with pytest.raises(ValueError, match="^x: .*singular value overflows float32"):
        atomo.sample(x, "svd", budget=1, svd=svd)
