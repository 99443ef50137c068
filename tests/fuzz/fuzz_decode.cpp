// gradsparse fuzzing — libFuzzer-style target for the wire-format decoder.
//
// The decoder reads untrusted bytes, so the contract checked here is: every input either
// decodes or throws gradsparse::ArgumentError. Only ArgumentError is caught; any other
// exception escapes and aborts, and sanitizers turn out-of-bounds accesses and undefined
// behaviour into crashes. Successful decodes are checked for the properties callers rely
// on (indices strictly increasing and below numel, sizes bounded by the payload), and
// every decode at a SIMD level other than scalar is repeated at the scalar level and must
// agree bit for bit (the kernels promise identical results). Input layout: fuzz_target.hpp.
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "fuzz_target.hpp"
#include "gradsparse/simd.hpp"
#include "gradsparse/wire.hpp"

namespace gsfuzz {

Stats& stats() {
    static Stats s;
    return s;
}

}  // namespace gsfuzz

namespace {

using gradsparse::ArgumentError;
using gradsparse::SimdLevel;
namespace wire = gradsparse::wire;

[[noreturn]] void violated(const char* what, const char* file, int line) {
    std::fprintf(stderr, "fuzz_decode: invariant violated at %s:%d: %s\n", file, line, what);
    std::fflush(stderr);
    std::abort();
}
#define FUZZ_REQUIRE(cond)                                      \
    do {                                                        \
        if (!(cond)) violated(#cond, __FILE__, __LINE__);       \
    } while (0)

/// GS_FUZZ_VERBOSE=1 prints every rejection (to see which checks mutants stop at).
void note_rejection(const char* where, const ArgumentError& e) {
    static const bool verbose = [] {
        const char* v = std::getenv("GS_FUZZ_VERBOSE");
        return v && *v && *v != '0';
    }();
    if (verbose) std::fprintf(stderr, "rejected (%s): %s\n", where, e.what());
}

uint64_t load_le(const uint8_t* p, size_t n) {
    uint64_t v = 0;
    std::memcpy(&v, p, n);  // little-endian host (the wire code asserts it too)
    return v;
}

/// The SIMD level a mode byte asks for, or scalar where that level is not available.
SimdLevel pick_level(unsigned sel) {
    static const std::vector<SimdLevel> avail = gradsparse::available_simd_levels();
    auto has = [&](SimdLevel l) { return std::find(avail.begin(), avail.end(), l) != avail.end(); };
    switch (sel) {
        case 1: return has(SimdLevel::AVX2) ? SimdLevel::AVX2 : SimdLevel::Scalar;
        case 2: return has(SimdLevel::AVX512) ? SimdLevel::AVX512 : SimdLevel::Scalar;
        case 3:
            if (has(SimdLevel::AVX512)) return SimdLevel::AVX512;
            if (has(SimdLevel::AVX2)) return SimdLevel::AVX2;
            return SimdLevel::Scalar;
        default: return SimdLevel::Scalar;
    }
}

/// An exactly sized heap copy at a chosen misalignment: the last byte of the data is the
/// last byte of the allocation, so ASan sees any read past the end.
struct Buffer {
    std::unique_ptr<uint8_t[]> mem;
    const uint8_t* data;
    size_t len;
    Buffer(const uint8_t* src, size_t n, unsigned align) : mem(new uint8_t[align + n]), len(n) {
        std::memset(mem.get(), 0xA5, align);
        if (n) std::memcpy(mem.get() + align, src, n);
        data = mem.get() + align;
    }
};

void check_indices(const std::vector<int64_t>& idx, uint64_t numel) {
    int64_t prev = -1;
    for (int64_t v : idx) {
        FUZZ_REQUIRE(v > prev);  // strictly increasing from >= 0
        FUZZ_REQUIRE(static_cast<uint64_t>(v) < numel);
        prev = v;
    }
}

/// The outcome of decoding one record (each part attempted on its own).
struct RecordOut {
    bool idx_ok = false, vals_ok = false;
    std::vector<int64_t> idx;
    std::vector<uint8_t> vals;
};

RecordOut decode_record(const wire::RecordView& r) {
    RecordOut o;
    const size_t esize = gradsparse::dtype_size(r.dtype);
    if (!r.dense()) {
        o.idx.resize(static_cast<size_t>(r.nnz));
        try {
            wire::decode_indices(r, o.idx.data());
            o.idx_ok = true;
        } catch (const ArgumentError& e) {
            note_rejection("indices", e);
        }
    } else {
        // A dense record has no index section: asking for one must be refused, not read.
        bool refused = false;
        try {
            int64_t dummy = 0;
            wire::decode_indices(r, &dummy);
        } catch (const ArgumentError&) {
            refused = true;
        }
        FUZZ_REQUIRE(refused);
        o.idx_ok = true;
    }
    o.vals.resize(static_cast<size_t>(r.nnz) * esize);
    try {
        wire::decode_values(r, o.vals.data());
        o.vals_ok = true;
    } catch (const ArgumentError& e) {
        note_rejection("values", e);
    }
    if (o.idx_ok && !r.dense()) check_indices(o.idx, r.numel);
    return o;
}

/// Properties parse() promises for every record it accepts.
void check_message(const wire::MessageView& m, const uint8_t* data, size_t len) {
    if (m.single) FUZZ_REQUIRE(m.records.size() == 1);
    std::set<std::string> names;
    for (const wire::RecordView& r : m.records) {
        FUZZ_REQUIRE(names.insert(r.name).second);
        FUZZ_REQUIRE(r.shape.size() <= wire::kMaxDims);
        bool zero = false;
        for (uint64_t d : r.shape) zero |= d == 0;
        uint64_t n = 1;
        if (zero) {
            n = 0;
        } else {
            for (uint64_t d : r.shape) {
                FUZZ_REQUIRE(d <= wire::kMaxElements && n <= wire::kMaxElements / d);
                n *= d;
            }
        }
        FUZZ_REQUIRE(r.numel == n);
        FUZZ_REQUIRE(r.nnz <= r.numel);
        if (r.dense()) FUZZ_REQUIRE(r.nnz == r.numel && r.index_len == 0);
        // Sections lie inside the payload's body.
        const uint8_t* end = data + len;
        FUZZ_REQUIRE(r.index_len <= len && r.value_len <= len);
        if (r.index_len) FUZZ_REQUIRE(r.index_data >= data + wire::kHeaderBytes && r.index_data + r.index_len <= end);
        if (r.value_len) FUZZ_REQUIRE(r.value_data >= data + wire::kHeaderBytes && r.value_data + r.value_len <= end);
        // parse() refuses counts the sections cannot hold, so what a caller allocates from
        // a record header is bounded by the payload size (no codec takes < 1 bit/entry).
        FUZZ_REQUIRE(r.nnz <= 8 * static_cast<uint64_t>(len));
    }
}

void run_message(const uint8_t* p, size_t n, unsigned op, SimdLevel level, unsigned align) {
    gsfuzz::Stats& st = gsfuzz::stats();
    Buffer buf(p, n, align);
    bool verify = op == gsfuzz::kOpVerify || op == gsfuzz::kOpFixCrc;
    if (op == gsfuzz::kOpFixCrc && n >= wire::kHeaderBytes) {
        // Reach the record parser with checksum verification on: patch the CRC in place.
        uint8_t* w = buf.mem.get() + align;
        const uint32_t crc = wire::crc32c(0, w + wire::kHeaderBytes, n - wire::kHeaderBytes);
        std::memcpy(w + 12, &crc, 4);
    }
    wire::MessageView m;
    try {
        m = wire::parse(buf.data, buf.len, verify);
    } catch (const ArgumentError& e) {
        note_rejection("parse", e);
        ++st.messages_rejected;
        ++st.parse_rejected;
        return;
    }
    check_message(m, buf.data, buf.len);
    if (verify) {
        // A message that verifies also parses without verification, to the same records.
        const wire::MessageView m2 = wire::parse(buf.data, buf.len, false);
        FUZZ_REQUIRE(m2.records.size() == m.records.size());
    }
    bool all_ok = true;
    for (const wire::RecordView& r : m.records) {
        const RecordOut o = decode_record(r);
        const bool ok = o.idx_ok && o.vals_ok;
        all_ok &= ok;
        ++(ok ? st.records_ok : st.records_rejected);
        if (level != SimdLevel::Scalar) {
            gradsparse::set_simd_level(SimdLevel::Scalar);
            const RecordOut s = decode_record(r);
            gradsparse::set_simd_level(level);
            ++st.simd_compared;
            FUZZ_REQUIRE(s.idx_ok == o.idx_ok);
            FUZZ_REQUIRE(s.vals_ok == o.vals_ok);
            if (o.idx_ok) FUZZ_REQUIRE(s.idx == o.idx);
            if (o.vals_ok) FUZZ_REQUIRE(s.vals == o.vals);
        }
    }
    ++(all_ok ? st.messages_ok : st.messages_rejected);
    st.last_accepted = all_ok;
}

wire::IndexCodec section_codec(uint8_t sel) {
    const unsigned c = sel & 7u;
    if (c <= 5) return static_cast<wire::IndexCodec>(c);  // Dense (refused) .. Bitmap
    if (c == 6) return wire::IndexCodec::Auto;            // refused: not a section codec
    return static_cast<wire::IndexCodec>(sel);           // mostly an unknown id
}

bool decode_section(wire::IndexCodec codec, const Buffer& b, uint64_t k, uint64_t numel, std::vector<int64_t>& out) {
    out.assign(static_cast<size_t>(k), -7);
    try {
        wire::index_section_decode(codec, b.data, b.len, k, numel, out.data());
    } catch (const ArgumentError& e) {
        note_rejection("section", e);
        return false;
    }
    FUZZ_REQUIRE(k <= numel && numel <= wire::kMaxElements);
    check_indices(out, numel);
    return true;
}

void run_section(const uint8_t* p, size_t n, SimdLevel level, unsigned align) {
    gsfuzz::Stats& st = gsfuzz::stats();
    if (n < gsfuzz::kSecData) {
        ++st.sections_rejected;
        return;
    }
    const wire::IndexCodec codec = section_codec(p[gsfuzz::kSecCodec]);
    uint64_t k = load_le(p + gsfuzz::kSecK, 4);
    if (k > gsfuzz::kMaxSectionK) k %= gsfuzz::kMaxSectionK + 1;  // small allocations only
    const uint64_t numel = load_le(p + gsfuzz::kSecNumel, 8);     // any value: limits are checked
    const Buffer b(p + gsfuzz::kSecData, n - gsfuzz::kSecData, align);
    std::vector<int64_t> out;
    const bool ok = decode_section(codec, b, k, numel, out);
    ++(ok ? st.sections_ok : st.sections_rejected);
    st.last_accepted = ok;
    if (level != SimdLevel::Scalar) {
        gradsparse::set_simd_level(SimdLevel::Scalar);
        std::vector<int64_t> ref;
        const bool ref_ok = decode_section(codec, b, k, numel, ref);
        gradsparse::set_simd_level(level);
        ++st.simd_compared;
        FUZZ_REQUIRE(ok == ref_ok);
        if (ok) FUZZ_REQUIRE(out == ref);
    }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    gsfuzz::stats().last_accepted = false;
    if (size == 0) return 0;
    const uint8_t mode = data[0];
    const SimdLevel level = pick_level(gsfuzz::mode_level(mode));
    gradsparse::set_simd_level(level);
    const unsigned op = gsfuzz::mode_op(mode);
    if (gsfuzz::op_is_message(op))
        run_message(data + 1, size - 1, op, level, gsfuzz::mode_align(mode));
    else
        run_section(data, size, level, gsfuzz::mode_align(mode));
    return 0;
}
