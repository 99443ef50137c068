// Thin SVD through the Gram matrix of the smaller side, in double: G = A A^T (m <= n),
// G = U diag(lambda) U^T, then W = U^T A, sigma_i = ||W_i|| and v_i = W_i / sigma_i.
// Forming G squares the condition number, but in double that still leaves ~1e-10 relative
// accuracy for sigma >= 1e-3 sigma_max from float32 input, and taking sigma as ||A^T u||
// (rather than sqrt(lambda)) makes the singular values as accurate as the vectors allow.
// U diag(S) V^T = U U^T A, so the reconstruction is accurate to the orthogonality of U.
//
// The randomized mode is randomized subspace iteration (Halko, Martinsson & Tropp 2011,
// Alg. 4.4) with l = rank + oversample columns and q = power_iters, followed by
// Rayleigh-Ritz. It runs in one of two equivalent forms, whichever needs fewer operations:
//  - products with A: Y = A Omega (Omega an n x l Philox Gaussian), then q times
//    Q <- orth(A orth(A^T Q)); B = Q^T A and the exact SVD of the small B;
//  - products with G = A A^T (cheaper when m is small against l and q, as for conv layers
//    with few output channels): Q <- orth(G Omega') with an m x l Gaussian Omega', then q
//    times Q <- orth(G Q) — the same iteration as above with the test matrix A^T Omega'
//    (Y = (A A^T)^q A (A^T Omega')) — then the eigenvectors of the l x l matrix Q^T G Q give
//    the left vectors u = Q e, and sigma = ||A^T u||, v = A^T u / sigma.
// Both give the top `rank` triplets to the accuracy of a rank-l subspace iteration: exact
// (to rounding) when A has rank <= l, otherwise with the usual bound on ||A - Q Q^T A||
// shrinking as (sigma_{l+1} / sigma_rank)^(2q+1) (HMT 2011, Cor. 10.10).
//
// svd_atoms (exact spectral ATOMO) needs every singular value but, for an expected `budget`
// sampled atoms, only a few singular vectors: it forms G, computes all eigenvalues without
// eigenvectors (SymmetricEigenOnDemand, eigen.cpp: O(r^2) after the O(r^3) tridiagonal
// reduction), lets the caller pick atoms from sigma = sqrt(max(lambda, 0)), and computes
// u for those only (the vector the full solver would give, so ties and clusters keep an
// orthonormal basis), then A^T u = s v with s = ||A^T u||. The kept term s u v^T = u u^T A,
// so weighting it by 1/p keeps the estimate unbiased.
//
// The dense products run on the kernels of svd_kernels.hpp (one table per SIMD level).
#include <algorithm>
#include <cmath>
#include <functional>
#include <numeric>
#include <vector>

#include "core/dispatch.hpp"
#include "core/rng.hpp"
#include "decomp/svd_kernels.hpp"
#include "gradsparse/common.hpp"
#include "gradsparse/decomp.hpp"
#include "gradsparse/parallel.hpp"

