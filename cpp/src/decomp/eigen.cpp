// Symmetric eigensolver: Householder tridiagonalisation, then the implicit symmetric QR
// algorithm with Wilkinson shifts (Golub & Van Loan, Matrix Computations, 4th ed., §8.3),
// eigenvectors accumulated as rows so that each Givens rotation touches two contiguous rows.
#include <algorithm>
#include <cstdint>
#include <cmath>
#include <limits>
#include <numeric>
#include <vector>

#include "decomp/svd_kernels.hpp"
#include "gradsparse/common.hpp"
#include "gradsparse/decomp.hpp"

namespace gradsparse {

namespace {

struct RotationLog {
    std::vector<uint32_t> sweeps;  // (l, h) per sweep
    std::vector<double> cs;        // (c, s) per rotation
};

// Reduces a (n x n, row-major, symmetric) to tridiagonal (d, e) — the matrix-vector product
// and the rank-2 update on the SIMD kernel table of svd_kernels.hpp (bit-identical at every
// level; only the lower triangle of a is read and updated) — a = Z T Z^T with
// Z = H_0 H_1 ... H_{n-3}, H_k = I - betas[k] vs[k] vs[k]^T acting on indices k+1 .. n-1
// (betas[k] = 0: H_k = I).
void householder_tridiagonal(std::vector<double>& a, size_t n, std::vector<double>& d, std::vector<double>& e,
                             std::vector<std::vector<double>>& vs, std::vector<double>& betas) {
    const svdk::SvdKernels& K = svdk::active_svd_kernels();
    vs.assign(n, {});
    betas.assign(n, 0.0);
    struct Reflector {
        bool ok = false;
        std::vector<double> v;
        double beta = 0, alpha = 0;
    };
    // The reflector that zeroes x[1 ..] of x = column k below the diagonal (r values).
    auto make = [&](const double* x, size_t r) {
        Reflector h;
        double norm2 = 0;
        for (size_t i = 0; i < r; ++i) norm2 += x[i] * x[i];
        const double tail2 = norm2 - x[0] * x[0];
        if (tail2 <= 0) return h;  // already tridiagonal in this column
        const double norm = std::sqrt(norm2);
        h.alpha = x[0] > 0 ? -norm : norm;
        h.v.assign(x, x + r);
        h.v[0] -= h.alpha;
        h.beta = 2.0 / (tail2 + h.v[0] * h.v[0]);
        h.ok = true;
        return h;
    };
    // Only the lower triangle of the trailing block is kept up to date. With S stored as its
    // lower triangle (rows S_i[0 .. i]), S v is, row by row: p_i = S_i[0 .. i] . v[0 .. i],
    // then p[0 .. i) += v_i S_i[0 .. i) (the upper triangle's part of the earlier rows).
    std::vector<double> col(n);
    auto column = [&](size_t k) {  // column k below the diagonal
        for (size_t i = k + 1; i < n; ++i) col[i - k - 1] = a[i * n + k];
        return col.data();
    };
    // Step k: p = beta S v (S = a[k+1:, k+1:]), q = p - (beta p.v / 2) v, S -= v q^T + q v^T.
    // Column k+1 is updated first, which gives the next reflector; every further row's update
    // is followed by its part of the next step's S v, so that it needs no second pass.
    std::vector<double> p(n), pn(n);
    Reflector cur = n >= 3 ? make(column(0), n - 1) : Reflector{};
    bool have_p = false;
    for (size_t k = 0; k + 2 < n; ++k) {
        const size_t r = n - k - 1;
        double* s0 = &a[(k + 1) * n + k + 1];  // S_i = s0 + i n
        if (!cur.ok) {
            have_p = false;
            cur = k + 3 < n ? make(column(k + 1), r - 1) : Reflector{};
            continue;
        }
        const std::vector<double>& v = cur.v;
        const double beta = cur.beta;
        if (!have_p) {
            for (size_t i = 0; i < r; ++i) {
                const double* si = s0 + i * n;
                K.dots(v.data(), si, 0, 1, i + 1, &p[i]);
                K.axpy(p.data(), v[i], si, i);
            }
        }
        for (size_t i = 0; i < r; ++i) p[i] *= beta;
        double pv = 0;
        for (size_t i = 0; i < r; ++i) pv += p[i] * v[i];
        const double kk = 0.5 * beta * pv;
        for (size_t i = 0; i < r; ++i) p[i] -= kk * v[i];  // q
        // Column 0 of S (rows 1 ..), updated exactly as the row updates below will update it.
        for (size_t i = 1; i < r; ++i) col[i - 1] = s0[i * n] - (v[i] * p[0] + p[i] * v[0]);
        Reflector next = k + 3 < n ? make(col.data(), r - 1) : Reflector{};
        K.rank2(s0, v[0], p.data(), p[0], v.data(), 1);
        for (size_t i = 1; i < r; ++i) {
            double* si = s0 + i * n;
            K.rank2(si, v[i], p.data(), p[i], v.data(), i + 1);
            if (next.ok) {  // the next block is S[1:, 1:]: row i - 1 there is si[1 .. i]
                K.dots(next.v.data(), si + 1, 0, 1, i, &pn[i - 1]);
                K.axpy(pn.data(), next.v[i - 1], si + 1, i - 1);
            }
        }
        have_p = next.ok;
        std::swap(p, pn);
        for (size_t i = 0; i < r; ++i) a[k * n + k + 1 + i] = a[(k + 1 + i) * n + k] = 0;
        a[k * n + k + 1] = a[(k + 1) * n + k] = cur.alpha;
        vs[k] = std::move(cur.v);
        betas[k] = beta;
        cur = std::move(next);
    }
    d.resize(n);
    e.assign(n ? n - 1 : 0, 0.0);
    for (size_t i = 0; i < n; ++i) d[i] = a[i * n + i];
    for (size_t i = 0; i + 1 < n; ++i) e[i] = a[(i + 1) * n + i];
}

// Z^T for the reflectors of householder_tridiagonal.
void form_zt(size_t n, const std::vector<std::vector<double>>& vs, const std::vector<double>& betas,
             std::vector<double>& zt) {
    // Z = H_0 (H_1 (... H_{n-3})): applied right to left to the identity, then transposed.
    const svdk::SvdKernels& K = svdk::active_svd_kernels();
    zt.assign(n * n, 0.0);
    for (size_t i = 0; i < n; ++i) zt[i * n + i] = 1.0;
    std::vector<double> t(n);
    for (size_t k = n >= 2 ? n - 2 : 0; k-- > 0;) {
        if (betas[k] == 0) continue;
        const size_t r = n - k - 1;
        const std::vector<double>& v = vs[k];
        // Z[k+1:, k+1:] = H Z[k+1:, k+1:]  (Z itself; transposed at the end)
        std::fill(t.begin(), t.end(), 0.0);  // t = v^T Z[k+1:, k+1:], then Z -= beta v t^T
        K.lincomb(v.data(), r, 1, &zt[(k + 1) * n + k + 1], n, r, t.data(), n, r);
        for (size_t i = 0; i < r; ++i) K.axpy(&zt[(k + 1 + i) * n + k + 1], -(betas[k] * v[i]), t.data(), r);
    }
    // zt holds Z; transpose in place.
    for (size_t i = 0; i < n; ++i)
        for (size_t j = i + 1; j < n; ++j) std::swap(zt[i * n + j], zt[j * n + i]);
}

// Eigenvalues of the tridiagonal (d, e) into d (unsorted). With zt (n x n rows), each
// rotation is applied to rows k, k+1 of zt; with log, every sweep is recorded as (l, h)
// in log->sweeps and its h - l rotations as (c, s) pairs in log->cs, in order of application.
void implicit_qr(std::vector<double>& d, std::vector<double>& e, double* zt, size_t n, RotationLog* log) {
    const svdk::SvdKernels& K = svdk::active_svd_kernels();
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
        if (log) {
            log->sweeps.push_back(static_cast<uint32_t>(l));
            log->sweeps.push_back(static_cast<uint32_t>(h));
        }
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
            if (log) {
                log->cs.push_back(c);
                log->cs.push_back(s);
            }
            if (zt) K.rot(&zt[k * n], &zt[(k + 1) * n], c, s, n);
        }
    }
}

}  // namespace

