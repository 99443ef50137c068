// gradsparse — counter-based Gaussian noise: the definition (scalar, inline). The SIMD
// kernels (evofed/noise_*.cpp) and any later GPU kernel compute exactly these operations in
// this order, so a (seed, round, member, element) gives the same float32 bits everywhere.
//
// Stream: z(seed, round, member, i), member < 2^32, element i < 2^34.
//  * Philox-4x32-10 (rng.hpp) with key = seed and counter
//        (q, member, round mod 2^32, round div 2^32),  q = 16 * (i div 64) + (i mod 16);
//    element i takes word r = (i mod 64) div 16 of that block. (So 64 consecutive elements
//    come from 16 consecutive blocks, one vector lane each: SIMD code stores words directly.)
//  * Box-Muller on the word pairs (w0, w1) and (w2, w3): the pair gives the cosine (r even)
//    and the sine (r odd) of one draw:
//        u  = ((w_even >> 8) + 1) / 2^24           in (0, 1], exact in float
//        n  = w_odd >> 8                            angle 2*pi*n / 2^24
//        z  = sqrt(-2 ln u) * (cos or sin)(angle)
//  * ln, cos and sin are the project's own float32 arithmetic (below): only +, -, *, /,
//    sqrt (all correctly rounded in IEEE 754) and exact integer/bit operations, evaluated
//    in the written order with no fused multiply-add (the build uses -ffp-contract=off).
//    ln u = e ln2 + ln x with u = x 2^e, x in [sqrt(1/2), sqrt(2)), ln x = 2 atanh(s),
//    s = (x - 1)/(x + 1), by its series to s^9 (|s| <= 0.172: truncation < 1e-9 relative);
//    the angle is reduced exactly with the integer bits to a quadrant and a fraction
//    a in [-1/2, 1/2) of a quarter turn, and sin(pi a / 2), cos(pi a / 2) are their Taylor
//    series to a^11 / a^10 (truncation < 1e-9).
//  * Resolution: u has 24 bits, so |z| <= sqrt(2 * 24 ln 2) = 5.77 (P(|Z| > 5.77) = 8e-9 for
//    an exact normal); the angle has 2^24 steps. Antithetic members are the negation -z.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>

#include "core/bits.hpp"
#include "core/rng.hpp"

namespace gradsparse {
namespace gaussian {

// 2 atanh(s) = 2 (s + s^3/3 + s^5/5 + s^7/7 + s^9/9)
constexpr float kL3 = 1.0f / 3.0f, kL5 = 1.0f / 5.0f, kL7 = 1.0f / 7.0f, kL9 = 1.0f / 9.0f;
// ln 2 = kLn2Hi + kLn2Lo; kLn2Hi has 16 significant bits, so e * kLn2Hi is exact for |e| <= 24
constexpr float kLn2Hi = 0.693145751953125f, kLn2Lo = 1.42860677e-06f;
constexpr uint32_t kSqrtHalfMant = 0x3504F3u;  // mantissa bits of sqrt(2): x above it is halved
// sin(pi a / 2) = a (S1 + a^2 (S3 + a^2 (S5 + a^2 (S7 + a^2 (S9 + a^2 S11)))))
constexpr float kS1 = 1.57079632679f, kS3 = -0.645964097506f, kS5 = 0.0796926262462f,
                kS7 = -0.00468175413532f, kS9 = 0.000160441184757f, kS11 = -3.59884323521e-06f;
// cos(pi a / 2) = 1 + a^2 (C2 + a^2 (C4 + a^2 (C6 + a^2 (C8 + a^2 C10))))
constexpr float kC2 = -1.23370055014f, kC4 = 0.253669507901f, kC6 = -0.0208634807634f,
                kC8 = 0.000919260274839f, kC10 = -2.52020423731e-05f;
constexpr float kTwoPow24Inv = 1.0f / 16777216.0f, kTwoPow22Inv = 1.0f / 4194304.0f;

/// sqrt(-2 ln u) for u = ((w >> 8) + 1) / 2^24.
inline float radius(uint32_t w) {
    const float u = static_cast<float>(static_cast<int32_t>((w >> 8) + 1u)) * kTwoPow24Inv;
    const uint32_t b = f32_bits(u);
    const uint32_t mant = b & 0x7FFFFFu;
    const uint32_t big = mant >= kSqrtHalfMant ? 1u : 0u;
    const int32_t e = static_cast<int32_t>(b >> 23) - 127 + static_cast<int32_t>(big);
    const float x = bits_f32(mant | ((127u - big) << 23));
    const float s = (x - 1.0f) / (x + 1.0f);
    const float s2 = s * s;
    const float p = s2 * (kL3 + s2 * (kL5 + s2 * (kL7 + s2 * kL9)));
    const float lnx = (s + s) + (s + s) * p;
    const float ef = static_cast<float>(e);
    const float ln = ef * kLn2Hi + (ef * kLn2Lo + lnx);
    return std::sqrt(ln * -2.0f);
}

/// (cos, sin) of 2 pi n / 2^24 for n = w >> 8.
inline void cos_sin(uint32_t w, float& c, float& s) {
    const uint32_t n = (w >> 8) + (1u << 21);
    const uint32_t quad = (n >> 22) & 3u;
    const float a = static_cast<float>(static_cast<int32_t>(n & 0x3FFFFFu) - (1 << 21)) * kTwoPow22Inv;
    const float a2 = a * a;
    const float sn = a * (kS1 + a2 * (kS3 + a2 * (kS5 + a2 * (kS7 + a2 * (kS9 + a2 * kS11)))));
    const float cs = 1.0f + a2 * (kC2 + a2 * (kC4 + a2 * (kC6 + a2 * (kC8 + a2 * kC10))));
    const bool swap = (quad & 1u) != 0;
    const float c0 = swap ? sn : cs, s0 = swap ? cs : sn;
    c = ((quad + 1u) & 2u) ? -c0 : c0;  // quadrants 1, 2: cosine negative
    s = (quad & 2u) ? -s0 : s0;         // quadrants 2, 3: sine negative
}

/// The four normals of Philox block q of (seed, round, member), in word order
/// (cos and sin of (w0, w1), cos and sin of (w2, w3)).
inline void block(uint64_t seed, uint64_t round, uint32_t member, uint32_t q, float out[4]) {
    const auto w = philox::block({q, member, static_cast<uint32_t>(round), static_cast<uint32_t>(round >> 32)}, seed);
    float c, s;
    const float ra = radius(w[0]);
    cos_sin(w[1], c, s);
    out[0] = ra * c;
    out[1] = ra * s;
    const float rb = radius(w[2]);
    cos_sin(w[3], c, s);
    out[2] = rb * c;
    out[3] = rb * s;
}

/// z(seed, round, member, i): one element of the stream (the definition; slow).
inline float at(uint64_t seed, uint64_t round, uint32_t member, uint64_t i) {
    float v[4];
    block(seed, round, member, static_cast<uint32_t>(16 * (i / 64) + (i % 16)), v);
    return v[(i % 64) / 16];
}

constexpr uint64_t kMaxElements = uint64_t(1) << 34;  // q must fit 32 bits

}  // namespace gaussian
}  // namespace gradsparse
