"""ATOMO (issue 4): probabilities vs a numpy transcription of Algorithm 1, Philox, sampling
determinism across SIMD levels / threads, unbiasedness and variance, FFT/DCT and SVD vs
numpy/scipy, QSGD/TernGrad, payloads through encode/decode, and bad input."""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

import gradsparse
from gradsparse import _core
from gradsparse import atomo
from gradsparse.atomo import AtomicUpdate


# ---------------------------------------------------------------- Algorithm 1, plain numpy
def algorithm1(lam, s):
    """Direct transcription of ATOMO's Algorithm 1 (the while loop over sorted |lam|)."""
    mag = np.abs(np.asarray(lam, np.float64))
    order = np.argsort(-mag, kind="stable")
    srt = mag[order]
    n = len(srt)
    p_sorted = np.zeros(n)
    i = 0
    while i < n:
        rest = srt[i:].sum()
        if srt[i] * s <= rest:
            p_sorted[i:] = s * srt[i:] / rest if rest > 0 else 0.0
            break
        p_sorted[i] = 1.0
        s -= 1
        i += 1
    p = np.empty(n)
    p[order] = p_sorted
    return p


CASES = {
    "random": np.random.default_rng(1).standard_normal(1000),
    "ties": np.array([3.0, -3.0, 3.0, 1.0, 1.0, -1.0, 0.5, 0.5] * 5),
    "zeros": np.array([0.0, 2.0, 0.0, -1.0, 0.0, 0.5, 0.0]),
    "dominant": np.concatenate([[1e6], np.random.default_rng(2).standard_normal(200) * 1e-3]),
    "heavy": np.random.default_rng(3).standard_cauchy(500),
    "constant": np.full(64, -2.5),
    "single": np.array([4.0]),
}


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("budget", [0.5, 1, 2.5, 7, 30, 199.5, 1000, 5000])
def test_probabilities_match_algorithm1(case, budget):
    lam = CASES[case]
    p = atomo.probabilities(lam, budget)
    ref = algorithm1(lam, budget)
    np.testing.assert_allclose(p, ref, rtol=1e-9, atol=1e-12)
    nnz = np.count_nonzero(lam)
    assert p.max() <= 1.0 and p.min() >= 0.0
    assert np.all(p[lam == 0] == 0)
    assert p.sum() == pytest.approx(min(budget, nnz), rel=1e-9)


def test_probabilities_ties_are_equal_and_uncapped_is_proportional():
    lam = np.array([5.0, 5.0, 5.0, 1.0, 1.0])
    p = atomo.probabilities(lam, 2.0)
    assert p[0] == p[1] == p[2] and p[3] == p[4]
    np.testing.assert_allclose(p, 2 * np.abs(lam) / np.abs(lam).sum())


# ---------------------------------------------------------------- Philox and sampling
def test_philox_known_answers():
    # Random123's known-answer vectors for philox4x32-10.
    assert _core.philox4x32([0, 0, 0, 0], 0) == [0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8]
    assert _core.philox4x32([0xFFFFFFFF] * 4, 0xFFFFFFFFFFFFFFFF) == [0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD]
    assert _core.philox4x32([0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344], 0x299F31D0A4093822) == [
        0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1]


def test_bernoulli_sample_is_u_below_p():
    rng = np.random.default_rng(4)
    p = rng.uniform(size=301)
    idx = _core.bernoulli_sample(p, 9, 5)
    ref = [i for i in range(301) if _core.philox_uniform(9, 5, i) < p[i]]
    assert idx.tolist() == ref


@pytest.mark.parametrize("atoms", ["entry", "fourier"])
def test_same_seed_same_atoms_every_engine(engine, atoms):
    x = np.random.default_rng(5).standard_normal(300_001).astype(np.float32)
    got = atomo.sample(x, atoms=atoms, budget=5000, seed=77)
    with gradsparse.simd_level("scalar"), gradsparse.num_threads(1):
        ref = atomo.sample(x, atoms=atoms, budget=5000, seed=77)
    np.testing.assert_array_equal(got.indices, ref.indices)
    np.testing.assert_array_equal(got.values, ref.values)
    other = atomo.sample(x, atoms=atoms, budget=5000, seed=78)
    assert not np.array_equal(other.indices, ref.indices)


