// gradsparse — shuffle tables for the byte-aligned varint codec (SIMD units only).
// Control byte c describes four values, value j taking ((c >> 2j) & 3) + 1 bytes.
#pragma once

#include <cstdint>

namespace gradsparse {
namespace wire {
// Internal linkage: each instruction-set unit compiles its own copy (no ODR merging of
// code built with different -m flags).
namespace {

struct VarintTables {
    alignas(16) uint8_t decode[256][16] = {};  ///< data bytes -> four little-endian uint32 lanes
    alignas(16) uint8_t encode[256][16] = {};  ///< four uint32 lanes -> packed data bytes
    uint8_t length[256] = {};                  ///< data bytes taken by the four values
    constexpr VarintTables() {
        for (int c = 0; c < 256; ++c) {
            int off = 0;
            for (int j = 0; j < 16; ++j) decode[c][j] = encode[c][j] = 0x80;  // zero / unused
            for (int lane = 0; lane < 4; ++lane) {
                const int len = ((c >> (2 * lane)) & 3) + 1;
                for (int b = 0; b < len; ++b) {
                    decode[c][4 * lane + b] = static_cast<uint8_t>(off + b);
                    encode[c][off + b] = static_cast<uint8_t>(4 * lane + b);
                }
                off += len;
            }
            length[c] = static_cast<uint8_t>(off);
        }
    }
};

inline const VarintTables& varint_tables() {
    // constant-initialised at compile time: no first-use initialisation a fork could cut
    static constexpr VarintTables tables{};
    return tables;
}

}  // namespace
}  // namespace wire
}  // namespace gradsparse
