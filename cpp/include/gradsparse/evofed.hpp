// gradsparse — EvoFed (Rahimi et al., NeurIPS 2023): the population's noise, the fitness
// statistics of client updates against it and the update it encodes, streamed tile by tile
// from a counter-based Gaussian generator so that the (N, d) population never exists in
// memory. Extra memory: one tile per thread plus the outputs. Plain C++17, no pybind11.
//
// Noise: z(seed, round, j, i), member j < 2^32, element i < 2^34 (cpp/src/core/gaussian.hpp
// defines it bit for bit); the N-member antithetic population is +z_j, -z_j for j < N/2.
// Partitions: chunk c < P covers [b_c, b_{c+1}), b_c = floor(c d / P); element t of chunk c
// uses noise index t - b_c with shared noise (one block reused for every chunk, as the
// official code does) or t with independent noise. Results are the same bits for every
// SIMD level and thread count.
#pragma once

#include <cstddef>
#include <cstdint>

namespace gradsparse {

struct NoiseSpec {
    uint64_t seed = 0;
    uint64_t round = 0;
    size_t half = 1;        ///< N / 2 positive members
    size_t partitions = 1;  ///< P
    bool shared = true;     ///< one noise block for every chunk
};

/// out[n] = z(seed, round, member, start + n), n < count.
void evofed_noise(uint64_t seed, uint64_t round, uint64_t member, uint64_t start, size_t count, float* out);

/// Fitness statistics of K updates (row-major K x d), per chunk c and member j < half:
/// zd[(k P + c) half + j] = sum z_j(t) delta_k[t], zz[c half + j] = sum z_j(t)^2,
/// zt[c half + j] = sum z_j(t) theta[t] (when theta is given), dd[k P + c] = sum delta_k[t]^2,
/// tt[c] = sum theta[t]^2 (when theta is given); the sums run over the chunk's elements, in
/// float32 within tiles of 2048 elements and in float64 across tiles, in a fixed order.
/// Throws ArgumentError for a bad spec or non-finite input.
void evofed_stats(const float* deltas, size_t k, const float* theta, size_t d, const NoiseSpec& spec, double* zd,
                  double* zz, double* zt, double* dd, double* tt);

/// out[t] = sum over j < half, ascending, of float(coef[c(t) half + j]) * z_j(t), in float32.
void evofed_update(const double* coef, size_t d, const NoiseSpec& spec, float* out);

}  // namespace gradsparse