@pytest.mark.parametrize("atoms", ["entry", "fourier", "svd"])
def test_full_budget_is_exact(atoms):
    x = np.random.default_rng(6).standard_normal((8, 3, 3, 3)).astype(np.float32)
    upd = atomo.sample(x, atoms=atoms, budget=10_000, seed=1)
    np.testing.assert_allclose(upd.to_dense(), x, rtol=1e-4, atol=1e-5)


def _mean_and_variance(x, atoms, budget, trials):
    samples = np.stack([atomo.sample(x, atoms=atoms, budget=budget, seed=s).to_dense().astype(np.float64)
                        for s in range(trials)])
    return samples.mean(axis=0), samples.var(axis=0, ddof=1)


def _atoms_and_coefficients(x, atoms):
    """Rows: the unit-norm atoms (flattened) of x's decomposition; and the coefficients."""
    flat = x.reshape(-1).astype(np.float64)
    if atoms == "entry":
        return np.eye(flat.size), flat
    if atoms == "fourier":
        basis = np.stack([_core.idct(e) for e in np.eye(flat.size)])  # row j: j-th DCT atom
        return basis, basis @ flat
    u, s, vt = np.linalg.svd(x.astype(np.float64), full_matrices=False)
    return np.stack([np.outer(u[:, j], vt[j]).reshape(-1) for j in range(len(s))]), s


@pytest.mark.parametrize("atoms,shape", [("entry", (40,)), ("fourier", (6, 7)), ("svd", (6, 9))])
def test_unbiased_with_predicted_variance(atoms, shape):
    x = np.random.default_rng(7).standard_normal(shape).astype(np.float32)
    budget, trials = 3.0, 4000
    basis, lam = _atoms_and_coefficients(x, atoms)
    p = algorithm1(lam, budget)
    atom_var = np.where(p > 0, lam**2 * (1 / np.where(p > 0, p, 1) - 1), 0.0)
    coord_var = (basis**2).T @ atom_var  # Var(g_hat_i) = sum_j a_j[i]^2 lam_j^2 (1/p_j - 1)
    samples = np.stack([atomo.sample(x, atoms=atoms, budget=budget, seed=s).to_dense().reshape(-1)
                        for s in range(trials)]).astype(np.float64)
    mean = samples.mean(axis=0)
    # The mean of `trials` independent samples has std sqrt(coord_var / trials) per coordinate.
    # 6 standard deviations: for rarely kept atoms the count is Poisson-like rather than
    # Gaussian, and 6 sd keeps a false alarm below ~1e-4 per coordinate even for
    # p * trials < 1; seeds are fixed, so the test is deterministic. The float32 output
    # rounding adds ~1e-6.
    tol = 6 * np.sqrt(coord_var / trials) + 1e-5
    assert np.all(np.abs(mean - x.reshape(-1)) <= tol), np.max(np.abs(mean - x.reshape(-1)) / tol)
    # Orthonormal atoms: E||g_hat - g||^2 = sum_j lam_j^2 (1/p_j - 1).
    empirical = np.mean(np.sum((samples - x.reshape(-1)) ** 2, axis=1))
    # Its standard error, estimated from the same samples, sets the tolerance (5 se).
    se = np.std(np.sum((samples - x.reshape(-1)) ** 2, axis=1), ddof=1) / np.sqrt(trials)
    assert abs(empirical - atom_var.sum()) <= 5 * se, (empirical, atom_var.sum(), se)
    assert empirical == pytest.approx(atom_var.sum(), rel=0.15)


# ---------------------------------------------------------------- FFT / DCT
LENGTHS = [1, 2, 3, 4, 5, 7, 8, 9, 15, 16, 17, 31, 32, 33, 63, 64, 65, 97, 100, 1000, 1024, 4097, 65536, 100_003]


