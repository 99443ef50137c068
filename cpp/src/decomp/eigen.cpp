// Symmetric eigensolver: Householder tridiagonalisation, then the implicit symmetric QR
// algorithm with Wilkinson shifts (Golub & Van Loan, Matrix Computations, 4th ed., §8.3),
// eigenvectors accumulated as rows so that each Givens rotation touches two contiguous rows.
#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <vector>

#include "gradsparse/common.hpp"
#include "gradsparse/decomp.hpp"

namespace gradsparse {

namespace {

// Reduces a (n x n, row-major, symmetric) to tridiagonal (d, e) and returns Z^T with
// a = Z T Z^T, Z = H_0 H_1 ... H_{n-3}.
void tridiagonalise(std::vector<double>& a, size_t n, std::vector<double>& d, std::vector<double>& e,
                    std::vector<double>& zt) {
    std::vector<std::vector<double>> vs(n);
    std::vector<double> betas(n, 0.0), p(n);
    for (size_t k = 0; k + 2 < n; ++k) {
        const size_t r = n - k - 1;
        double* row = &a[k * n + k + 1];
        double norm2 = 0;
        for (size_t i = 0; i < r; ++i) norm2 += row[i] * row[i];
        double tail2 = norm2 - row[0] * row[0];
        if (tail2 <= 0) continue;  // already tridiagonal in this column
        const double norm = std::sqrt(norm2);
        const double alpha = row[0] > 0 ? -norm : norm;
        std::vector<double> v(row, row + r);
        v[0] -= alpha;
        const double beta = 2.0 / (tail2 + v[0] * v[0]);
        // p = beta S v, S = a[k+1:, k+1:]
        for (size_t i = 0; i < r; ++i) {
            const double* si = &a[(k + 1 + i) * n + k + 1];
            double acc = 0;
            for (size_t j = 0; j < r; ++j) acc += si[j] * v[j];
            p[i] = beta * acc;
        }
        double pv = 0;
        for (size_t i = 0; i < r; ++i) pv += p[i] * v[i];
        const double kk = 0.5 * beta * pv;
        for (size_t i = 0; i < r; ++i) p[i] -= kk * v[i];  // q
        for (size_t i = 0; i < r; ++i) {
            double* si = &a[(k + 1 + i) * n + k + 1];
            const double vi = v[i], qi = p[i];
            for (size_t j = 0; j < r; ++j) si[j] -= vi * p[j] + qi * v[j];
        }
        for (size_t i = 0; i < r; ++i) a[k * n + k + 1 + i] = a[(k + 1 + i) * n + k] = 0;
        a[k * n + k + 1] = a[(k + 1) * n + k] = alpha;
        vs[k] = std::move(v);
        betas[k] = beta;
    }
    d.resize(n);
    e.assign(n ? n - 1 : 0, 0.0);
    for (size_t i = 0; i < n; ++i) d[i] = a[i * n + i];
    for (size_t i = 0; i + 1 < n; ++i) e[i] = a[i * n + i + 1];
    // Z = H_0 (H_1 (... H_{n-3})): applied right to left to the identity, then transposed.
    zt.assign(n * n, 0.0);
    for (size_t i = 0; i < n; ++i) zt[i * n + i] = 1.0;
    std::vector<double> t(n);
    for (size_t k = n >= 2 ? n - 2 : 0; k-- > 0;) {
        if (betas[k] == 0) continue;
        const size_t r = n - k - 1;
        const std::vector<double>& v = vs[k];
        // Z[k+1:, k+1:] = H Z[k+1:, k+1:]  (Z itself; transposed at the end)
        std::fill(t.begin(), t.end(), 0.0);
        for (size_t i = 0; i < r; ++i) {
            const double* zi = &zt[(k + 1 + i) * n + k + 1];
            for (size_t j = 0; j < r; ++j) t[j] += v[i] * zi[j];
        }
        for (size_t i = 0; i < r; ++i) {
            double* zi = &zt[(k + 1 + i) * n + k + 1];
            const double bv = betas[k] * v[i];
            for (size_t j = 0; j < r; ++j) zi[j] -= bv * t[j];
        }
    }
    // zt holds Z; transpose in place.
    for (size_t i = 0; i < n; ++i)
        for (size_t j = i + 1; j < n; ++j) std::swap(zt[i * n + j], zt[j * n + i]);
}

void implicit_qr(std::vector<double>& d, std::vector<double>& e, std::vector<double>& zt, size_t n) {
    const double eps = std::numeric_limits<double>::epsilon();
    size_t h = n - 1, iters = 0;
    const size_t max_iters = 64 * n + 64;
    while (h > 0) {
        if (std::fabs(e[h - 1]) <= eps * (std::fabs(d[h - 1]) + std::fabs(d[h]))) {
            e[h - 1] = 0;
            --h;
            continue;
        }
        size_t l = h - 1;
        while (l > 0) {
            if (std::fabs(e[l - 1]) <= eps * (std::fabs(d[l - 1]) + std::fabs(d[l]))) {
                e[l - 1] = 0;
                break;
            }
            --l;
        }
        GS_ASSERT(++iters < max_iters);
        // Wilkinson shift from the trailing 2 x 2 block.
        const double dd = 0.5 * (d[h - 1] - d[h]), b = e[h - 1];
        const double mu = d[h] - b * b / (dd + std::copysign(std::hypot(dd, b), dd));
        double x = d[l] - mu, z = e[l];
        for (size_t k = l; k < h; ++k) {
            const double r = std::hypot(x, z);
            const double c = r == 0 ? 1.0 : x / r, s = r == 0 ? 0.0 : z / r;
            if (k > l) e[k - 1] = r;
            const double a0 = d[k], a1 = d[k + 1], bk = e[k];
            d[k] = c * c * a0 + 2 * c * s * bk + s * s * a1;
            d[k + 1] = s * s * a0 - 2 * c * s * bk + c * c * a1;
            e[k] = c * s * (a1 - a0) + (c * c - s * s) * bk;
            if (k + 1 < h) {
                z = s * e[k + 1];
                e[k + 1] *= c;
                x = e[k];
            }
            double* r0 = &zt[k * n];
            double* r1 = &zt[(k + 1) * n];
            for (size_t j = 0; j < n; ++j) {
                const double u = r0[j], w = r1[j];
                r0[j] = c * u + s * w;
                r1[j] = c * w - s * u;
            }
        }
    }
}

}  // namespace

void symmetric_eigen(double* a, size_t n, double* w) {
    if (n == 0) return;
    std::vector<double> m(a, a + n * n), d, e, zt;
    tridiagonalise(m, n, d, e, zt);
    implicit_qr(d, e, zt, n);
    std::vector<size_t> order(n);
    std::iota(order.begin(), order.end(), size_t(0));
    std::sort(order.begin(), order.end(), [&](size_t i, size_t j) { return d[i] < d[j]; });
    for (size_t i = 0; i < n; ++i) {
        w[i] = d[order[i]];
        std::copy(&zt[order[i] * n], &zt[order[i] * n] + n, a + i * n);
    }
}

}  // namespace gradsparse