void symmetric_eigen(double* a, size_t n, double* w) {
    if (n == 0) return;
    std::vector<double> m(a, a + n * n), d, e, zt, betas;
    std::vector<std::vector<double>> vs;
    householder_tridiagonal(m, n, d, e, vs, betas);
    form_zt(n, vs, betas, zt);
    implicit_qr(d, e, zt.data(), n, nullptr);
    std::vector<size_t> order(n);
    std::iota(order.begin(), order.end(), size_t(0));
    std::sort(order.begin(), order.end(), [&](size_t i, size_t j) { return d[i] < d[j]; });
    for (size_t i = 0; i < n; ++i) {
        w[i] = d[order[i]];
        std::copy(&zt[order[i] * n], &zt[order[i] * n] + n, a + i * n);
    }
}


// ---- eigenvalues now, eigenvectors on demand ----------------------------------------------
// The implicit QR sweeps are run without eigenvectors (O(n^2)), recording each Givens
// rotation. Eigenvector j of the tridiagonal matrix is row j of R_N ... R_1, i.e.
// e_j^T R_N ... R_1, which costs one pass over the recorded rotations (in reverse); the
// Householder reflectors then take it back to the original basis (O(n^2)). The vectors are
// exactly those the full algorithm would accumulate (up to rounding), so they are
// orthonormal also within clusters of equal or close eigenvalues.
SymmetricEigenOnDemand::SymmetricEigenOnDemand(const double* a, size_t n) : n_(n) {
    if (n == 0) return;
    std::vector<double> m(a, a + n * n), d, e;
    householder_tridiagonal(m, n, d, e, vs_, betas_);
    RotationLog log;
    implicit_qr(d, e, nullptr, n, &log);
    sweeps_ = std::move(log.sweeps);
    cs_ = std::move(log.cs);
    pos_.resize(n);
    std::iota(pos_.begin(), pos_.end(), size_t(0));
    std::stable_sort(pos_.begin(), pos_.end(), [&](size_t i, size_t j) { return d[i] > d[j]; });
    values_.resize(n);
    for (size_t i = 0; i < n; ++i) values_[i] = d[pos_[i]];
}

