"""gradsparse.evofed: the streamed distances / fitness / update equal a float64 numpy
reference built from the materialised population; antithetic exactness; fitness
sparsification and quantisation; the fidelity of one encode/decode; bit-identity across
thread counts and SIMD levels; determinism; optimizers; bad input and hostile payloads."""
from __future__ import annotations

import math

import numpy as np
import pytest

import gradsparse
from gradsparse import _core
from gradsparse.errors import ArgumentError, ArgumentTypeError
from gradsparse.evofed import Adam, EvoFed, LaggedMomentum, Population, Shaping, distances, fitness, gradient

import _evofed_ref as ref

# (d, N, P, shared_noise): d never divisible by P > 1
CONFIGS = [(1000, 2, 1, True), (2000, 8, 3, True), (2000, 8, 3, False), (4999, 32, 7, True),
           (4999, 32, 7, False), (301, 32, 1, False)]
SHAPINGS = [Shaping(zscore=False), Shaping(), Shaping(centered_ranks=True, zscore=False),
            Shaping(centered_ranks=True, rank_factor=3, zscore=True), Shaping(weight=0.0692),
            Shaping(centered_ranks=True, rank_factor=2, zscore=False, weight=-0.5)]


def _data(d, k=3, seed=0, scale=0.05):
    rng = np.random.default_rng(seed)
    theta = rng.standard_normal(d).astype(np.float32)
    deltas = (scale * rng.standard_normal((k, d))).astype(np.float32)
    return theta, deltas


def _id(c):
    return f"d{c[0]}-N{c[1]}-P{c[2]}-{'shared' if c[3] else 'indep'}"


# ----------------------------------------------------------------------------- population

@pytest.mark.parametrize("cfg", CONFIGS, ids=_id)
def test_materialize_is_the_generator_with_the_chunk_rule(cfg):
    d, n, p, shared = cfg
    pop = Population(n, 0.3, seed=7, partitions=p, shared_noise=shared)
    Z = pop.materialize(5, d)
    b = pop.bounds(d)
    assert Z.shape == (n, d) and Z.dtype == np.float32
    assert list(b) == [c * d // p for c in range(p + 1)]
    for j in range(pop.half):
        for c in range(p):
            size = int(b[c + 1] - b[c])
            start = 0 if shared else int(b[c])
            direct = np.empty(size, np.float32)
            _core.evofed_noise(7, 5, j, start, direct)
            assert np.array_equal(Z[j, b[c]:b[c + 1]], direct)
    other = Population(n, 0.3, seed=8, partitions=p, shared_noise=shared).materialize(5, d)
    assert not np.array_equal(other, Z)
    assert not np.array_equal(pop.materialize(6, d), Z)


@pytest.mark.parametrize("cfg", CONFIGS[:4], ids=_id)
def test_antithetic_members_are_exact_negations(cfg):
    d, n, p, shared = cfg
    pop = Population(n, 0.3, seed=1, partitions=p, shared_noise=shared)
    Z = pop.materialize(0, d)
    h = pop.half
    assert np.array_equal(Z[h:].view(np.uint32), Z[:h].view(np.uint32) ^ np.uint32(0x80000000))
    for j in range(h):
        assert np.array_equal(pop.noise(0, h + j, 50, start=3).view(np.uint32),
                              pop.noise(0, j, 50, start=3).view(np.uint32) ^ np.uint32(0x80000000))


# ----------------------------------------------------------------------------- vs the float64 reference

@pytest.mark.parametrize("cfg", CONFIGS, ids=_id)
def test_distances_equal_the_reference(cfg):
    d, n, p, shared = cfg
    pop = Population(n, 0.4, seed=3, partitions=p, shared_noise=shared)
    theta, deltas = _data(d)
    got = distances(pop, 2, deltas)
    want = ref.distances(pop.materialize(2, d), 0.4, deltas, p)
    assert got.shape == (3, p, n) and got.dtype == np.float64
    np.testing.assert_allclose(got, want, rtol=1e-6)
    np.testing.assert_array_equal(distances(pop, 2, deltas[1]), got[1:2])


@pytest.mark.parametrize("shaping", SHAPINGS, ids=repr)
@pytest.mark.parametrize("cfg", CONFIGS[1:5], ids=_id)
def test_fitness_equals_the_reference(cfg, shaping):
    d, n, p, shared = cfg
    pop = Population(n, 0.4, seed=4, partitions=p, shared_noise=shared)
    theta, deltas = _data(d, seed=1)
    Z = pop.materialize(1, d)
    got = fitness(pop, 1, deltas, theta, shaping)
    want = ref.shape(ref.distances(Z, 0.4, deltas, p), shaping.centered_ranks, shaping.rank_factor,
                     shaping.zscore, shaping.weight, ref.member_sq_means(Z, 0.4, theta, p))
    # z-scoring distances (spread ~1/sqrt(2m) of their mean) magnifies their ~1e-7 relative error
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=2e-5)


