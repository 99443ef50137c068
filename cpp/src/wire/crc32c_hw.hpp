// gradsparse — CRC32C with the SSE4.2 crc32 instruction. Included only by units built
// with -msse4.2 (wire_avx2.cpp, wire_avx512.cpp); the same polynomial as the table twin.
#pragma once

#include <nmmintrin.h>

#include <cstdint>
#include <cstring>

namespace gradsparse {
namespace wire {
// Internal linkage: each instruction-set unit compiles its own copy (no ODR merging of
// code built with different -m flags).
namespace {

inline uint32_t crc32c_hw(uint32_t crc, const uint8_t* p, size_t n) {
    uint64_t c = ~crc;
    while (n >= 8) {
        uint64_t v;
        std::memcpy(&v, p, 8);
        c = _mm_crc32_u64(c, v);
        p += 8;
        n -= 8;
    }
    uint32_t c32 = static_cast<uint32_t>(c);
    while (n--) c32 = _mm_crc32_u8(c32, *p++);
    return ~c32;
}

}  // namespace
}  // namespace wire
}  // namespace gradsparse
