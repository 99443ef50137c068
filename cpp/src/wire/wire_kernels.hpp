// gradsparse — wire-format kernel table. One table per instruction set, each in its own
// translation unit (wire_<isa>.cpp); wire_scalar.cpp is the reference twin. Every kernel
// produces bit-identical output at every level (the tests compare them).
#pragma once

#include <cstddef>
#include <cstdint>

#include "gradsparse/simd.hpp"

namespace gradsparse {
namespace wire {

/// Outcome of a kernel that reads or validates untrusted data.
enum class Status : int {
    Ok = 0,
    BadIndices,    ///< (encode) not strictly increasing from >= 0, or a gap needs > 32 bits
    Truncated,     ///< the section ends before the declared count is read
    Trailing,      ///< bytes left over after the declared count
    OutOfRange,    ///< an index >= numel
    BadPadding,    ///< unused bits of the last control byte / word are not zero
    NotIncreasing, ///< (raw codecs) indices not strictly increasing
    CountMismatch, ///< (bitmap, Rice) number of codes differs from the declared count
    BadParameter,  ///< (Rice) parameter byte above kMaxRiceB
    NoFit,         ///< (encode) the indices need more or fewer bytes than the section planned
                   ///< for them (the caller changed them after planning); nothing was written
                   ///< outside the section
};

/// Largest Golomb-Rice parameter the format allows.
constexpr unsigned kMaxRiceB = 56;

/// Per-message statistics of the gaps g_i = idx[i] - idx[i-1] - 1 (idx[-1] = -1), unsigned.
struct GapStats {
    uint64_t ors = 0;          ///< OR of every index and every gap (>= 2^56: invalid input)
    uint64_t wide = 0;         ///< OR of every gap (>= 2^32: varint cannot code it)
    uint64_t varint_bytes = 0; ///< varint data bytes
    uint64_t q[3] = {0, 0, 0}; ///< sum of g >> (b_lo + j), j = 0, 1, 2
};

/// Varint section layout for k indices: ceil(k/4) control bytes (2 bits per value,
/// value i in bits 2*(i%4)..+1 of byte i/4, length-1), then the data bytes.
inline size_t varint_ctrl_bytes(uint64_t k) { return static_cast<size_t>((k + 3) / 4); }

struct WireKernels {
    /// CRC32C continuing from crc.
    uint32_t (*crc32c)(uint32_t crc, const uint8_t* p, size_t n);
    /// Encodes idx[0..k) as a varint section into out, writing nothing outside out[0..cap).
    /// Returns the bytes written, or 0 with *status = BadIndices (order, gaps), OutOfRange
    /// (an index >= numel) or NoFit (the section would need more than cap bytes). Every
    /// index is read once, so the section codes exactly the values checked.
    size_t (*varint_encode)(const int64_t* idx, size_t k, uint64_t numel, uint8_t* out, size_t cap,
                            Status* status);
    /// Decodes k indices from a varint section of len bytes; every index must be < numel.
    Status (*varint_decode)(const uint8_t* in, size_t len, size_t k, uint64_t numel, int64_t* out);
    /// Gap statistics of idx[0..k) for Rice parameters b_lo, b_lo + 1, b_lo + 2.
    void (*gap_stats)(const int64_t* idx, size_t k, unsigned b_lo, GapStats* out);
    /// Writes a Rice section of exactly `bytes` bytes (parameter b) for idx[0..k), writing
    /// nothing outside out[0..bytes). Returns Ok, or BadIndices / OutOfRange / NoFit when the
    /// indices (each read once) are invalid or do not code to exactly `bytes` bytes.
    Status (*rice_encode)(const int64_t* idx, size_t k, unsigned b, uint64_t numel, uint8_t* out, size_t bytes);
    /// Decodes a Rice section of len bytes into k indices below numel.
    Status (*rice_decode)(const uint8_t* in, size_t len, size_t k, uint64_t numel, int64_t* out);
    /// float32 -> float16 bits (round to nearest even; NaN stays NaN, quiet, payload top bits).
    void (*f32_to_f16)(const float* x, size_t n, uint16_t* out);
    /// float16 bits -> float32 (exact).
    void (*f16_to_f32)(const uint16_t* h, size_t n, float* out);
};

const WireKernels& wire_kernels_scalar();
#if GRADSPARSE_HAVE_AVX2
const WireKernels& wire_kernels_avx2();
#endif
#if GRADSPARSE_HAVE_AVX512
const WireKernels& wire_kernels_avx512();
#endif

/// The table for the current SIMD level.
const WireKernels& active_wire_kernels();

}  // namespace wire
}  // namespace gradsparse
