// gradsparse — the bit patterns of float32, both ways (memcpy: no aliasing, no UB), for the
// kernels that round, compare or build floats by their bits.
#pragma once

#include <cstdint>
#include <cstring>

namespace gradsparse {

/// The bits of a float32.
inline uint32_t f32_bits(float f) {
    uint32_t u;
    std::memcpy(&u, &f, 4);
    return u;
}

/// The float32 of some bits.
inline float bits_f32(uint32_t u) {
    float f;
    std::memcpy(&f, &u, 4);
    return f;
}

}  // namespace gradsparse
