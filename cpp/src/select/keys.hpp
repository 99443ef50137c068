// gradsparse — order keys: unsigned integers whose order is the ranking order.
//
// Every ranking the engine supports maps an element to an unsigned key such that a
// larger key ranks first; ties are broken by the lower index. Keys are built from the
// IEEE bit pattern, so float16/bfloat16 never need a conversion and the order is exact.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>
#include <type_traits>

#include "core/hd.hpp"
#include "gradsparse/common.hpp"

namespace gradsparse {
namespace keys {
// Internal linkage: each instruction-set unit compiles its own copy (no ODR merging of
// code built with different -m flags).
namespace {

/// Bit-pattern constants of one IEEE binary format.
template <typename U, U Sign, U Inf>
struct Format {
    using uint = U;
    static constexpr U sign = Sign;
    static constexpr U abs_mask = static_cast<U>(~Sign);
    static constexpr U inf = Inf;
    static constexpr U nan_key = static_cast<U>(Inf + 1);  // every NaN, in magnitude order
};
using F32 = Format<uint32_t, 0x80000000u, 0x7F800000u>;
using F64 = Format<uint64_t, 0x8000000000000000ull, 0x7FF0000000000000ull>;
using F16 = Format<uint16_t, 0x8000u, 0x7C00u>;
using BF16 = Format<uint16_t, 0x8000u, 0x7F80u>;

/// |x| order; all NaNs share the key just above +inf.
template <class F>
GS_HD inline typename F::uint magnitude(typename F::uint b) {
    typename F::uint a = b & F::abs_mask;
    return a > F::inf ? F::nan_key : a;
}

/// Signed order, largest first; NaN above +inf, -0 equal to +0.
template <class F>
GS_HD inline typename F::uint largest(typename F::uint b) {
    using U = typename F::uint;
    U a = b & F::abs_mask;
    if (a > F::inf) return static_cast<U>(~U(0));
    if (a == 0) return F::sign;  // +0 and -0
    return (b & F::sign) ? static_cast<U>(~b) : static_cast<U>(b | F::sign);
}

/// Signed order, smallest first; NaN ranks last.
template <class F>
GS_HD inline typename F::uint smallest(typename F::uint b) {
    return static_cast<typename F::uint>(~largest<F>(b));
}

/// |x| reversed, smallest first; NaN ranks last.
template <class F>
GS_HD inline typename F::uint smallest_magnitude(typename F::uint b) {
    return static_cast<typename F::uint>(~magnitude<F>(b));
}

template <class F>
GS_HD inline typename F::uint key(KeyMode mode, typename F::uint b) {
    switch (mode) {
        case KeyMode::Magnitude: return magnitude<F>(b);
        case KeyMode::Largest: return largest<F>(b);
        case KeyMode::Smallest: return smallest<F>(b);
        default: return smallest_magnitude<F>(b);
    }
}

/// Order key of an integer (T: int8_t..uint64_t) as the unsigned type of its width: the
/// signed value (sign bit flipped), its mathematical |x| (|INT_MIN| = 2^(w-1) ranks
/// largest), or either reversed.
template <typename T>
inline typename std::make_unsigned<T>::type int_key(KeyMode mode, typename std::make_unsigned<T>::type b) {
    using U = typename std::make_unsigned<T>::type;
    constexpr unsigned top = 8 * sizeof(U) - 1;
    const U sign = static_cast<U>(U(1) << top);
    const bool neg = std::is_signed<T>::value && (b & sign);
    switch (mode) {
        case KeyMode::Magnitude: return neg ? static_cast<U>(U(0) - b) : b;
        case KeyMode::Largest: return std::is_signed<T>::value ? static_cast<U>(b ^ sign) : b;
        case KeyMode::Smallest: return static_cast<U>(~(std::is_signed<T>::value ? static_cast<U>(b ^ sign) : b));
        default: return static_cast<U>(~(neg ? static_cast<U>(U(0) - b) : b));
    }
}

/// Exact float16 -> float conversion from the bit pattern.
GS_HD inline float half_to_float(uint16_t h) {
    uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
    uint32_t exp = (h >> 10) & 0x1Fu;
    uint32_t man = h & 0x3FFu;
    uint32_t out;
    if (exp == 0x1F) {
        out = sign | 0x7F800000u | (man << 13);
    } else if (exp != 0) {
        out = sign | ((exp + 112u) << 23) | (man << 13);
    } else if (man == 0) {
        out = sign;
    } else {  // subnormal: value = man * 2^-24, exact in float
        float f = static_cast<float>(man) * 5.9604644775390625e-08f;
        std::memcpy(&out, &f, 4);
        out |= sign;
    }
    float f;
    std::memcpy(&f, &out, 4);
    return f;
}

GS_HD inline float bf16_to_float(uint16_t h) {
    uint32_t u = static_cast<uint32_t>(h) << 16;
    float f;
    std::memcpy(&f, &u, 4);
    return f;
}

/// |x| as a double, exactly, from element i of typed data.
inline double abs_value(DType t, const void* data, size_t i) {
    switch (t) {
        case DType::F32: return std::fabs(static_cast<double>(static_cast<const float*>(data)[i]));
        case DType::F64: return std::fabs(static_cast<const double*>(data)[i]);
        case DType::F16: return std::fabs(static_cast<double>(half_to_float(static_cast<const uint16_t*>(data)[i])));
        case DType::BF16: return std::fabs(static_cast<double>(bf16_to_float(static_cast<const uint16_t*>(data)[i])));
        case DType::I8: return std::fabs(static_cast<double>(static_cast<const int8_t*>(data)[i]));
        case DType::U8: return static_cast<double>(static_cast<const uint8_t*>(data)[i]);
        case DType::I16: return std::fabs(static_cast<double>(static_cast<const int16_t*>(data)[i]));
        case DType::U16: return static_cast<double>(static_cast<const uint16_t*>(data)[i]);
        case DType::I32: return std::fabs(static_cast<double>(static_cast<const int32_t*>(data)[i]));
        case DType::U32: return static_cast<double>(static_cast<const uint32_t*>(data)[i]);
        case DType::I64: return std::fabs(static_cast<double>(static_cast<const int64_t*>(data)[i]));
        default: return static_cast<double>(static_cast<const uint64_t*>(data)[i]);
    }
}

/// Key of a non-negative (or NaN) double score: its bit pattern, NaN just above +inf.
GS_HD inline uint64_t score_key(double s) {
    if (std::isnan(s)) return F64::nan_key;
    uint64_t b;
    std::memcpy(&b, &s, 8);
    return b & F64::abs_mask;  // scores are >= 0; clears the sign of -0.0
}

GS_HD inline double key_to_score(uint64_t k) {
    double s;
    std::memcpy(&s, &k, 8);
    return s;
}

}  // namespace
}  // namespace keys
}  // namespace gradsparse