def test_float64_strided_and_torch_inputs_are_read_as_float32():
    pop = Population(4, 0.2, partitions=2)
    deltas = _data(64, k=2)[1]
    want = distances(pop, 0, deltas)
    assert np.array_equal(distances(pop, 0, deltas.astype(np.float64)), want)
    assert np.array_equal(distances(pop, 0, deltas[:, ::-1].copy()[:, ::-1]), want)  # strided
    torch = pytest.importorskip("torch")
    assert np.array_equal(distances(pop, 0, torch.from_numpy(deltas)), want)


def test_weight_term_rewards_larger_members_as_in_the_official_code():
    d = 400
    pop = Population(8, 0.4, seed=2)
    theta, deltas = _data(d, k=1)
    plain = fitness(pop, 0, deltas, theta, Shaping(zscore=False))
    weighted = fitness(pop, 0, deltas, theta, Shaping(zscore=False, weight=0.5))
    sq = ref.member_sq_means(pop.materialize(0, d), 0.4, theta, 1)
    np.testing.assert_allclose(plain - weighted, 0.5 * sq[None], rtol=1e-6)  # subtracted: larger |x| scores better


def test_zscore_of_a_constant_row_is_zero_not_nan():
    f = Shaping().apply(np.full((2, 1, 4), 3.25))
    assert np.array_equal(f, np.zeros((2, 1, 4)))
    r = Shaping(centered_ranks=True, zscore=False).apply(np.array([5.0, 5.0, 1.0, 2.0]))
    assert list(r) == [2 / 3 - 0.5, 1 - 0.5, -0.5, 1 / 3 - 0.5]  # ties: the lower member first


@pytest.mark.parametrize("cfg", CONFIGS, ids=_id)
def test_gradient_equals_the_reference(cfg):
    d, n, p, shared = cfg
    pop = Population(n, 0.35, seed=9, partitions=p, shared_noise=shared)
    F = np.random.default_rng(0).standard_normal((p, n))
    got = gradient(pop, 4, F, d)
    want = ref.gradient(pop.materialize(4, d), F, 0.35, p)
    assert got.dtype == np.float32 and got.shape == (d,)
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-5 * np.abs(want).max())


# ----------------------------------------------------------------------------- sparsified and quantised fitness

def _ref_fitness(evo, theta, deltas, rnd):
    pop = evo.population_at(rnd)
    d = theta.size
    Z = pop.materialize(rnd, d)
    s = evo.shaping
    return ref.shape(ref.distances(Z, pop.sigma, deltas, pop.partitions), s.centered_ranks, s.rank_factor,
                     s.zscore, s.weight, ref.member_sq_means(Z, pop.sigma, theta, pop.partitions))


def _topk_mask(f, keep):
    mask = np.zeros(f.shape, bool)
    for idx in np.ndindex(f.shape[:-1]):
        order = sorted(range(f.shape[-1]), key=lambda i: (-abs(f[idx][i]), i))
        mask[idx][order[:keep]] = True
    return mask


