// gradsparse — EvoFed noise kernels, portable vector form: written once over a traits
// type V (V::W lanes of uint32/float, the operations below) and compiled in each
// instruction set's own unit (noise_avx2.cpp, noise_avx512.cpp). Every step mirrors
// core/gaussian.hpp: the same integer tricks and float operations in the same order.
#pragma once

#include <algorithm>
#include <cstdint>

#include "core/gaussian.hpp"
#include "core/rng.hpp"
#include "evofed/kernels.hpp"

namespace gradsparse {
namespace evofed {
namespace generic {
namespace {

// Box-Muller radius sqrt(-2 ln u), u = ((w >> 8) + 1) / 2^24 (gaussian::radius).
template <class V>
inline typename V::F radius(typename V::U w) {
    using namespace gaussian;
    const auto u = V::mul(V::cvt(V::add(V::srli8(w), V::set1u(1))), V::set1f(kTwoPow24Inv));
    const auto b = V::bits(u);
    const auto mant = V::andu(b, V::set1u(0x7FFFFFu));
    const auto big = V::srli31(V::sub(V::set1u(kSqrtHalfMant - 1), mant));  // 1 when mant >= kSqrtHalfMant
    const auto e = V::add(V::sub(V::srli23(b), V::set1u(127)), big);     // wraps like int32
    const auto x = V::floats(V::oru(mant, V::slli23(V::sub(V::set1u(127), big))));
    const auto one = V::set1f(1.0f);
    const auto s = V::div(V::subf(x, one), V::addf(x, one));
    const auto s2 = V::mul(s, s);
    const auto p = V::mul(s2, V::addf(V::set1f(kL3), V::mul(s2, V::addf(V::set1f(kL5),
                                                        V::mul(s2, V::addf(V::set1f(kL7), V::mul(s2, V::set1f(kL9))))))));
    const auto s_2 = V::addf(s, s);
    const auto lnx = V::addf(s_2, V::mul(s_2, p));
    const auto ef = V::cvt(e);
    const auto ln = V::addf(V::mul(ef, V::set1f(kLn2Hi)), V::addf(V::mul(ef, V::set1f(kLn2Lo)), lnx));
    return V::sqrt(V::mul(ln, V::set1f(-2.0f)));
}

// (cos, sin) of 2 pi (w >> 8) / 2^24 (gaussian::cos_sin), as float vectors.
template <class V>
inline void cos_sin(typename V::U w, typename V::F& c, typename V::F& s) {
    using namespace gaussian;
    const auto n = V::add(V::srli8(w), V::set1u(1u << 21));
    const auto quad = V::andu(V::srli22(n), V::set1u(3));
    const auto a = V::mul(V::cvt(V::sub(V::andu(n, V::set1u(0x3FFFFFu)), V::set1u(1u << 21))), V::set1f(kTwoPow22Inv));
    const auto a2 = V::mul(a, a);
    auto sp = V::addf(V::set1f(kS9), V::mul(a2, V::set1f(kS11)));
    sp = V::addf(V::set1f(kS7), V::mul(a2, sp));
    sp = V::addf(V::set1f(kS5), V::mul(a2, sp));
    sp = V::addf(V::set1f(kS3), V::mul(a2, sp));
    sp = V::addf(V::set1f(kS1), V::mul(a2, sp));
    const auto sn = V::mul(a, sp);
    auto cp = V::addf(V::set1f(kC8), V::mul(a2, V::set1f(kC10)));
    cp = V::addf(V::set1f(kC6), V::mul(a2, cp));
    cp = V::addf(V::set1f(kC4), V::mul(a2, cp));
    cp = V::addf(V::set1f(kC2), V::mul(a2, cp));
    const auto cs = V::addf(V::set1f(1.0f), V::mul(a2, cp));
    const auto swap = V::sub(V::set1u(0), V::andu(quad, V::set1u(1)));  // all ones in quadrants 1, 3
    const auto snb = V::bits(sn), csb = V::bits(cs);
    const auto c0 = V::oru(V::andu(swap, snb), V::andnot(swap, csb));
    const auto s0 = V::oru(V::andu(swap, csb), V::andnot(swap, snb));
    const auto negc = V::slli30(V::andu(V::add(quad, V::set1u(1)), V::set1u(2)));
    const auto negs = V::slli30(V::andu(quad, V::set1u(2)));
    c = V::floats(V::xoru(c0, negc));
    s = V::floats(V::xoru(s0, negs));
}

// The 64 normals of group g (elements 64 g .. 64 g + 63) of (seed, round, member), as
// 64 / W vectors in element order.
template <class V>
inline void group_regs(uint64_t seed, uint64_t round, uint32_t member, uint64_t g, typename V::F* v) {
    using namespace philox;
    constexpr uint32_t per_word = 16 / V::W;  // vectors per word row of 16 elements
    const uint32_t rlo = static_cast<uint32_t>(round), rhi = static_cast<uint32_t>(round >> 32);
    for (uint32_t h = 0; h < 16; h += V::W) {
        auto c0 = V::iota(static_cast<uint32_t>(16 * g) + h);
        auto c1 = V::set1u(member), c2 = V::set1u(rlo), c3 = V::set1u(rhi);
        uint32_t k0 = static_cast<uint32_t>(seed), k1 = static_cast<uint32_t>(seed >> 32);
        for (int r = 0; r < 10; ++r) {
            typename V::U hi0, lo0, hi1, lo1;
            V::mulhilo(c0, kMul0, hi0, lo0);
            V::mulhilo(c2, kMul1, hi1, lo1);
            const auto n0 = V::xoru(V::xoru(hi1, c1), V::set1u(k0));
            const auto n2 = V::xoru(V::xoru(hi0, c3), V::set1u(k1));
            c0 = n0;
            c1 = lo1;
            c2 = n2;
            c3 = lo0;
            k0 += kWeyl0;
            k1 += kWeyl1;
        }
        typename V::F c, s;
        const uint32_t at = h / V::W;
        const auto ra = radius<V>(c0);
        cos_sin<V>(c1, c, s);
        v[at] = V::mul(ra, c);
        v[per_word + at] = V::mul(ra, s);
        const auto rb = radius<V>(c2);
        cos_sin<V>(c3, c, s);
        v[2 * per_word + at] = V::mul(rb, c);
        v[3 * per_word + at] = V::mul(rb, s);
    }
}

template <class V>
inline void group(uint64_t seed, uint64_t round, uint32_t member, uint64_t g, float* out) {
    typename V::F v[64 / V::W];
    group_regs<V>(seed, round, member, g, v);
    for (uint32_t i = 0; i < 64 / V::W; ++i) V::store(out + i * V::W, v[i]);
}

template <class V>
void fill(uint64_t seed, uint64_t round, uint32_t member, uint64_t start, size_t count, float* out) {
    const uint64_t end = start + count;
    uint64_t i = start;
    alignas(64) float tmp[64];
    while (i < end) {
        const uint64_t g = i / 64, off = i % 64;
        if (off == 0 && end - i >= 64) {
            group<V>(seed, round, member, g, out + (i - start));
            i += 64;
            continue;
        }
        group<V>(seed, round, member, g, tmp);
        const uint64_t take = std::min<uint64_t>(64 - off, end - i);
        std::copy(tmp + off, tmp + off + take, out + (i - start));
        i += take;
    }
}

template <class V>
void axpy(float* acc, float c, const float* z, size_t n) {
    const auto cv = V::set1f(c);
    size_t t = 0;
    for (; t + V::W <= n; t += V::W) V::storeu(acc + t, V::addf(V::loadu(acc + t), V::mul(cv, V::loadu(z + t))));
    for (; t < n; ++t) acc[t] = acc[t] + c * z[t];
}

template <class V>
void combine(uint64_t seed, uint64_t round, const float* coef, size_t members, uint64_t start, size_t count,
             float* out) {
    constexpr uint32_t nv = 64 / V::W;
    alignas(64) float tmp[64];
    for (uint64_t i = start; i < start + count;) {
        const uint64_t g = i / 64, off = i % 64, take = std::min<uint64_t>(64 - off, start + count - i);
        typename V::F acc[nv], z[nv];
        for (uint32_t k = 0; k < nv; ++k) acc[k] = V::set1f(0.0f);
        for (size_t j = 0; j < members; ++j) {
            group_regs<V>(seed, round, static_cast<uint32_t>(j), g, z);
            const auto c = V::set1f(coef[j]);
            for (uint32_t k = 0; k < nv; ++k) acc[k] = V::addf(acc[k], V::mul(c, z[k]));
        }
        float* dst = (off == 0 && take == 64) ? out + (i - start) : tmp;
        for (uint32_t k = 0; k < nv; ++k) V::storeu(dst + k * V::W, acc[k]);
        if (dst == tmp) std::copy(tmp + off, tmp + off + take, out + (i - start));
        i += take;
    }
}

}  // namespace
}  // namespace generic
}  // namespace evofed
}  // namespace gradsparse
