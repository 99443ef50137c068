"""ErrorFeedback: acc = x + e; sent = selection of acc; e <- acc - sent, simulated in numpy
step by step (float16/bfloat16 updates keep a float32 residual)."""
from __future__ import annotations

import numpy as np
import pytest

import gradsparse
from inputs import is_tensor, requires_torch, torch
from inputs import DTYPES, SIZES, bits, costs_for, gen, make, to_f64
from reference import sparsify_ref


def _bf16_round(a32: np.ndarray) -> np.ndarray:
    """float32 -> bfloat16 (nearest even) -> float32, via torch."""
    return torch.from_numpy(np.ascontiguousarray(a32, dtype=np.float32)).to(torch.bfloat16).float().numpy()


class Simulated:
    """The documented error-feedback semantics in plain numpy."""

    def __init__(self, dtype: str, n: int):
        self.dtype = dtype
        self.e = np.zeros(n, dtype=np.float64 if dtype == "float64" else np.float32)

    def step(self, v: np.ndarray, **kw):
        """v: float64 values of x. Returns (indices, sent values as float64)."""
        acc = (self.e + v.astype(self.e.dtype)).astype(self.e.dtype)  # in the residual's precision
        idx = sparsify_ref(acc, **kw)
        kept = acc[idx]
        if self.dtype == "float16":
            with np.errstate(over="ignore"):
                sent = kept.astype(np.float16).astype(np.float32)
        elif self.dtype == "bfloat16":
            sent = _bf16_round(kept)
        else:
            sent = kept
        self.e = acc.copy()
        self.e[idx] = kept - sent
        return idx, sent.astype(np.float64)


def check_step(ef, sim, name, v, x, **kw):
    old = ef.residual(name)
    old = np.zeros(v.size) if old is None else to_f64(old).reshape(-1)
    res = ef.compress(name, x, **kw)
    idx, sent = sim.step(v.reshape(-1), **kw)
    is_torch = is_tensor(x)
    assert isinstance(res.values, torch.Tensor if is_torch else np.ndarray)
    assert res.values.dtype == x.dtype
    assert res.shape == tuple(x.shape)
    got_idx = res.indices.numpy() if is_torch else res.indices
    np.testing.assert_array_equal(got_idx, idx)
    np.testing.assert_array_equal(to_f64(res.values), sent)
    new = ef.residual(name)
    assert isinstance(new, torch.Tensor if is_torch else np.ndarray)
    assert tuple(new.shape) == tuple(x.shape)
    np.testing.assert_array_equal(bits(np.ascontiguousarray(to_f64(new).reshape(-1)).astype(sim.e.dtype)), bits(sim.e))
    # residual + sent == x + old residual, in the residual's precision
    dense = to_f64(res.to_dense()).reshape(-1)
    lhs = (to_f64(new).reshape(-1) + dense).astype(sim.e.dtype)
    rhs = (old + v.reshape(-1)).astype(sim.e.dtype) if sim.e.dtype == np.float64 else \
        (old.astype(np.float32) + v.reshape(-1).astype(np.float32))
    np.testing.assert_array_equal(bits(lhs), bits(rhs))
    return res


