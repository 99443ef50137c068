// Thin SVD through the Gram matrix of the smaller side, in double: G = A A^T (m <= n),
// G = U diag(lambda) U^T, then W = U^T A, sigma_i = ||W_i|| and v_i = W_i / sigma_i.
// Forming G squares the condition number, but in double that still leaves ~1e-10 relative
// accuracy for sigma >= 1e-3 sigma_max from float32 input, and taking sigma as ||A^T u||
// (rather than sqrt(lambda)) makes the singular values as accurate as the vectors allow.
// U diag(S) V^T = U U^T A, so the reconstruction is accurate to the orthogonality of U.
// The randomized mode (Halko, Martinsson & Tropp 2011, Alg. 4.4) sketches the range with a
// Philox Gaussian matrix and power iterations, then runs the exact path on Q^T A.
#include <algorithm>
#include <cmath>
#include <functional>
#include <numeric>
#include <vector>

#include "atomo/philox.hpp"
#include "gradsparse/common.hpp"
#include "gradsparse/decomp.hpp"
#include "gradsparse/parallel.hpp"

namespace gradsparse {

namespace {

// Row-major double matrix.
struct Mat {
    size_t r = 0, c = 0;
    std::vector<double> d;
    Mat() = default;
    Mat(size_t r_, size_t c_) : r(r_), c(c_), d(r_ * c_, 0.0) {}
    double* row(size_t i) { return d.data() + i * c; }
    const double* row(size_t i) const { return d.data() + i * c; }
};

void parallel_rows(size_t rows, size_t work, const std::function<void(size_t, size_t)>& body) {
    const int nt = static_cast<int>(std::min<size_t>(rows ? rows : 1, static_cast<size_t>(threads_for(work, size_t(1) << 18))));
    const size_t per = (rows + static_cast<size_t>(nt) - 1) / static_cast<size_t>(nt);
    parallel_run(nt, [&](int t) {
        const size_t b = std::min(rows, per * static_cast<size_t>(t)), e = std::min(rows, b + per);
        if (b < e) body(b, e);
    });
}

inline double dot(const double* a, const double* b, size_t n) {
    // Four independent accumulators so the loop pipelines (no reassociation flags needed).
    double s0 = 0, s1 = 0, s2 = 0, s3 = 0;
    size_t i = 0;
    for (; i + 4 <= n; i += 4) {
        s0 += a[i] * b[i];
        s1 += a[i + 1] * b[i + 1];
        s2 += a[i + 2] * b[i + 2];
        s3 += a[i + 3] * b[i + 3];
    }
    for (; i < n; ++i) s0 += a[i] * b[i];
    return (s0 + s1) + (s2 + s3);
}

// G = A A^T (lower triangle computed, then mirrored). Rows are dealt round-robin to the
// threads so that the triangle's work is balanced.
Mat gram(const Mat& a) {
    Mat g(a.r, a.r);
    const int nt = static_cast<int>(std::min<size_t>(a.r, static_cast<size_t>(threads_for(a.r * a.r * a.c / 2, size_t(1) << 18))));
    parallel_run(nt, [&](int t) {
        for (size_t i = static_cast<size_t>(t); i < a.r; i += static_cast<size_t>(nt))
            for (size_t j = 0; j <= i; ++j) g.row(i)[j] = dot(a.row(i), a.row(j), a.c);
    });
    for (size_t i = 0; i < a.r; ++i)
        for (size_t j = i + 1; j < a.r; ++j) g.row(i)[j] = g.row(j)[i];
    return g;
}

// W = Q A where Q is (k x a.r) given by rows qt (k x a.r): W_i = sum_j Q[i][j] A_j (axpy form).
Mat left_mul(const Mat& q, const Mat& a) {
    Mat w(q.r, a.c);
    parallel_rows(q.r, q.r * a.r * a.c, [&](size_t b, size_t e) {
        for (size_t i = b; i < e; ++i) {
            double* wi = w.row(i);
            const double* qi = q.row(i);
            for (size_t j = 0; j < a.r; ++j) {
                const double s = qi[j];
                if (s == 0) continue;
                const double* aj = a.row(j);
                for (size_t t = 0; t < a.c; ++t) wi[t] += s * aj[t];
            }
        }
    });
    return w;
}

// Y^T with rows y_i[j] = A_j . z_i (A is m x n, zt is l x n): the product A Z, transposed.
Mat right_mul_t(const Mat& a, const Mat& zt) {
    Mat y(zt.r, a.r);
    parallel_rows(zt.r, zt.r * a.r * a.c, [&](size_t b, size_t e) {
        for (size_t i = b; i < e; ++i)
            for (size_t j = 0; j < a.r; ++j) y.row(i)[j] = dot(a.row(j), zt.row(i), a.c);
    });
    return y;
}

// Orthonormalises the rows (modified Gram-Schmidt, twice); dependent rows become zero.
void orthonormalise_rows(Mat& q) {
    for (int pass = 0; pass < 2; ++pass) {
        for (size_t i = 0; i < q.r; ++i) {
            double* qi = q.row(i);
            for (size_t j = 0; j < i; ++j) {
                const double s = dot(qi, q.row(j), q.c);
                const double* qj = q.row(j);
                for (size_t t = 0; t < q.c; ++t) qi[t] -= s * qj[t];
            }
            const double nrm = std::sqrt(dot(qi, qi, q.c));
            const double inv = nrm > 1e-300 ? 1.0 / nrm : 0.0;
            for (size_t t = 0; t < q.c; ++t) qi[t] *= inv;
        }
    }
}

// Thin SVD of a wide (r <= c) double matrix: U (r x r, rows = left vectors^T), S, Vt.
struct WideSvd {
    Mat ut;  // row i = u_i
    std::vector<double> s;
    Mat vt;
};

WideSvd svd_wide(const Mat& a) {
    const size_t k = a.r;
    Mat g = gram(a);
    std::vector<double> lam(k);
    symmetric_eigen(g.d.data(), k, lam.data());  // rows of g: eigenvectors, ascending
    Mat ut(k, k);
    for (size_t i = 0; i < k; ++i) std::copy(g.row(k - 1 - i), g.row(k - 1 - i) + k, ut.row(i));
    Mat w = left_mul(ut, a);  // rows sigma_i v_i
    std::vector<double> s(k);
    for (size_t i = 0; i < k; ++i) s[i] = std::sqrt(dot(w.row(i), w.row(i), w.c));
    std::vector<size_t> order(k);
    std::iota(order.begin(), order.end(), size_t(0));
    std::stable_sort(order.begin(), order.end(), [&](size_t i, size_t j) { return s[i] > s[j]; });
    WideSvd out{Mat(k, k), std::vector<double>(k), Mat(k, a.c)};
    for (size_t o = 0; o < k; ++o) {
        const size_t i = order[o];
        out.s[o] = s[i];
        std::copy(ut.row(i), ut.row(i) + k, out.ut.row(o));
        const double inv = s[i] > 0 ? 1.0 / s[i] : 0.0;
        for (size_t t = 0; t < a.c; ++t) out.vt.row(o)[t] = w.row(i)[t] * inv;
    }
    return out;
}

// A as double, transposed if tall so that rows <= columns.
Mat load(const float* a, size_t m, size_t n, bool transpose) {
    Mat x(transpose ? n : m, transpose ? m : n);
    for (size_t i = 0; i < m; ++i)
        for (size_t j = 0; j < n; ++j) {
            if (transpose)
                x.d[j * m + i] = a[i * n + j];
            else
                x.d[i * n + j] = a[i * n + j];
        }
    return x;
}

void check_matrix(const float* a, size_t m, size_t n) {
    GS_CHECK(m > 0 && n > 0, "x: matrix must be non-empty");
    for (size_t i = 0; i < m * n; ++i) GS_CHECK(std::isfinite(a[i]), "x: contains NaN or infinity");
}

// Stores (ut: k x r rows u^T over the wide matrix's rows, s, vt: k x c) as the SVD of the
// original (possibly transposed) m x n matrix, keeping the first `keep` triplets.
Svd finish(const Mat& ut, const std::vector<double>& s, const Mat& vt, size_t m, size_t n, bool transposed,
           size_t keep) {
    Svd out;
    out.m = m;
    out.n = n;
    out.k = keep;
    out.u.assign(m * keep, 0.0f);
    out.vt.assign(keep * n, 0.0f);
    out.s.assign(keep, 0.0f);
    // Wide matrix B = (ut)^T S vt. If transposed, A = B^T = vt^T S ut: U_A = vt^T, Vt_A = ut.
    const Mat& left = transposed ? vt : ut;   // rows: left vectors of A (length m)
    const Mat& right = transposed ? ut : vt;  // rows: right vectors of A (length n)
    for (size_t i = 0; i < keep; ++i) {
        out.s[i] = static_cast<float>(s[i]);
        for (size_t j = 0; j < m; ++j) out.u[j * keep + i] = static_cast<float>(left.row(i)[j]);
        for (size_t j = 0; j < n; ++j) out.vt[i * n + j] = static_cast<float>(right.row(i)[j]);
    }
    return out;
}

}  // namespace

Svd svd_thin(const float* a, size_t m, size_t n) {
    check_matrix(a, m, n);
    const bool tall = m > n;
    Mat x = load(a, m, n, tall);
    WideSvd w = svd_wide(x);
    return finish(w.ut, w.s, w.vt, m, n, tall, std::min(m, n));
}

Svd svd_randomized(const float* a, size_t m, size_t n, size_t rank, size_t oversample, int power_iters,
                   uint64_t seed) {
    check_matrix(a, m, n);
    GS_CHECK(rank >= 1, "rank: must be >= 1");
    GS_CHECK(power_iters >= 0, "power_iters: must be >= 0");
    const bool tall = m > n;
    Mat x = load(a, m, n, tall);  // x: r x c, r <= c
    const size_t k = x.r;
    rank = std::min(rank, k);
    const size_t l = std::min(k, rank + oversample);
    if (l == k) {  // the sketch would be as large as the matrix: exact path
        WideSvd w = svd_wide(x);
        return finish(w.ut, w.s, w.vt, m, n, tall, rank);
    }
    // Gaussian test matrix Omega^T (l x c) by Box-Muller on Philox words.
    Mat omega_t(l, x.c);
    for (size_t i = 0; i < l * x.c; i += 2) {
        const auto wds = philox::words(seed, 0x5344u, i / 2);
        const double u1 = (static_cast<double>(wds[0]) + 0.5) * (1.0 / 4294967296.0);
        const double u2 = static_cast<double>(wds[1]) * (1.0 / 4294967296.0);
        const double rad = std::sqrt(-2.0 * std::log(u1)), ang = 6.283185307179586 * u2;
        omega_t.d[i] = rad * std::cos(ang);
        if (i + 1 < l * x.c) omega_t.d[i + 1] = rad * std::sin(ang);
    }
    Mat qt = right_mul_t(x, omega_t);  // (A Omega)^T: l x r
    orthonormalise_rows(qt);
    for (int it = 0; it < power_iters; ++it) {
        Mat zt = left_mul(qt, x);  // (A^T Q)^T: l x c
        orthonormalise_rows(zt);
        qt = right_mul_t(x, zt);
        orthonormalise_rows(qt);
    }
    Mat b = left_mul(qt, x);  // Q^T A: l x c
    WideSvd w = svd_wide(b);
    // Left vectors of x: Q u_B, i.e. rows ut_x[i] = sum_j ut_B[i][j] qt[j].
    Mat ut = left_mul(w.ut, qt);
    return finish(ut, w.s, w.vt, m, n, tall, rank);
}

}  // namespace gradsparse