@pytest.mark.parametrize("n", LENGTHS)
def test_rfft_matches_numpy(n):
    x = np.random.default_rng(n).standard_normal(n)
    ref = np.fft.rfft(x)
    got = _core.rfft(x)
    assert np.abs(got - ref).max() <= 1e-5 * np.abs(ref).max()
    back = _core.irfft(ref, n)
    np.testing.assert_allclose(back, np.fft.irfft(ref, n), rtol=1e-5, atol=1e-5 * np.abs(x).max())


@pytest.mark.parametrize("n", LENGTHS)
def test_dct_matches_scipy_and_is_orthonormal(n):
    sfft = pytest.importorskip("scipy.fft")
    x = np.random.default_rng(n + 1).standard_normal(n)
    y = _core.dct(x)
    ref = sfft.dct(x, norm="ortho")
    assert np.abs(y - ref).max() <= 1e-5 * np.abs(ref).max()
    assert np.abs(_core.idct(y) - x).max() <= 1e-5 * np.abs(x).max()
    assert np.linalg.norm(y) == pytest.approx(np.linalg.norm(x), rel=1e-9)


# Every pass kind of the mixed-radix engine: radix 4 and 2 (2^k), 3, 5 (smooth), odd radices
# 7..61 (direct), primes above 61 and lengths with such a factor (Bluestein), odd lengths
# (complex path), and 2 * odd (real path on an odd half length).
ENGINE_LENGTHS = sorted(set(
    list(range(1, 40)) + [2 ** k for k in range(6, 15)]
    + [48, 60, 81, 125, 243, 625, 720, 1000, 3 * 5 ** 4 * 8, 100_000]
    + [49, 77, 121, 143, 169, 2 * 7 * 11 * 13, 4 * 59, 61 * 3, 59 * 61]
    + [67, 2 * 67, 4 * 67, 127, 257, 1009, 2 * 1009, 4099, 8191, 3 * 4099]))


@pytest.mark.parametrize("n", ENGINE_LENGTHS)
def test_rfft_every_pass_kind_every_level(simd, n):
    x = np.random.default_rng(n + 7).standard_normal(n)
    ref = np.fft.rfft(x)
    got = _core.rfft(x)
    assert np.abs(got - ref).max() <= 1e-12 * max(np.abs(ref).max(), 1.0)
    back = _core.irfft(ref, n)
    assert np.abs(back - x).max() <= 1e-12 * max(np.abs(x).max(), 1.0)
    y = _core.dct(x)
    assert np.abs(_core.idct(y) - x).max() <= 1e-12 * max(np.abs(x).max(), 1.0)


@pytest.mark.parametrize("n", [1, 2, 3, 5, 16, 30, 97, 1000, 4096, 28028, 100_000, 100_003])
def test_fft_bit_identical_across_simd_levels(n):
    """The FFT kernels run the same IEEE operations at every level (no FMA contraction)."""
    x = np.random.default_rng(n).standard_normal(n)
    spec = np.fft.rfft(x)
    outs = {}
    for level in gradsparse.available_simd_levels():
        with gradsparse.simd_level(level):
            outs[level] = [f().tobytes() for f in (lambda: _core.rfft(x), lambda: _core.irfft(spec, n),
                                                   lambda: _core.dct(x), lambda: _core.idct(x))]
    first = next(iter(outs))
    for level, o in outs.items():
        for name, a, b in zip(("rfft", "irfft", "dct", "idct"), o, outs[first]):
            assert a == b, f"{name} n={n}: {level} differs from {first}"


def test_rfft_plans_are_thread_safe():
    """Many threads building and using plans for the same new lengths at once."""
    from concurrent.futures import ThreadPoolExecutor

    lengths = [2 * 3 * 5 * 7 * 11 * 13 + 2 * k for k in range(1, 9)] + [10_007, 20_014]
    xs = {n: np.random.default_rng(n).standard_normal(n) for n in lengths}
    refs = {n: np.fft.rfft(x) for n, x in xs.items()}

    def work(i):
        n = lengths[i % len(lengths)]
        return np.abs(_core.rfft(xs[n]) - refs[n]).max() <= 1e-9 * np.abs(refs[n]).max()

    with ThreadPoolExecutor(8) as ex:
        assert all(ex.map(work, range(64)))


