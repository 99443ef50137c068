"""The EvoFed benchmark (python -m gradsparse.bench --suite evofed): its quick mode runs and
verifies every baseline against gradsparse; the baselines themselves equal a float64
reference built from the materialised population; the check rejects a wrong answer."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from gradsparse import _core
from gradsparse.bench import build_parser
from gradsparse.bench import evofed as be
from gradsparse.bench.common import Out

TINY = [be.Case("tiny", 300, 6, 1, 0.35, 0.02), be.Case("tiny-p7", 103, 8, 7, 0.4, 0.05)]


def reference(case: be.Case, inp: be.Inputs):
    """F (P, N) and g (d,) in float64, member by member, chunk by chunk, from the definitions."""
    z = be.population(case, inp).astype(np.float64)
    theta, deltas = inp.theta.astype(np.float64), inp.deltas.astype(np.float64)
    F = np.empty((case.p, case.n))
    g = np.empty(case.d)
    for c in range(case.p):
        sl = slice(inp.bounds[c], inp.bounds[c + 1])
        x = theta[sl] + case.sigma * z[:, sl]                                   # (N, m_c)
        dist = np.sqrt(((x[None] - (theta[sl] + deltas[:, sl])[:, None]) ** 2).sum(axis=2))  # (K, N)
        shaped = (dist - dist.mean(axis=1, keepdims=True)) / dist.std(axis=1, keepdims=True)
        F[c] = (shaped - case.weight * (x * x).mean(axis=1)).mean(axis=0)
        g[sl] = F[c] @ z[:, sl] / (case.n * case.sigma)
    return F, g


def test_chunks_follow_the_contract():
    inp = be.make_inputs(TINY[1])
    assert inp.bounds.tolist() == [(c * 103) // 7 for c in range(8)]
    assert inp.sizes.max() - inp.sizes.min() <= 1 and inp.m == 15
    assert inp.valid.sum() == 103 and inp.valid.sum(axis=1).tolist() == inp.sizes.tolist()


def test_population_is_the_generators_with_shared_noise():
    case = TINY[1]
    inp = be.make_inputs(case)
    z = be.population(case, inp)
    for j in range(case.half):
        for c in range(case.p):
            want = np.empty(inp.sizes[c], np.float32)
            _core.evofed_noise(be.SEED, be.ROUND, j, 0, want)  # shared noise: index t - b_c
            assert np.array_equal(z[j, inp.bounds[c]:inp.bounds[c + 1]], want)
    assert np.array_equal(z[case.half:], -z[:case.half])
    full = int(np.flatnonzero(inp.sizes == inp.m)[0])  # a chunk of the block's length
    lo = inp.bounds[full]
    assert np.array_equal(be.noise_block(case, inp.m), z[:case.half, lo:lo + inp.m])


@pytest.mark.parametrize("case", TINY, ids=lambda c: c.name)
def test_baselines_equal_a_float64_reference(case):
    inp = be.make_inputs(case)
    F0, g0 = reference(case, inp)
    for F, g in (be.run_official(case, inp, be.population(case, inp)),
                 be.run_numpy(case, inp, be.noise_block(case, inp.m))):
        assert g.dtype == np.float32 and g.shape == (case.d,)
        np.testing.assert_allclose(F, F0, rtol=0, atol=2e-5)
        # (a) sums squared float32 differences as the official code: ~1e-5 of the antithetic signal
        assert np.linalg.norm(g - g0) <= 2e-4 * np.linalg.norm(g0)


@pytest.mark.parametrize("case", TINY, ids=lambda c: c.name)
def test_gradsparse_passes_the_check_and_a_wrong_answer_fails_it(case):
    inp = be.make_inputs(case)
    want = be.run_gradsparse(case, inp)
    verified = []
    be.check(case, "numpy", be.run_numpy(case, inp, be.noise_block(case, inp.m)), want, verified)
    assert verified == [f"evofed:{case.name}:numpy"]
    flipped = dataclasses.replace(case, weight=-case.weight)  # the weight term's sign wrong
    with pytest.raises(be.EvofedVerificationError, match="differs from gradsparse"):
        be.check(case, "official", be.run_official(flipped, inp, be.population(case, inp)), want, [])
    F, g = want
    with pytest.raises(be.EvofedVerificationError, match="relative"):
        be.check(case, "numpy", (F, g * np.float32(1.01)), want, [])


def test_quick_suite_runs_and_verifies():
    out = Out()
    res = be.run(out, quick=True, repeats=1, threads=(1, 2))
    names = [c.name for c in be.QUICK_CASES]
    assert res["verified"] == [f"evofed:{n}:{i}" for n in names for i in ("official", "numpy", "floor")]
    for case_res in res["cases"]:
        rows = {(r["impl"], r["threads"]) for r in case_res["rows"]}
        assert rows == {("official", "numpy"), ("numpy", "numpy"), ("numpy-given", "numpy")} | {(i, t) for i in ("gradsparse", "floor")
                                                                       for t in (1, 2)}
        for r in case_res["rows"]:
            assert r["wall_s"] > 0 and r["cpu_s"] >= 0 and r["extra_bytes"] >= 0
        official = next(r for r in case_res["rows"] if r["impl"] == "official")
        assert official["extra_bytes"] >= 2 * be.K * case_res["case"]["n"] * case_res["case"]["d"] * 4 * 0.9
    assert set(res["targets"]) == {"cpu_s", "vs_official", "vs_numpy", "vs_floor", "memory", "info_vs_numpy_given"}
    assert res["targets_case"] == "quick" and set(res["noise_normals_per_s_per_core"]) == {1, 2}
    assert sum(line.lstrip().startswith(("PASS", "FAIL")) for line in out.lines) == 5
    assert sum(line.lstrip().startswith("INFO") for line in out.lines) == 1


def test_cli_knows_the_suite():
    assert build_parser().parse_args(["--suite", "evofed", "--quick"]).suite == "evofed"
