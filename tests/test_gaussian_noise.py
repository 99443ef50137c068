"""The counter-based Gaussian noise of the core (cpp/src/core/gaussian.hpp, used by EvoFed):
its definition re-implemented here in numpy operation by operation, bit-identity across SIMD
levels, thread counts and offsets, pinned outputs, and statistical quality on 10^7 samples."""
from __future__ import annotations

import math

import numpy as np
import pytest

import gradsparse
from gradsparse import _core

F = np.float32


def _philox(q, member, rnd, seed):
    """Philox-4x32-10 on uint64 arrays holding 32-bit words (counter (q, member, round))."""
    m32 = np.uint64(0xFFFFFFFF)
    c = [q.astype(np.uint64), np.full_like(q, member, np.uint64), np.full_like(q, rnd & 0xFFFFFFFF, np.uint64),
         np.full_like(q, rnd >> 32, np.uint64)]
    k0, k1 = seed & 0xFFFFFFFF, seed >> 32
    for _ in range(10):
        p0 = np.uint64(0xD2511F53) * c[0]
        p1 = np.uint64(0xCD9E8D57) * c[2]
        c = [(p1 >> np.uint64(32)) ^ c[1] ^ np.uint64(k0), p1 & m32, (p0 >> np.uint64(32)) ^ c[3] ^ np.uint64(k1),
             p0 & m32]
        k0, k1 = (k0 + 0x9E3779B9) & 0xFFFFFFFF, (k1 + 0xBB67AE85) & 0xFFFFFFFF
    return [w.astype(np.uint32) for w in c]


def _radius(w):
    u = F((w >> np.uint32(8)) + np.uint32(1)).astype(F) * F(1.0 / 16777216.0)
    b = u.view(np.uint32)
    mant = b & np.uint32(0x7FFFFF)
    big = (mant >= np.uint32(0x3504F3)).astype(np.uint32)
    e = (b >> np.uint32(23)).astype(np.int32) - 127 + big.astype(np.int32)
    x = (mant | ((np.uint32(127) - big) << np.uint32(23))).view(F)
    s = (x - F(1)) / (x + F(1))
    s2 = s * s
    p = s2 * (F(1 / 3) + s2 * (F(1 / 5) + s2 * (F(1 / 7) + s2 * F(1 / 9))))
    lnx = (s + s) + (s + s) * p
    ef = e.astype(F)
    ln = ef * F(0.693145751953125) + (ef * F(1.42860677e-06) + lnx)
    return np.sqrt(ln * F(-2))


def _cos_sin(w):
    n = (w >> np.uint32(8)) + np.uint32(1 << 21)
    quad = (n >> np.uint32(22)) & np.uint32(3)
    a = ((n & np.uint32(0x3FFFFF)).astype(np.int32) - (1 << 21)).astype(F) * F(1.0 / 4194304.0)
    a2 = a * a
    S = [F(v) for v in (1.57079632679, -0.645964097506, 0.0796926262462, -0.00468175413532, 0.000160441184757,
                        -3.59884323521e-06)]
    C = [F(v) for v in (-1.23370055014, 0.253669507901, -0.0208634807634, 0.000919260274839, -2.52020423731e-05)]
    sn = a * (S[0] + a2 * (S[1] + a2 * (S[2] + a2 * (S[3] + a2 * (S[4] + a2 * S[5])))))
    cs = F(1) + a2 * (C[0] + a2 * (C[1] + a2 * (C[2] + a2 * (C[3] + a2 * C[4]))))
    swap = (quad & np.uint32(1)) == 1
    c0, s0 = np.where(swap, sn, cs), np.where(swap, cs, sn)
    c = np.where(((quad + np.uint32(1)) & np.uint32(2)) != 0, -c0, c0)
    s = np.where((quad & np.uint32(2)) != 0, -s0, s0)
    return c, s