namespace gradsparse {

namespace svdk {

const SvdKernels& active_svd_kernels() {
    static const Levels<SvdKernels> levels{&svd_kernels_scalar, GS_IF_AVX2(svd_kernels_avx2),
                                           GS_IF_AVX512(svd_kernels_avx512), nullptr};
    return dispatch(levels);
}

}  // namespace svdk

namespace {

using svdk::SvdKernels;

// Row-major double matrix.
struct Mat {
    size_t r = 0, c = 0;
    std::vector<double> d;
    Mat() = default;
    Mat(size_t r_, size_t c_) : r(r_), c(c_), d(r_ * c_, 0.0) {}
    double* row(size_t i) { return d.data() + i * c; }
    const double* row(size_t i) const { return d.data() + i * c; }
};

// Work below this many multiply-adds per thread stays on one thread (thread start-up).
constexpr size_t kMinWorkPerThread = size_t(1) << 20;

void parallel_rows(size_t rows, size_t work, const std::function<void(size_t, size_t)>& body) {
    const int nt = static_cast<int>(std::min<size_t>(rows ? rows : 1, static_cast<size_t>(threads_for(work, kMinWorkPerThread))));
    parallel_for(rows, nt, [&](int, size_t b, size_t e) {
        if (b < e) body(b, e);
    });
}

inline double dot(const SvdKernels& K, const double* a, const double* b, size_t n) {
    double out;
    K.dots(a, b, 0, 1, n, &out);
    return out;
}

// G = A A^T (lower triangle computed, then mirrored). The columns are taken in tiles of
// kGramTile so that the rows' tiles (a.r x kGramTile doubles) stay in the L2 cache while
// every row i is dotted with rows 0..i; G_ij is the sum, tile after tile in column order,
// of the kernel's dot products over the tiles: a fixed order for every SIMD level and
// thread count. Rows are dealt round-robin to the threads to balance the triangle.
constexpr size_t kGramTile = 256;

Mat gram(const SvdKernels& K, const Mat& a) {
    Mat g(a.r, a.r);
    const int nt = static_cast<int>(std::min<size_t>(a.r, static_cast<size_t>(threads_for(a.r * a.r * a.c / 2, kMinWorkPerThread))));
    parallel_run(nt, [&](int t) {
        std::vector<double> tmp(a.r);
        for (size_t c0 = 0; c0 < a.c; c0 += kGramTile) {
            const size_t len = std::min(kGramTile, a.c - c0);
            for (size_t i = static_cast<size_t>(t); i < a.r; i += static_cast<size_t>(nt)) {
                double* gi = g.row(i);
                if (c0 == 0) {
                    K.dots(a.row(i), a.row(0), a.c, i + 1, len, gi);
                    continue;
                }
                K.dots(a.row(i) + c0, a.row(0) + c0, a.c, i + 1, len, tmp.data());
                for (size_t j = 0; j <= i; ++j) gi[j] += tmp[j];
            }
        }
    });
    for (size_t i = 0; i < a.r; ++i)
        for (size_t j = i + 1; j < a.r; ++j) g.row(i)[j] = g.row(j)[i];
    return g;
}

// W = Q A (Q: k x a.r, rows q_i): W_i = sum_j Q[i][j] A_j, terms added in ascending j.
// Threads take column tiles; within a tile the kernel keeps blocks of W in registers while
// it streams the tile of A (a.r x kBlock) from cache.
Mat left_mul(const SvdKernels& K, const Mat& q, const Mat& a) {
    Mat w(q.r, a.c);
    constexpr size_t kBlock = 256;
    const size_t nblocks = (a.c + kBlock - 1) / kBlock;
    parallel_rows(nblocks, q.r * a.r * a.c, [&](size_t b, size_t e) {
        for (size_t blk = b; blk < e; ++blk) {
            const size_t c0 = blk * kBlock, len = std::min(kBlock, a.c - c0);
            K.lincomb(q.d.data(), q.c, q.r, a.d.data() + c0, a.c, a.r, w.d.data() + c0, w.c, len);
        }
    });
    return w;
}

// Y^T with rows y_i[j] = A_j . z_i (A is m x n, zt is l x n): the product A Z, transposed.
// Threads take rows of A; each row is read once against all l rows of Z.
Mat right_mul_t(const SvdKernels& K, const Mat& a, const Mat& zt) {
    Mat y(zt.r, a.r);
    parallel_rows(a.r, zt.r * a.r * a.c, [&](size_t b, size_t e) {
        std::vector<double> tmp(zt.r);
        for (size_t j = b; j < e; ++j) {
            K.dots(a.row(j), zt.d.data(), zt.c, zt.r, a.c, tmp.data());
            for (size_t i = 0; i < zt.r; ++i) y.row(i)[j] = tmp[i];
        }
    });
    return y;
}

// Orthonormalises the rows (modified Gram-Schmidt, twice); dependent rows become zero.
void orthonormalise_rows(const SvdKernels& K, Mat& q) {
    for (int pass = 0; pass < 2; ++pass) {
        for (size_t i = 0; i < q.r; ++i) {
            double* qi = q.row(i);
            for (size_t j = 0; j < i; ++j) {
                const double s = dot(K, qi, q.row(j), q.c);
                K.axpy(qi, -s, q.row(j), q.c);
            }
            const double nrm = std::sqrt(dot(K, qi, qi, q.c));
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

WideSvd svd_wide(const SvdKernels& K, const Mat& a) {
    const size_t k = a.r;
    Mat g = gram(K, a);
    std::vector<double> lam(k);
    symmetric_eigen(g.d.data(), k, lam.data());  // rows of g: eigenvectors, ascending
    Mat ut(k, k);
    for (size_t i = 0; i < k; ++i) std::copy(g.row(k - 1 - i), g.row(k - 1 - i) + k, ut.row(i));
    Mat w = left_mul(K, ut, a);  // rows sigma_i v_i
    std::vector<double> s(k);
    for (size_t i = 0; i < k; ++i) s[i] = std::sqrt(dot(K, w.row(i), w.row(i), w.c));
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
    const SvdKernels& K = svdk::active_svd_kernels();
    const bool tall = m > n;
    Mat x = load(a, m, n, tall);
    WideSvd w = svd_wide(K, x);
    return finish(w.ut, w.s, w.vt, m, n, tall, std::min(m, n));
}

SvdAtoms svd_atoms(const float* a, size_t m, size_t n,
                   const std::function<std::vector<int64_t>(const std::vector<double>& sigma)>& select) {
    check_matrix(a, m, n);
    const SvdKernels& K = svdk::active_svd_kernels();
    const bool tall = m > n;
    Mat x = load(a, m, n, tall);  // r x c, r <= c
    const size_t r = x.r, c = x.c;
    SvdAtoms out;
    out.m = m;
    out.n = n;
    {
        Mat g = gram(K, x);
        SymmetricEigenOnDemand eig(g.d.data(), r);
        g = Mat();
        out.sigma.resize(r);
        for (size_t i = 0; i < r; ++i) out.sigma[i] = std::sqrt(std::max(eig.values()[i], 0.0));
        out.index = select(out.sigma);
        const size_t k = out.index.size();
        out.k = k;
        out.s.assign(k, 0.0);
        out.u.assign(m * k, 0.0f);
        out.vt.assign(k * n, 0.0f);
        std::vector<double> ug(r), w(c);
        for (size_t o = 0; o < k; ++o) {
            const int64_t at = out.index[o];
            GS_CHECK(at >= 0 && static_cast<size_t>(at) < r, "svd_atoms: selected index out of range");
            eig.vector(static_cast<size_t>(at), ug.data());
            std::fill(w.begin(), w.end(), 0.0);  // w = x^T u_g = s v
            for (size_t j = 0; j < r; ++j)
                if (ug[j] != 0) K.axpy(w.data(), ug[j], x.row(j), c);
            const double sv = std::sqrt(dot(K, w.data(), w.data(), c));
            const double inv = sv > 0 ? 1.0 / sv : 0.0;
            out.s[o] = sv;
            // Wide: u_A = u_g (length m = r), v_A = w / s. Tall: u_A = w / s (length m = c), v_A = u_g.
            for (size_t j = 0; j < m; ++j)
                out.u[j * k + o] = static_cast<float>(tall ? w[j] * inv : ug[j]);
            for (size_t j = 0; j < n; ++j) out.vt[o * n + j] = static_cast<float>(tall ? ug[j] : w[j] * inv);
        }
    }
    return out;
}

namespace {

// Gaussian matrix (rows x cols) by Box-Muller on Philox words.
Mat gaussian(size_t rows, size_t cols, uint64_t seed) {
    Mat g(rows, cols);
    const size_t total = rows * cols;
    for (size_t i = 0; i < total; i += 2) {
        const auto wds = philox::words(seed, 0x5344u, i / 2);
        const double u1 = (static_cast<double>(wds[0]) + 0.5) * (1.0 / 4294967296.0);
        const double u2 = static_cast<double>(wds[1]) * (1.0 / 4294967296.0);
        const double rad = std::sqrt(-2.0 * std::log(u1)), ang = 6.283185307179586 * u2;
        g.d[i] = rad * std::cos(ang);
        if (i + 1 < total) g.d[i + 1] = rad * std::sin(ang);
    }
    return g;
}

// Subspace iteration on G = x x^T (see the file comment): returns the top `rank` triplets of
// the wide matrix x as (ut: rank x r, s, vt: rank x c), s descending.
WideSvd randomized_gram(const SvdKernels& K, const Mat& x, size_t rank, size_t l, int power_iters, uint64_t seed) {
    const size_t r = x.r;
    Mat g = gram(K, x);
    Mat qt = right_mul_t(K, g, gaussian(l, r, seed));  // (G Omega')^T: l x r
    orthonormalise_rows(K, qt);
    for (int it = 0; it < power_iters; ++it) {
        qt = right_mul_t(K, g, qt);
        orthonormalise_rows(K, qt);
    }
    // Rayleigh-Ritz: T = Q^T G Q (l x l), T = E diag(mu) E^T.
    Mat gq = right_mul_t(K, g, qt);  // rows G q_i
    Mat t(l, l);
    for (size_t i = 0; i < l; ++i) K.dots(qt.row(i), gq.d.data(), gq.c, l, r, t.row(i));
    for (size_t i = 0; i < l; ++i)  // symmetrise the rounding
        for (size_t j = 0; j < i; ++j) t.row(i)[j] = t.row(j)[i] = 0.5 * (t.row(i)[j] + t.row(j)[i]);
    std::vector<double> mu(l);
    symmetric_eigen(t.d.data(), l, mu.data());  // rows of t: eigenvectors, ascending
    Mat et(rank, l);
    for (size_t i = 0; i < rank; ++i) std::copy(t.row(l - 1 - i), t.row(l - 1 - i) + l, et.row(i));
    Mat ut = left_mul(K, et, qt);  // rank x r: u_i = Q e_i
    Mat w = left_mul(K, ut, x);    // rank x c: x^T u_i = sigma_i v_i
    std::vector<double> s(rank);
    for (size_t i = 0; i < rank; ++i) s[i] = std::sqrt(dot(K, w.row(i), w.row(i), w.c));
    std::vector<size_t> order(rank);
    std::iota(order.begin(), order.end(), size_t(0));
    std::stable_sort(order.begin(), order.end(), [&](size_t i, size_t j) { return s[i] > s[j]; });
    WideSvd out{Mat(rank, r), std::vector<double>(rank), Mat(rank, x.c)};
    for (size_t o = 0; o < rank; ++o) {
        const size_t i = order[o];
        out.s[o] = s[i];
        std::copy(ut.row(i), ut.row(i) + r, out.ut.row(o));
        const double inv = s[i] > 0 ? 1.0 / s[i] : 0.0;
        for (size_t c = 0; c < x.c; ++c) out.vt.row(o)[c] = w.row(i)[c] * inv;
    }
    return out;
}

}  // namespace

Svd svd_randomized(const float* a, size_t m, size_t n, size_t rank, size_t oversample, int power_iters,
                   uint64_t seed) {
    check_matrix(a, m, n);
    GS_CHECK(rank >= 1, "rank: must be >= 1");
    GS_CHECK(power_iters >= 0, "power_iters: must be >= 0");
    const SvdKernels& K = svdk::active_svd_kernels();
    const bool tall = m > n;
    Mat x = load(a, m, n, tall);  // x: r x c, r <= c
    const size_t k = x.r;
    rank = std::min(rank, k);
    const size_t l = std::min(k, rank + oversample);
    if (l == k) {  // the sketch would be as large as the matrix: exact path
        WideSvd w = svd_wide(K, x);
        return finish(w.ut, w.s, w.vt, m, n, tall, rank);
    }
    // Multiply-adds of the two forms (file comment): products with x cost (2q + 2) r c l plus
    // the SVD of the l x c matrix B; with G, r^2 c / 2 for G plus rank r c for x^T u.
    const double r = static_cast<double>(k), c = static_cast<double>(x.c), ll = static_cast<double>(l);
    const double q = static_cast<double>(power_iters);
    const double cost_direct = (2 * q + 2) * r * c * ll + 1.5 * ll * ll * c;
    const double cost_gram = 0.5 * r * r * c + static_cast<double>(rank) * r * c + (q + 2) * r * r * ll;
    if (cost_gram < cost_direct) {
        WideSvd w = randomized_gram(K, x, rank, l, power_iters, seed);
        return finish(w.ut, w.s, w.vt, m, n, tall, rank);
    }
    Mat omega_t = gaussian(l, x.c, seed);  // Omega^T: l x c
    Mat qt = right_mul_t(K, x, omega_t);    // (A Omega)^T: l x r
    orthonormalise_rows(K, qt);
    for (int it = 0; it < power_iters; ++it) {
        Mat zt = left_mul(K, qt, x);  // (A^T Q)^T: l x c
        orthonormalise_rows(K, zt);
        qt = right_mul_t(K, x, zt);
        orthonormalise_rows(K, qt);
    }
    Mat b = left_mul(K, qt, x);  // Q^T A: l x c
    WideSvd w = svd_wide(K, b);
    // Left vectors of x: Q u_B, i.e. rows ut_x[i] = sum_j ut_B[i][j] qt[j].
    Mat ut = left_mul(K, w.ut, qt);
    return finish(ut, w.s, w.vt, m, n, tall, rank);
}

}  // namespace gradsparse