# ---------------------------------------------------------------- SVD
def _matrices():
    rng = np.random.default_rng(8)
    low = rng.standard_normal((60, 4)) @ rng.standard_normal((4, 90))
    deficient = rng.standard_normal((30, 50))
    deficient[10:20] = deficient[:10] * 2.0  # repeated rows
    decaying = (rng.standard_normal((40, 40)) * np.logspace(0, -4, 40)) @ rng.standard_normal((40, 70))
    return {
        "random": rng.standard_normal((64, 576)),
        "lowrank": low,
        "deficient": deficient,
        "decaying": decaying,
        "tall": rng.standard_normal((300, 20)),
        "wide": rng.standard_normal((20, 300)),
        "row": rng.standard_normal((1, 37)),
        "col": rng.standard_normal((37, 1)),
        "zeros": np.zeros((5, 7)),
        "square": rng.standard_normal((33, 33)),
    }


@pytest.mark.parametrize("name", sorted(_matrices()))
def test_svd_matches_numpy(name, threads):
    a = _matrices()[name].astype(np.float32)
    u, s, vt = _core.svd(a)
    k = min(a.shape)
    assert u.shape == (a.shape[0], k) and s.shape == (k,) and vt.shape == (k, a.shape[1])
    ref = np.linalg.svd(a.astype(np.float64), compute_uv=False)
    big = ref >= 1e-3 * ref[0] if ref[0] > 0 else np.zeros(k, bool)
    np.testing.assert_allclose(s[big], ref[big], rtol=1e-4)
    assert np.all(np.abs(s[~big]) <= 1e-3 * max(ref[0], 1e-30) + 1e-6)
    rec = (u * s) @ vt
    assert np.linalg.norm(rec - a) <= 1e-5 * max(np.linalg.norm(a), 1e-30) + 1e-7
    uu = u[:, big].T @ u[:, big]
    np.testing.assert_allclose(uu, np.eye(uu.shape[0]), atol=1e-5)
    vv = vt[big] @ vt[big].T
    np.testing.assert_allclose(vv, np.eye(vv.shape[0]), atol=1e-4)


@pytest.mark.parametrize("shape", [(64, 576), (300, 40), (200, 1000), (1000, 200)])
def test_randomized_svd_recovers_low_rank(shape):
    rng = np.random.default_rng(9)
    a = (rng.standard_normal((shape[0], 5)) * [10, 5, 3, 2, 1]) @ rng.standard_normal((5, shape[1]))
    a = a.astype(np.float32)
    u, s, vt = _core.svd_randomized(a, 8, 8, 2, 3)
    ref = np.linalg.svd(a.astype(np.float64), compute_uv=False)[:8]
    assert u.shape == (shape[0], 8) and vt.shape == (8, shape[1])
    np.testing.assert_allclose(s[:5], ref[:5], rtol=1e-4)
    assert np.linalg.norm((u * s) @ vt - a) <= 1e-5 * np.linalg.norm(a)


# (64, 576), (128, 1152), (40, 300): subspace iteration on G = A A^T; (200, 1000), (256, 2304):
# products with A (svd.cpp picks the form with fewer multiply-adds).
@pytest.mark.parametrize("shape", [(64, 576), (128, 1152), (300, 40), (200, 1000), (256, 2304)])
def test_randomized_svd_top_r_vs_numpy(shape, simd):
    """Decaying spectrum (sigma_i = 0.8^i times noise-free random factors): the top 8 singular
    values match numpy's to 1e-4 and the rank-8 approximation is as good as the truncated SVD."""
    rng = np.random.default_rng(10)
    m, n = shape
    k = min(m, n)
    u0, _ = np.linalg.qr(rng.standard_normal((m, k)))
    v0, _ = np.linalg.qr(rng.standard_normal((n, k)))
    a = ((u0 * 0.8 ** np.arange(k)) @ v0.T).astype(np.float32)
    ref_u, ref_s, ref_vt = np.linalg.svd(a.astype(np.float64), full_matrices=False)
    u, s, vt = _core.svd_randomized(a, 8, 8, 2, 5)
    assert u.shape == (m, 8) and s.shape == (8,) and vt.shape == (8, n)
    np.testing.assert_allclose(s, ref_s[:8], rtol=1e-4)
    best = np.linalg.norm(a - (ref_u[:, :8] * ref_s[:8]) @ ref_vt[:8])
    assert np.linalg.norm(a - (u * s) @ vt) <= best * (1 + 1e-3)
    np.testing.assert_allclose(u.T @ u, np.eye(8), atol=1e-5)
    np.testing.assert_allclose(vt @ vt.T, np.eye(8), atol=1e-5)


