// gradsparse — SVD kernel table for AVX-512F (no FMA used: products and sums are separate
// so that the eight partial sums match the scalar twin's to the bit). Built with the
// AVX-512 flags only (CMakeLists.txt); chosen at run time.
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

// One vector holds a row's eight partial sums; R rows at a time (R independent chains).
template <int R>
size_t dots_block(const double* __restrict x, const double* __restrict rows, size_t stride, size_t r, size_t count,
                  size_t n, double* __restrict out) {
    for (; r + R <= count; r += R) {
        const double* b[R];
        __m512d acc[R];
        for (int k = 0; k < R; ++k) {
            b[k] = rows + (r + static_cast<size_t>(k)) * stride;
            acc[k] = _mm512_setzero_pd();
        }
        size_t i = 0;
        for (; i + 8 <= n; i += 8) {
            const __m512d xv = _mm512_loadu_pd(x + i);
            for (int k = 0; k < R; ++k) acc[k] = _mm512_add_pd(acc[k], _mm512_mul_pd(xv, _mm512_loadu_pd(b[k] + i)));
        }
        for (int k = 0; k < R; ++k) {
            alignas(64) double a[8];
            _mm512_store_pd(a, acc[k]);
            out[r + static_cast<size_t>(k)] = finish_row(a, x, b[k], i, n);
        }
    }
    return r;
}

void dots_avx512(const double* __restrict x, const double* __restrict rows, size_t stride, size_t count, size_t n,
                 double* __restrict out) {
    size_t r = dots_block<8>(x, rows, stride, 0, count, n, out);
    r = dots_block<4>(x, rows, stride, r, count, n, out);
    for (; r < count; ++r) out[r] = generic::dot1(x, rows + r * stride, n);
}

// Q A on a tile of RI rows of w x 16 columns held in registers; each j adds q[i][j] * a[j][t]
// to every element in turn (ascending j, no FMA: the scalar twin's order and rounding).
template <int RI>
void lincomb_tile(const double* __restrict q, size_t ldq, const double* __restrict a, size_t lda, size_t kd,
                  double* __restrict w, size_t ldw) {
    __m512d acc[RI][2];
    for (int k = 0; k < RI; ++k) {
        acc[k][0] = _mm512_loadu_pd(w + static_cast<size_t>(k) * ldw);
        acc[k][1] = _mm512_loadu_pd(w + static_cast<size_t>(k) * ldw + 8);
    }
    for (size_t j = 0; j < kd; ++j) {
        const __m512d a0 = _mm512_loadu_pd(a + j * lda), a1 = _mm512_loadu_pd(a + j * lda + 8);
        for (int k = 0; k < RI; ++k) {
            const __m512d s = _mm512_set1_pd(q[static_cast<size_t>(k) * ldq + j]);
            acc[k][0] = _mm512_add_pd(acc[k][0], _mm512_mul_pd(s, a0));
            acc[k][1] = _mm512_add_pd(acc[k][1], _mm512_mul_pd(s, a1));
        }
    }
    for (int k = 0; k < RI; ++k) {
        _mm512_storeu_pd(w + static_cast<size_t>(k) * ldw, acc[k][0]);
        _mm512_storeu_pd(w + static_cast<size_t>(k) * ldw + 8, acc[k][1]);
    }
}

void lincomb_avx512(const double* __restrict q, size_t ldq, size_t nq, const double* __restrict a, size_t lda,
                    size_t kd, double* __restrict w, size_t ldw, size_t len) {
    size_t t = 0;
    for (; t + 16 <= len; t += 16) {
        size_t i = 0;
        for (; i + 8 <= nq; i += 8) lincomb_tile<8>(q + i * ldq, ldq, a + t, lda, kd, w + i * ldw + t, ldw);
        for (; i + 4 <= nq; i += 4) lincomb_tile<4>(q + i * ldq, ldq, a + t, lda, kd, w + i * ldw + t, ldw);
        for (; i < nq; ++i) lincomb_tile<1>(q + i * ldq, ldq, a + t, lda, kd, w + i * ldw + t, ldw);
    }
    if (t < len) generic::lincomb(q, ldq, nq, a + t, lda, kd, w + t, ldw, len - t);
}

}  // namespace

const SvdKernels& svd_kernels_avx512() {
    static const SvdKernels table{dots_avx512, generic::axpy, lincomb_avx512, generic::rot, generic::rank2};
    return table;
}

}  // namespace svdk
}  // namespace gradsparse
