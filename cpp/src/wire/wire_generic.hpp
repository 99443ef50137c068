// gradsparse — portable wire kernels: the scalar reference twin, and the tails of the
// SIMD kernels. Header-only so each ISA unit compiles its own copy.
#pragma once

#include <cstdint>
#include <cstring>

#include "core/bits.hpp"
#include "wire_kernels.hpp"

namespace gradsparse {
namespace wire {
namespace generic {
// Internal linkage: each instruction-set unit compiles its own copy (no ODR merging of
// code built with different -m flags).
namespace {

inline uint32_t load_le32(const uint8_t* p) {
    uint32_t v;
    std::memcpy(&v, p, 4);
    return v;  // the build asserts a little-endian host (wire_scalar.cpp)
}

// ---- CRC32C: slicing-by-8 over a table built once --------------------------------------

struct Crc32cTable {
    uint32_t t[8][256] = {};
    constexpr Crc32cTable() {
        for (uint32_t i = 0; i < 256; ++i) {
            uint32_t c = i;
            for (int j = 0; j < 8; ++j) c = (c >> 1) ^ (0x82F63B78u & (0u - (c & 1u)));
            t[0][i] = c;
        }
        for (int s = 1; s < 8; ++s)
            for (uint32_t i = 0; i < 256; ++i) t[s][i] = (t[s - 1][i] >> 8) ^ t[0][t[s - 1][i] & 0xFF];
    }
};

inline const Crc32cTable& crc_table() {
    // constant-initialised at compile time: no first-use initialisation a fork could cut
    static constexpr Crc32cTable table{};
    return table;
}

/// Continues the raw (un-inverted) CRC state over p[0..n).
inline uint32_t crc32c_raw(uint32_t c, const uint8_t* p, size_t n) {
    const auto& T = crc_table().t;
    while (n >= 8) {
        uint32_t lo = load_le32(p) ^ c, hi = load_le32(p + 4);
        c = T[7][lo & 0xFF] ^ T[6][(lo >> 8) & 0xFF] ^ T[5][(lo >> 16) & 0xFF] ^ T[4][lo >> 24] ^
            T[3][hi & 0xFF] ^ T[2][(hi >> 8) & 0xFF] ^ T[1][(hi >> 16) & 0xFF] ^ T[0][hi >> 24];
        p += 8;
        n -= 8;
    }
    while (n--) c = (c >> 8) ^ T[0][(c ^ *p++) & 0xFF];
    return c;
}

inline uint32_t crc32c(uint32_t crc, const uint8_t* p, size_t n) { return ~crc32c_raw(~crc, p, n); }

// ---- varint (StreamVByte-style layout, delta-1 gaps) -----------------------------------

inline unsigned varint_len_code(uint32_t g) {
    return (g > 0xFFu) + (g > 0xFFFFu) + (g > 0xFFFFFFu);
}

/// Encodes idx[i0..k) continuing after previous index `prev` (-1 before the first; on
/// return the last index coded), with control bytes at ctrl (byte i/4 for value i, counted
/// from 0) and data at *data, never past data_end. Each index is read once.
inline Status varint_encode_tail(const int64_t* idx, size_t i0, size_t k, int64_t& prev,
                                 uint8_t* ctrl, uint8_t*& data, const uint8_t* data_end) {
    for (size_t i = i0; i < k; ++i) {
        const int64_t cur = idx[i];
        // gap - 1 as unsigned: negative (not increasing) or too large both exceed 2^32 - 1.
        const uint64_t g = static_cast<uint64_t>(cur) - static_cast<uint64_t>(prev) - 1u;
        if (cur < 0 || cur <= prev || g > 0xFFFFFFFFull) return Status::BadIndices;
        const uint32_t g32 = static_cast<uint32_t>(g);
        const unsigned code = varint_len_code(g32);
        if (static_cast<size_t>(data_end - data) <= code) return Status::NoFit;
        if ((i & 3) == 0) ctrl[i >> 2] = 0;
        ctrl[i >> 2] = static_cast<uint8_t>(ctrl[i >> 2] | (code << (2 * (i & 3))));
        for (unsigned b = 0; b <= code; ++b) *data++ = static_cast<uint8_t>(g32 >> (8 * b));
        prev = cur;
    }
    return Status::Ok;
}

/// The outcome of a varint encoder whose last coded index is `last`: bytes written or 0.
inline size_t varint_encode_result(Status st, int64_t last, size_t k, uint64_t numel, const uint8_t* out,
                                   const uint8_t* data, Status* status) {
    if (st == Status::Ok && k && static_cast<uint64_t>(last) >= numel) st = Status::OutOfRange;
    *status = st;
    return st == Status::Ok ? static_cast<size_t>(data - out) : 0;
}

inline size_t varint_encode(const int64_t* idx, size_t k, uint64_t numel, uint8_t* out, size_t cap, Status* st) {
    if (cap < varint_ctrl_bytes(k)) {
        *st = Status::NoFit;
        return 0;
    }
    uint8_t* data = out + varint_ctrl_bytes(k);
    int64_t prev = -1;
    const Status s = varint_encode_tail(idx, 0, k, prev, out, data, out + cap);
    return varint_encode_result(s, prev, k, numel, out, data, st);
}

/// Decodes values i0..k; `data` points at value i0's bytes, `end` is the section end and
/// `base` is the previous index (-1 before the first, as uint64 wrap-around).
inline Status varint_decode_tail(const uint8_t* ctrl, const uint8_t* data, const uint8_t* end,
                                 size_t i0, size_t k, uint64_t base, uint64_t numel, int64_t* out) {
    for (size_t i = i0; i < k; ++i) {
        const unsigned n = ((ctrl[i >> 2] >> (2 * (i & 3))) & 3u) + 1;
        if (static_cast<size_t>(end - data) < n) return Status::Truncated;
        uint32_t g = 0;
        for (unsigned b = 0; b < n; ++b) g |= static_cast<uint32_t>(data[b]) << (8 * b);
        data += n;
        base = base + 1u + g;  // base < numel <= 2^56 before, so no overflow
        if (base >= numel) return Status::OutOfRange;
        out[i] = static_cast<int64_t>(base);
    }
    if (data != end) return Status::Trailing;
    if (k & 3) {
        if (ctrl[k >> 2] >> (2 * (k & 3))) return Status::BadPadding;
    }
    return Status::Ok;
}

inline Status varint_decode(const uint8_t* in, size_t len, size_t k, uint64_t numel, int64_t* out) {
    const size_t nctrl = varint_ctrl_bytes(k);
    if (len < nctrl) return Status::Truncated;
    return varint_decode_tail(in, in + nctrl, in + len, 0, k, ~uint64_t(0), numel, out);
}

// ---- gap statistics ----------------------------------------------------------------------

/// Adds the statistics of idx[i0..k) to *acc, continuing after index `prev` (-1: none).
inline void gap_stats_tail(const int64_t* idx, size_t i0, size_t k, uint64_t prev, unsigned b_lo, GapStats* acc) {
    uint64_t ors = 0, wide = 0, vb = 0, q0 = 0, q1 = 0, q2 = 0;
    for (size_t i = i0; i < k; ++i) {
        const uint64_t cur = static_cast<uint64_t>(idx[i]);
        const uint64_t g = cur - prev - 1;
        prev = cur;
        ors |= cur | g;
        wide |= g;
        const uint64_t q = g >> b_lo;  // the other two candidates: one and two more bits
        q0 += q;
        q1 += q >> 1;
        q2 += q >> 2;
        vb += 1u + (g > 0xFFu) + (g > 0xFFFFu) + (g > 0xFFFFFFu);
    }
    acc->ors |= ors;
    acc->wide |= wide;
    acc->varint_bytes += vb;
    acc->q[0] += q0;
    acc->q[1] += q1;
    acc->q[2] += q2;
}

inline void gap_stats(const int64_t* idx, size_t k, unsigned b_lo, GapStats* out) {
    *out = GapStats{};
    gap_stats_tail(idx, 0, k, ~uint64_t(0), b_lo, out);
}

// ---- Golomb-Rice ---------------------------------------------------------------------------
// Gap g has quotient q = g >> b and remainder r = g mod 2^b. The section stores the
// parameter byte, every remainder in b bits (LSB-first), then every quotient in unary (q
// zero bits and a one bit, LSB-first): the code words of interleaved Rice coding in two
// streams, so the decoder finds quotients by scanning set bits and reads remainders at
// fixed offsets, with no bit-serial dependency from one code to the next.

/// Appends bit fields LSB-first into a byte buffer, 64 bits at a time.
class BitWriter {
   public:
    explicit BitWriter(uint8_t* out) : out_(out) {}
    /// Appends the n (<= 57) low bits of v (higher bits of v must be zero).
    void put(uint64_t v, unsigned n) {
        acc_ |= v << fill_;
        if (fill_ + n >= 64) {
            std::memcpy(out_, &acc_, 8);
            out_ += 8;
            acc_ = fill_ ? v >> (64 - fill_) : 0;
            fill_ = fill_ + n - 64;
        } else {
            fill_ += n;
        }
    }
    /// Writes the remaining partial word; returns one past the last byte written.
    uint8_t* finish() {
        const unsigned nbytes = (fill_ + 7) / 8;
        std::memcpy(out_, &acc_, nbytes);
        return out_ + nbytes;
    }

