// gradsparse — decompositions used by ATOMO's atoms: a real FFT and an orthonormal DCT for
// any length, and a thin SVD (exact and randomized). Plain C++17: no intrinsics, no pybind11.
#pragma once

#include <complex>
#include <cstddef>
#include <cstdint>
#include <vector>

namespace gradsparse {

/// Complex DFT of length n in place (X_k = sum_j x_j e^{-2 pi i jk/n}; inverse: e^{+...}, no
/// 1/n), any n >= 1: mixed-radix Stockham passes (radix 4, 2, 3, 5, odd primes up to 61),
/// Bluestein's chirp-z on a 2,3,5-smooth length when n has a larger prime factor. Plans are
/// cached per length; results are bit-identical at every SIMD level.
void fft_inplace(std::complex<double>* x, size_t n, bool inverse = false);

/// numpy.fft.rfft: n real inputs -> n/2 + 1 complex outputs (unnormalised).
void rfft(const double* x, size_t n, std::complex<double>* out);
/// numpy.fft.irfft: n/2 + 1 complex inputs -> n real outputs (scaled by 1/n).
void irfft(const std::complex<double>* in, size_t n, double* out);

/// Orthonormal DCT-II (scipy.fft.dct(norm="ortho")) of n values; `out` may alias `x`.
void dct2_ortho(const double* x, size_t n, double* out);
/// Its inverse, the orthonormal DCT-III (scipy.fft.idct(norm="ortho")).
void dct3_ortho(const double* x, size_t n, double* out);

/// Thin SVD A = U diag(S) Vt of a row-major m x n float32 matrix, k = min(m, n):
/// U is m x k, S descending (k), Vt is k x n, all row-major. Computed in double through
/// the Gram matrix of the smaller side and a symmetric eigensolver (Householder
/// tridiagonalisation + implicit QR); singular values are refined as ||A^T u|| (or ||A v||).
/// Directions with S = 0 get a zero singular vector on the larger side.
struct Svd {
    size_t m = 0, n = 0, k = 0;
    std::vector<float> u, s, vt;
};
Svd svd_thin(const float* a, size_t m, size_t n);

/// Randomized rank-`rank` SVD (Halko, Martinsson, Tropp 2011, Alg. 4.4): subspace iteration
/// with l = rank + `oversample` columns and `power_iters` orthonormalised power iterations,
/// then Rayleigh-Ritz; Gaussian test matrix from Philox under `seed`. Runs on products with
/// A, or (when that needs fewer operations, small min(m, n)) on G = A A^T with the test
/// matrix A^T Omega' — see svd.cpp. Exact to rounding when rank(A) <= l; otherwise the
/// singular values are lower bounds whose error shrinks as (sigma_{l+1}/sigma_rank)^(2q+1).
Svd svd_randomized(const float* a, size_t m, size_t n, size_t rank, size_t oversample, int power_iters,
                   uint64_t seed);

/// Eigen-decomposition of a symmetric n x n row-major matrix (double), in place:
/// eigenvalues ascending into `w`, eigenvectors as rows of `a` on return.
void symmetric_eigen(double* a, size_t n, double* w);

}  // namespace gradsparse