@pytest.mark.parametrize("shape", [(64, 576), (256, 2304)])
def test_randomized_svd_flat_spectrum_bounds(shape):
    """Gaussian matrix (flat spectrum, the hard case): Ritz values never exceed the true
    singular values and are within 10% of them with q = 2."""
    a = np.random.default_rng(11).standard_normal(shape).astype(np.float32)
    ref = np.linalg.svd(a.astype(np.float64), compute_uv=False)[:8]
    s = _core.svd_randomized(a, 8, 8, 2, 1)[1]
    assert np.all(s <= ref * (1 + 1e-6))
    assert np.all(s >= 0.9 * ref)


@pytest.mark.parametrize("shape", [(64, 576), (130, 37), (7, 300), (256, 2304), (33, 33), (1, 5)])
def test_svd_bit_identical_across_simd_levels(shape):
    a = np.random.default_rng(12).standard_normal(shape).astype(np.float32)
    outs = {}
    for level in gradsparse.available_simd_levels():
        with gradsparse.simd_level(level):
            outs[level] = b"".join(x.tobytes() for x in _core.svd(a) + _core.svd_randomized(a, 8, 8, 2, 1))
    first = next(iter(outs))
    for level, o in outs.items():
        assert o == outs[first], f"svd {shape}: {level} differs from {first}"


# ---------------------------------------------------------------- ATOMO on singular atoms
# _core.svd_atomo: all singular values from the Gram matrix's eigenvalues, singular vectors
# only for the sampled atoms (svd.cpp svd_atoms, eigen.cpp SymmetricEigenOnDemand).
def _clustered(rng, m, n, sigmas):
    q1, _ = np.linalg.qr(rng.standard_normal((m, len(sigmas))))
    q2, _ = np.linalg.qr(rng.standard_normal((n, len(sigmas))))
    return (q1 * np.asarray(sigmas, np.float64)) @ q2.T


def _atomo_matrices():
    rng = np.random.default_rng(13)
    mats = dict(_matrices())
    # exactly repeated singular values, a near-tie (1e-7 apart) and a rank drop
    mats["clustered"] = _clustered(rng, 40, 70, [3.0] * 8 + [2.0, 2.0 + 1e-7, 2.0 - 1e-7] + [1.0] * 6 + [0.0] * 5)
    mats["clustered_tall"] = _clustered(rng, 90, 25, [1.0] * 12 + [0.5] * 12 + [0.25])
    mats["identity"] = np.eye(17, 23)
    mats["single"] = np.array([[3.0]])
    return mats