   private:
    uint8_t* out_;
    uint64_t acc_ = 0;
    unsigned fill_ = 0;
};

inline size_t rice_remainder_bytes(uint64_t k, unsigned b) { return static_cast<size_t>((k * b + 7) / 8); }

inline Status rice_encode(const int64_t* idx, size_t k, unsigned b, uint64_t numel, uint8_t* out, size_t bytes) {
    const size_t rem_bytes = rice_remainder_bytes(k, b);
    if (bytes < 1 + rem_bytes) return Status::NoFit;
    out[0] = static_cast<uint8_t>(b);
    uint8_t* un = out + 1 + rem_bytes;
    const size_t ulen = bytes - 1 - rem_bytes;
    std::memset(un, 0, ulen);
    BitWriter rw(out + 1);  // exactly k * b bits: inside the remainder stream
    const uint64_t mask = (uint64_t(1) << b) - 1;
    // Unary stream: ones collect in a 64-bit word, stored when a code moves past it. The
    // indices are read once each but may change meanwhile (another thread), so a word past
    // the planned stream is never stored, and the totals are checked at the end.
    bool fits = true;
    auto store_word = [&](uint64_t word, uint64_t bits) {
        if (word >= (ulen + 7) / 8) {
            fits = false;
            return;
        }
        const size_t off = static_cast<size_t>(word * 8);
        std::memcpy(un + off, &bits, ulen - off < 8 ? ulen - off : 8);
    };
    uint64_t pos = 0, word = 0, acc = 0, ors = 0;
    int64_t prev = -1;
    for (size_t i = 0; i < k; ++i) {
        const int64_t cur = idx[i];
        const uint64_t g = static_cast<uint64_t>(cur) - static_cast<uint64_t>(prev) - 1u;
        ors |= static_cast<uint64_t>(cur) | g;  // >= 2^56: negative, too large or not increasing
        prev = cur;
        if (b) rw.put(g & mask, b);
        pos += g >> b;
        if ((pos >> 6) != word) {
            store_word(word, acc);
            acc = 0;
            word = pos >> 6;
        }
        acc |= uint64_t(1) << (pos & 63);
        ++pos;
    }
    if (k) store_word(word, acc);
    rw.finish();
    if (ors >= (uint64_t(1) << 56)) return Status::BadIndices;
    if (k && static_cast<uint64_t>(prev) >= numel) return Status::OutOfRange;
    // With every gap below 2^56 and k <= 2^56, pos (= sum of quotients + k) cannot wrap.
    if (!fits || (pos + 7) / 8 != ulen) return Status::NoFit;
    return Status::Ok;
}

inline Status rice_decode(const uint8_t* data, size_t len, size_t k, uint64_t numel, int64_t* out) {
    if (len < 1) return Status::Truncated;
    const unsigned b = data[0];
    if (b > kMaxRiceB) return Status::BadParameter;
    const uint64_t rem_bits = static_cast<uint64_t>(k) * b;
    const size_t rem_bytes = rice_remainder_bytes(k, b);
    if (len - 1 < rem_bytes) return Status::Truncated;
    const uint8_t* rem = data + 1;
    const uint8_t* un = rem + rem_bytes;
    const size_t ulen = len - 1 - rem_bytes;
    if ((rem_bits & 7) && (rem[rem_bytes - 1] >> (rem_bits & 7))) return Status::BadPadding;
    const uint64_t mask = (uint64_t(1) << b) - 1;
    const uint64_t qmax = numel >> b;
    // Remainder i is read with one 8-byte load while its byte offset + 8 <= rem_bytes.
    const uint64_t fast = b && rem_bytes >= 8 ? (static_cast<uint64_t>(rem_bytes - 8) * 8) / b + 1 : 0;
    uint64_t base = ~uint64_t(0), last_one = ~uint64_t(0);
    size_t i = 0;
    for (size_t wpos = 0; wpos < ulen; wpos += 8) {
        uint64_t w = 0;
        std::memcpy(&w, un + wpos, ulen - wpos < 8 ? ulen - wpos : 8);
        while (w) {
            if (i == k) return Status::CountMismatch;
            const uint64_t pos = static_cast<uint64_t>(wpos) * 8 + static_cast<uint64_t>(__builtin_ctzll(w));
            w &= w - 1;
            const uint64_t q = pos - last_one - 1;
            last_one = pos;
            if (q > qmax) return Status::OutOfRange;
            uint64_t r = 0;
            if (b) {
                const uint64_t bit = static_cast<uint64_t>(i) * b;
                const size_t off = static_cast<size_t>(bit >> 3);
                uint64_t v = 0;
                std::memcpy(&v, rem + off, i < fast ? 8 : (rem_bytes - off < 8 ? rem_bytes - off : 8));
                r = (v >> (bit & 7)) & mask;
            }
            // q << b <= numel and r < 2^b: no overflow below 2^58.
            base += 1u + (q << b) + r;
            if (base >= numel) return Status::OutOfRange;
            out[i++] = static_cast<int64_t>(base);
        }
    }
    if (i < k) return Status::Truncated;
    if (ulen != (k ? static_cast<size_t>(last_one >> 3) + 1 : 0)) return Status::Trailing;
    return Status::Ok;
}

// ---- float16 ---------------------------------------------------------------------------

/// Round to nearest even, as the F16C instruction does (NaN: quiet, top payload bits kept).
inline uint16_t f32_to_f16_one(float f) {
    const uint32_t x = f32_bits(f);
    const uint32_t sign = (x >> 16) & 0x8000u;
    uint32_t ax = x & 0x7FFFFFFFu;
    if (ax > 0x7F800000u) return static_cast<uint16_t>(sign | 0x7E00u | ((ax >> 13) & 0x3FFu));
    if (ax >= 0x477FF000u) return static_cast<uint16_t>(sign | 0x7C00u);  // >= 65520 -> inf
    if (ax < 0x38800000u) {
        // Below the smallest normal half: adding 0.5f aligns the half's subnormal unit
        // (2^-24) with the float's last mantissa bit, so the FPU's own rounding is RNE.
        const float magic = bits_f32(126u << 23);
        const uint32_t r = f32_bits(bits_f32(ax) + magic) - (126u << 23);
        return static_cast<uint16_t>(sign | r);
    }
    const uint32_t odd = (ax >> 13) & 1u;
    ax += (static_cast<uint32_t>(15 - 127) << 23) + 0xFFFu + odd;
    return static_cast<uint16_t>(sign | (ax >> 13));
}

/// Exact widening (NaN: quiet, payload kept).
inline float f16_to_f32_one(uint16_t h) {
    const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
    const uint32_t e = (h >> 10) & 0x1Fu, m = h & 0x3FFu;
    if (e == 0x1F) return bits_f32(sign | 0x7F800000u | (m ? 0x400000u : 0u) | (m << 13));
    if (e == 0) {
        const float v = static_cast<float>(m) * bits_f32(103u << 23);  // m * 2^-24, exact
        return bits_f32(sign | f32_bits(v));
    }
    return bits_f32(sign | ((e + 112u) << 23) | (m << 13));
}

// One side of these conversions is a position inside a payload (value_codecs.cpp casts
// it), which has no alignment: a record's sections start wherever its name and shape end.
// Elements are therefore moved with memcpy (a plain load/store on x86), never through a
// typed lvalue, which would be a misaligned access (undefined behaviour; UBSan reports it).
inline void f32_to_f16(const float* x, size_t n, uint16_t* out) {
    for (size_t i = 0; i < n; ++i) {
        float f;
        std::memcpy(&f, x + i, 4);
        const uint16_t h = f32_to_f16_one(f);
        std::memcpy(out + i, &h, 2);
    }
}
inline void f16_to_f32(const uint16_t* h, size_t n, float* out) {
    for (size_t i = 0; i < n; ++i) {
        uint16_t v;
        std::memcpy(&v, h + i, 2);
        const float f = f16_to_f32_one(v);
        std::memcpy(out + i, &f, 4);
    }
}

}  // namespace
}  // namespace generic
}  // namespace wire
}  // namespace gradsparse
