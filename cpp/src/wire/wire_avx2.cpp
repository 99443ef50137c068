// gradsparse — wire kernels for AVX2 (+SSE4.2 crc32, F16C). Built with -mavx2 -msse4.2
// -mf16c only; chosen at run time.
#include <immintrin.h>

#include "crc32c_hw.hpp"
#include "varint_tables.hpp"
#include "wire_generic.hpp"

namespace gradsparse {
namespace wire {
namespace {

// Range check cadence: within a chunk indices grow by at most 2^16 * 2^32, so the running
// base (< numel <= 2^56 at the chunk start) cannot wrap before it is checked.
constexpr size_t kChunk = size_t(1) << 16;

Status varint_decode_avx2(const uint8_t* in, size_t len, size_t k, uint64_t numel, int64_t* out) {
    const size_t nctrl = varint_ctrl_bytes(k);
    if (len < nctrl) return Status::Truncated;
    const VarintTables& T = varint_tables();
    const uint8_t* ctrl = in;
    const uint8_t* data = in + nctrl;
    const uint8_t* end = in + len;
    const __m256i ones = _mm256_set1_epi64x(1), zero = _mm256_setzero_si256();
    __m256i base = _mm256_set1_epi64x(-1);
    size_t i = 0;
    while (i + 4 <= k && end - data >= 16) {
        const size_t stop = i + kChunk < k ? i + kChunk : k;
        for (; i + 4 <= stop && end - data >= 16; i += 4) {
            const unsigned c = ctrl[i >> 2];
            const __m128i raw = _mm_loadu_si128(reinterpret_cast<const __m128i*>(data));
            const __m128i g = _mm_shuffle_epi8(raw, _mm_load_si128(reinterpret_cast<const __m128i*>(T.decode[c])));
            data += T.length[c];
            __m256i x = _mm256_add_epi64(_mm256_cvtepu32_epi64(g), ones);
            x = _mm256_add_epi64(x, _mm256_slli_si256(x, 8));  // lane 1 += 0, lane 3 += 2
            x = _mm256_add_epi64(x, _mm256_blend_epi32(_mm256_permute4x64_epi64(x, 0x55), zero, 0x0F));
            x = _mm256_add_epi64(x, base);
            _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + i), x);
            base = _mm256_permute4x64_epi64(x, 0xFF);
        }
        if (static_cast<uint64_t>(_mm256_extract_epi64(base, 0)) + 1u > numel) return Status::OutOfRange;
    }
    const uint64_t b = static_cast<uint64_t>(_mm256_extract_epi64(base, 0));
    return generic::varint_decode_tail(ctrl, data, end, i, k, b, numel, out);
}

void f32_to_f16_avx2(const float* x, size_t n, uint16_t* out) {
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        const __m128i h = _mm256_cvtps_ph(_mm256_loadu_ps(x + i), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
        _mm_storeu_si128(reinterpret_cast<__m128i*>(out + i), h);
    }
    generic::f32_to_f16(x + i, n - i, out + i);
}

void f16_to_f32_avx2(const uint16_t* h, size_t n, float* out) {
    size_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(out + i, _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(h + i))));
    generic::f16_to_f32(h + i, n - i, out + i);
}

}  // namespace

const WireKernels& wire_kernels_avx2() {
    // gap_stats and Rice: the portable code, compiled with BMI2 (flag-free variable shifts).
    static const WireKernels k = {crc32c_hw,          generic::varint_encode, varint_decode_avx2,
                                  generic::gap_stats, generic::rice_encode,   generic::rice_decode,
                                  f32_to_f16_avx2,    f16_to_f32_avx2};
    return k;
}

}  // namespace wire
}  // namespace gradsparse