def _check_atoms(a, budget, seed):
    idx, u, vals, vt, S, p = _core.svd_atomo(a, budget, seed, 3)
    m, n = a.shape
    k = min(m, n)
    assert S.dtype == np.float32 and S.shape == (k,) and p.shape == (k,)
    assert u.shape == (m, len(idx)) and vt.shape == (len(idx), n) and vals.shape == (len(idx),)
    ref = np.linalg.svd(a.astype(np.float64), compute_uv=False)
    big = ref >= 1e-3 * ref[0] if ref[0] > 0 else np.zeros(k, bool)
    np.testing.assert_allclose(S[big], ref[big], rtol=1e-4)
    assert np.all(S[~big] <= 1e-3 * max(ref[0], 1e-30) + 1e-6)
    assert np.all(np.diff(S.astype(np.float64)) <= 0)
    # the probabilities and draws are those of the full-SVD route on these singular values
    np.testing.assert_array_equal(p, _core.atomo_probabilities(S.astype(np.float64), budget))
    np.testing.assert_array_equal(idx, _core.bernoulli_sample(p, seed, 3))
    np.testing.assert_array_equal(S, _core.svd_values(a))
    # kept atoms: s' = ||A^T u|| matches sigma, u and v orthonormal, A^T u = s' v
    s_kept = vals.astype(np.float64) * p[idx]
    kb = big[idx]
    np.testing.assert_allclose(s_kept[kb], S[idx][kb], rtol=1e-4)
    a64 = a.astype(np.float64)
    uu, vv = u[:, kb].astype(np.float64), vt[kb].astype(np.float64)
    np.testing.assert_allclose(uu.T @ uu, np.eye(uu.shape[1]), atol=1e-5)
    np.testing.assert_allclose(vv @ vv.T, np.eye(vv.shape[0]), atol=1e-5)
    scale = max(np.linalg.norm(a64), 1e-30)
    assert np.linalg.norm(a64.T @ uu - vv.T * s_kept[kb]) <= 1e-5 * scale
    assert np.linalg.norm(a64 @ vv.T - uu * s_kept[kb]) <= 1e-5 * scale
    # isolated singular values: the vectors are numpy's up to sign
    ru, rs, rvt = np.linalg.svd(a64, full_matrices=False)
    for j, i in enumerate(idx):
        gap = min([abs(rs[i] - rs[t]) for t in range(k) if t != i] or [np.inf])
        if big[i] and gap > 1e-2 * rs[0]:
            sign = np.sign(ru[:, i] @ u[:, j])
            np.testing.assert_allclose(u[:, j] * sign, ru[:, i], atol=1e-4)
            np.testing.assert_allclose(vt[j] * sign, rvt[i], atol=1e-4)
    return idx, u, vals, vt, S, p


@pytest.mark.parametrize("name", sorted(_atomo_matrices()))
def test_svd_atomo_matches_numpy(name, engine):
    a = _atomo_matrices()[name].astype(np.float32)
    for budget, seed in ((2.0, 1), (5.0, 2), (1e6, 3)):
        _check_atoms(a, budget, seed)
    # every atom with sigma > 0 kept: the update is A itself
    idx, u, vals, vt, S, p = _core.svd_atomo(a, 1e6, 0, 3)
    np.testing.assert_array_equal(idx, np.flatnonzero(S > 0))
    rec = (u.astype(np.float64) * vals) @ vt
    assert np.linalg.norm(rec - a) <= 1e-5 * max(np.linalg.norm(a), 1e-30) + 1e-7
    if name in ("zeros",):
        assert len(idx) == 0 and np.all(S == 0) and np.all(p == 0)


@pytest.mark.parametrize("shape", [(64, 576), (130, 37), (7, 300), (256, 2304), (33, 33), (1, 5), (5, 1)])
def test_svd_atomo_bit_identical_every_engine(shape):
    rng = np.random.default_rng(14)
    mats = [rng.standard_normal(shape).astype(np.float32)]
    if min(shape) >= 8:
        mats.append(_clustered(rng, shape[0], shape[1], [2.0] * 4 + [1.0] * 4).astype(np.float32))
    for a in mats:
        outs = {}
        for level in gradsparse.available_simd_levels():
            for nt in (1, 2):
                with gradsparse.simd_level(level), gradsparse.num_threads(nt):
                    outs[level, nt] = (b"".join(np.asarray(x).tobytes() for x in _core.svd_atomo(a, 4.0, 9, 3))
                                       + _core.svd_values(a).tobytes())
        first = next(iter(outs))
        for engine, o in outs.items():
            assert o == outs[first], f"svd_atomo {shape}: simd, threads {engine} differ from {first}"