@pytest.mark.parametrize("bits", [None, 16, 8, 4, 1])
@pytest.mark.parametrize("keep", [None, 5])
def test_client_payloads_carry_the_reference_fitness(keep, bits):
    d = 2000
    evo = EvoFed(Population(16, 0.4, seed=5, partitions=3, shared_noise=False),
                 Shaping(centered_ranks=True, zscore=True, weight=0.01), keep=keep, bits=bits)
    theta, deltas = _data(d, k=2, seed=3)
    want = _ref_fitness(evo, theta, deltas, 3).astype(np.float32)
    pays = evo.encode_many(theta, deltas, 3)
    assert pays == [evo.encode(theta, deltas[k], 3, client=k) for k in range(2)]
    for k, pay in enumerate(pays):
        got = evo.decode(pay)
        assert got.shape == (3, 16) and got.dtype == np.float64
        mask = np.ones(want[k].shape, bool) if keep is None else _topk_mask(want[k], keep)
        assert evo.selected(pay) == mask.sum()
        assert np.all(got[~mask] == 0)
        kept, g = want[k][mask].astype(np.float64), got[mask]
        if bits is None:
            np.testing.assert_allclose(g, kept, rtol=1e-5, atol=2e-5)
        elif bits == 16:
            np.testing.assert_allclose(g, kept, rtol=2e-3, atol=2e-5)
        else:  # qsgd: one scale per chunk = the chunk's largest |kept|; codes on 2^bits levels
            scale = np.abs(np.where(mask, want[k], 0)).max(axis=1, keepdims=True)
            step = 2 * np.broadcast_to(scale, mask.shape)[mask] / (2**bits - 1)
            assert np.all(np.abs(g - kept) <= step * (1 + 1e-4) + 1e-5)
        overhead = 24 + 30 + 16
        if bits is None and keep is None:
            assert len(pay) == overhead + 4 * 48
    if bits in (8, 4, 1):
        assert evo.encode(theta, deltas[0], 3, client=7) != pays[0]  # its own rounding stream
        assert evo.encode(theta, deltas[0], 3, client=0) == pays[0]


@pytest.mark.parametrize("server_keep", [None, 4])
def test_aggregate_is_the_unweighted_mean_resparsified(server_keep):
    d = 1500
    evo = EvoFed(Population(8, 0.4, seed=6, partitions=2), keep=3, server_keep=server_keep)
    theta, deltas = _data(d, k=4, seed=4)
    pays = evo.encode_many(theta, deltas, 0)
    mean = sum(evo.decode(p) for p in pays) / 4
    down = evo.aggregate(pays, 0)
    got = evo.decode(down)
    want = mean.astype(np.float32).astype(np.float64)
    if server_keep is not None:
        want = np.where(_topk_mask(want, server_keep), want, 0.0)
        assert evo.selected(down) == 2 * server_keep
    np.testing.assert_array_equal(got, want)


# ----------------------------------------------------------------------------- fidelity

def test_fidelity_of_one_round_matches_the_random_projection_law():
    """With z-score shaping and sigma*||z|| >> ||delta||, g is a random projection of the
    (normalised) mean update onto H = N/2 directions: cos(-g, mean delta) ~ sqrt(H/d) =
    0.707 sqrt(N/d). Per seed cos ~ sqrt(chi2_H / d), whose relative spread is
    1/sqrt(2H) = 0.18 at N = 32; the mean of S = 24 seeds has a relative standard error of
    0.036, so +-15% is 4 standard errors (the approximation errors, sqrt(H/(H+d)) and
    E sqrt(chi2_H) / sqrt(H), are below 1%). The measured spread must agree with theory too."""
    d, n, seeds = 1500, 32, 24
    expected = 0.707 * math.sqrt(n / d)
    cos = []
    for s in range(seeds):
        evo = EvoFed(Population(n, 1.0, seed=s))
        rng = np.random.default_rng(100 + s)
        theta = rng.standard_normal(d).astype(np.float32)
        deltas = (0.01 * rng.standard_normal((3, d))).astype(np.float32)
        g = evo.gradient(evo.aggregate(evo.encode_many(theta, deltas, 0), 0), 0, d).astype(np.float64)
        m = deltas.astype(np.float64).mean(0)
        cos.append(-g @ m / (np.linalg.norm(g) * np.linalg.norm(m)))
    cos = np.array(cos)
    assert abs(cos.mean() / expected - 1) < 0.15, (cos.mean(), expected)
    assert 0.08 < cos.std() / cos.mean() < 0.35  # theory: 0.18


# ----------------------------------------------------------------------------- engine independence, determinism