@pytest.mark.parametrize("n", SIZES)
def test_feedback_float32_sizes(engine, n):
    ef, sim = gradsparse.ErrorFeedback(), Simulated("float32", n)
    for step in range(3):
        v = gen("random", n, "float32", seed=50 + step)
        x = make(v, "float32")
        check_step(ef, sim, "w", v, x, k=max(1, n // 10))


@pytest.mark.parametrize("dtype", DTYPES)
def test_feedback_dtypes(simd, dtype):
    n = 1000
    ef, sim = gradsparse.ErrorFeedback(), Simulated(dtype, n)
    for step in range(5):
        v = gen("random", n, dtype, seed=60 + step)
        x = make(v, dtype)
        check_step(ef, sim, "layer", v, x, k=37)


@pytest.mark.parametrize("dtype", DTYPES)
def test_feedback_budgets_and_costs(dtype):
    n = 700
    c = costs_for(n, seed=61, dtype=np.float32)
    for kw in ({"ratio": 0.05}, {"budget": 20.0}, {"k": 30, "cost": c}, {"budget": 15.0, "cost": c},
               {"k": 10, "cost": 2.0}, {"k": 25, "cost": c, "q": 1.0, "alpha": 0.5}):
        ef, sim = gradsparse.ErrorFeedback(), Simulated(dtype, n)
        for step in range(3):
            v = gen("ties" if step == 1 else "random", n, dtype, seed=62 + step)
            check_step(ef, sim, "p", v, make(v, dtype), **kw)


def test_feedback_residual_accumulates_unsent_values():
    ef = gradsparse.ErrorFeedback()
    x = np.array([1.0, -3.0, 0.5, 2.0], np.float32)
    r = ef.compress("a", x, k=1)
    np.testing.assert_array_equal(r.indices, [1])
    np.testing.assert_array_equal(ef.residual("a"), [1.0, 0.0, 0.5, 2.0])
    r = ef.compress("a", x, k=2)  # acc = [2, -3, 1, 4]
    np.testing.assert_array_equal(r.indices, [1, 3])
    np.testing.assert_array_equal(r.values, [-3.0, 4.0])
    np.testing.assert_array_equal(ef.residual("a"), [2.0, 0.0, 1.0, 0.0])
    np.testing.assert_array_equal(x, [1.0, -3.0, 0.5, 2.0])  # the input is untouched


def test_feedback_float16_rounding_is_fed_back():
    ef = gradsparse.ErrorFeedback()
    x32 = np.array([1.0 + 2.0**-12], np.float32)  # not representable in float16: sent as 1.0
    ef.load_state_dict({"h": np.array([2.0**-12, 0.0], np.float32)})
    r = ef.compress("h", np.array([1.0, 0.0], np.float16), k=1)
    np.testing.assert_array_equal(r.indices, [0])
    assert r.values.dtype == np.float16 and r.values[0] == np.float16(1.0)
    np.testing.assert_array_equal(ef.residual("h"), np.array([x32[0] - 1.0, 0.0], np.float32))


def test_feedback_names_are_independent():
    ef = gradsparse.ErrorFeedback()
    a, b = np.ones(10, np.float32), np.arange(5, dtype=np.float64)
    ef.compress("a", a, k=2)
    ef.compress("b", b, k=1)
    assert sorted(ef.names()) == ["a", "b"]
    assert "a" in ef and "c" not in ef
    assert ef.residual("c") is None
    assert ef.residual("a").dtype == np.float32 and ef.residual("b").dtype == np.float64
    np.testing.assert_array_equal(ef.residual("b"), [0, 1, 2, 3, 0])
    ef.reset("a")
    assert "a" not in ef and "b" in ef
    ef.reset("zzz")  # unknown name: nothing happens
    ef.reset()
    assert ef.names() == []


def test_feedback_residual_is_a_copy():
    ef = gradsparse.ErrorFeedback()
    ef.compress("a", np.arange(6, dtype=np.float32).reshape(2, 3), k=1)
    r = ef.residual("a")
    assert r.shape == (2, 3)
    r[...] = 100
    np.testing.assert_array_equal(ef.residual("a"), [[0, 1, 2], [3, 4, 0]])


@requires_torch
def test_state_dict_round_trip(simd):
    rng = np.random.default_rng(63)
    xs = [rng.standard_normal(500).astype(np.float32) for _ in range(6)]
    ts = [torch.from_numpy(rng.standard_normal((20, 10))).to(torch.bfloat16) for _ in range(6)]
    ef1 = gradsparse.ErrorFeedback()
    for i in range(3):
        ef1.compress("np", xs[i], k=20)
        ef1.compress("torch", ts[i], k=7)
    state = ef1.state_dict()
    assert isinstance(state["np"], np.ndarray) and is_tensor(state["torch"])
    assert state["torch"].dtype == torch.float32 and tuple(state["torch"].shape) == (20, 10)
    ef2 = gradsparse.ErrorFeedback()
    ef2.load_state_dict(state)
    state["np"][...] = 1e6  # load_state_dict copies
    for i in range(3, 6):
        a, b = ef1.compress("np", xs[i], k=20), ef2.compress("np", xs[i], k=20)
        np.testing.assert_array_equal(a.indices, b.indices)
        np.testing.assert_array_equal(bits(a.values), bits(b.values))
        a, b = ef1.compress("torch", ts[i], k=7), ef2.compress("torch", ts[i], k=7)
        np.testing.assert_array_equal(a.indices.numpy(), b.indices.numpy())
        np.testing.assert_array_equal(bits(a.values), bits(b.values))
    for name in ("np", "torch"):
        np.testing.assert_array_equal(bits(ef1.residual(name)), bits(ef2.residual(name)))


def test_feedback_large_threads(engine):
    n = 300_003  # large enough for the threaded residual update and the sampled selection
    ef, sim = gradsparse.ErrorFeedback(), Simulated("float32", n)
    for step in range(2):
        v = gen("random", n, "float32", seed=64 + step)
        check_step(ef, sim, "big", v, make(v, "float32"), k=3000)


def test_feedback_errors():
    ef = gradsparse.ErrorFeedback()
    with pytest.raises(TypeError, match="name"):
        ef.compress(3, np.ones(4, np.float32), k=1)
    with pytest.raises(ValueError, match="x"):
        ef.compress("a", np.ones(0, np.float32), k=1)
    ef.compress("a", np.ones(4, np.float32), k=1)
    with pytest.raises(ValueError, match="x"):
        ef.compress("a", np.ones(5, np.float32), k=1)  # size changed
    with pytest.raises(ValueError, match="x"):
        ef.compress("a", np.ones(4, np.float64), k=1)  # residual dtype changed
    with pytest.raises(ValueError, match="k"):
        ef.compress("a", np.ones(4, np.float32), k=5)
    with pytest.raises(TypeError, match="state"):
        ef.load_state_dict([("a", np.ones(3))])
    with pytest.raises(TypeError, match="state"):
        ef.load_state_dict({"a": np.ones(3, np.int32)})
    with pytest.raises(TypeError, match="state"):
        ef.load_state_dict({1: np.ones(3, np.float32)})


@pytest.mark.parametrize("bad", [
    {"k": 0},
    {"ratio": 2.0},
    {"k": 1, "cost": np.array([1.0, np.nan, 1.0, 1.0], np.float32)},
    {"k": 1, "cost": np.array([1.0, 0.0, 1.0, 1.0])},
    {"k": 1, "q": 0.0},
])
def test_rejected_call_leaves_residual_untouched(bad):
    ef = gradsparse.ErrorFeedback()
    x = np.array([4.0, 1.0, 2.0, 3.0], np.float32)
    ef.compress("w", x, k=1)
    before = ef.residual("w").copy()
    with pytest.raises(ValueError):
        ef.compress("w", x, **bad)
    np.testing.assert_array_equal(ef.residual("w"), before)
