// gradsparse — portable SVD kernels (see svd_kernels.hpp). Header-only: each instruction-set
// unit compiles its own copy; the eight partial sums map onto vector lanes at every width.
#pragma once

#include <cstddef>

#include "svd_kernels.hpp"

namespace gradsparse {
namespace svdk {
namespace generic {
namespace {

inline double combine(const double* acc) {
    return ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));
}

inline double dot1(const double* __restrict x, const double* __restrict b, size_t n) {
    double acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    size_t i = 0;
    for (; i + 8 <= n; i += 8)
        for (size_t t = 0; t < 8; ++t) acc[t] += x[i + t] * b[i + t];
    for (size_t t = 0; i < n; ++i, ++t) acc[t] += x[i] * b[i];
    return combine(acc);
}

void dots(const double* __restrict x, const double* __restrict rows, size_t stride, size_t count, size_t n,
          double* __restrict out) {
    size_t r = 0;
    for (; r + 4 <= count; r += 4) {
        const double* __restrict b0 = rows + r * stride;
        const double* __restrict b1 = b0 + stride;
        const double* __restrict b2 = b1 + stride;
        const double* __restrict b3 = b2 + stride;
        double a0[8] = {0, 0, 0, 0, 0, 0, 0, 0}, a1[8] = {0, 0, 0, 0, 0, 0, 0, 0};
        double a2[8] = {0, 0, 0, 0, 0, 0, 0, 0}, a3[8] = {0, 0, 0, 0, 0, 0, 0, 0};
        size_t i = 0;
        for (; i + 8 <= n; i += 8)
            for (size_t t = 0; t < 8; ++t) {
                const double v = x[i + t];
                a0[t] += v * b0[i + t];
                a1[t] += v * b1[i + t];
                a2[t] += v * b2[i + t];
                a3[t] += v * b3[i + t];
            }
        for (size_t t = 0; i < n; ++i, ++t) {
            a0[t] += x[i] * b0[i];
            a1[t] += x[i] * b1[i];
            a2[t] += x[i] * b2[i];
            a3[t] += x[i] * b3[i];
        }
        out[r] = combine(a0);
        out[r + 1] = combine(a1);
        out[r + 2] = combine(a2);
        out[r + 3] = combine(a3);
    }
    for (; r < count; ++r) out[r] = dot1(x, rows + r * stride, n);
}

void axpy(double* __restrict y, double s, const double* __restrict x, size_t n) {
    for (size_t t = 0; t < n; ++t) y[t] += s * x[t];
}

void rank2(double* __restrict y, double a, const double* __restrict x, double b, const double* __restrict z,
           size_t n) {
    for (size_t t = 0; t < n; ++t) y[t] -= a * x[t] + b * z[t];
}

// Columns in chunks of 32 so that the chunk of a (kd x 32) stays in cache across rows i.
void lincomb(const double* __restrict q, size_t ldq, size_t nq, const double* __restrict a, size_t lda, size_t kd,
             double* __restrict w, size_t ldw, size_t len) {
    constexpr size_t kChunk = 32;
    for (size_t t0 = 0; t0 < len; t0 += kChunk) {
        const size_t tl = len - t0 < kChunk ? len - t0 : kChunk;
        for (size_t i = 0; i < nq; ++i) {
            double* __restrict wi = w + i * ldw + t0;
            const double* qi = q + i * ldq;
            for (size_t j = 0; j < kd; ++j) {
                const double s = qi[j];
                const double* __restrict aj = a + j * lda + t0;
                for (size_t t = 0; t < tl; ++t) wi[t] += s * aj[t];
            }
        }
    }
}

void rot(double* __restrict x, double* __restrict y, double c, double s, size_t n) {
    for (size_t t = 0; t < n; ++t) {
        const double u = x[t], w = y[t];
        x[t] = c * u + s * w;
        y[t] = c * w - s * u;
    }
}

constexpr SvdKernels make_table() { return SvdKernels{dots, axpy, lincomb, rot, rank2}; }

}  // namespace
}  // namespace generic
}  // namespace svdk
}  // namespace gradsparse