def _round_results(evo, theta, deltas):
    pays = evo.encode_many(theta, deltas, 1)
    down = evo.aggregate(pays, 1)
    return pays, down, evo.gradient(down, 1, theta.size), fitness(evo.population, 1, deltas, theta, evo.shaping)


@pytest.mark.parametrize("shared", [True, False])
def test_bit_identical_across_threads_and_simd_levels(shared):
    theta, deltas = _data(3001, k=2, seed=8)
    evo = EvoFed(Population(8, 0.3, seed=11, partitions=3, shared_noise=shared), Shaping(weight=0.01))
    base = _round_results(evo, theta, deltas)
    for level in gradsparse.available_simd_levels():
        for nt in (1, 2):
            with gradsparse.simd_level(level), gradsparse.num_threads(nt):
                got = _round_results(evo, theta, deltas)
            assert got[0] == base[0] and got[1] == base[1], (level, nt)
            assert np.array_equal(got[2], base[2]) and np.array_equal(got[3], base[3]), (level, nt)


@pytest.mark.parametrize("preset", ["fmnist", "cifar"])
def test_two_parties_stay_in_step_over_rounds(preset):
    d = 1200
    theta0, _ = _data(d)
    parties = [EvoFed.official(preset, seed=3), EvoFed.official(preset, seed=3)]
    thetas = [theta0.copy(), theta0.copy()]
    rng = np.random.default_rng(0)
    for rnd in range(3):
        deltas = (0.01 * rng.standard_normal((2, d))).astype(np.float32)
        down = parties[0].aggregate(parties[0].encode_many(thetas[0], deltas, rnd), rnd)
        thetas = [p.step(t, down, rnd) for p, t in zip(parties, thetas)]
        assert thetas[0].dtype == np.float32 and np.array_equal(thetas[0], thetas[1])
    assert not np.array_equal(thetas[0], theta0)
    st = parties[0].state_dict()
    fresh = EvoFed.official(preset, seed=3)
    fresh.load_state_dict(st)
    assert np.array_equal(fresh.step(thetas[0], down, 3), parties[0].step(thetas[0], down, 3))


# ----------------------------------------------------------------------------- optimizers, presets, schedule

def test_adam_matches_a_float64_hand_computation():
    rng = np.random.default_rng(1)
    theta = rng.standard_normal(50).astype(np.float32)
    opt = Adam(decay=0.5, lr_min=0.01)
    t64, m, v = theta.astype(np.float64), 0.0, 0.0
    for t in range(1, 5):
        g = rng.standard_normal(50).astype(np.float32)
        theta = opt.step(theta, g)
        m = 0.99 * m + 0.01 * g
        v = 0.999 * v + 0.001 * g.astype(np.float64) ** 2
        lr = max(0.04266 * 0.5 ** (t - 1), 0.01)
        t64 = t64 - lr * (m / (1 - 0.99 ** t)) / (np.sqrt(v / (1 - 0.999 ** t)) + 1e-8)
        np.testing.assert_allclose(theta, t64, rtol=1e-5, atol=1e-6)
    assert opt.steps == 4 and opt.learning_rate() == 0.01


def test_lagged_momentum_applies_the_previous_momentum():
    opt = LaggedMomentum(lr=0.5, momentum=0.25)
    theta = np.ones(3, np.float32)
    g1, g2 = np.array([1, 2, 3], np.float32), np.array([4, 0, -4], np.float32)
    t1 = opt.step(theta, g1)
    assert np.array_equal(t1, theta)  # m was 0
    t2 = opt.step(t1, g2)
    assert np.array_equal(t2, theta - 0.5 * g1)
    t3 = opt.step(t2, g2)
    assert np.array_equal(t3, t2 - np.float32(0.5) * (g2 + np.float32(0.25) * g1))


