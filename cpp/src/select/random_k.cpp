// gradsparse — seeded random-k: Floyd's algorithm over a counter-based generator, so the
// same (n, k, seed) gives the same indices on every platform and SIMD level.
#include <vector>

#include "core/rng.hpp"
#include "gradsparse/select.hpp"

namespace gradsparse {
namespace {

// SplitMix64 finaliser applied to seed-keyed counters: a counter-based stream.
struct CounterRng {
    uint64_t key;
    uint64_t counter = 0;
    uint64_t next() { return splitmix64::at(key, ++counter); }
    // Uniform in [0, range) without modulo bias (Lemire's multiply-and-reject).
    uint64_t below(uint64_t range) {
        unsigned __int128 m = static_cast<unsigned __int128>(next()) * range;
        uint64_t low = static_cast<uint64_t>(m);
        if (low < range) {
            uint64_t floor = (0 - range) % range;
            while (low < floor) {
                m = static_cast<unsigned __int128>(next()) * range;
                low = static_cast<uint64_t>(m);
            }
        }
        return static_cast<uint64_t>(m >> 64);
    }
};

}  // namespace

std::vector<int64_t> random_k(size_t n, size_t k, uint64_t seed) {
    GS_CHECK(n >= 1, "x: input is empty");
    GS_CHECK(k >= 1 && k <= n, "k: must be in [1, " + std::to_string(n) + "], got " + std::to_string(k));
    CounterRng rng{seed ^ 0x6A09E667F3BCC908ull};
    std::vector<uint64_t> bits((n + 63) / 64, 0);
    auto test_and_set = [&](uint64_t i) {
        uint64_t& w = bits[i >> 6];
        uint64_t b = uint64_t(1) << (i & 63);
        bool was = (w & b) != 0;
        w |= b;
        return was;
    };
    for (uint64_t j = n - k; j < n; ++j) {
        uint64_t t = rng.below(j + 1);
        if (test_and_set(t)) test_and_set(j);
    }
    std::vector<int64_t> out;
    out.reserve(k);
    for (size_t w = 0; w < bits.size(); ++w)
        for (uint64_t word = bits[w]; word; word &= word - 1)
            out.push_back(static_cast<int64_t>(w * 64 + static_cast<size_t>(__builtin_ctzll(word))));
    return out;
}

}  // namespace gradsparse
