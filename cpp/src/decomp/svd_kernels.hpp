// gradsparse — dense kernels of the SVD (Gram matrices, sketch products). One table per
// instruction set, each in its own translation unit (svd_<isa>.cpp) compiled from the same
// portable source (svd_generic.hpp); svd_scalar.cpp is the reference twin. Dot products
// keep eight fixed partial sums (lane t takes the indices = t mod 8) combined in a fixed
// order, and nothing is contracted into fused multiply-adds, so every level gives
// bit-identical results.
#pragma once

#include <cstddef>

namespace gradsparse {
namespace svdk {

struct SvdKernels {
    /// out[i] = x . rows[i * stride .. + n) for i < count (x is read once per four rows).
    void (*dots)(const double* x, const double* rows, size_t stride, size_t count, size_t n, double* out);
    /// y[t] += s * x[t], t < n.
    void (*axpy)(double* y, double s, const double* x, size_t n);
    /// w[i * ldw + t] += sum_j q[i * ldq + j] * a[j * lda + t] for i < nq, t < len, the terms
    /// added one at a time in ascending j for every (i, t) (the product Q A, one column tile).
    void (*lincomb)(const double* q, size_t ldq, size_t nq, const double* a, size_t lda, size_t kd, double* w,
                    size_t ldw, size_t len);
    /// Givens rotation of two rows: (x[t], y[t]) <- (c x[t] + s y[t], c y[t] - s x[t]), t < n.
    void (*rot)(double* x, double* y, double c, double s, size_t n);
    /// y[t] -= (a * x[t] + b * z[t]), t < n (the symmetric rank-2 update of a row).
    void (*rank2)(double* y, double a, const double* x, double b, const double* z, size_t n);
};

const SvdKernels& svd_kernels_scalar();
#if GRADSPARSE_HAVE_AVX2
const SvdKernels& svd_kernels_avx2();
#endif
#if GRADSPARSE_HAVE_AVX512
const SvdKernels& svd_kernels_avx512();
#endif
/// The table for the current SIMD level.
const SvdKernels& active_svd_kernels();

}  // namespace svdk
}  // namespace gradsparse
