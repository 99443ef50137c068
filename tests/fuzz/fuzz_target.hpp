// gradsparse fuzzing — the input layout of the decoder fuzz target, shared by the target
// (fuzz_decode.cpp) and the standalone driver (driver.cpp) so the driver can build and
// mutate inputs that reach every mode.
//
// Byte 0 selects the mode:
//   bits 0-1  SIMD level: 0 scalar, 1 AVX2, 2 AVX-512, 3 best available (falls back to
//             scalar where the level is not available)
//   bits 2-4  operation (kOp*)
//   bits 5-7  misalignment (0-7 bytes) of the copy the decoder reads
// Message operations: bytes 1.. are a whole payload (24-byte header + body).
// Section operation: byte 1 codec selector, bytes 2-5 k (u32 LE), bytes 6-13 numel
// (u64 LE), bytes 14.. the index section.
#pragma once

#include <cstddef>
#include <cstdint>

namespace gsfuzz {

enum Op : unsigned {
    kOpVerify = 0,       ///< parse(verify_checksum = true) as given
    kOpNoVerify = 1,     ///< parse(verify_checksum = false)
    kOpFixCrc = 2,       ///< recompute the header CRC in the target, then verify
    kOpNoVerify2 = 3,    ///< same as kOpNoVerify (more weight for the deep path)
    kOpSection = 4,      ///< 4..7: one index section through index_section_decode
};

inline unsigned mode_level(uint8_t m) { return m & 3u; }
inline unsigned mode_op(uint8_t m) { return (m >> 2) & 7u; }
inline unsigned mode_align(uint8_t m) { return m >> 5; }
inline bool op_is_message(unsigned op) { return op < kOpSection; }
inline uint8_t make_mode(unsigned level, unsigned op, unsigned align) {
    return static_cast<uint8_t>((level & 3u) | ((op & 7u) << 2) | ((align & 7u) << 5));
}

/// Offsets inside a message input (after the mode byte).
constexpr size_t kMsgStart = 1;
constexpr size_t kCrcOffset = kMsgStart + 12;
constexpr size_t kBodyLenOffset = kMsgStart + 16;
constexpr size_t kBodyStart = kMsgStart + 24;

/// Offsets inside a section input.
constexpr size_t kSecCodec = 1;
constexpr size_t kSecK = 2;
constexpr size_t kSecNumel = 6;
constexpr size_t kSecData = 14;
/// Largest k a section input may ask for (bounds the output allocation to 512 KiB).
constexpr uint32_t kMaxSectionK = uint32_t(1) << 16;

/// Outcome counters kept by the target (the driver prints them).
struct Stats {
    uint64_t messages_ok = 0;        ///< parsed, and every record decoded
    uint64_t messages_rejected = 0;  ///< ArgumentError from parse or a record
    uint64_t parse_rejected = 0;     ///< ... of which from parse itself
    uint64_t records_ok = 0;
    uint64_t records_rejected = 0;
    uint64_t sections_ok = 0;
    uint64_t sections_rejected = 0;
    uint64_t simd_compared = 0;      ///< decodes repeated at the scalar level and compared
    bool last_accepted = false;      ///< the most recent input decoded without error
};
Stats& stats();

}  // namespace gsfuzz
