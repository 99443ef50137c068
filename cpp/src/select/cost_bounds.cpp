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
#include "cost_check.hpp"
#include "kernels.hpp"

namespace gradsparse {

namespace {

[[noreturn]] void bad_cost(size_t i, double v) {
    char buf[64];
    std::snprintf(buf, sizeof buf, "%.9g", v);
    throw ArgumentError(std::string(kBadCostMessage) + ", got " + std::string(buf) + " at index " +
                        std::to_string(i));
}

// [begin, end) of part t of n elements split over nt threads.
std::pair<size_t, size_t> part(size_t n, int t, int nt) {
    const RangePart r = split_range(n, nt, t);
    return {r.begin, r.end};
}

// The range [*lo, *hi] of the bit patterns of n float32 costs, all checked finite and > 0
// (the SIMD level's kernel, threads over contiguous parts; the first bad index is looked
// for only in a part that has one).
void checked_range_f32(const float* c, size_t n, int nt, uint32_t* lo_out, uint32_t* hi_out) {
    std::vector<uint32_t> los(static_cast<size_t>(nt)), his(static_cast<size_t>(nt));
    std::vector<uint8_t> bads(static_cast<size_t>(nt));
    const uint32_t* bits = reinterpret_cast<const uint32_t*>(c);
    const Kernels& kern = active_kernels();
    parallel_run(nt, [&](int t) {
        const auto [b0, b1] = part(n, t, nt);
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
            const auto [b0, b1] = part(n, t, nt);
            for (size_t i = b0; i < b1; ++i)
                if (!cost_ok(static_cast<double>(c[i]))) bad_cost(i, static_cast<double>(c[i]));
        }
        lo = std::min(lo, los[static_cast<size_t>(t)]);
        hi = std::max(hi, his[static_cast<size_t>(t)]);
    }
    *lo_out = n == 0 ? hi : lo;
    *hi_out = hi;
}

}  // namespace

void encode_cost_bounds(const float* c, size_t n, uint8_t* code, uint32_t* base, uint32_t* shift) {
    const int nt = threads_for(n, size_t(1) << 20);
    uint32_t lo, hi;
    checked_range_f32(c, n, nt, &lo, &hi);
    uint32_t s = 0;
    while (((hi - lo) >> s) > 255u) ++s;
    const Kernels& kern = active_kernels();
    parallel_run(nt, [&](int t) {
        const auto [b0, b1] = part(n, t, nt);
        kern.cost_codes_f32(reinterpret_cast<const uint32_t*>(c) + b0, b1 - b0, lo, s, code + b0);
    });
    *base = lo;
    *shift = s;
}

void check_costs_f32(const float* c, size_t n) {
    uint32_t lo, hi;
    checked_range_f32(c, n, threads_for(n, size_t(1) << 20), &lo, &hi);
}

void check_costs_f64(const double* c, size_t n) {
    const int nt = threads_for(n, size_t(1) << 20);
    std::vector<uint8_t> bads(static_cast<size_t>(nt));
    parallel_run(nt, [&](int t) {
        const auto [b0, b1] = part(n, t, nt);
        bool bad = false;  // branch-free, so that it vectorises
        for (size_t i = b0; i < b1; ++i) bad |= !cost_ok(c[i]);
        bads[static_cast<size_t>(t)] = static_cast<uint8_t>(bad);
    });
    for (int t = 0; t < nt; ++t)
        if (bads[static_cast<size_t>(t)]) {
            const auto [b0, b1] = part(n, t, nt);
            for (size_t i = b0; i < b1; ++i)
                if (!cost_ok(c[i])) bad_cost(i, c[i]);
        }
}

}  // namespace gradsparse