def test_official_presets():
    f, c = EvoFed.official("fmnist"), EvoFed.official("cifar")
    assert (f.population.size, f.population.sigma, f.population.partitions) == (128, 0.35, 1)
    assert f.shaping == Shaping(zscore=True, weight=0.0152) and isinstance(f.optimizer, Adam)
    assert (f.optimizer.lr, f.optimizer.beta1, f.optimizer.decay, f.optimizer.lr_min) == (0.04266, 0.99, 0.999, 0.001)
    assert (c.population.size, c.population.sigma, c.population.partitions, c.population.shared_noise) == \
        (32, 0.4204, 200, True)
    assert c.shaping == Shaping(centered_ranks=True, zscore=True, weight=0.0692)
    assert isinstance(c.optimizer, LaggedMomentum) and (c.optimizer.lr, c.optimizer.momentum) == (0.0467, 0.479)
    assert c.keep is None and c.bits is None and c.sigma(999) == 0.4204


def test_sigma_schedule():
    evo = EvoFed(Population(4, 1.0), sigma_decay=0.5, sigma_min=0.2)
    assert [evo.sigma(r) for r in range(4)] == [1.0, 0.5, 0.25, 0.2]
    assert evo.population_at(1).sigma == 0.5


def test_materialize_refuses_large_populations():
    with pytest.raises(ArgumentError, match="^d:"):
        Population(1024, 0.1).materialize(0, 2**17 + 1)


# ----------------------------------------------------------------------------- bad input

BAD_POPULATIONS = [
    (dict(size=3), ArgumentError, "size"), (dict(size=0), ArgumentError, "size"),
    (dict(size=2.0), ArgumentTypeError, "size"), (dict(sigma=0.0), ArgumentError, "sigma"),
    (dict(sigma=-1.0), ArgumentError, "sigma"), (dict(sigma=math.nan), ArgumentError, "sigma"),
    (dict(sigma=math.inf), ArgumentError, "sigma"), (dict(partitions=0), ArgumentError, "partitions"),
    (dict(seed=-1), ArgumentError, "seed"), (dict(shared_noise=1), ArgumentTypeError, "shared_noise"),
]


@pytest.mark.parametrize("kwargs, exc, name", BAD_POPULATIONS)
def test_bad_population(kwargs, exc, name):
    args = dict(size=4, sigma=0.1) | kwargs
    with pytest.raises(exc, match=f"^{name}:"):
        Population(**args)


def test_bad_arguments_name_themselves():
    pop = Population(4, 0.1, partitions=3)
    theta, deltas = _data(10, k=2)
    cases = [
        (lambda: distances(pop, 0, deltas[:, :2]), ArgumentError, "updates"),  # P > d
        (lambda: gradient(pop, 0, np.zeros((3, 4)), 2), ArgumentError, "partitions"),
        (lambda: distances(pop, 0, np.where(np.eye(2, 10) > 0, np.nan, deltas)), ArgumentError, "updates"),
        (lambda: distances(pop, 0, np.full(10, np.inf, np.float32)), ArgumentError, "updates"),
        (lambda: distances(pop, 0, np.zeros((2, 2, 10), np.float32)), ArgumentError, "updates"),
        (lambda: distances(pop, 0, np.full(10, 1e300)), ArgumentError, "updates: values overflow"),
        (lambda: distances(pop, 0, np.full(10, 1e30, np.float32)), ArgumentError, "updates"),
        (lambda: fitness(pop, 0, deltas, np.full(10, 1e30, np.float32), Shaping(weight=1.0)), ArgumentError, "theta"),
        (lambda: distances(pop, 0, np.zeros(10, np.int32)), ArgumentTypeError, "updates"),
        (lambda: distances(pop, -1, deltas), ArgumentError, "round"),
        (lambda: fitness(pop, 0, deltas, theta[:9], Shaping(weight=1.0)), ArgumentError, "theta"),
        (lambda: fitness(pop, 0, deltas, np.full(10, np.nan, np.float32), Shaping(weight=1.0)), ArgumentError, "theta"),
        (lambda: fitness(pop, 0, deltas, None, Shaping(weight=1.0)), ArgumentError, "theta"),
        (lambda: fitness(pop, 0, deltas, shaping="zscore"), ArgumentTypeError, "shaping"),
        (lambda: gradient(pop, 0, np.zeros((3, 5)), 10), ArgumentError, "F"),
        (lambda: gradient(pop, 0, np.zeros((2, 4)), 10), ArgumentError, "F"),
        (lambda: gradient(pop, 0, np.full((3, 4), np.nan), 10), ArgumentError, "F"),
        (lambda: gradient(pop, 0, np.array([[1e300, 0, -1e300, 0]] * 3), 10), ArgumentError, "F"),
        (lambda: pop.noise(0, 4, 3), ArgumentError, "member"),
        (lambda: Shaping(rank_factor=0), ArgumentError, "rank_factor"),
        (lambda: Shaping(weight=math.nan), ArgumentError, "weight"),
        (lambda: EvoFed(pop, keep=0), ArgumentError, "keep"),
        (lambda: EvoFed(pop, keep=5), ArgumentError, "keep"),
        (lambda: EvoFed(pop, server_keep=5), ArgumentError, "server_keep"),
        (lambda: EvoFed(pop, keep=2.0), ArgumentTypeError, "keep"),
        (lambda: EvoFed(pop, bits=3), ArgumentError, "bits"),
        (lambda: EvoFed(pop, bits="8"), ArgumentTypeError, "bits"),
        (lambda: EvoFed(pop, sigma_decay=0.0), ArgumentError, "sigma_decay"),
        (lambda: EvoFed(pop, optimizer="adam"), ArgumentTypeError, "optimizer"),
        (lambda: EvoFed("pop"), ArgumentTypeError, "population"),
        (lambda: EvoFed.official("mnist"), ArgumentError, "name"),
        (lambda: EvoFed(pop).encode(theta[:9], deltas[0], 0), ArgumentError, "theta"),
        (lambda: EvoFed(pop).encode(theta, deltas, 0), ArgumentError, "delta"),
        (lambda: EvoFed(pop).aggregate([], 0), ArgumentError, "payloads"),
        (lambda: EvoFed(pop).load_state_dict({"x": 1}), ArgumentError, "state"),
        (lambda: Adam(beta1=1.0), ArgumentError, "beta1"),
        (lambda: Adam().step(np.zeros(3, np.float32), np.zeros(4, np.float32)), ArgumentError, "g"),
        (lambda: LaggedMomentum(momentum=-0.1), ArgumentError, "momentum"),
    ]
    for call, exc, name in cases:
        with pytest.raises(exc, match=f"^{name}"):
            call()


