// gradsparse — EvoFed noise kernels for AVX2 (8 lanes: a 64-element group is two passes of
// 8 Philox blocks; a dot product's 16 lane sums are two registers). Built with the AVX2
// flags only; chosen at run time.
#include <immintrin.h>

#include <algorithm>

#include "evofed/noise_generic.hpp"

namespace gradsparse {
namespace evofed {
namespace {

struct V256 {
    static constexpr uint32_t W = 8;
    using U = __m256i;
    using F = __m256;
    static U set1u(uint32_t v) { return _mm256_set1_epi32(static_cast<int>(v)); }
    static F set1f(float v) { return _mm256_set1_ps(v); }
    static U iota(uint32_t b) { return _mm256_add_epi32(set1u(b), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7)); }
    static U add(U a, U b) { return _mm256_add_epi32(a, b); }
    static U sub(U a, U b) { return _mm256_sub_epi32(a, b); }
    static U andu(U a, U b) { return _mm256_and_si256(a, b); }
    static U andnot(U a, U b) { return _mm256_andnot_si256(a, b); }
    static U oru(U a, U b) { return _mm256_or_si256(a, b); }
    static U xoru(U a, U b) { return _mm256_xor_si256(a, b); }
    static U srli8(U a) { return _mm256_srli_epi32(a, 8); }
    static U srli22(U a) { return _mm256_srli_epi32(a, 22); }
    static U srli23(U a) { return _mm256_srli_epi32(a, 23); }
    static U srli31(U a) { return _mm256_srli_epi32(a, 31); }
    static U slli23(U a) { return _mm256_slli_epi32(a, 23); }
    static U slli30(U a) { return _mm256_slli_epi32(a, 30); }
    static void mulhilo(U a, uint32_t m, U& hi, U& lo) {
        const __m256i mv = _mm256_set1_epi64x(static_cast<long long>(m));
        const __m256i pe = _mm256_mul_epu32(a, mv);
        const __m256i po = _mm256_mul_epu32(_mm256_srli_epi64(a, 32), mv);
        hi = _mm256_blend_epi32(_mm256_srli_epi64(pe, 32), po, 0xAA);
        lo = _mm256_blend_epi32(pe, _mm256_slli_epi64(po, 32), 0xAA);
    }
    static F cvt(U a) { return _mm256_cvtepi32_ps(a); }
    static U bits(F a) { return _mm256_castps_si256(a); }
    static F floats(U a) { return _mm256_castsi256_ps(a); }
    static F addf(F a, F b) { return _mm256_add_ps(a, b); }
    static F subf(F a, F b) { return _mm256_sub_ps(a, b); }
    static F mul(F a, F b) { return _mm256_mul_ps(a, b); }
    static F div(F a, F b) { return _mm256_div_ps(a, b); }
    static F sqrt(F a) { return _mm256_sqrt_ps(a); }
    static void store(float* p, F a) { _mm256_storeu_ps(p, a); }
    static void storeu(float* p, F a) { _mm256_storeu_ps(p, a); }
    static F loadu(const float* p) { return _mm256_loadu_ps(p); }
};

// Lanes 0..7 and 8..15 summed by combine16's tree.
inline float reduce16(__m256 lo, __m256 hi) {
    const __m256 s8 = _mm256_add_ps(lo, hi);
    const __m128 s4 = _mm_add_ps(_mm256_castps256_ps128(s8), _mm256_extractf128_ps(s8, 1));
    const __m128 s2 = _mm_add_ps(s4, _mm_movehl_ps(s4, s4));
    return _mm_cvtss_f32(_mm_add_ss(s2, _mm_shuffle_ps(s2, s2, 1)));
}

inline __m256i lane_mask(size_t k) {  // lanes < k set (k in [0, 8])
    const __m256i idx = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(k)), idx);
}

template <int R>
void dots_rows(const float* x, const float* const* rows, size_t n, double* out) {
    __m256 lo[R], hi[R];
    for (int r = 0; r < R; ++r) lo[r] = hi[r] = _mm256_setzero_ps();
    size_t t = 0;
    for (; t + 16 <= n; t += 16) {
        const __m256 x0 = _mm256_loadu_ps(x + t), x1 = _mm256_loadu_ps(x + t + 8);
        for (int r = 0; r < R; ++r) {
            lo[r] = _mm256_add_ps(lo[r], _mm256_mul_ps(x0, _mm256_loadu_ps(rows[r] + t)));
            hi[r] = _mm256_add_ps(hi[r], _mm256_mul_ps(x1, _mm256_loadu_ps(rows[r] + t + 8)));
        }
    }
    if (t < n) {  // masked lanes load 0 and add x * 0 = +-0: the lane sums do not change
        const size_t left = n - t;
        const __m256i m0 = lane_mask(left < 8 ? left : 8), m1 = lane_mask(left > 8 ? left - 8 : 0);
        const __m256 x0 = _mm256_maskload_ps(x + t, m0), x1 = _mm256_maskload_ps(x + t + 8, m1);
        for (int r = 0; r < R; ++r) {
            lo[r] = _mm256_add_ps(lo[r], _mm256_mul_ps(x0, _mm256_maskload_ps(rows[r] + t, m0)));
            hi[r] = _mm256_add_ps(hi[r], _mm256_mul_ps(x1, _mm256_maskload_ps(rows[r] + t + 8, m1)));
        }
    }
    for (int r = 0; r < R; ++r) out[r] += static_cast<double>(reduce16(lo[r], hi[r]));
}

void dots_avx2(const float* x, const float* const* rows, size_t nrows, size_t n, double* out) {
    // up to four rows per pass (two registers each): independent accumulator chains
    for (size_t r = 0; r < nrows; r += 4) {
        switch (std::min<size_t>(4, nrows - r)) {
            case 4: dots_rows<4>(x, rows + r, n, out + r); break;
            case 3: dots_rows<3>(x, rows + r, n, out + r); break;
            case 2: dots_rows<2>(x, rows + r, n, out + r); break;
            default: dots_rows<1>(x, rows + r, n, out + r); break;
        }
    }
}

}  // namespace

const NoiseKernels& noise_kernels_avx2() {
    static const NoiseKernels table{generic::fill<V256>, dots_avx2, generic::axpy<V256>, generic::combine<V256>};
    return table;
}

}  // namespace evofed
}  // namespace gradsparse
