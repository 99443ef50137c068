// gradsparse — portable filter loops. Included by every filter_<isa>.cpp: the scalar
// table is built only from these, and SIMD tables use them for the variants they do not
// specialise (compiled with that unit's flags, so the compiler may vectorise them).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstring>
#include <type_traits>

#include "cost_check.hpp"
#include "kernels.hpp"
#include "keys.hpp"

namespace gradsparse {
namespace generic {
// Internal linkage: each instruction-set unit compiles its own copy (no ODR merging of
// code built with different -m flags).
namespace {

template <class F>
inline size_t filter_keys(const typename F::uint* bits, size_t n, KeyMode mode,
                          typename F::uint thr, uint32_t* out, typename F::uint* vals, size_t cap) {
    size_t count = 0;
    for (size_t i = 0; i < n; ++i) {
        if (keys::key<F>(mode, bits[i]) >= thr) {
            if (count == cap) return kFilterOverflow;
            vals[count] = bits[i];
            out[count++] = static_cast<uint32_t>(i);
        }
    }
    return count;
}

/// The elements [i, n) not covered by a vector loop: the portable filter, appended after
/// `count` results, with positions made relative to bits[0]. Returns the new count.
template <class F>
inline size_t filter_tail(const typename F::uint* bits, size_t i, size_t n, KeyMode mode, typename F::uint thr,
                          uint32_t* out, typename F::uint* vals, size_t count, size_t cap) {
    if (count > cap) return kFilterOverflow;
    size_t rest = filter_keys<F>(bits + i, n - i, mode, thr, out + count, vals + count, cap - count);
    if (rest == kFilterOverflow) return kFilterOverflow;
    for (size_t j = 0; j < rest; ++j) out[count + j] += static_cast<uint32_t>(i);
    return count + rest;
}

/// Writes the elements i + b for every set bit b of m (ascending) to out, their bits to
/// vals; returns the new count. For filters where few lanes pass.
template <class U>
inline size_t emit_mask(uint64_t m, size_t i, const U* bits, uint32_t* out, U* vals, size_t count) {
    for (; m; m &= m - 1) {
        const size_t at = i + static_cast<size_t>(__builtin_ctzll(m));
        out[count] = static_cast<uint32_t>(at);
        vals[count++] = bits[at];
    }
    return count;
}

/// Calls fn with the ranking mode as a compile-time constant (one instantiation each).
template <class Fn>
inline size_t with_mode(KeyMode mode, Fn&& fn) {
    switch (mode) {
        case KeyMode::Magnitude: return fn(std::integral_constant<KeyMode, KeyMode::Magnitude>{});
        case KeyMode::Largest: return fn(std::integral_constant<KeyMode, KeyMode::Largest>{});
        default: return fn(std::integral_constant<KeyMode, KeyMode::Smallest>{});
    }
}

inline size_t filter_f32(const uint32_t* bits, size_t n, KeyMode mode, uint32_t thr,
                         uint32_t* out, uint32_t* vals, size_t cap) {
    return filter_keys<keys::F32>(bits, n, mode, thr, out, vals, cap);
}
inline size_t filter_f64(const uint64_t* bits, size_t n, KeyMode mode, uint64_t thr,
                         uint32_t* out, uint64_t* vals, size_t cap) {
    return filter_keys<keys::F64>(bits, n, mode, thr, out, vals, cap);
}
inline size_t filter_h16(const uint16_t* bits, size_t n, KeyMode mode, bool bf16, uint16_t thr,
                         uint32_t* out, uint16_t* vals, size_t cap) {
    return bf16 ? filter_keys<keys::BF16>(bits, n, mode, thr, out, vals, cap)
                : filter_keys<keys::F16>(bits, n, mode, thr, out, vals, cap);
}

/// Exact CWMP key of a float32 element with a float32 cost (q = 2, alpha = 1).
inline uint64_t cost_key_f32(float x, float c) {
    const double a = static_cast<double>(x);
    return keys::score_key((a * a) / static_cast<double>(c));
}

/// The float64 pre-test threshold of filter_cost_f32 for the key threshold t: x^2 >= t'*c
/// holds for every element whose exact score fl(x^2 / c) reaches T = score(t) when
/// t' = T * (1 - 2^-40) (docs/algorithms.md); below 2^-1000 (subnormal rounding) the test
/// is off (t' = 0), and above +inf only NaN qualifies (t' = inf).
inline double cost_pretest_threshold(uint64_t t) {
    if (t > keys::F64::inf) return HUGE_VAL;
    const double ts = keys::key_to_score(t);
    return ts < 0x1p-1000 ? 0.0 : std::min(ts, kMaxFiniteDouble) * (1.0 - 0x1p-40);
}

inline size_t filter_cost_f32(const float* x, const float* c, size_t n, uint64_t t, uint32_t* out,
                              uint32_t* vals, uint64_t* key_out, size_t cap, bool* bad_cost) {
    const double tm = cost_pretest_threshold(t);
    size_t count = 0;
    bool bad = false;
    for (size_t i = 0; i < n; ++i) {
        double a = static_cast<double>(x[i]);
        double ci = static_cast<double>(c[i]);
        bad |= !cost_ok(ci);
        double aa = a * a;
        if (!(aa < tm * ci)) {  // true for NaN as well; the exact key decides
            const uint64_t k = cost_key_f32(x[i], c[i]);
            if (k < t) continue;
            if (count == cap) {
                *bad_cost = *bad_cost || bad;
                return kFilterOverflow;
            }
            std::memcpy(vals + count, x + i, 4);
            key_out[count] = k;
            out[count++] = static_cast<uint32_t>(i);
        }
    }
    *bad_cost = *bad_cost || bad;
    return count;
}

/// The lower bound of a prepared float32 cost from its one-byte code (see
/// encode_cost_bounds): bits(L) = base + (code << shift) <= bits(c), so 0 < L <= c.
inline float cost_bound_f32(uint8_t code, uint32_t base, uint32_t shift) {
    const uint32_t b = base + (static_cast<uint32_t>(code) << shift);
    float f;
    std::memcpy(&f, &b, 4);
    return f;
}

/// The float64 threshold T' of the "sure" test x*x >= T' * U (U >= c the upper bound of a
/// prepared cost): T' = T * (1 + 2^-40) for T = score(max(t, t_sure)), so that fl(T' * U)
/// (2^-53) still exceeds T * c and the exact score x^2 / c (rounded: 2^-53) exceeds T.
/// Off (+inf) when max(t, t_sure) is +inf or above (t_sure = ~0: never "sure").
inline double cost_sure_threshold(uint64_t t, uint64_t t_sure) {
    const uint64_t m = t_sure > t ? t_sure : t;
    if (m >= keys::F64::inf) return HUGE_VAL;
    return keys::key_to_score(m) * (1.0 + 0x1p-40);
}

/// The key of a prepared-cost element that passed the pre-test: kSureKey when x*x >= T' * U
/// (ts = T', see cost_sure_threshold) proves the exact key above the sure threshold, else
/// the exact key from *c (read only then).
inline uint64_t bound_key(float x, const float* c, uint8_t code, uint32_t base, uint32_t shift, double ts) {
    const double a = static_cast<double>(x);
    // U: the largest float with the same code; past the largest finite float, no bound
    const uint32_t ub = base + (static_cast<uint32_t>(code) << shift) + ((uint32_t(1) << shift) - 1u);
    float hi;
    std::memcpy(&hi, &ub, 4);
    // T' * U normal and finite (2^-1000 .. max): its rounding is relative (inf: test off)
    const double th = ts * static_cast<double>(hi);
    if (ub <= 0x7F7FFFFFu && th >= 0x1p-1000 && th <= kMaxFiniteDouble && a * a >= th) return kSureKey;
    return cost_key_f32(x, *c);
}

/// filter_cost_f32 with the pre-test on the bound L <= c: fl(t' * L) <= fl(t' * c) (rounding
/// is monotone), so every element that passes the pre-test on c passes this one; the exact
/// key, from c, decides — unless the upper bound U >= c proves it above max(t, t_sure).
inline size_t filter_cost_bound_f32(const float* x, const float* c, const uint8_t* code, uint32_t base,
                                    uint32_t shift, size_t n, uint64_t t, uint64_t t_sure, uint32_t* out,
                                    uint32_t* vals, uint64_t* key_out, size_t cap) {
    const double tm = cost_pretest_threshold(t);
    const double ts = cost_sure_threshold(t, t_sure);
    size_t count = 0;
    for (size_t i = 0; i < n; ++i) {
        const double a = static_cast<double>(x[i]);
        if (a * a < tm * static_cast<double>(cost_bound_f32(code[i], base, shift))) continue;  // NaN goes on
        const uint64_t k = bound_key(x[i], c + i, code[i], base, shift, ts);
        if (k < t) continue;
        if (count == cap) return kFilterOverflow;
        std::memcpy(vals + count, x + i, 4);
        key_out[count] = k;
        out[count++] = static_cast<uint32_t>(i);
    }
    return count;
}

inline void add_f32(float* e, const float* x, size_t n) {
    for (size_t i = 0; i < n; ++i) e[i] += x[i];
}

// Branch-free, so that each instruction set's unit vectorises them.
inline void cost_range_f32(const uint32_t* bits, size_t n, uint32_t* lo_io, uint32_t* hi_io, bool* bad_io) {
    uint32_t lo = *lo_io, hi = *hi_io, bad = 0;
    for (size_t i = 0; i < n; ++i) {
        const uint32_t b = bits[i];
        bad |= static_cast<uint32_t>(b - 1u >= 0x7F7FFFFFu);  // valid: 1 .. 0x7F7FFFFF
        lo = b < lo ? b : lo;
        hi = b > hi ? b : hi;
    }
    *lo_io = lo;
    *hi_io = hi;
    *bad_io = *bad_io || bad != 0;
}

inline void cost_codes_f32(const uint32_t* bits, size_t n, uint32_t base, uint32_t shift, uint8_t* code) {
    for (size_t i = 0; i < n; ++i) code[i] = static_cast<uint8_t>((bits[i] - base) >> shift);
}

inline size_t band_f32(const uint32_t* vals, size_t n, KeyMode mode, uint32_t hi, uint32_t* band, size_t* above) {
    size_t nb = 0, up = 0;
    for (size_t c = 0; c < n; ++c) {
        const uint32_t k = static_cast<uint32_t>(keys::key<keys::F32>(mode, vals[c]));
        band[nb] = k;  // written unconditionally, kept by advancing (no unpredictable branch)
        nb += k <= hi;
        up += k > hi;
    }
    *above = up;
    return nb;
}

inline void count_f32(const uint32_t* vals, size_t n, KeyMode mode, uint32_t kstar, size_t* greater,
                      size_t* equal) {
    size_t g = 0, e = 0;
    for (size_t c = 0; c < n; ++c) {
        const uint32_t k = static_cast<uint32_t>(keys::key<keys::F32>(mode, vals[c]));
        g += k > kstar;
        e += k == kstar;
    }
    *greater = g;
    *equal = e;
}

/// emit_f32 from candidate c on, with o written already and eq_left ties still to keep;
/// the SIMD kernels finish with it.
inline void emit_f32_from(const uint32_t* pos, const uint32_t* vals, size_t c, size_t n, KeyMode mode,
                          uint32_t kstar, size_t eq_left, size_t o, size_t kept, int64_t base, int64_t* idx_out,
                          uint32_t* val_out) {
    for (; c < n && o < kept; ++c) {
        const uint32_t k = static_cast<uint32_t>(keys::key<keys::F32>(mode, vals[c]));
        size_t keep = k > kstar;
        if (k == kstar && eq_left > 0) {  // rare: ties at K*
            keep = 1;
            --eq_left;
        }
        // written unconditionally, kept by advancing (no unpredictable branch); o < kept,
        // so the slot is within this piece's output
        if (idx_out) idx_out[o] = base + static_cast<int64_t>(pos[c]);
        if (val_out) val_out[o] = vals[c];
        o += keep;
    }
}

inline void emit_f32(const uint32_t* pos, const uint32_t* vals, size_t n, KeyMode mode, uint32_t kstar,
                     size_t take_eq, size_t kept, int64_t base, int64_t* idx_out, uint32_t* val_out) {
    emit_f32_from(pos, vals, 0, n, mode, kstar, take_eq, 0, kept, base, idx_out, val_out);
}

inline void cost_keys_f32(const float* x, const float* c, size_t n, uint64_t* key) {
    for (size_t i = 0; i < n; ++i) key[i] = cost_key_f32(x[i], c[i]);
}

inline size_t band_u64(const uint64_t* key, size_t n, uint64_t hi, uint64_t* band, size_t* above) {
    size_t nb = 0;
    for (size_t c = 0; c < n; ++c) {
        const uint64_t k = key[c];
        band[nb] = k;  // written unconditionally, kept by advancing
        nb += k <= hi;
    }
    *above = n - nb;
    return nb;
}

inline void count_u64(const uint64_t* key, size_t n, uint64_t kstar, size_t* greater, size_t* equal) {
    size_t g = 0, e = 0;
    for (size_t c = 0; c < n; ++c) {
        g += key[c] > kstar;
        e += key[c] == kstar;
    }
    *greater = g;
    *equal = e;
}

/// emit_u64 from candidate c on, with o written already and eq_left ties still to keep.
inline void emit_u64_from(const uint32_t* pos, const uint32_t* vals, const uint64_t* key, size_t c, size_t n,
                          uint64_t kstar, size_t eq_left, size_t o, size_t kept, int64_t base, int64_t* idx_out,
                          uint32_t* val_out) {
    for (; c < n && o < kept; ++c) {
        const uint64_t k = key[c];
        size_t keep = k > kstar;
        if (k == kstar && eq_left > 0) {  // rare: ties at K*
            keep = 1;
            --eq_left;
        }
        if (idx_out) idx_out[o] = base + static_cast<int64_t>(pos[c]);
        if (val_out) val_out[o] = vals[c];
        o += keep;
    }
}

inline void emit_u64(const uint32_t* pos, const uint32_t* vals, const uint64_t* key, size_t n, uint64_t kstar,
                     size_t take_eq, size_t kept, int64_t base, int64_t* idx_out, uint32_t* val_out) {
    emit_u64_from(pos, vals, key, 0, n, kstar, take_eq, 0, kept, base, idx_out, val_out);
}

}  // namespace
}  // namespace generic
}  // namespace gradsparse