void SymmetricEigenOnDemand::vector(size_t i, double* out) const {
    GS_ASSERT(i < n_);
    const size_t n = n_;
    std::fill(out, out + n, 0.0);
    out[pos_[i]] = 1.0;
    size_t rot = cs_.size() / 2;
    for (size_t sw = sweeps_.size() / 2; sw-- > 0;) {
        const size_t l = sweeps_[2 * sw], h = sweeps_[2 * sw + 1];
        for (size_t k = h; k-- > l;) {
            --rot;
            const double c = cs_[2 * rot], s = cs_[2 * rot + 1];
            const double x = out[k], y = out[k + 1];
            out[k] = c * x - s * y;
            out[k + 1] = s * x + c * y;
        }
    }
    GS_ASSERT(rot == 0);
    for (size_t k = n >= 2 ? n - 2 : 0; k-- > 0;) {  // u = H_0 (H_1 (... H_{n-3} w))
        if (betas_[k] == 0) continue;
        const std::vector<double>& v = vs_[k];
        double* w = out + k + 1;
        double t = 0;
        for (size_t j = 0; j < v.size(); ++j) t += v[j] * w[j];
        t *= betas_[k];
        for (size_t j = 0; j < v.size(); ++j) w[j] -= t * v[j];
    }
}

}  // namespace gradsparse
