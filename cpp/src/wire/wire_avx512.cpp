// gradsparse — wire kernels for AVX-512 (F, BW, DQ, VL; +SSE4.2 crc32, F16C, BMI2).
// Built with the AVX-512 flags only in this unit; chosen at run time.
#include <immintrin.h>

#include "crc32c_hw.hpp"
#include "varint_tables.hpp"
#include "wire_generic.hpp"

namespace gradsparse {
namespace wire {
namespace {

constexpr size_t kChunk = size_t(1) << 16;  // see wire_avx2.cpp: bounds growth between checks

// Eight indices per step: two control bytes, two 16-byte shuffles, widen to uint64, add
// the gaps' +1, an in-register prefix sum (three lane shifts) and the running base.
Status varint_decode_avx512(const uint8_t* in, size_t len, size_t k, uint64_t numel, int64_t* out) {
    const size_t nctrl = varint_ctrl_bytes(k);
    if (len < nctrl) return Status::Truncated;
    const VarintTables& T = varint_tables();
    const uint8_t* ctrl = in;
    const uint8_t* data = in + nctrl;
    const uint8_t* end = in + len;
    const __m512i ones = _mm512_set1_epi64(1), zero = _mm512_setzero_si512();
    const __m512i last = _mm512_set1_epi64(7);
    __m512i base = _mm512_set1_epi64(-1);
    size_t i = 0;
    while (i + 8 <= k && end - data >= 32) {
        const size_t stop = i + kChunk < k ? i + kChunk : k;
        for (; i + 8 <= stop && end - data >= 32; i += 8) {
            const unsigned c0 = ctrl[i >> 2], c1 = ctrl[(i >> 2) + 1];
            const __m128i g0 = _mm_shuffle_epi8(_mm_loadu_si128(reinterpret_cast<const __m128i*>(data)),
                                                _mm_load_si128(reinterpret_cast<const __m128i*>(T.decode[c0])));
            data += T.length[c0];
            const __m128i g1 = _mm_shuffle_epi8(_mm_loadu_si128(reinterpret_cast<const __m128i*>(data)),
                                                _mm_load_si128(reinterpret_cast<const __m128i*>(T.decode[c1])));
            data += T.length[c1];
            const __m256i g = _mm256_inserti128_si256(_mm256_castsi128_si256(g0), g1, 1);
            __m512i x = _mm512_add_epi64(_mm512_cvtepu32_epi64(g), ones);
            x = _mm512_add_epi64(x, _mm512_alignr_epi64(x, zero, 7));
            x = _mm512_add_epi64(x, _mm512_alignr_epi64(x, zero, 6));
            x = _mm512_add_epi64(x, _mm512_alignr_epi64(x, zero, 4));
            x = _mm512_add_epi64(x, base);
            _mm512_storeu_si512(out + i, x);
            base = _mm512_permutexvar_epi64(last, x);
        }
        if (static_cast<uint64_t>(_mm_cvtsi128_si64(_mm512_castsi512_si128(base))) + 1u > numel)
            return Status::OutOfRange;
    }
    const uint64_t b = static_cast<uint64_t>(_mm_cvtsi128_si64(_mm512_castsi512_si128(base)));
    return generic::varint_decode_tail(ctrl, data, end, i, k, b, numel, out);
}

// Eight indices per step: gaps from a lane shift of the indices, one unsigned compare
// flags decreasing / negative / > 32-bit gaps, length codes from three compares, control
// bytes assembled with pdep, data bytes packed with one shuffle per four values.
size_t varint_encode_avx512(const int64_t* idx, size_t k, uint64_t numel, uint8_t* out, size_t cap, Status* st) {
    if (cap < varint_ctrl_bytes(k)) {
        *st = Status::NoFit;
        return 0;
    }
    const VarintTables& T = varint_tables();
    uint8_t* ctrl = out;
    uint8_t* data = out + varint_ctrl_bytes(k);
    uint8_t* const data_end = out + cap;
    const __m512i one = _mm512_set1_epi64(1), max32 = _mm512_set1_epi64(0xFFFFFFFFll);
    const __m256i t8 = _mm256_set1_epi32(1 << 8), t16 = _mm256_set1_epi32(1 << 16),
                  t24 = _mm256_set1_epi32(1 << 24);
    __m512i prev = _mm512_set1_epi64(-1);
    __mmask8 bad = 0;
    size_t i = 0;
    for (; i + 8 <= k && data_end - data >= 32; i += 8) {
        const __m512i cur = _mm512_loadu_si512(idx + i);
        const __m512i gap = _mm512_sub_epi64(_mm512_sub_epi64(cur, _mm512_alignr_epi64(cur, prev, 7)), one);
        bad |= _mm512_cmpgt_epu64_mask(gap, max32);
        prev = cur;
        const __m256i g = _mm512_cvtepi64_epi32(gap);
        const unsigned m1 = _mm256_cmpge_epu32_mask(g, t8), m2 = _mm256_cmpge_epu32_mask(g, t16),
                       m3 = _mm256_cmpge_epu32_mask(g, t24);
        const unsigned lo = m1 ^ m2 ^ m3, hi = m2;  // code = m1 + m2 + m3 (nested masks)
        const unsigned c0 = _pdep_u32(lo & 0xF, 0x55) | _pdep_u32(hi & 0xF, 0xAA);
        const unsigned c1 = _pdep_u32(lo >> 4, 0x55) | _pdep_u32(hi >> 4, 0xAA);
        ctrl[i >> 2] = static_cast<uint8_t>(c0);
        ctrl[(i >> 2) + 1] = static_cast<uint8_t>(c1);
        const __m128i p0 = _mm_shuffle_epi8(_mm256_castsi256_si128(g),
                                            _mm_load_si128(reinterpret_cast<const __m128i*>(T.encode[c0])));
        _mm_storeu_si128(reinterpret_cast<__m128i*>(data), p0);
        data += T.length[c0];
        const __m128i p1 = _mm_shuffle_epi8(_mm256_extracti128_si256(g, 1),
                                            _mm_load_si128(reinterpret_cast<const __m128i*>(T.encode[c1])));
        _mm_storeu_si128(reinterpret_cast<__m128i*>(data), p1);
        data += T.length[c1];
    }
    // The first index must be >= 0 (its gap is idx[0] itself; a negative one is > 2^32 - 1
    // as unsigned, so `bad` already covers it). The tail continues from the last index the
    // vector loop coded (lane 7 of prev), not from a second read of idx[i - 1].
    int64_t last = i ? _mm256_extract_epi64(_mm512_extracti64x4_epi64(prev, 1), 3) : -1;
    if (bad) {
        *st = Status::BadIndices;
        return 0;
    }
    const Status s = generic::varint_encode_tail(idx, i, k, last, ctrl, data, data_end);
    return generic::varint_encode_result(s, last, k, numel, out, data, st);
}

// Horizontal OR / sum through memory (gcc 12's reduce intrinsics trip -Wuninitialized).
uint64_t lanes_or(__m512i v) {
    alignas(64) uint64_t a[8];
    _mm512_store_si512(a, v);
    return a[0] | a[1] | a[2] | a[3] | a[4] | a[5] | a[6] | a[7];
}
uint64_t lanes_sum(__m512i v) {
    alignas(64) uint64_t a[8];
    _mm512_store_si512(a, v);
    return a[0] + a[1] + a[2] + a[3] + a[4] + a[5] + a[6] + a[7];
}

// Eight indices per step: the same lane-shifted gaps as the encoder; ORs for validation,
// one variable shift for the three Rice candidates, masked adds for the varint lengths.
void gap_stats_avx512(const int64_t* idx, size_t k, unsigned b_lo, GapStats* out) {
    const __m512i one = _mm512_set1_epi64(1);
    const __m512i t8 = _mm512_set1_epi64(0xFF), t16 = _mm512_set1_epi64(0xFFFF), t24 = _mm512_set1_epi64(0xFFFFFF);
    const __m128i shift = _mm_cvtsi32_si128(static_cast<int>(b_lo));
    __m512i prev = _mm512_set1_epi64(-1), ors = _mm512_setzero_si512(), wide = ors, vb = ors, q0 = ors, q1 = ors,
            q2 = ors;
    size_t i = 0;
    for (; i + 8 <= k; i += 8) {
        const __m512i cur = _mm512_loadu_si512(idx + i);
        const __m512i g = _mm512_sub_epi64(_mm512_sub_epi64(cur, _mm512_alignr_epi64(cur, prev, 7)), one);
        prev = cur;
        ors = _mm512_or_si512(ors, _mm512_or_si512(cur, g));
        wide = _mm512_or_si512(wide, g);
        const __m512i q = _mm512_srl_epi64(g, shift);
        q0 = _mm512_add_epi64(q0, q);
        q1 = _mm512_add_epi64(q1, _mm512_srli_epi64(q, 1));
        q2 = _mm512_add_epi64(q2, _mm512_srli_epi64(q, 2));
        vb = _mm512_add_epi64(vb, one);
        vb = _mm512_mask_add_epi64(vb, _mm512_cmpgt_epu64_mask(g, t8), vb, one);
        vb = _mm512_mask_add_epi64(vb, _mm512_cmpgt_epu64_mask(g, t16), vb, one);
        vb = _mm512_mask_add_epi64(vb, _mm512_cmpgt_epu64_mask(g, t24), vb, one);
    }
    out->ors = lanes_or(ors);
    out->wide = lanes_or(wide);
    out->varint_bytes = lanes_sum(vb);
    out->q[0] = lanes_sum(q0);
    out->q[1] = lanes_sum(q1);
    out->q[2] = lanes_sum(q2);
    generic::gap_stats_tail(idx, i, k, i ? static_cast<uint64_t>(idx[i - 1]) : ~uint64_t(0), b_lo, out);
}

void f32_to_f16_avx512(const float* x, size_t n, uint16_t* out) {
    size_t i = 0;
    for (; i + 16 <= n; i += 16) {
        const __m256i h = _mm512_cvtps_ph(_mm512_loadu_ps(x + i), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + i), h);
    }
    generic::f32_to_f16(x + i, n - i, out + i);
}

void f16_to_f32_avx512(const uint16_t* h, size_t n, float* out) {
    size_t i = 0;
    for (; i + 16 <= n; i += 16)
        _mm512_storeu_ps(out + i, _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(h + i))));
    generic::f16_to_f32(h + i, n - i, out + i);
}

}  // namespace

const WireKernels& wire_kernels_avx512() {
    static const WireKernels k = {crc32c_hw,          varint_encode_avx512, varint_decode_avx512,
                                  gap_stats_avx512,   generic::rice_encode, generic::rice_decode,
                                  f32_to_f16_avx512,  f16_to_f32_avx512};
    return k;
}

}  // namespace wire
}  // namespace gradsparse
