// gradsparse — index sections: raw, varint, Golomb-Rice and bitmap; sizes, the `auto`
// choice, encoding and validated decoding. Layouts in docs/format.md.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include "gradsparse/wire.hpp"
#include "wire_generic.hpp"
#include "wire_kernels.hpp"
#include "wire_internal.hpp"

namespace gradsparse {
namespace wire {
namespace {


// ---- validation and statistics ---------------------------------------------------------

[[noreturn]] void bad_order(uint64_t i) {
    throw ArgumentError("indices: must be strictly increasing and >= 0 (position " + std::to_string(i) + ")");
}

void check_range(const int64_t* idx, uint64_t k, uint64_t numel) {
    if (k && static_cast<uint64_t>(idx[k - 1]) >= numel)
        throw ArgumentError("indices: " + std::to_string(idx[k - 1]) + " is out of range for " +
                            std::to_string(numel) + " elements");
}

/// Position of the first index that breaks strict increase (only called on failure).
[[noreturn]] void find_bad_order(const int64_t* idx, uint64_t k) {
    int64_t prev = -1;
    for (uint64_t i = 0; i < k; ++i) {
        if (idx[i] <= prev) bad_order(i);
        prev = idx[i];
    }
    throw ArgumentError("indices: must be in [0, 2^56)");
}

// Branch-free validation: with every index in [0, 2^56) (their OR is below 2^56) and every
// unsigned difference idx[i] - idx[i-1] - 1 below 2^56 (a non-increasing step wraps it
// above 2^63), the indices strictly increase; the last one then bounds the range.
constexpr uint64_t kIndexLimit = uint64_t(1) << 56;

void check_indices(const int64_t* idx, uint64_t k, uint64_t numel) {
    uint64_t ors = 0, prev = ~uint64_t(0);
    for (uint64_t i = 0; i < k; ++i) {
        const uint64_t cur = static_cast<uint64_t>(idx[i]);
        ors |= cur | (cur - prev - 1);
        prev = cur;
    }
    if (ors >= kIndexLimit) find_bad_order(idx, k);
    check_range(idx, k, numel);
}

/// Rice parameter candidates from the mean gap: the Golomb-optimal modulus of a geometric
/// gap distribution is about ln(2) * mean; b = log2 of it, +-1, evaluated exactly.
unsigned rice_center(uint64_t k, uint64_t gap_sum) {
    if (k == 0) return 0;
    const double mean = static_cast<double>(gap_sum) / static_cast<double>(k);
    const double m = std::log(2.0) * (mean + 1.0);
    if (m <= 1.0) return 0;
    return std::min<unsigned>(kMaxRiceB, static_cast<unsigned>(std::floor(std::log2(m))));
}

/// Rice section: parameter byte, k remainders of b bits, then k unary quotients (sum q + k bits).
size_t rice_size(uint64_t k, unsigned b, uint64_t qsum) {
    return 1 + generic::rice_remainder_bytes(k, b) + static_cast<size_t>((qsum + k + 7) / 8);
}

struct Stats {
    bool varint_ok = true;     // every gap - 1 fits 32 bits
    uint64_t varint_bytes = 0; // data bytes (without control bytes)
    unsigned rice_b = 0;
    size_t rice_bytes = 1;
};

/// One pass: validates the indices and measures the varint and Rice sizes.
Stats scan(const int64_t* idx, uint64_t k, uint64_t numel) {
    Stats s;
    if (k == 0) return s;
    if (idx[0] < 0 || idx[k - 1] < idx[0]) find_bad_order(idx, k);
    check_range(idx, k, numel);
    const uint64_t gap_sum = static_cast<uint64_t>(idx[k - 1]) + 1u - k;  // valid if increasing
    const unsigned c = rice_center(k, gap_sum);
    const unsigned lo = std::min(c ? c - 1 : 0u, kMaxRiceB - 2);
    GapStats g;
    active_wire_kernels().gap_stats(idx, static_cast<size_t>(k), lo, &g);
    if (g.ors >= kIndexLimit) find_bad_order(idx, k);
    s.varint_ok = (g.wide >> 32) == 0;
    s.varint_bytes = g.varint_bytes;
    s.rice_b = lo;
    s.rice_bytes = rice_size(k, lo, g.q[0]);
    for (unsigned j = 1; j < 3; ++j) {
        const size_t c_j = rice_size(k, lo + j, g.q[j]);
        if (c_j < s.rice_bytes) s.rice_b = lo + j, s.rice_bytes = c_j;
    }
    return s;
}

size_t raw_size(IndexCodec c, uint64_t k) { return static_cast<size_t>(k * (c == IndexCodec::Raw32 ? 4 : 8)); }
size_t bitmap_size(uint64_t numel) { return static_cast<size_t>((numel + 7) / 8); }
size_t varint_size(uint64_t k, uint64_t data_bytes) { return varint_ctrl_bytes(k) + static_cast<size_t>(data_bytes); }

// ---- bitmap and raw ----------------------------------------------------------------------

/// Writes the bitmap of idx[0..k); false (the section only partly written, nothing outside
/// it) if an index read here is out of range or the indices do not strictly increase.
bool bitmap_encode(const int64_t* idx, uint64_t k, uint64_t numel, uint8_t* out) {
    // out may be null for an empty section (numel == 0): memset must not see it.
    if (numel) std::memset(out, 0, bitmap_size(numel));
    uint64_t ors = 0, prev = ~uint64_t(0);
    for (uint64_t i = 0; i < k; ++i) {
        const uint64_t j = static_cast<uint64_t>(idx[i]);  // read once: it may change meanwhile
        if (j >= numel) return false;
        ors |= j - prev - 1;  // a non-increasing step wraps above 2^63
        prev = j;
        out[j >> 3] = static_cast<uint8_t>(out[j >> 3] | (1u << (j & 7)));
    }
    return ors < kIndexLimit;
}

void bitmap_decode(const uint8_t* data, size_t len, uint64_t k, uint64_t numel, int64_t* out) {
    if (len != bitmap_size(numel))
        throw ArgumentError("payload: bitmap index section is " + std::to_string(len) + " bytes, expected " +
                            std::to_string(bitmap_size(numel)));
    if ((numel & 7) && (data[len - 1] >> (numel & 7)))
        throw ArgumentError("payload: bitmap index section has bits set past the last element");
    uint64_t n = 0;
    size_t pos = 0;
    for (; pos + 8 <= len; pos += 8) {
        uint64_t w;
        std::memcpy(&w, data + pos, 8);
        if (n + static_cast<uint64_t>(__builtin_popcountll(w)) > k) break;
        while (w) {
            out[n++] = static_cast<int64_t>(pos * 8 + static_cast<uint64_t>(__builtin_ctzll(w)));
            w &= w - 1;
        }
    }
    for (; pos < len; ++pos) {
        unsigned w = data[pos];
        while (w) {
            if (n == k) throw ArgumentError("payload: bitmap index section has more set bits than the declared count");
            out[n++] = static_cast<int64_t>(pos * 8 + static_cast<uint64_t>(__builtin_ctz(w)));
            w &= w - 1;
        }
    }
    if (n != k)
        throw ArgumentError("payload: bitmap index section has " + std::to_string(n) + " set bits, expected " +
                            std::to_string(k));
}

/// Writes the raw section of idx[0..k) (k * 4 or k * 8 bytes) and checks the values it
/// wrote (each read once): false if they are not strictly increasing inside [0, numel).
template <class W>
bool raw_encode_as(const int64_t* idx, uint64_t k, uint64_t numel, uint8_t* out) {
    uint64_t ors = 0, prev = ~uint64_t(0);
    uint64_t i = 0;
    // Eight at a time through a local copy (one read of each index, then the checks on the
    // copy), which the compiler vectorizes; the scalar loop finishes.
    for (; i + 8 <= k; i += 8) {
        uint64_t v[8];
        std::memcpy(v, idx + i, sizeof v);
        W w[8];
        for (int j = 0; j < 8; ++j) w[j] = static_cast<W>(v[j]);
        std::memcpy(out + sizeof(W) * i, w, sizeof w);
        ors |= v[0] | (v[0] - prev - 1);
        for (int j = 1; j < 8; ++j) ors |= v[j] | (v[j] - v[j - 1] - 1);
        prev = v[7];
    }
    for (; i < k; ++i) {
        const uint64_t v = static_cast<uint64_t>(idx[i]);
        const W w = static_cast<W>(v);
        std::memcpy(out + sizeof(W) * i, &w, sizeof w);
        ors |= v | (v - prev - 1);
        prev = v;
    }
    // Every index below 2^56 and every step positive; the last one then bounds the range
    // (and below numel <= 2^32 the raw32 truncation lost nothing).
    return ors < kIndexLimit && (k == 0 || prev < numel);
}

/// Writes the raw section of idx[0..k) (k * 4 or k * 8 bytes) and checks the values it
/// wrote (each read once): false if they are not strictly increasing inside [0, numel).
bool raw_encode(IndexCodec c, const int64_t* idx, uint64_t k, uint64_t numel, uint8_t* out) {
    return c == IndexCodec::Raw64 ? raw_encode_as<uint64_t>(idx, k, numel, out)
                                  : raw_encode_as<uint32_t>(idx, k, numel, out);
}

void raw_decode(IndexCodec c, const uint8_t* data, size_t len, uint64_t k, uint64_t numel, int64_t* out) {
    const size_t w = c == IndexCodec::Raw32 ? 4 : 8;
    if (len != k * w)
        throw ArgumentError("payload: raw index section is " + std::to_string(len) + " bytes, expected " +
                            std::to_string(k * w));
    // Branch-free: any index >= 2^56 or any non-increasing step (which wraps the unsigned
    // gap above 2^63) leaves a high bit in `ors`; the last index then bounds the range.
    uint64_t ors = 0, prev = ~uint64_t(0);
    for (uint64_t i = 0; i < k; ++i) {
        uint64_t v;
        if (w == 4) {
            uint32_t v32;
            std::memcpy(&v32, data + 4 * i, 4);
            v = v32;
        } else {
            std::memcpy(&v, data + 8 * i, 8);
        }
        ors |= v | (v - prev - 1);
        prev = v;
        out[i] = static_cast<int64_t>(v);
    }
    if (ors >= kIndexLimit)
        throw ArgumentError("payload: decoded indices are not strictly increasing or out of range (raw section)");
    if (k && prev >= numel) throw ArgumentError("payload: decoded index is out of range (raw section)");
}

[[noreturn]] void section_fail(const char* codec, Status st) {
    const std::string c(codec);
    switch (st) {
        case Status::Truncated: throw ArgumentError("payload: " + c + " index section is truncated");
        case Status::Trailing: throw ArgumentError("payload: " + c + " index section has trailing bytes");
        case Status::OutOfRange: throw ArgumentError("payload: decoded index is out of range (" + c + " section)");
        case Status::BadPadding: throw ArgumentError("payload: " + c + " index section has non-zero padding bits");
        case Status::CountMismatch:
            throw ArgumentError("payload: " + c + " index section holds more codes than the declared count");
        case Status::BadParameter:
            throw ArgumentError("payload: " + c + " parameter is above " + std::to_string(kMaxRiceB));
        default: throw ArgumentError("payload: " + c + " index section is invalid");
    }
}

}  // namespace

size_t index_section_bound(IndexCodec codec, uint64_t k, uint64_t numel) {
    switch (codec) {
        case IndexCodec::Raw32: return raw_size(codec, k);
        case IndexCodec::Raw64: return raw_size(codec, k);
        case IndexCodec::Varint: return varint_ctrl_bytes(k) + static_cast<size_t>(4 * k);
        case IndexCodec::Bitmap: return bitmap_size(numel);
        case IndexCodec::Rice: return rice_size(k, kMaxRiceB, numel);
        default: return 0;
    }
}

IndexPlan plan_indices(IndexCodec codec, const int64_t* idx, uint64_t k, uint64_t numel, bool check) {
    IndexPlan p;
    p.codec = codec;
    p.checked = check || !(codec == IndexCodec::Raw32 || codec == IndexCodec::Raw64 || codec == IndexCodec::Bitmap);
    switch (codec) {
        case IndexCodec::Raw32:
            GS_CHECK(numel <= (uint64_t(1) << 32), "index_codec: 'raw32' needs fewer than 2^32 elements");
            if (p.checked) check_indices(idx, k, numel);
            p.bytes = raw_size(codec, k);
            return p;
        case IndexCodec::Raw64:
            if (p.checked) check_indices(idx, k, numel);
            p.bytes = raw_size(codec, k);
            return p;
        case IndexCodec::Bitmap:
            if (p.checked) check_indices(idx, k, numel);
            p.bytes = bitmap_size(numel);
            return p;
        case IndexCodec::Varint: {
            Stats s = scan(idx, k, numel);
            GS_CHECK(s.varint_ok, "index_codec: 'varint' needs gaps between indices below 2^32");
            p.bytes = varint_size(k, s.varint_bytes);
            return p;
        }
        case IndexCodec::Rice: {
            Stats s = scan(idx, k, numel);
            p.rice_b = s.rice_b;
            p.bytes = s.rice_bytes;
            return p;
        }
        case IndexCodec::Auto: {
            Stats s = scan(idx, k, numel);
            // Candidates in order of decoding speed; a later one must be strictly smaller.
            p.codec = numel <= (uint64_t(1) << 32) ? IndexCodec::Raw32 : IndexCodec::Raw64;
            p.bytes = raw_size(p.codec, k);
            if (bitmap_size(numel) < p.bytes) p.codec = IndexCodec::Bitmap, p.bytes = bitmap_size(numel);
            if (s.varint_ok && varint_size(k, s.varint_bytes) < p.bytes)
                p.codec = IndexCodec::Varint, p.bytes = varint_size(k, s.varint_bytes);
            if (s.rice_bytes < p.bytes) p.codec = IndexCodec::Rice, p.bytes = s.rice_bytes;
            p.rice_b = s.rice_b;
            return p;
        }
        default: throw ArgumentError("index_codec: 'dense' is only for dense tensors");
    }
}

namespace {
[[noreturn]] void changed(const char* what) {
    throw ArgumentError(std::string("indices: changed during encoding (") + what +
                        "); another thread must not modify the arrays while encode() runs");
}

/// A raw or bitmap writer found invalid indices: a plan that did not check them reports
/// what is wrong (they were invalid from the start, unless they changed meanwhile).
[[noreturn]] void unfit(const IndexPlan& p, const int64_t* idx, uint64_t k, uint64_t numel) {
    if (!p.checked) check_indices(idx, k, numel);
    changed("no longer strictly increasing inside the shape");
}
}  // namespace

size_t write_indices(const IndexPlan& p, const int64_t* idx, uint64_t k, uint64_t numel, uint8_t* out, size_t cap) {
    // The indices were validated when the section was planned, but they are read again
    // here: every writer stays inside out[0..cap) and checks what it wrote, so indices
    // changed in between give an error, never a write out of bounds or a corrupt section.
    switch (p.codec) {
        case IndexCodec::Raw32:
        case IndexCodec::Raw64:
            if (cap < p.bytes) changed("no room for the raw section");
            if (!raw_encode(p.codec, idx, k, numel, out)) unfit(p, idx, k, numel);
            return p.bytes;
        case IndexCodec::Bitmap:
            if (cap < p.bytes) changed("no room for the bitmap");
            if (!bitmap_encode(idx, k, numel, out)) unfit(p, idx, k, numel);
            return p.bytes;
        case IndexCodec::Rice: {
            if (cap < p.bytes) changed("no room for the Rice section");
            const Status st = active_wire_kernels().rice_encode(idx, static_cast<size_t>(k), p.rice_b, numel, out, p.bytes);
            if (st == Status::NoFit) changed("the Rice section no longer has the planned size");
            if (st != Status::Ok) changed("no longer strictly increasing inside the shape");
            return p.bytes;
        }
        case IndexCodec::Varint: {
            Status st;
            const size_t n = active_wire_kernels().varint_encode(idx, static_cast<size_t>(k), numel, out, cap, &st);
            if (st == Status::NoFit) changed("the varint section no longer has the planned size");
            if (st != Status::Ok) changed("no longer strictly increasing inside the shape");
            return n;
        }
        default: GS_ASSERT(false);
    }
    return 0;
}

void read_indices(IndexCodec codec, const uint8_t* data, size_t len, uint64_t k, uint64_t numel, int64_t* out) {
    switch (codec) {
        case IndexCodec::Raw32:
        case IndexCodec::Raw64: raw_decode(codec, data, len, k, numel, out); return;
        case IndexCodec::Bitmap: bitmap_decode(data, len, k, numel, out); return;
        case IndexCodec::Rice: {
            const Status st = active_wire_kernels().rice_decode(data, len, static_cast<size_t>(k), numel, out);
            if (st != Status::Ok) section_fail("Rice", st);
            return;
        }
        case IndexCodec::Varint: {
            const Status st = active_wire_kernels().varint_decode(data, len, static_cast<size_t>(k), numel, out);
            if (st != Status::Ok) section_fail("varint", st);
            return;
        }
        default: throw ArgumentError("payload: index codec " + std::to_string(int(codec)) + " has no index section");
    }
}

size_t min_index_section(IndexCodec codec, uint64_t k, uint64_t numel) {
    switch (codec) {
        case IndexCodec::Raw32: return raw_size(codec, k);
        case IndexCodec::Raw64: return raw_size(codec, k);
        case IndexCodec::Bitmap: return bitmap_size(numel);
        case IndexCodec::Varint: return varint_ctrl_bytes(k) + static_cast<size_t>(k);
        case IndexCodec::Rice: return 1 + static_cast<size_t>((k + 7) / 8);  // b = 0, all q = 0
        default: return 0;
    }
}

// ---- public section-level API ------------------------------------------------------------

size_t index_section_size(IndexCodec codec, const int64_t* idx, uint64_t k, uint64_t numel, IndexCodec* chosen) {
    GS_CHECK(numel <= kMaxElements, "numel: above the format's limit of 2^56 elements");
    GS_CHECK(k <= numel, "indices: more indices than elements");
    IndexPlan p = plan_indices(codec, idx, k, numel);
    if (chosen) *chosen = p.codec;
    return p.bytes;
}

size_t index_section_encode(IndexCodec codec, const int64_t* idx, uint64_t k, uint64_t numel, uint8_t* out, size_t cap) {
    GS_CHECK(numel <= kMaxElements, "numel: above the format's limit of 2^56 elements");
    GS_CHECK(k <= numel, "indices: more indices than elements");
    IndexPlan p;
    if (codec == IndexCodec::Varint) {
        // The kernel validates order as it goes; only the range is checked here.
        GS_CHECK(cap >= index_section_bound(codec, k, numel), "out: too small for the varint section");
        check_range(idx, k, numel);
        Status st;
        const size_t n = active_wire_kernels().varint_encode(idx, static_cast<size_t>(k), numel, out, cap, &st);
        if (st == Status::BadIndices)
            throw ArgumentError("indices: must be strictly increasing and >= 0, with gaps below 2^32 for 'varint'");
        if (st != Status::Ok) changed("an index is now out of range");
        return n;
    }
    p = plan_indices(codec, idx, k, numel);
    GS_CHECK(cap >= p.bytes, "out: too small for the index section");
    return write_indices(p, idx, k, numel, out, cap);
}

std::vector<uint8_t> index_section_write_replanned(IndexCodec codec, const int64_t* planned,
                                                   const int64_t* actual, uint64_t k, uint64_t numel) {
    GS_CHECK(numel <= kMaxElements, "numel: above the format's limit of 2^56 elements");
    GS_CHECK(k <= numel, "indices: more indices than elements");
    const IndexPlan p = plan_indices(codec, planned, k, numel);
    constexpr size_t kGuard = 64;
    constexpr uint8_t kFill = 0xA5;
    std::vector<uint8_t> buf(p.bytes + kGuard, kFill);
    const size_t n = write_indices(p, actual, k, numel, buf.data(), p.bytes);
    for (size_t i = p.bytes; i < buf.size(); ++i) GS_ASSERT(buf[i] == kFill);
    if (n != p.bytes) changed("the section no longer has the planned size");
    buf.resize(n);
    return buf;
}

void index_section_decode(IndexCodec codec, const uint8_t* data, size_t len, uint64_t k, uint64_t numel, int64_t* out) {
    GS_CHECK(numel <= kMaxElements, "numel: above the format's limit of 2^56 elements");
    GS_CHECK(k <= numel, "k: more indices than elements");
    if (codec == IndexCodec::Dense || codec == IndexCodec::Auto)
        throw ArgumentError("codec: must name an index section codec");
    read_indices(codec, data, len, k, numel, out);
}

}  // namespace wire
}  // namespace gradsparse
