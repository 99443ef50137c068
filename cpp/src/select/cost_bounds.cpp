// gradsparse — prepared costs: the one-time check of a cost array and the one-byte lower
// bounds of float32 costs that let the cost filter skip reading c (docs/algorithms.md).
//
// A positive finite float's bit pattern is increasing in its value, so truncating the bits
// relative to the smallest cost gives a lower bound: with base = bits(min c) and the
// smallest shift s for which (bits(max c) - base) >> s fits a byte, the code
// (bits(c) - base) >> s decodes to bits(L) = base + (code << s) <= bits(c), i.e. L <= c.
// Within one octave L lies within 2^(s - 23) of c: for costs spanning 2 octaves s = 16, a
// relative gap below 1/128.
#include <cmath>
#include <cstdio>
#include <cstring>
#include <string>

#include "gradsparse/select.hpp"

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
    uint32_t lo = 0x7F7FFFFFu, hi = 1u;
    for (size_t i = 0; i < n; ++i) {
        uint32_t b;
        std::memcpy(&b, c + i, 4);
        // valid: 1 (smallest subnormal) .. 0x7F7FFFFF (largest finite); -0, negatives, inf, NaN not
        if (b - 1u >= 0x7F7FFFFFu) bad_cost(i, static_cast<double>(c[i]));
        lo = b < lo ? b : lo;
        hi = b > hi ? b : hi;
    }
    if (n == 0) lo = hi;
    uint32_t s = 0;
    while (((hi - lo) >> s) > 255u) ++s;
    for (size_t i = 0; i < n; ++i) {
        uint32_t b;
        std::memcpy(&b, c + i, 4);
        code[i] = static_cast<uint8_t>((b - lo) >> s);
    }
    *base = lo;
    *shift = s;
}

void check_costs_f64(const double* c, size_t n) {
    for (size_t i = 0; i < n; ++i)
        if (!(c[i] > 0.0 && c[i] <= 1.7976931348623157e308)) bad_cost(i, c[i]);
}

}  // namespace gradsparse
