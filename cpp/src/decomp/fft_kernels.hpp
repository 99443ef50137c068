// gradsparse — FFT kernel table. The passes of the mixed-radix complex FFT and the O(n)
// steps around it work on split complex data (separate real and imaginary arrays). One
// table per instruction set, each in its own translation unit (fft_<isa>.cpp) compiled
// from the same portable source (fft_generic.hpp); fft_scalar.cpp is the reference twin.
// Every level performs the same IEEE operations in the same order on every element (no
// fused multiply-add: the core builds with -ffp-contract=off), so all levels give
// bit-identical results.
#pragma once

#include <cstddef>

namespace gradsparse {
namespace fft {

/// One decimation-in-frequency Stockham pass of radix p over `s` interleaved sequences of
/// length L = p * m (sequence q, element j at a[q + s * j]): for every q and j1 < m the
/// p-point DFT of a[q + s * (j1 + m * j2)], j2 < p, output k2 multiplied by
/// tw[(k2 - 1) * m + j1] = e^{-2 pi i j1 k2 / L}, is written to b[q + s * (k2 + p * j1)].
/// `trig` (generic radix only): cos and sin of 2 pi r / p for r < p, as 2p values.
struct PassArgs {
    size_t p, s, m;
    const double *ar, *ai;
    double *br, *bi;
    const double *twr, *twi;
    const double* trig;
};

struct FftKernels {
    void (*pass2)(const PassArgs&);
    void (*pass3)(const PassArgs&);
    void (*pass4)(const PassArgs&);
    void (*pass5)(const PassArgs&);
    void (*pass_odd)(const PassArgs&);  ///< any odd p >= 3 (O(p^2) butterfly)
    /// re[j] = x[2j], im[j] = x[2j + 1], j < h.
    void (*deinterleave)(const double* x, size_t h, double* re, double* im);
    /// x[2j] = re[j] * scale, x[2j + 1] = im[j] * scale.
    void (*interleave)(const double* re, const double* im, size_t h, double scale, double* x);
    /// rfft of 2h reals from Z = the h-point DFT of z_j = x_{2j} + i x_{2j+1}:
    /// (outr + i outi)[k] (k <= h) = E_k - i w_k O_k, E/O the even/odd parts of Z,
    /// w_k = (wr[k], wi[k]) = e^{-2 pi i k / 2h}. The outputs must not overlap the inputs.
    void (*real_split)(const double* zr, const double* zi, size_t h, const double* wr, const double* wi,
                       double* outr, double* outi);
    /// The inverse of real_split (up to the factor 2): from h + 1 interleaved coefficients
    /// the h-point spectrum whose inverse DFT is x_{2j} + i x_{2j+1} (times h).
    void (*real_merge)(const double* in, size_t h, const double* wr, const double* wi, double* zr, double* zi);
    /// (xr + i xi)[k] *= (wr + i wi)[k], k < n.
    void (*cmul)(double* xr, double* xi, const double* wr, const double* wi, size_t n);
    /// (or + i oi)[k] = (xr + i xi)[k] * (wr + i wi)[k], k < n.
    void (*cmul_to)(const double* xr, const double* xi, const double* wr, const double* wi, size_t n, double* outr,
                    double* outi);
};

const FftKernels& fft_kernels_scalar();
#if GRADSPARSE_HAVE_AVX2
const FftKernels& fft_kernels_avx2();
#endif
#if GRADSPARSE_HAVE_AVX512
const FftKernels& fft_kernels_avx512();
#endif
/// The table for the current SIMD level (read once per transform).
const FftKernels& active_fft_kernels();

}  // namespace fft
}  // namespace gradsparse
