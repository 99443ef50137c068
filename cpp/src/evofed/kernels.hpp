// gradsparse — EvoFed's noise kernels: the Gaussian stream of core/gaussian.hpp filled into
// buffers, tile dot products, and the update's axpy. One table per instruction set, each in
// its own translation unit (noise_<isa>.cpp); noise_scalar.cpp is the reference twin.
// Every level gives the same bits: the stream is defined operation by operation, dot
// products keep 16 float partial sums (element t of a tile goes to lane t mod 16) combined
// by the same fixed tree (combine16), and nothing is contracted into fused multiply-adds.
#pragma once

#include <cstddef>
#include <cstdint>

namespace gradsparse {
namespace evofed {

struct NoiseKernels {
    /// out[n] = z(seed, round, member, start + n) for n < count (core/gaussian.hpp).
    void (*fill)(uint64_t seed, uint64_t round, uint32_t member, uint64_t start, size_t count, float* out);
    /// out[r] += double(sum_t x[t] * rows[r][t]) for r < nrows over t < n, the sum taken in
    /// float as 16 lane partial sums (lane t mod 16) combined by combine16.
    void (*dots)(const float* x, const float* const* rows, size_t nrows, size_t n, double* out);
    /// acc[t] = acc[t] + c * z[t] for t < n (float).
    void (*axpy)(float* acc, float c, const float* z, size_t n);
    /// out[n] = sum over j < members, ascending, of coef[j] * z(seed, round, j, start + n), for
    /// n < count, summed in float from 0.0f (acc = acc + coef[j] * z): the same bits as a
    /// zeroed buffer updated by fill + axpy member by member, with the noise kept in registers.
    void (*combine)(uint64_t seed, uint64_t round, const float* coef, size_t members, uint64_t start, size_t count,
                    float* out);
};

/// The fixed combination of 16 lane partial sums: halves added pairwise (l + 8, then l + 4,
/// l + 2, l + 1) — what a vector register's tree reduction does.
inline float combine16(const float* a) {
    float s8[8], s4[4];
    for (int l = 0; l < 8; ++l) s8[l] = a[l] + a[l + 8];
    for (int l = 0; l < 4; ++l) s4[l] = s8[l] + s8[l + 4];
    const float s20 = s4[0] + s4[2], s21 = s4[1] + s4[3];
    return s20 + s21;
}

const NoiseKernels& noise_kernels_scalar();
#if GRADSPARSE_HAVE_AVX2
const NoiseKernels& noise_kernels_avx2();
#endif
#if GRADSPARSE_HAVE_AVX512
const NoiseKernels& noise_kernels_avx512();
#endif
#if GRADSPARSE_HAVE_NEON
const NoiseKernels& noise_kernels_neon();
#endif
/// The table for the calling thread's SIMD level.
const NoiseKernels& active_noise_kernels();

}  // namespace evofed
}  // namespace gradsparse