@pytest.mark.parametrize("shape", [(64, 576), (300, 20), (8, 3, 3, 3)])
def test_svd_atomo_same_draws_as_full_svd(shape):
    """The fast path keeps the same atoms as the full SVD route (probabilities from the full
    SVD's singular values, the same Philox stream), for many seeds."""
    x = np.random.default_rng(15).standard_normal(shape).astype(np.float32)
    mat = x.reshape(shape[0], -1)
    _, s_full, _ = _core.svd(mat)
    for seed in range(20):
        p = _core.atomo_probabilities(s_full.astype(np.float64), 3.0)
        want = _core.bernoulli_sample(p, seed, 3)
        got = atomo.sample(x, atoms="svd", budget=3.0, seed=seed)
        np.testing.assert_array_equal(got.indices, want)


def test_svd_atomo_unbiased_with_ties_and_rank_drop():
    rng = np.random.default_rng(16)
    x = _clustered(rng, 7, 10, [2.0, 2.0, 2.0, 1.0, 1.0, 0.0, 0.0]).astype(np.float32)
    trials = 3000
    samples = np.stack([atomo.sample(x, atoms="svd", budget=2.0, seed=s).to_dense().astype(np.float64)
                        for s in range(trials)])
    tol = 6 * np.sqrt(samples.var(axis=0, ddof=1) / trials) + 1e-5
    assert np.all(np.abs(samples.mean(axis=0) - x) <= tol)
    assert max(atomo.sample(x, atoms="svd", budget=2.0, seed=s).num_atoms for s in range(200)) <= 5


def test_svd_layouts():
    x = np.random.default_rng(10).standard_normal((8, 4, 3, 3)).astype(np.float32)
    upd = atomo.sample(x, atoms="svd", budget=100, seed=0)
    assert upd.matrix_shape == (8, 36)
    orig = atomo.sample(x, atoms="svd", budget=100, seed=0, layout="atomo")
    assert orig.matrix_shape == (16, 18)
    np.testing.assert_allclose(orig.to_dense(), x, rtol=1e-4, atol=1e-5)
    b = np.arange(5, dtype=np.float32)
    assert atomo.sample(b, atoms="svd", budget=2, vector="dense", seed=0).kind == "dense"
    assert atomo.sample(b, atoms="svd", budget=2, seed=0).kind == "entry"
    r = atomo.sample(x, atoms="svd", budget=2, seed=0, svd="randomized", rank=4)
    assert r.u.shape[0] == 8 and r.num_atoms <= 4


# ---------------------------------------------------------------- payloads
@pytest.mark.parametrize("atoms", ["entry", "fourier", "svd"])
def test_payload_roundtrip(atoms):
    x = np.random.default_rng(11).standard_normal((16, 8, 3, 3)).astype(np.float32)
    upd = atomo.sample(x, atoms=atoms, budget=20, seed=5)
    payload = gradsparse.encode(upd.to_payload("conv"))
    back = AtomicUpdate.from_payload(gradsparse.decode(payload), "conv")
    assert back.kind == upd.kind and back.shape == upd.shape
    np.testing.assert_allclose(back.to_dense(), upd.to_dense(), rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="payload"):
        AtomicUpdate.from_payload(gradsparse.decode(payload), "other")


# ---------------------------------------------------------------- QSGD / TernGrad
def test_qsgd_and_terngrad_unbiased():
    x = np.random.default_rng(12).standard_normal(30).astype(np.float32)
    trials = 4000
    for make in (lambda s: atomo.qsgd(x, 4, s), lambda s: atomo.terngrad(x, s)):
        samples = np.stack([make(s).to_dense().astype(np.float64) for s in range(trials)])
        sd = samples.std(axis=0, ddof=1)
        assert np.all(np.abs(samples.mean(axis=0) - x) <= 5 * sd / np.sqrt(trials) + 1e-6)
    q = atomo.qsgd(x, 4, 0)
    assert q.codes.dtype == np.int32 and np.abs(q.codes).max() <= 4
    assert q.bits == 32 + 30 * 4
    t = atomo.terngrad(x, 0)
    assert set(np.unique(t.codes)) <= {-1, 0, 1} and t.bits == 32 + 8 * 6
    assert t.scale == pytest.approx(np.abs(x).max())
    z = atomo.qsgd(np.zeros(5), 2, 0)
    assert np.all(z.to_dense() == 0)


