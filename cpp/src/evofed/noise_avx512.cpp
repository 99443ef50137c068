// gradsparse — EvoFed noise kernels for AVX-512F (16 lanes: one 64-element group is one
// pass of 16 Philox blocks). Built with the AVX-512 flags only; chosen at run time.
#include <immintrin.h>

#include <algorithm>

#include "evofed/noise_generic.hpp"

namespace gradsparse {
namespace evofed {
namespace {

struct V512 {
    static constexpr uint32_t W = 16;
    using U = __m512i;
    using F = __m512;
    static U set1u(uint32_t v) { return _mm512_set1_epi32(static_cast<int>(v)); }
    static F set1f(float v) { return _mm512_set1_ps(v); }
    static U iota(uint32_t b) {
        return _mm512_add_epi32(set1u(b), _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15));
    }
    static U add(U a, U b) { return _mm512_add_epi32(a, b); }
    static U sub(U a, U b) { return _mm512_sub_epi32(a, b); }
    static U andu(U a, U b) { return _mm512_and_si512(a, b); }
    static U andnot(U a, U b) { return _mm512_andnot_si512(a, b); }
    static U oru(U a, U b) { return _mm512_or_si512(a, b); }
    static U xoru(U a, U b) { return _mm512_xor_si512(a, b); }
    static U srli8(U a) { return _mm512_srli_epi32(a, 8); }
    static U srli22(U a) { return _mm512_srli_epi32(a, 22); }
    static U srli23(U a) { return _mm512_srli_epi32(a, 23); }
    static U srli31(U a) { return _mm512_srli_epi32(a, 31); }
    static U slli23(U a) { return _mm512_slli_epi32(a, 23); }
    static U slli30(U a) { return _mm512_slli_epi32(a, 30); }
    // 32 x 32 -> 64-bit products of every lane with m: high and low halves
    static void mulhilo(U a, uint32_t m, U& hi, U& lo) {
        const __m512i mv = _mm512_set1_epi64(static_cast<long long>(m));
        const __m512i pe = _mm512_mul_epu32(a, mv);                         // even lanes
        const __m512i po = _mm512_mul_epu32(_mm512_srli_epi64(a, 32), mv);  // odd lanes
        hi = _mm512_mask_blend_epi32(0xAAAA, _mm512_srli_epi64(pe, 32), po);
        lo = _mm512_mask_blend_epi32(0xAAAA, pe, _mm512_slli_epi64(po, 32));
    }
    static F cvt(U a) { return _mm512_cvtepi32_ps(a); }
    static U bits(F a) { return _mm512_castps_si512(a); }
    static F floats(U a) { return _mm512_castsi512_ps(a); }
    static F addf(F a, F b) { return _mm512_add_ps(a, b); }
    static F subf(F a, F b) { return _mm512_sub_ps(a, b); }
    static F mul(F a, F b) { return _mm512_mul_ps(a, b); }
    static F div(F a, F b) { return _mm512_div_ps(a, b); }
    static F sqrt(F a) { return _mm512_sqrt_ps(a); }
    static void store(float* p, F a) { _mm512_storeu_ps(p, a); }
    static void storeu(float* p, F a) { _mm512_storeu_ps(p, a); }
    static F loadu(const float* p) { return _mm512_loadu_ps(p); }
};

// The 16 lanes of a register summed by combine16's tree.
inline float reduce16(__m512 a) {
    const __m256 s8 = _mm256_add_ps(_mm512_extractf32x8_ps(a, 0), _mm512_extractf32x8_ps(a, 1));
    const __m128 s4 = _mm_add_ps(_mm256_castps256_ps128(s8), _mm256_extractf128_ps(s8, 1));
    const __m128 s2 = _mm_add_ps(s4, _mm_movehl_ps(s4, s4));  // (s4[0] + s4[2], s4[1] + s4[3])
    return _mm_cvtss_f32(_mm_add_ss(s2, _mm_shuffle_ps(s2, s2, 1)));
}

template <int R>
void dots_rows(const float* x, const float* const* rows, size_t n, double* out) {
    __m512 acc[R];
    for (int r = 0; r < R; ++r) acc[r] = _mm512_setzero_ps();
    size_t t = 0;
    for (; t + 16 <= n; t += 16) {
        const __m512 xv = _mm512_loadu_ps(x + t);
        for (int r = 0; r < R; ++r) acc[r] = _mm512_add_ps(acc[r], _mm512_mul_ps(xv, _mm512_loadu_ps(rows[r] + t)));
    }
    if (t < n) {  // masked lanes load 0 and add x * 0 = +-0: the lane sums do not change
        const __mmask16 m = static_cast<__mmask16>((1u << (n - t)) - 1);
        const __m512 xv = _mm512_maskz_loadu_ps(m, x + t);
        for (int r = 0; r < R; ++r)
            acc[r] = _mm512_mask_add_ps(acc[r], m, acc[r], _mm512_mul_ps(xv, _mm512_maskz_loadu_ps(m, rows[r] + t)));
    }
    for (int r = 0; r < R; ++r) out[r] += static_cast<double>(reduce16(acc[r]));
}

void dots_avx512(const float* x, const float* const* rows, size_t nrows, size_t n, double* out) {
    // all rows of a group in one pass (independent accumulator chains: throughput-bound)
    for (size_t r = 0; r < nrows; r += 8) {
        switch (std::min<size_t>(8, nrows - r)) {
            case 8: dots_rows<8>(x, rows + r, n, out + r); break;
            case 7: dots_rows<7>(x, rows + r, n, out + r); break;
            case 6: dots_rows<6>(x, rows + r, n, out + r); break;
            case 5: dots_rows<5>(x, rows + r, n, out + r); break;
            case 4: dots_rows<4>(x, rows + r, n, out + r); break;
            case 3: dots_rows<3>(x, rows + r, n, out + r); break;
            case 2: dots_rows<2>(x, rows + r, n, out + r); break;
            default: dots_rows<1>(x, rows + r, n, out + r); break;
        }
    }
}

}  // namespace

const NoiseKernels& noise_kernels_avx512() {
    static const NoiseKernels table{generic::fill<V512>, dots_avx512, generic::axpy<V512>, generic::combine<V512>};
    return table;
}

}  // namespace evofed
}  // namespace gradsparse
