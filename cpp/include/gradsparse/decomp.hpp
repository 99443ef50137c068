// gradsparse — decompositions used by ATOMO's atoms: a real FFT and an orthonormal DCT for
// any length, and a thin SVD (exact and randomized). Plain C++17: no intrinsics, no pybind11.
#pragma once

#include <complex>
#include <cstddef>
#include <cstdint>
#include <functional>
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

/// Symmetric eigensolver that computes all eigenvalues up front (Householder
/// tridiagonalisation + implicit QR without vectors, the rotations recorded) and any
/// eigenvector on demand in O(n^2): the vector the full solver would accumulate. Keeps the
/// reflectors (n^2 / 2 doubles) and the rotations (about n^2 (c, s) pairs for random
/// matrices, i.e. ~16 n^2 bytes).
class SymmetricEigenOnDemand {
public:
    /// a: n x n row-major symmetric (read only).
    SymmetricEigenOnDemand(const double* a, size_t n);
    size_t size() const { return n_; }
    /// All eigenvalues, descending (ties in a fixed order).
    const std::vector<double>& values() const { return values_; }
    /// The unit eigenvector of values()[i] into out[0 .. n).
    void vector(size_t i, double* out) const;

private:
    size_t n_ = 0;
    std::vector<std::vector<double>> vs_;  // Householder vectors
    std::vector<double> betas_, values_;
    std::vector<size_t> pos_;        // values_[i] is the QR's diagonal entry pos_[i]
    std::vector<uint32_t> sweeps_;   // (l, h) per QR sweep
    std::vector<double> cs_;         // (c, s) per rotation, in order of application
};

/// Exact spectral ATOMO without the full SVD. All singular values of A (m x n float32) are
/// the square roots of the eigenvalues of the Gram matrix of the smaller side (clamped at
/// 0); `select` gets them (descending, min(m, n) values) and returns the positions to keep;
/// only those singular vectors are computed: u from the eigensolver on demand, then
/// A^T u = s v with s = ||A^T u|| (for a tall A the roles of u and v swap).
struct SvdAtoms {
    size_t m = 0, n = 0, k = 0;   ///< k: atoms kept
    std::vector<double> sigma;    ///< all singular values, descending
    std::vector<int64_t> index;   ///< kept positions into sigma, as `select` returned them
    std::vector<double> s;        ///< ||A^T u|| (or ||A v||) of each kept atom
    std::vector<float> u, vt;     ///< m x k and k x n, row-major
};
SvdAtoms svd_atoms(const float* a, size_t m, size_t n,
                   const std::function<std::vector<int64_t>(const std::vector<double>& sigma)>& select);

}  // namespace gradsparse
