// gradsparse — messages: the versioned header, records, checksum; planning, writing and
// the validating parser. Layout in docs/format.md.
#include <cstring>
#include <set>
#include <string>

#include "gradsparse/wire.hpp"
#include "wire_internal.hpp"
#include "wire_kernels.hpp"

namespace gradsparse {
namespace wire {
namespace {

constexpr uint8_t kMagic[4] = {'G', 'S', 'P', 'W'};
constexpr uint16_t kFlagSingle = 1;
/// Fixed part of a record header: name length, dtype, ndim, codecs, nnz and two lengths.
constexpr size_t kRecordFixed = 2 + 4 + 8 * 3;

uint8_t dtype_id(DType t) { return static_cast<uint8_t>(static_cast<int>(t) + 1); }

template <class T>
void put(uint8_t*& p, T v) {
    std::memcpy(p, &v, sizeof(T));
    p += sizeof(T);
}

/// Bounds-checked reader over the body.
class Cursor {
   public:
    Cursor(const uint8_t* p, size_t n) : p_(p), end_(p + n) {}
    size_t left() const { return static_cast<size_t>(end_ - p_); }
    const uint8_t* take(size_t n, const char* what) {
        if (left() < n) throw ArgumentError(std::string("payload: truncated ") + what);
        const uint8_t* q = p_;
        p_ += n;
        return q;
    }
    template <class T>
    T get(const char* what) {
        T v;
        std::memcpy(&v, take(sizeof(T), what), sizeof(T));
        return v;
    }

