// gradsparse — prepared costs: the one-time check of a cost array and the one-byte lower
// bounds of float32 costs that let the cost filter skip reading c (docs/algorithms.md).
//
// A positive finite float's bit pattern is increasing in its value, so truncating the bits
// relative to the smallest cost gives a lower bound: with base = bits(min c) and the
// smallest shift s for which (bits(max c) - base) >> s fits a byte, the code
// (bits(c) - base) >> s decodes to bits(L) = base + (code << s) <= bits(c), i.e. L <= c.
// Within one octave L lies within 2^(s - 23) of c: for costs spanning 2 octaves s = 16, a
// relative gap below 1/128.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <string>
#include <utility>
#include <vector>

#include "gradsparse/parallel.hpp"

#include "gradsparse/select.hpp"
#include "kernels.hpp"

namespace gradsparse {

namespace {

[[noreturn]] void bad_cost(size_t i, double v) {
    char buf[64];
    std::snprintf(buf, sizeof buf, "%.9g", v);
    throw ArgumentError("cost: costs must be finite and > 0, got " + std::string(buf) + " at index " +
                        std::to_string(i));
}

}  // namespace

void encode_cost_bounds(const float* c, size_t n, uint8_t* code, uint32_t* base, uint32_t* shift) {
    // Pass 1 (the SIMD level's kernel, threads over contiguous ranges): the range of the
    // bit patterns and whether any cost is invalid; the first bad index only then.
    const int nt = threads_for(n, size_t(1) << 20);
    std::vector<uint32_t> los(static_cast<size_t>(nt)), his(static_cast<size_t>(nt));
    std::vector<uint8_t> bads(static_cast<size_t>(nt));
    auto range = [&](int t) {
        return std::make_pair(n * static_cast<size_t>(t) / static_cast<size_t>(nt),
                              n * static_cast<size_t>(t + 1) / static_cast<size_t>(nt));
    };
    const uint32_t* bits = reinterpret_cast<const uint32_t*>(c);
    const Kernels& kern = active_kernels();
    parallel_run(nt, [&](int t) {
        const auto [b0, b1] = range(t);
        uint32_t lo = 0x7F7FFFFFu, hi = 1u;
        bool bad = false;
        kern.cost_range_f32(bits + b0, b1 - b0, &lo, &hi, &bad);
        los[static_cast<size_t>(t)] = lo;
        his[static_cast<size_t>(t)] = hi;
        bads[static_cast<size_t>(t)] = static_cast<uint8_t>(bad);
    });
    uint32_t lo = 0x7F7FFFFFu, hi = 1u;
    for (int t = 0; t < nt; ++t) {
        if (bads[static_cast<size_t>(t)]) {
            const auto [b0, b1] = range(t);
            for (size_t i = b0; i < b1; ++i)
                if (!(c[i] > 0.0f && c[i] <= 3.4028234663852886e38f)) bad_cost(i, static_cast<double>(c[i]));
        }
        lo = std::min(lo, los[static_cast<size_t>(t)]);
        hi = std::max(hi, his[static_cast<size_t>(t)]);
    }
    if (n == 0) lo = hi;
    uint32_t s = 0;
    while (((hi - lo) >> s) > 255u) ++s;
    parallel_run(nt, [&](int t) {
        const auto [b0, b1] = range(t);
        kern.cost_codes_f32(bits + b0, b1 - b0, lo, s, code + b0);
    });
    *base = lo;
    *shift = s;
}

void check_costs_f64(const double* c, size_t n) {
    for (size_t i = 0; i < n; ++i)
        if (!(c[i] > 0.0 && c[i] <= 1.7976931348623157e308)) bad_cost(i, c[i]);
}

}  // namespace gradsparse