def _payloads():
    evo = EvoFed(Population(8, 0.3, seed=1, partitions=2), keep=3)
    theta, deltas = _data(500, k=1)
    return evo, evo.encode(theta, deltas[0], 0)


def test_corrupted_payloads_raise_argument_errors():
    evo, pay = _payloads()
    bad = [pay[:n] for n in (0, 10, 24, len(pay) - 1)]
    for i in range(len(pay)):
        for bit in (0x01, 0x80):
            b = bytearray(pay)
            b[i] ^= bit
            bad.append(bytes(b))
    for b in bad:
        try:
            evo.decode(b)
        except ArgumentError as e:
            assert str(e).startswith("payload:")
    for b in bad[:4]:
        with pytest.raises(ArgumentError, match="^payload:"):
            evo.decode(b)
    with pytest.raises(ArgumentError, match=r"^payloads\[1\]:"):
        evo.aggregate([pay, pay[:-1]], 0)
    with pytest.raises(ArgumentTypeError, match="^payload:"):
        evo.decode("not bytes")


def test_crafted_payloads_raise_argument_errors():
    evo, _ = _payloads()
    crafted = [
        gradsparse.encode(np.zeros((2, 6), np.float32)),                      # wrong shape
        gradsparse.encode(np.zeros((3, 8), np.float32)),
        gradsparse.encode(np.zeros(16, np.float32)),
        gradsparse.encode(np.full((2, 8), np.nan, np.float32)),               # NaN
        gradsparse.encode(np.full((2, 8), 1e30, np.float32), value_codec="float16"),  # overflows to inf
        gradsparse.encode(gradsparse.Sparse(np.array([3]), np.array([np.inf], np.float32), (2, 8))),
        gradsparse.encode({"a": np.zeros((2, 8), np.float32)}),               # not a single tensor
    ]
    for b in crafted:
        with pytest.raises(ArgumentError, match="^payload:"):
            evo.decode(b)
    ok = gradsparse.encode(np.ones((2, 8), np.float64))  # any float dtype of the right shape is accepted
    assert np.array_equal(evo.decode(ok), np.ones((2, 8)))
