// gradsparse — the counter-based random number generators, inline for sampling loops:
// Philox-4x32-10 (Salmon, Moraes, Dror, Shaw, "Parallel random numbers: as easy as 1, 2, 3",
// SC'11) and SplitMix64 (Steele, Lea, Flood, "Fast splittable pseudorandom number
// generators", OOPSLA'14). Every output is a pure function of (seed, counter), so results
// do not depend on thread count or SIMD level. Their outputs are pinned by the tests: a
// seed must give the same numbers in every version.
#pragma once

#include <array>
#include <cstdint>

namespace gradsparse {

namespace splitmix64 {

constexpr uint64_t kGamma = 0x9E3779B97F4A7C15ull;  // the golden-ratio increment

/// SplitMix64's output function: a bijective mix of the 64-bit state.
inline uint64_t mix(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/// The i-th output (i >= 1) of SplitMix64 started at state `seed`.
inline uint64_t at(uint64_t seed, uint64_t i) { return mix(seed + kGamma * i); }

}  // namespace splitmix64

namespace philox {

constexpr uint32_t kMul0 = 0xD2511F53u, kMul1 = 0xCD9E8D57u;
constexpr uint32_t kWeyl0 = 0x9E3779B9u, kWeyl1 = 0xBB67AE85u;

inline std::array<uint32_t, 4> block(std::array<uint32_t, 4> c, uint64_t key) {
    uint32_t k0 = static_cast<uint32_t>(key), k1 = static_cast<uint32_t>(key >> 32);
    for (int r = 0; r < 10; ++r) {
        const uint64_t p0 = uint64_t(kMul0) * c[0], p1 = uint64_t(kMul1) * c[2];
        const uint32_t hi0 = static_cast<uint32_t>(p0 >> 32), lo0 = static_cast<uint32_t>(p0);
        const uint32_t hi1 = static_cast<uint32_t>(p1 >> 32), lo1 = static_cast<uint32_t>(p1);
        c = {hi1 ^ c[1] ^ k0, lo1, hi0 ^ c[3] ^ k1, lo0};
        k0 += kWeyl0;
        k1 += kWeyl1;
    }
    return c;
}

/// The four raw words for items 4*q .. 4*q+3 of `stream` (counter = (q, stream)).
inline std::array<uint32_t, 4> words(uint64_t seed, uint64_t stream, uint64_t q) {
    return block({static_cast<uint32_t>(q), static_cast<uint32_t>(q >> 32), static_cast<uint32_t>(stream),
                  static_cast<uint32_t>(stream >> 32)},
                 seed);
}

/// 24-bit uniform in [0, 1): exactly representable in float and double.
inline float to_unit(uint32_t w) { return static_cast<float>(w >> 8) * (1.0f / 16777216.0f); }

}  // namespace philox
}  // namespace gradsparse