def reference_noise(seed: int, rnd: int, member: int, start: int, count: int) -> np.ndarray:
    """z(seed, round, member, i) for i in [start, start + count), from the documented definition."""
    i = np.arange(start, start + count, dtype=np.uint64)
    q = np.uint64(16) * (i // np.uint64(64)) + i % np.uint64(16)
    r = (i % np.uint64(64)) // np.uint64(16)
    with np.errstate(over="ignore"):
        w = _philox(q, member, rnd, seed)
        ra, (ca, sa) = _radius(w[0]), _cos_sin(w[1])
        rb, (cb, sb) = _radius(w[2]), _cos_sin(w[3])
    vals = np.stack([ra * ca, ra * sa, rb * cb, rb * sb])
    return vals[r.astype(np.intp), np.arange(count)]


def noise(seed, rnd, member, start, count):
    out = np.empty(count, F)
    _core.evofed_noise(seed, rnd, member, start, out)
    return out


@pytest.mark.parametrize("seed,rnd,member,start,count", [
    (0, 0, 0, 0, 1000), (12345, 7, 3, 17, 333), (2**64 - 1, 2**64 - 1, 2**32 - 1, 2**34 - 200, 200),
    (1, 2**40, 99, 2**33 + 5, 129)])
def test_matches_the_documented_definition(simd, seed, rnd, member, start, count):
    assert noise(seed, rnd, member, start, count).tobytes() == reference_noise(seed, rnd, member, start,
                                                                               count).tobytes()


def test_pinned_outputs():
    """A seed gives the same numbers in every version (changing them is a breaking change)."""
    got = noise(0, 0, 0, 0, 8).view(np.uint32)
    assert [hex(v) for v in got] == ['0x3f7dbb30', '0xbe1d5350', '0xbf97da8a', '0xbf186c95', '0xbe029ce8',
                                     '0x3f9f3b98', '0x3e9460ae', '0x3f617fe8']


def test_same_bits_at_every_level_thread_count_and_offset():
    n = 300_001
    with gradsparse.simd_level("scalar"), gradsparse.num_threads(1):
        ref = noise(5, 6, 7, 0, n)
    for level in gradsparse.available_simd_levels():
        for threads in (1, 2):
            with gradsparse.simd_level(level), gradsparse.num_threads(threads):
                assert noise(5, 6, 7, 0, n).tobytes() == ref.tobytes(), (level, threads)
                for start in (1, 63, 64, 1000):  # any window of the stream is the same stream
                    assert noise(5, 6, 7, start, 5000).tobytes() == ref[start:start + 5000].tobytes()


def test_streams_differ_by_every_coordinate():
    base = noise(1, 1, 1, 0, 256)
    for other in (noise(2, 1, 1, 0, 256), noise(1, 2, 1, 0, 256), noise(1, 1, 2, 0, 256), noise(1, 2**32 + 1, 1, 0, 256)):
        assert not np.array_equal(base, other)


@pytest.mark.parametrize("kwargs,match", [
    (dict(member=2**32), "member"), (dict(start=2**34 - 10), "start"), (dict(start=-1), None)])
def test_bad_arguments(kwargs, match):
    args = dict(seed=0, round=0, member=0, start=0)
    args.update(kwargs)
    with pytest.raises((ValueError, TypeError, OverflowError), match=match):
        _core.evofed_noise(args["seed"], args["round"], args["member"], args["start"], np.empty(20, F))
    with pytest.raises(TypeError, match="out"):
        _core.evofed_noise(0, 0, 0, 0, np.empty(20, np.float64))


def _normal_cdf(x):
    return 0.5 * (1.0 + np.vectorize(math.erf)(x / math.sqrt(2.0)))


@pytest.fixture(scope="module")
def sample():
    """10^7 normals: 100 members x 10^5 elements of one round."""
    return np.stack([noise(2024, 3, m, 0, 100_000) for m in range(100)])


def test_moments(sample):
    x = sample.astype(np.float64).ravel()
    n = x.size
    assert n >= 10**7
    # standard errors of the mean, variance, skewness and excess kurtosis: 1/sqrt(n), sqrt(2/n), sqrt(6/n), sqrt(24/n)
    assert abs(x.mean()) < 5 / math.sqrt(n)
    assert abs(x.var() - 1) < 5 * math.sqrt(2 / n)
    assert abs((x**3).mean()) < 5 * math.sqrt(15 / n)
    assert abs((x**4).mean() - 3) < 5 * math.sqrt(96 / n)


def test_tails_and_distribution(sample):
    x = np.abs(sample.astype(np.float64).ravel())
    n = x.size
    for t in (1.0, 2.0, 3.0, 4.0, 5.0):
        p = math.erfc(t / math.sqrt(2))  # P(|Z| > t)
        k = int((x > t).sum())
        assert abs(k - n * p) < 5 * math.sqrt(n * p * (1 - p)) + 3, (t, k, n * p)
    assert x.max() <= math.sqrt(2 * 24 * math.log(2)) + 1e-6  # the documented resolution limit
    # chi-square over 100 equiprobable bins of the signed values
    s = np.sort(sample.ravel().astype(np.float64)[:1_000_000])
    edges = np.sqrt(2) * np.array([_erfinv(2 * q - 1) for q in np.linspace(0, 1, 101)[1:-1]])
    counts = np.diff(np.concatenate([[0], np.searchsorted(s, edges), [s.size]]))
    chi2 = float(((counts - s.size / 100) ** 2 / (s.size / 100)).sum())
    assert chi2 < 99 + 5 * math.sqrt(2 * 99), chi2  # 99 degrees of freedom
    # Kolmogorov-Smirnov on 10^5 values
    v = np.sort(sample[7, :100_000].astype(np.float64))
    cdf = _normal_cdf(v)
    ks = max(np.max(np.arange(1, v.size + 1) / v.size - cdf), np.max(cdf - np.arange(v.size) / v.size))
    assert ks < 1.95 / math.sqrt(v.size)  # 0.1% level


def _erfinv(y: float) -> float:
    """erf^-1 by bisection (tests only)."""
    lo, hi = -6.0, 6.0
    for _ in range(80):
        mid = 0.5 * (lo + hi)
        if math.erf(mid) < y:
            lo = mid
        else:
            hi = mid
    return 0.5 * (lo + hi)


def test_independence_between_members_and_elements(sample):
    x = sample.astype(np.float64)
    n = x.shape[1]
    lim = 5 / math.sqrt(n)
    corr = np.corrcoef(x[:20])  # between members, element by element
    assert np.abs(corr[np.triu_indices(20, 1)]).max() < lim
    for lag in (1, 4, 15, 16, 32, 48, 64):  # between elements of one member (16: the cos/sin partner)
        c = [np.corrcoef(x[m, :-lag], x[m, lag:])[0, 1] for m in range(5)]
        assert max(abs(v) for v in c) < lim, lag
    # squares are uncorrelated too (Box-Muller's pair shares a radius: checks the pairing is right)
    sq = x[:3] ** 2
    assert abs(np.corrcoef(sq[0, :-16], sq[0, 16:])[0, 1]) < lim
    # rounds are independent streams
    other = noise(2024, 4, 0, 0, n).astype(np.float64)
    assert abs(np.corrcoef(x[0], other)[0, 1]) < lim
