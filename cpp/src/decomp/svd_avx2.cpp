// gradsparse — SVD kernel table for AVX2 (+FMA flags, no FMA used: products and sums are
// separate so that the eight partial sums match the scalar twin's to the bit). Built with
// the AVX2 flags only (CMakeLists.txt); chosen at run time.
#include <immintrin.h>

#include "svd_generic.hpp"

namespace gradsparse {
namespace svdk {
namespace {

// Lanes 0..7 of a row's partial sums -> the scalar twin's tail and combine().
inline double finish_row(double* acc, const double* __restrict x, const double* __restrict b, size_t i, size_t n) {
    for (size_t t = 0; i < n; ++i, ++t) acc[t] += x[i] * b[i];
    return generic::combine(acc);
}

// Partial sums of lanes 0..3 in lo, 4..7 in hi: four rows at a time (eight chains).
void dots_avx2(const double* __restrict x, const double* __restrict rows, size_t stride, size_t count, size_t n,
               double* __restrict out) {
    size_t r = 0;
    for (; r + 4 <= count; r += 4) {
        const double* b[4] = {rows + r * stride, rows + (r + 1) * stride, rows + (r + 2) * stride,
                              rows + (r + 3) * stride};
        __m256d lo[4], hi[4];
        for (int k = 0; k < 4; ++k) lo[k] = hi[k] = _mm256_setzero_pd();
        size_t i = 0;
        for (; i + 8 <= n; i += 8) {
            const __m256d xl = _mm256_loadu_pd(x + i), xh = _mm256_loadu_pd(x + i + 4);
            for (int k = 0; k < 4; ++k) {
                lo[k] = _mm256_add_pd(lo[k], _mm256_mul_pd(xl, _mm256_loadu_pd(b[k] + i)));
                hi[k] = _mm256_add_pd(hi[k], _mm256_mul_pd(xh, _mm256_loadu_pd(b[k] + i + 4)));
            }
        }
        for (int k = 0; k < 4; ++k) {
            alignas(32) double acc[8];
            _mm256_store_pd(acc, lo[k]);
            _mm256_store_pd(acc + 4, hi[k]);
            out[r + static_cast<size_t>(k)] = finish_row(acc, x, b[k], i, n);
        }
    }
    for (; r < count; ++r) out[r] = generic::dot1(x, rows + r * stride, n);
}

// Q A on a tile of RI rows of w x 8 columns held in registers; each j adds q[i][j] * a[j][t]
// to every element in turn (ascending j, no FMA: the scalar twin's order and rounding).
template <int RI>
void lincomb_tile(const double* __restrict q, size_t ldq, const double* __restrict a, size_t lda, size_t kd,
                  double* __restrict w, size_t ldw) {
    __m256d acc[RI][2];
    for (int k = 0; k < RI; ++k) {
        acc[k][0] = _mm256_loadu_pd(w + static_cast<size_t>(k) * ldw);
        acc[k][1] = _mm256_loadu_pd(w + static_cast<size_t>(k) * ldw + 4);
    }
    for (size_t j = 0; j < kd; ++j) {
        const __m256d a0 = _mm256_loadu_pd(a + j * lda), a1 = _mm256_loadu_pd(a + j * lda + 4);
        for (int k = 0; k < RI; ++k) {
            const __m256d s = _mm256_broadcast_sd(q + static_cast<size_t>(k) * ldq + j);
            acc[k][0] = _mm256_add_pd(acc[k][0], _mm256_mul_pd(s, a0));
            acc[k][1] = _mm256_add_pd(acc[k][1], _mm256_mul_pd(s, a1));
        }
    }
    for (int k = 0; k < RI; ++k) {
        _mm256_storeu_pd(w + static_cast<size_t>(k) * ldw, acc[k][0]);
        _mm256_storeu_pd(w + static_cast<size_t>(k) * ldw + 4, acc[k][1]);
    }
}

void lincomb_avx2(const double* __restrict q, size_t ldq, size_t nq, const double* __restrict a, size_t lda,
                  size_t kd, double* __restrict w, size_t ldw, size_t len) {
    size_t t = 0;
    for (; t + 8 <= len; t += 8) {
        size_t i = 0;
        for (; i + 4 <= nq; i += 4) lincomb_tile<4>(q + i * ldq, ldq, a + t, lda, kd, w + i * ldw + t, ldw);
        for (; i < nq; ++i) lincomb_tile<1>(q + i * ldq, ldq, a + t, lda, kd, w + i * ldw + t, ldw);
    }
    if (t < len) generic::lincomb(q, ldq, nq, a + t, lda, kd, w + t, ldw, len - t);
}

}  // namespace

const SvdKernels& svd_kernels_avx2() {
    static const SvdKernels table{dots_avx2, generic::axpy, lincomb_avx2, generic::rot, generic::rank2};
    return table;
}

}  // namespace svdk
}  // namespace gradsparse