   private:
    const uint8_t* p_;
    const uint8_t* end_;
};

uint64_t checked_numel(const std::vector<uint64_t>& shape, const char* who) {
    uint64_t n = 1;
    bool zero = false;
    for (uint64_t d : shape) {
        // Every dimension is bounded even when another one is 0 (numpy needs them in range).
        if (d > kMaxElements) throw ArgumentError(std::string(who) + ": a dimension is above 2^56");
        zero |= d == 0;
    }
    if (zero) return 0;
    for (uint64_t d : shape) {
        if (n > kMaxElements / d) throw ArgumentError(std::string(who) + ": more than 2^56 elements");
        n *= d;
    }
    return n;
}

/// A name from the payload, safe to put in an error message: printable ASCII kept, every
/// other byte (the name may not even be valid UTF-8) written as \xNN.
std::string printable(const std::string& name) {
    static const char* hex = "0123456789abcdef";
    std::string out;
    for (unsigned char ch : name.substr(0, 64)) {
        if (ch >= 0x20 && ch < 0x7F && ch != '\\') {
            out.push_back(static_cast<char>(ch));
        } else {
            out += "\\x";
            out.push_back(hex[ch >> 4]);
            out.push_back(hex[ch & 15]);
        }
    }
    return name.size() > 64 ? out + "..." : out;
}

std::string record_label(size_t i, const std::string& name) {
    return "record " + std::to_string(i) + (name.empty() ? std::string() : " ('" + printable(name) + "')");
}

}  // namespace

// ---- names -------------------------------------------------------------------------------

const char* index_codec_name(IndexCodec c) {
    switch (c) {
        case IndexCodec::Dense: return "dense";
        case IndexCodec::Raw32: return "raw32";
        case IndexCodec::Raw64: return "raw64";
        case IndexCodec::Varint: return "varint";
        case IndexCodec::Rice: return "rice";
        case IndexCodec::Bitmap: return "bitmap";
        case IndexCodec::Auto: return "auto";
    }
    return "unknown";
}

const char* value_codec_name(ValueCodec c) {
    switch (c) {
        case ValueCodec::F32: return "float32";
        case ValueCodec::F64: return "float64";
        case ValueCodec::F16: return "float16";
        case ValueCodec::BF16: return "bfloat16";
        case ValueCodec::Quant: return "qsgd";
        case ValueCodec::Sign: return "sign";
    }
    return "unknown";
}

IndexCodec parse_index_codec(const std::string& name, const char* what) {
    for (IndexCodec c : {IndexCodec::Auto, IndexCodec::Raw32, IndexCodec::Raw64, IndexCodec::Varint,
                         IndexCodec::Rice, IndexCodec::Bitmap})
        if (name == index_codec_name(c)) return c;
    throw ArgumentError(std::string(what) + ": unknown index codec '" + name +
                        "' (expected 'auto', 'raw32', 'raw64', 'varint', 'rice' or 'bitmap')");
}

ValueCodec parse_value_codec(const std::string& name, const char* what) {
    for (ValueCodec c : {ValueCodec::F32, ValueCodec::F64, ValueCodec::F16, ValueCodec::BF16, ValueCodec::Quant,
                         ValueCodec::Sign})
        if (name == value_codec_name(c)) return c;
    throw ArgumentError(std::string(what) + ": unknown value codec '" + name +
                        "' (expected 'float32', 'float64', 'float16', 'bfloat16', 'qsgd' or 'sign')");
}

uint32_t crc32c(uint32_t crc, const uint8_t* data, size_t n) { return active_wire_kernels().crc32c(crc, data, n); }

// ---- encoding ------------------------------------------------------------------------------

Encoder::Encoder(const std::vector<TensorIn>& tensors, const EncodeOptions& opt, bool checks_at_write)
    : tensors_(tensors), opt_(opt) {
    GS_CHECK(tensors.size() <= 0xFFFFFFFFull, "update: too many tensors");
    GS_CHECK(!opt.single || tensors.size() == 1, "update: a single-tensor message holds exactly one tensor");
    GS_CHECK(opt.index != IndexCodec::Dense, "index_codec: 'dense' is chosen per tensor, not requested");
    if (opt.value == ValueCodec::Quant) check_quant_options(opt.quant);
    std::set<std::string> names;
    size_t total = kHeaderBytes;
    plans_.reserve(tensors.size());
    for (size_t i = 0; i < tensors.size(); ++i) {
        const TensorIn& t = tensors[i];
        GS_CHECK(t.name.size() <= kMaxNameBytes, "update: tensor name longer than 65535 bytes");
        GS_CHECK(names.insert(t.name).second, "update: duplicate tensor name '" + printable(t.name) + "'");
        GS_CHECK(t.shape.size() <= kMaxDims, "update: tensor '" + printable(t.name) + "' has more than 32 dimensions");
        const uint64_t numel = checked_numel(t.shape, "update");
        Plan p{};
        if (t.dense) {
            GS_CHECK(t.nnz == numel, "update: dense tensor '" + printable(t.name) + "' must hold every element");
            p.index = IndexCodec::Dense;
        } else {
            GS_CHECK(t.nnz <= numel, "indices: tensor '" + printable(t.name) + "' has more indices than elements");
            const IndexPlan ip = plan_indices(opt.index, t.indices, t.nnz, numel, !checks_at_write);
            p.index = ip.codec;
            p.rice_b = ip.rice_b;
            p.index_checked = ip.checked;
            p.index_bytes = ip.bytes;
        }
        p.value_bytes = value_section_size(opt.value, t.nnz, opt.quant);
        p.head_bytes = kRecordFixed + t.name.size() + 8 * t.shape.size();
        total += p.head_bytes + p.index_bytes + p.value_bytes;
        plans_.push_back(p);
    }
    size_ = total;
}

void Encoder::write(uint8_t* out) const {
    uint8_t* p = out + kHeaderBytes;
    uint8_t* const end = out + size_;
    for (size_t i = 0; i < tensors_.size(); ++i) {
        const TensorIn& t = tensors_[i];
        const Plan& pl = plans_[i];
        put<uint16_t>(p, static_cast<uint16_t>(t.name.size()));
        std::memcpy(p, t.name.data(), t.name.size());
        p += t.name.size();
        put<uint8_t>(p, dtype_id(t.dtype));
        put<uint8_t>(p, static_cast<uint8_t>(t.shape.size()));
        put<uint8_t>(p, static_cast<uint8_t>(pl.index));
        put<uint8_t>(p, static_cast<uint8_t>(opt_.value));
        for (uint64_t d : t.shape) put<uint64_t>(p, d);
        put<uint64_t>(p, t.nnz);
        put<uint64_t>(p, pl.index_bytes);
        put<uint64_t>(p, pl.value_bytes);
        if (pl.index != IndexCodec::Dense) {
            IndexPlan ip;
            ip.codec = pl.index;
            ip.rice_b = pl.rice_b;
            ip.bytes = pl.index_bytes;
            ip.checked = pl.index_checked;
            // Bounded by the planned section: indices changed since planning raise here.
            const size_t n = write_indices(ip, t.indices, t.nnz, checked_numel(t.shape, "update"), p,
                                           pl.index_bytes);
            if (n != pl.index_bytes)
                throw ArgumentError("indices: changed during encoding (the section no longer has the planned "
                                    "size); another thread must not modify the arrays while encode() runs");
            p += n;
        }
        write_values(opt_.value, t.dtype, t.values, t.nnz, opt_.quant, i, p);
        p += pl.value_bytes;
    }
    GS_ASSERT(p == end);
    const uint64_t body = size_ - kHeaderBytes;
    uint8_t* h = out;
    std::memcpy(h, kMagic, 4);
    h += 4;
    put<uint16_t>(h, kFormatVersion);
    put<uint16_t>(h, opt_.single ? kFlagSingle : 0);
    put<uint32_t>(h, static_cast<uint32_t>(tensors_.size()));
    put<uint32_t>(h, crc32c(0, out + kHeaderBytes, static_cast<size_t>(body)));
    put<uint64_t>(h, body);
}

size_t encoded_size(const std::vector<TensorIn>& tensors, const EncodeOptions& opt) {
    return Encoder(tensors, opt).size();
}

std::vector<uint8_t> encode(const std::vector<TensorIn>& tensors, const EncodeOptions& opt) {
    Encoder e(tensors, opt, true);
    std::vector<uint8_t> out(e.size());
    e.write(out.data());
    return out;
}

// ---- parsing -------------------------------------------------------------------------------

MessageView parse(const uint8_t* data, size_t len, bool verify_checksum) {
    if (len < kHeaderBytes)
        throw ArgumentError("payload: truncated header (" + std::to_string(len) + " bytes, a header takes 24)");
    if (std::memcmp(data, kMagic, 4) != 0) throw ArgumentError("payload: not a gradsparse payload (bad magic bytes)");
    Cursor h(data + 4, kHeaderBytes - 4);
    const uint16_t version = h.get<uint16_t>("header");
    const uint16_t flags = h.get<uint16_t>("header");
    const uint32_t count = h.get<uint32_t>("header");
    const uint32_t crc = h.get<uint32_t>("header");
    const uint64_t body = h.get<uint64_t>("header");
    if (version != kFormatVersion)
        throw ArgumentError("payload: unsupported format version " + std::to_string(version) + " (this build reads " +
                            std::to_string(kFormatVersion) + ")");
    if (flags & ~kFlagSingle) throw ArgumentError("payload: unknown header flags " + std::to_string(flags));
    const size_t have = len - kHeaderBytes;
    if (body > have)
        throw ArgumentError("payload: truncated (header declares a " + std::to_string(body) + "-byte body, " +
                            std::to_string(have) + " bytes follow)");
    if (body < have)
        throw ArgumentError("payload: " + std::to_string(have - body) + " trailing bytes after the declared body");
    const uint8_t* b = data + kHeaderBytes;
    if (verify_checksum && crc32c(0, b, have) != crc) throw ArgumentError("payload: checksum mismatch (CRC32C of the body)");
    MessageView m;
    m.single = flags & kFlagSingle;
    if (m.single && count != 1) throw ArgumentError("payload: a single-tensor message must hold exactly one record");
    if (count > have / kRecordFixed)
        throw ArgumentError("payload: header declares " + std::to_string(count) + " records, more than the body can hold");
    m.records.reserve(count);
    std::set<std::string> names;
    Cursor c(b, have);
    for (uint32_t i = 0; i < count; ++i) {
        RecordView r;
        const uint16_t nlen = c.get<uint16_t>("record header");
        const uint8_t* nm = c.take(nlen, "record name");
        r.name.assign(reinterpret_cast<const char*>(nm), nlen);
        const std::string label = record_label(i, r.name);
        if (!names.insert(r.name).second) throw ArgumentError("payload: duplicate tensor name in " + label);
        const uint8_t dt = c.get<uint8_t>("record header");
        const uint8_t ndim = c.get<uint8_t>("record header");
        const uint8_t ic = c.get<uint8_t>("record header");
        const uint8_t vc = c.get<uint8_t>("record header");
        if (dt < 1 || dt > 4) throw ArgumentError("payload: unknown dtype id " + std::to_string(dt) + " in " + label);
        r.dtype = static_cast<DType>(dt - 1);
        if (ndim > kMaxDims) throw ArgumentError("payload: " + label + " declares " + std::to_string(ndim) + " dimensions (at most 32)");
        if (ic > static_cast<uint8_t>(IndexCodec::Bitmap))
            throw ArgumentError("payload: unknown index codec id " + std::to_string(ic) + " in " + label);
        if (vc < 1 || vc > static_cast<uint8_t>(ValueCodec::Sign))
            throw ArgumentError("payload: unknown value codec id " + std::to_string(vc) + " in " + label);
        r.index = static_cast<IndexCodec>(ic);
        r.value = static_cast<ValueCodec>(vc);
        r.shape.resize(ndim);
        for (auto& d : r.shape) d = c.get<uint64_t>("record header");
        r.numel = checked_numel(r.shape, ("payload: " + label).c_str());
        r.nnz = c.get<uint64_t>("record header");
        const uint64_t ilen = c.get<uint64_t>("record header");
        const uint64_t vlen = c.get<uint64_t>("record header");
        if (r.nnz > r.numel)
            throw ArgumentError("payload: " + label + " declares " + std::to_string(r.nnz) + " entries for " +
                                std::to_string(r.numel) + " elements");
        if (r.dense() && (r.nnz != r.numel || ilen != 0))
            throw ArgumentError("payload: dense " + label + " must hold every element and no index section");
        // Refuse sizes the sections cannot hold before anything is allocated: every codec
        // needs at least this many bytes per declared entry.
        if (ilen > c.left() || vlen > c.left() - ilen)
            throw ArgumentError("payload: " + label + " sections are longer than the rest of the body");
        if (!r.dense() && ilen < min_index_section(r.index, r.nnz, r.numel))
            throw ArgumentError("payload: " + label + " index section is too short for " + std::to_string(r.nnz) + " indices");
        if (vlen < min_value_section(r.value, r.nnz))
            throw ArgumentError("payload: " + label + " value section is too short for " + std::to_string(r.nnz) + " values");
        r.index_len = static_cast<size_t>(ilen);
        r.index_data = c.take(r.index_len, "index section");
        r.value_len = static_cast<size_t>(vlen);
        r.value_data = c.take(r.value_len, "value section");
        m.records.push_back(std::move(r));
    }
    if (c.left()) throw ArgumentError("payload: " + std::to_string(c.left()) + " bytes after the last record");
    return m;
}

void decode_indices(const RecordView& r, int64_t* out) {
    GS_CHECK(!r.dense(), "record: dense records have no indices");
    read_indices(r.index, r.index_data, r.index_len, r.nnz, r.numel, out);
}

void decode_values(const RecordView& r, void* out) {
    read_values(r.value, r.value_data, r.value_len, r.nnz, r.dtype, out);
}

}  // namespace wire
}  // namespace gradsparse
