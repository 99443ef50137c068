// gradsparse — EvoFed noise kernels, the scalar reference twin (see kernels.hpp).
#include <algorithm>

#include "core/gaussian.hpp"
#include "evofed/kernels.hpp"

namespace gradsparse {
namespace evofed {
namespace {

void fill_scalar(uint64_t seed, uint64_t round, uint32_t member, uint64_t start, size_t count, float* out) {
    const uint64_t end = start + count;
    float v[4];
    for (uint64_t b = start / 64 * 64; b < end; b += 64) {  // the 64-element groups overlapping the range
        for (uint32_t l = 0; l < 16; ++l) {
            gaussian::block(seed, round, member, static_cast<uint32_t>(b / 4 + l), v);
            for (uint64_t r = 0; r < 4; ++r) {
                const uint64_t i = b + 16 * r + l;
                if (i >= start && i < end) out[i - start] = v[r];
            }
        }
    }
}

void dots_scalar(const float* x, const float* const* rows, size_t nrows, size_t n, double* out) {
    for (size_t r = 0; r < nrows; ++r) {
        float acc[16] = {0};
        const float* y = rows[r];
        for (size_t t = 0; t < n; ++t) acc[t % 16] = acc[t % 16] + x[t] * y[t];
        out[r] += static_cast<double>(combine16(acc));
    }
}

void axpy_scalar(float* acc, float c, const float* z, size_t n) {
    for (size_t t = 0; t < n; ++t) acc[t] = acc[t] + c * z[t];
}

void combine_scalar(uint64_t seed, uint64_t round, const float* coef, size_t members, uint64_t start, size_t count,
                    float* out) {
    float z[64];
    for (uint64_t i = start; i < start + count;) {
        const uint64_t g = i / 64, off = i % 64, take = std::min<uint64_t>(64 - off, start + count - i);
        float acc[64] = {0};
        for (size_t j = 0; j < members; ++j) {
            fill_scalar(seed, round, static_cast<uint32_t>(j), 64 * g, 64, z);
            for (size_t t = 0; t < 64; ++t) acc[t] = acc[t] + coef[j] * z[t];
        }
        std::copy(acc + off, acc + off + take, out + (i - start));
        i += take;
    }
}

}  // namespace

const NoiseKernels& noise_kernels_scalar() {
    static const NoiseKernels table{fill_scalar, dots_scalar, axpy_scalar, combine_scalar};
    return table;
}

}  // namespace evofed
}  // namespace gradsparse
