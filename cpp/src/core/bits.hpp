// gradsparse — the bit patterns of float32, both ways (memcpy: no aliasing, no UB), for the
// kernels that round, compare or build floats by their bits.
#pragma once

#include <cstdint>
#include <cstring>

#include "core/hd.hpp"

namespace gradsparse {

/// The bits of a float32.
GS_HD inline uint32_t f32_bits(float f) {
    uint32_t u;
    std::memcpy(&u, &f, 4);
    return u;
}

/// The float32 of some bits.
GS_HD inline float bits_f32(uint32_t u) {
    float f;
    std::memcpy(&f, &u, 4);
    return f;
}

/// The largest finite bfloat16, as float32 bits.
constexpr uint32_t kBf16MaxBits = 0x7F7F0000u;

/// Round to nearest even of float32 bits to bfloat16 bits; finite values saturate at the
/// largest finite bfloat16 (infinities stay infinite); NaN stays a quiet NaN.
GS_HD inline uint16_t to_bf16_saturated(uint32_t u) {
    const uint32_t mag = u & 0x7FFFFFFFu;
    if (mag > 0x7F800000u) return static_cast<uint16_t>((u >> 16) | 0x40u);
    if (mag < 0x7F800000u && mag > kBf16MaxBits) u = (u & 0x80000000u) | kBf16MaxBits;
    return static_cast<uint16_t>((u + 0x7FFFu + ((u >> 16) & 1u)) >> 16);
}

}  // namespace gradsparse
