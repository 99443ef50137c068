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

}  // namespace

const SvdKernels& svd_kernels_avx512() {
    static const SvdKernels table{dots_avx512, generic::axpy, generic::rank2};
    return table;
}

}  // namespace svdk
}  // namespace gradsparse
