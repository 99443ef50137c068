// gradsparse — ATOMO atomic sparsification (Wang et al., NeurIPS 2018): sampling
// probabilities, counter-based Bernoulli sampling, and the QSGD / TernGrad baselines.
// Plain C++17: no intrinsics, no pybind11.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <vector>

namespace gradsparse {

/// Philox-4x32-10 (Salmon et al., SC'11): four 32-bit outputs for a 128-bit counter and a
/// 64-bit key. Counter-based, so any element's random number depends only on (seed, index):
/// results are the same for every thread count and SIMD level.
std::array<uint32_t, 4> philox4x32(std::array<uint32_t, 4> counter, uint64_t key);

/// Uniform in [0, 1) with 24 random bits for item `i` of stream `stream` under `seed`.
float philox_uniform(uint64_t seed, uint64_t stream, uint64_t i);

/// ATOMO Algorithm 1: p minimising sum lam_i^2 / p_i subject to sum p_i = budget,
/// 0 <= p_i <= 1 (atoms with lam_i = 0 get p_i = 0). Writes n probabilities to `p`.
/// O(n + s log s) with s = min(n, floor(budget) + 1). lam must be finite; budget > 0.
void atomo_probabilities(const double* lam, size_t n, double budget, double* p);
/// Same for float32 coefficients.
void atomo_probabilities_f32(const float* lam, size_t n, double budget, double* p);

/// Indices i (ascending) with u_i < p_i, u_i = philox_uniform(seed, stream, i): independent
/// Bernoulli(p_i) draws, identical for every thread count.
std::vector<int64_t> bernoulli_sample(const double* p, size_t n, uint64_t seed, uint64_t stream);

/// Element-wise ATOMO on float32 x: the kept indices and their unbiased values x_i / p_i.
struct SampledAtoms {
    std::vector<int64_t> indices;
    std::vector<float> values;  ///< lam_i / p_i for each kept index
    std::vector<double> p;      ///< probabilities of the kept atoms
};
SampledAtoms atomo_sample_f32(const float* lam, size_t n, double budget, uint64_t seed, uint64_t stream);

/// QSGD (Alistarh et al. 2017) with `levels` levels: x_i ~ norm * sign(x_i) * l_i / levels,
/// l_i stochastic rounding of levels*|x_i|/norm (unbiased). Writes signed levels; returns norm.
float qsgd_f32(const float* x, size_t n, int levels, uint64_t seed, int32_t* out_levels);

/// TernGrad (Wen et al. 2017): x_i ~ scale * sign(x_i) * Bernoulli(|x_i| / scale),
/// scale = max |x_i|. Writes ternary values in {-1, 0, 1}; returns scale.
float terngrad_f32(const float* x, size_t n, uint64_t seed, int8_t* out_ternary);

}  // namespace gradsparse
