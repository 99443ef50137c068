// gradsparse — value sections: float32/64, float16, bfloat16 (round to nearest even,
// one rounding from any source dtype), the unbiased stochastic quantizer and sign + scale.
#include <cmath>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include "core/rng.hpp"
#include "wire_generic.hpp"
#include "wire_internal.hpp"
#include "wire_kernels.hpp"

namespace gradsparse {
namespace wire {
namespace {

// ---- scalar conversions ------------------------------------------------------------------

/// float64 -> float32 rounded to odd: truncate, then set the last bit if inexact. A second
/// rounding of this float to a format with at most 22 fraction bits (float16, bfloat16) then
/// equals one correct rounding of the double (the round-to-odd argument, Boldo & Melquiond).
float f64_to_f32_odd(double d) {
    if (std::isnan(d)) return static_cast<float>(d);
    float f = static_cast<float>(d);
    if (static_cast<double>(f) == d) return f;
    if (std::fabs(static_cast<double>(f)) > std::fabs(d)) f = std::nextafter(f, 0.0f);  // truncate
    return bits_f32(f32_bits(f) | 1u);
}

/// float32 -> bfloat16 bits, round to nearest even (NaN: quiet, sign and top payload kept).
uint16_t f32_to_bf16_one(float f) {
    const uint32_t x = f32_bits(f);
    if ((x & 0x7FFFFFFFu) > 0x7F800000u) return static_cast<uint16_t>((x >> 16) | 0x40u);
    return static_cast<uint16_t>((x + 0x7FFFu + ((x >> 16) & 1u)) >> 16);
}

float bf16_to_f32_one(uint16_t h) { return bits_f32(static_cast<uint32_t>(h) << 16); }

/// One source element as float (exact for f32/f16/bf16; f64 rounded to odd — only used on
/// paths that round again to 16 bits, or RNE when `odd` is false).
template <bool odd>
float elem_f32(DType t, const void* v, uint64_t i) {
    switch (t) {
        case DType::F32: return static_cast<const float*>(v)[i];
        case DType::F64: {
            const double d = static_cast<const double*>(v)[i];
            return odd ? f64_to_f32_odd(d) : static_cast<float>(d);
        }
        case DType::F16: return generic::f16_to_f32_one(static_cast<const uint16_t*>(v)[i]);
        default: return bf16_to_f32_one(static_cast<const uint16_t*>(v)[i]);
    }
}

double elem_f64(DType t, const void* v, uint64_t i) {
    if (t == DType::F64) return static_cast<const double*>(v)[i];
    return static_cast<double>(elem_f32<false>(t, v, i));
}

/// Writes a double into element i of dst (one correct rounding for every dst dtype).
void store_f64(DType t, void* out, uint64_t i, double d) {
    switch (t) {
        case DType::F64: static_cast<double*>(out)[i] = d; return;
        case DType::F32: static_cast<float*>(out)[i] = static_cast<float>(d); return;
        case DType::F16: static_cast<uint16_t*>(out)[i] = generic::f32_to_f16_one(f64_to_f32_odd(d)); return;
        default: static_cast<uint16_t*>(out)[i] = f32_to_bf16_one(f64_to_f32_odd(d)); return;
    }
}

/// Writes an exact float into element i of dst.
void store_f32(DType t, void* out, uint64_t i, float f) {
    switch (t) {
        case DType::F64: static_cast<double*>(out)[i] = static_cast<double>(f); return;
        case DType::F32: static_cast<float*>(out)[i] = f; return;
        case DType::F16: static_cast<uint16_t*>(out)[i] = generic::f32_to_f16_one(f); return;
        default: static_cast<uint16_t*>(out)[i] = f32_to_bf16_one(f); return;
    }
}

size_t ceil_div(uint64_t a, uint64_t b) { return static_cast<size_t>((a + b - 1) / b); }

// ---- counter-based random numbers for stochastic rounding --------------------------------

/// Uniform in [0, 1) for element i of stream `key`: 53 bits of SplitMix64(key, i).
double uniform(uint64_t key, uint64_t i) {
    return static_cast<double>(splitmix64::at(key ^ (i * 0xD1B54A32D192ED03ull), 1) >> 11) * 0x1p-53;
}

// ---- quantizer -----------------------------------------------------------------------------
// Section: u8 bits, u8 0, u16 0, u32 block, float32 scale per block, then the codes, bits
// each, LSB-first. Code j of a block with scale s decodes to s * (2j / (L - 1) - 1) with
// L = 2^bits levels; the encoder rounds u = (v + s) / (2s) * (L - 1) up with probability
// frac(u), so E[code] = u and E[decoded] = v.

constexpr size_t kQuantHeader = 8;

void put_code(uint8_t* codes, uint64_t i, unsigned bits, unsigned j) {
    const uint64_t bit = i * bits;
    codes[bit >> 3] = static_cast<uint8_t>(codes[bit >> 3] | (j << (bit & 7)));
}

unsigned get_code(const uint8_t* codes, uint64_t i, unsigned bits) {
    const uint64_t bit = i * bits;
    return (codes[bit >> 3] >> (bit & 7)) & ((1u << bits) - 1u);
}

void quant_encode(DType src, const void* v, uint64_t n, const QuantOptions& q, uint64_t stream, uint8_t* out) {
    const unsigned bits = static_cast<unsigned>(q.bits);
    const uint64_t nb = ceil_div(n, q.block);
    out[0] = static_cast<uint8_t>(bits);
    out[1] = 0;
    out[2] = out[3] = 0;
    std::memcpy(out + 4, &q.block, 4);
    uint8_t* scales = out + kQuantHeader;
    uint8_t* codes = scales + 4 * nb;
    std::memset(codes, 0, ceil_div(n * bits, 8));
    const double levels = static_cast<double>((1u << bits) - 1u);
    const uint64_t key = splitmix64::at(q.seed + 0x632BE59BD9B4E019ull * (stream + 1), 1);
    for (uint64_t blk = 0; blk < nb; ++blk) {
        const uint64_t lo = blk * q.block, hi = lo + q.block < n ? lo + q.block : n;
        double m = 0.0;
        for (uint64_t i = lo; i < hi; ++i) {
            const double a = std::fabs(elem_f64(src, v, i));
            if (!(a <= std::numeric_limits<double>::max()))
                throw ArgumentError("values: the 'qsgd' codec needs finite values (element " + std::to_string(i) + ")");
            if (a > m) m = a;
        }
        GS_CHECK(m <= static_cast<double>(std::numeric_limits<float>::max()),
                 "values: the 'qsgd' codec needs |values| within the float32 range");
        float s = static_cast<float>(m);
        if (static_cast<double>(s) < m) s = std::nextafter(s, std::numeric_limits<float>::infinity());
        std::memcpy(scales + 4 * blk, &s, 4);
        if (s == 0.0f) continue;  // every code 0 decodes to 0
        const double sd = static_cast<double>(s);
        for (uint64_t i = lo; i < hi; ++i) {
            double u = (elem_f64(src, v, i) + sd) / (2.0 * sd) * levels;
            // !(u > 0) also catches NaN (a value changed by another thread since the scale
            // pass): the code stays inside [0, levels] whatever the input does meanwhile.
            if (!(u > 0.0)) u = 0.0;
            if (u > levels) u = levels;
            double j0 = std::floor(u);
            if (j0 < levels && uniform(key, i) < u - j0) j0 += 1.0;
            put_code(codes, i, bits, static_cast<unsigned>(j0));
        }
    }
}

void quant_decode(const uint8_t* data, size_t len, uint64_t n, DType dst, void* out) {
    if (len < kQuantHeader) throw ArgumentError("payload: quantized value section is truncated");
    const unsigned bits = data[0];
    uint32_t block;
    std::memcpy(&block, data + 4, 4);
    if (bits != 1 && bits != 2 && bits != 4 && bits != 8)
        throw ArgumentError("payload: quantizer bits must be 1, 2, 4 or 8, got " + std::to_string(bits));
    if (data[1] || data[2] || data[3]) throw ArgumentError("payload: quantizer reserved bytes are not zero");
    if (block == 0) throw ArgumentError("payload: quantizer block size is 0");
    const uint64_t nb = ceil_div(n, block);
    const uint64_t want = kQuantHeader + 4 * nb + ceil_div(n * bits, 8);
    if (len != want)
        throw ArgumentError("payload: quantized value section is " + std::to_string(len) + " bytes, expected " +
                            std::to_string(want));
    const uint8_t* scales = data + kQuantHeader;
    const uint8_t* codes = scales + 4 * nb;
    if ((n * bits) & 7) {
        if (codes[(n * bits) >> 3] >> ((n * bits) & 7))
            throw ArgumentError("payload: quantized value section has non-zero padding bits");
    }
    const double levels = static_cast<double>((1u << bits) - 1u);
    for (uint64_t blk = 0; blk < nb; ++blk) {
        float s;
        std::memcpy(&s, scales + 4 * blk, 4);
        if (!(s >= 0.0f) || std::isinf(s))
            throw ArgumentError("payload: quantizer scale " + std::to_string(blk) + " is negative or not finite");
        const double sd = static_cast<double>(s);
        const uint64_t lo = blk * block, hi = lo + block < n ? lo + block : n;
        for (uint64_t i = lo; i < hi; ++i) {
            const double j = static_cast<double>(get_code(codes, i, bits));
            store_f64(dst, out, i, sd * (2.0 * j / levels - 1.0));
        }
    }
}

// ---- sign + scale --------------------------------------------------------------------------
// Section: float32 scale (mean |v|), then one bit per value (1 = negative: the sign bit).

void sign_encode(DType src, const void* v, uint64_t n, uint8_t* out) {
    double sum = 0.0;
    for (uint64_t i = 0; i < n; ++i) {
        const double a = std::fabs(elem_f64(src, v, i));
        if (!(a <= std::numeric_limits<double>::max()))
            throw ArgumentError("values: the 'sign' codec needs finite values (element " + std::to_string(i) + ")");
        sum += a;
    }
    const float s = n ? static_cast<float>(sum / static_cast<double>(n)) : 0.0f;
    GS_CHECK(std::isfinite(s), "values: the 'sign' codec needs a mean |value| within the float32 range");
    std::memcpy(out, &s, 4);
    uint8_t* b = out + 4;
    std::memset(b, 0, ceil_div(n, 8));
    for (uint64_t i = 0; i < n; ++i)
        if (std::signbit(elem_f64(src, v, i))) b[i >> 3] = static_cast<uint8_t>(b[i >> 3] | (1u << (i & 7)));
}

void sign_decode(const uint8_t* data, size_t len, uint64_t n, DType dst, void* out) {
    if (len != 4 + ceil_div(n, 8))
        throw ArgumentError("payload: sign value section is " + std::to_string(len) + " bytes, expected " +
                            std::to_string(4 + ceil_div(n, 8)));
    float s;
    std::memcpy(&s, data, 4);
    if (!(s >= 0.0f) || std::isinf(s)) throw ArgumentError("payload: sign scale is negative or not finite");
    const uint8_t* b = data + 4;
    if ((n & 7) && (b[n >> 3] >> (n & 7))) throw ArgumentError("payload: sign value section has non-zero padding bits");
    for (uint64_t i = 0; i < n; ++i) store_f32(dst, out, i, ((b[i >> 3] >> (i & 7)) & 1u) ? -s : s);
}

// ---- plain float sections --------------------------------------------------------------------

void float_encode(ValueCodec c, DType src, const void* v, uint64_t n, uint8_t* out) {
    const size_t nn = static_cast<size_t>(n);
    // An empty tensor may come with values == nullptr (an empty vector's data()), and
    // memcpy with a null pointer is undefined even for 0 bytes: nothing to write anyway.
    if (nn == 0) return;
    switch (c) {
        case ValueCodec::F32:
            if (src == DType::F32) { std::memcpy(out, v, nn * 4); return; }
            if (src == DType::F16) { active_wire_kernels().f16_to_f32(static_cast<const uint16_t*>(v), nn, reinterpret_cast<float*>(out)); return; }
            for (size_t i = 0; i < nn; ++i) { const float f = elem_f32<false>(src, v, i); std::memcpy(out + 4 * i, &f, 4); }
            return;
        case ValueCodec::F64:
            for (size_t i = 0; i < nn; ++i) { const double d = elem_f64(src, v, i); std::memcpy(out + 8 * i, &d, 8); }
            return;
        case ValueCodec::F16:
            if (src == DType::F16) { std::memcpy(out, v, nn * 2); return; }
            if (src == DType::F32) { active_wire_kernels().f32_to_f16(static_cast<const float*>(v), nn, reinterpret_cast<uint16_t*>(out)); return; }
            for (size_t i = 0; i < nn; ++i) { const uint16_t h = generic::f32_to_f16_one(elem_f32<true>(src, v, i)); std::memcpy(out + 2 * i, &h, 2); }
            return;
        case ValueCodec::BF16:
            if (src == DType::BF16) { std::memcpy(out, v, nn * 2); return; }
            for (size_t i = 0; i < nn; ++i) { const uint16_t h = f32_to_bf16_one(elem_f32<true>(src, v, i)); std::memcpy(out + 2 * i, &h, 2); }
            return;
        default: GS_ASSERT(false);
    }
}

void float_decode(ValueCodec c, const uint8_t* data, size_t len, uint64_t n, DType dst, void* out) {
    const size_t w = c == ValueCodec::F64 ? 8 : c == ValueCodec::F32 ? 4 : 2;
    if (len != n * w)
        throw ArgumentError("payload: " + std::string(value_codec_name(c)) + " value section is " + std::to_string(len) +
                            " bytes, expected " + std::to_string(n * w));
    const size_t nn = static_cast<size_t>(n);
    const bool same = (c == ValueCodec::F32 && dst == DType::F32) || (c == ValueCodec::F64 && dst == DType::F64) ||
                      (c == ValueCodec::F16 && dst == DType::F16) || (c == ValueCodec::BF16 && dst == DType::BF16);
    // `out` may be null for 0 values (an empty vector's data()); memcpy must not see it.
    if (same) { if (len) std::memcpy(out, data, len); return; }
    if (c == ValueCodec::F16 && dst == DType::F32) {
        active_wire_kernels().f16_to_f32(reinterpret_cast<const uint16_t*>(data), nn, static_cast<float*>(out));
        return;
    }
    for (size_t i = 0; i < nn; ++i) {
        if (c == ValueCodec::F64) {
            double d;
            std::memcpy(&d, data + 8 * i, 8);
            store_f64(dst, out, i, d);
            continue;
        }
        float f;
        if (c == ValueCodec::F32) {
            std::memcpy(&f, data + 4 * i, 4);
        } else {
            uint16_t h;
            std::memcpy(&h, data + 2 * i, 2);
            f = c == ValueCodec::F16 ? generic::f16_to_f32_one(h) : bf16_to_f32_one(h);
        }
        store_f32(dst, out, i, f);
    }
}

}  // namespace

void check_quant_options(const QuantOptions& q) {
    GS_CHECK(q.bits == 1 || q.bits == 2 || q.bits == 4 || q.bits == 8, "bits: must be 1, 2, 4 or 8");
    GS_CHECK(q.block >= 1, "block: must be >= 1");
}

size_t value_section_size(ValueCodec codec, uint64_t n, const QuantOptions& q) {
    switch (codec) {
        case ValueCodec::F32: return static_cast<size_t>(4 * n);
        case ValueCodec::F64: return static_cast<size_t>(8 * n);
        case ValueCodec::F16:
        case ValueCodec::BF16: return static_cast<size_t>(2 * n);
        case ValueCodec::Quant: return kQuantHeader + 4 * ceil_div(n, q.block) + ceil_div(n * static_cast<uint64_t>(q.bits), 8);
        case ValueCodec::Sign: return 4 + ceil_div(n, 8);
    }
    GS_ASSERT(false);
    return 0;
}

size_t min_value_section(ValueCodec codec, uint64_t n) {
    switch (codec) {
        case ValueCodec::Quant: return kQuantHeader + ceil_div(n, 8);
        case ValueCodec::Sign: return 4 + ceil_div(n, 8);
        default: return value_section_size(codec, n, QuantOptions{});
    }
}

void write_values(ValueCodec codec, DType src, const void* values, uint64_t n, const QuantOptions& q, uint64_t stream,
                  uint8_t* out) {
    if (codec == ValueCodec::Quant) return quant_encode(src, values, n, q, stream, out);
    if (codec == ValueCodec::Sign) return sign_encode(src, values, n, out);
    float_encode(codec, src, values, n, out);
}

void read_values(ValueCodec codec, const uint8_t* data, size_t len, uint64_t n, DType dst, void* out) {
    if (codec == ValueCodec::Quant) return quant_decode(data, len, n, dst, out);
    if (codec == ValueCodec::Sign) return sign_decode(data, len, n, dst, out);
    float_decode(codec, data, len, n, dst, out);
}

}  // namespace wire
}  // namespace gradsparse