# ---------------------------------------------------------------- bad input
@pytest.mark.parametrize(
    "call,arg",
    [
        (lambda: atomo.sample(np.array([1.0, np.nan]), budget=1), "x"),
        (lambda: atomo.sample(np.zeros(0), budget=1), "x"),
        (lambda: atomo.sample(np.ones(4), budget=0), "budget"),
        (lambda: atomo.sample(np.ones(4), budget=-1), "budget"),
        (lambda: atomo.sample(np.ones(4), budget=float("nan")), "budget"),
        (lambda: atomo.sample(np.ones((2, 3, 4)), atoms="svd", budget=1), "x"),
        (lambda: atomo.sample(np.ones(4), atoms="wavelet", budget=1), "atoms"),
        (lambda: atomo.probabilities(np.array([np.inf]), 1), "lam"),
        (lambda: atomo.probabilities(np.ones(3), 0), "budget"),
        (lambda: atomo.qsgd(np.ones(3), 0, 0), "levels"),
        (lambda: atomo.terngrad(np.array([np.nan]), 0), "x"),
        (lambda: _core.svd(np.ones((2, 2, 2), np.float32)), "x"),
        (lambda: _core.svd(np.array([[np.nan]], np.float32)), "x"),
        (lambda: _core.svd_atomo(np.array([[np.inf]], np.float32), 1.0, 0, 3), "x"),
        (lambda: _core.svd_atomo(np.ones(3, np.float32), 1.0, 0, 3), "x"),
        (lambda: _core.svd_atomo(np.ones((3, 4), np.float32), 0.0, 0, 3), "budget"),
        (lambda: _core.svd_values(np.ones((2, 2, 2), np.float32)), "x"),
        (lambda: _core.atomo_probabilities(np.array([1.0, np.nan]), 1.0), "lam"),
        (lambda: _core.atomo_probabilities(np.array([1.0]), -1.0), "budget"),
    ],
)
def test_bad_input_names_the_argument(call, arg):
    with pytest.raises(ValueError, match=rf"^{arg}:"):
        call()


def test_import_does_not_import_torch():
    code = "import sys, gradsparse, gradsparse.atomo; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


# ---------------------------------------------------------------- benchmark entry point
def test_bench_suite_atomo_runs_and_verifies(monkeypatch):
    """`python -m gradsparse.bench --suite atomo` is accepted; the ATOMO bench's FFT table
    (small lengths, to stay fast) verifies and returns gradsparse and numpy timings."""
    from gradsparse import bench
    from gradsparse.bench import atomo as bench_atomo

    assert bench.build_parser().parse_args(["--suite", "atomo"]).suite == "atomo"
    monkeypatch.setattr(bench_atomo, "FFT_LENGTHS", [1, 2, 3, 1000, 4096, 1009])
    lines = []
    res = bench_atomo.run(lines.append, quick=True, skip={"svd", "e2e"}, torch=None)
    assert [r["n"] for r in res["fft"]] == [1, 2, 3, 1000, 4096, 1009]
    assert all(r["gs"] > 0 and r["numpy"] > 0 for r in res["fft"])
    assert any("numpy" in line for line in lines)
    assert "rfft n=1009" in res["verified"]


def test_sparsify_is_a_deprecated_alias_of_sample():
    """atomo.sparsify (the old name) still works for one release, with a DeprecationWarning."""
    x = np.random.default_rng(5).standard_normal((6, 9)).astype(np.float32)
    with pytest.warns(DeprecationWarning, match="atomo.sample"):
        old = atomo.sparsify(x, "svd", budget=2, seed=3)
    new = atomo.sample(x, "svd", budget=2, seed=3)
    np.testing.assert_array_equal(old.to_dense(), new.to_dense())
    with pytest.warns(DeprecationWarning), pytest.raises(ValueError, match="^budget"):
        atomo.sparsify(x, budget=0)
