// Complex FFT for any length (iterative radix-2; Bluestein's chirp-z for other lengths),
// the real FFT (numpy.fft.rfft/irfft) through a half-length complex FFT, and the
// orthonormal DCT-II/III through Makhoul's permutation (IEEE TASSP 1980).
// Complex products are written out by hand: std::complex's operator* calls the
// NaN-checking __muldc3 helper without -ffast-math.
#include <cmath>
#include <map>
#include <memory>
#include <mutex>
#include <vector>

#include "gradsparse/common.hpp"
#include "gradsparse/decomp.hpp"

namespace gradsparse {

namespace {

using cd = std::complex<double>;
constexpr double kPi = 3.14159265358979323846;

inline cd mul(cd a, cd b) {
    return {a.real() * b.real() - a.imag() * b.imag(), a.real() * b.imag() + a.imag() * b.real()};
}
inline cd expi(double angle) { return {std::cos(angle), std::sin(angle)}; }

bool is_pow2(size_t n) { return n && !(n & (n - 1)); }

struct Plan {
    size_t n = 0;
    // radix-2: bit-reversal permutation and twiddles e^{-2 pi i j / n}, j < n/2
    std::vector<uint32_t> rev;
    std::vector<cd> tw;
    // Bluestein: chirp e^{-i pi k^2 / n}, the FFT of the conjugate chirp, and the padded plan
    std::vector<cd> chirp, chirp_hat;
    std::shared_ptr<const Plan> inner;
};

std::shared_ptr<const Plan> plan_for(size_t n);

void radix2(const Plan& pl, cd* x, bool inverse) {
    const size_t n = pl.n;
    for (size_t i = 0; i < n; ++i) {
        const size_t j = pl.rev[i];
        if (i < j) std::swap(x[i], x[j]);
    }
    for (size_t len = 2; len <= n; len <<= 1) {
        const size_t half = len >> 1, step = n / len;
        for (size_t i = 0; i < n; i += len) {
            for (size_t j = 0; j < half; ++j) {
                cd w = pl.tw[j * step];
                if (inverse) w = std::conj(w);
                const cd u = x[i + j], v = mul(x[i + j + half], w);
                x[i + j] = u + v;
                x[i + j + half] = u - v;
            }
        }
    }
}

void bluestein(const Plan& pl, cd* x, bool inverse) {
    const size_t n = pl.n, m = pl.inner->n;
    std::vector<cd> a(m, cd(0, 0));
    for (size_t k = 0; k < n; ++k) {
        const cd xk = inverse ? std::conj(x[k]) : x[k];
        a[k] = mul(xk, pl.chirp[k]);
    }
    radix2(*pl.inner, a.data(), false);
    for (size_t k = 0; k < m; ++k) a[k] = mul(a[k], pl.chirp_hat[k]);
    radix2(*pl.inner, a.data(), true);
    const double inv_m = 1.0 / static_cast<double>(m);
    for (size_t k = 0; k < n; ++k) {
        const cd r = mul(a[k], pl.chirp[k]) * inv_m;
        x[k] = inverse ? std::conj(r) : r;
    }
}

std::shared_ptr<Plan> build_plan(size_t n) {
    auto pl = std::make_shared<Plan>();
    pl->n = n;
    if (is_pow2(n)) {
        int bits = 0;
        while ((size_t(1) << bits) < n) ++bits;
        pl->rev.resize(n);
        for (size_t i = 0; i < n; ++i) {
            size_t r = 0;
            for (int b = 0; b < bits; ++b) r |= ((i >> b) & 1) << (bits - 1 - b);
            pl->rev[i] = static_cast<uint32_t>(r);
        }
        pl->tw.resize(n / 2);
        for (size_t j = 0; j < n / 2; ++j) pl->tw[j] = expi(-2.0 * kPi * static_cast<double>(j) / static_cast<double>(n));
        return pl;
    }
    size_t m = 1;
    while (m < 2 * n - 1) m <<= 1;
    pl->inner = plan_for(m);
    pl->chirp.resize(n);
    for (size_t k = 0; k < n; ++k) {
        // k^2 mod 2n keeps the angle small and exact for large k.
        const unsigned __int128 k2 = static_cast<unsigned __int128>(k) * k % (2 * static_cast<unsigned __int128>(n));
        pl->chirp[k] = expi(-kPi * static_cast<double>(static_cast<uint64_t>(k2)) / static_cast<double>(n));
    }
    pl->chirp_hat.assign(m, cd(0, 0));
    pl->chirp_hat[0] = std::conj(pl->chirp[0]);
    for (size_t k = 1; k < n; ++k) pl->chirp_hat[k] = pl->chirp_hat[m - k] = std::conj(pl->chirp[k]);
    radix2(*pl->inner, pl->chirp_hat.data(), false);
    return pl;
}

// Plans are immutable once built and shared between threads.
std::mutex g_plan_mutex;
std::map<size_t, std::shared_ptr<const Plan>> g_plans;
std::map<size_t, std::shared_ptr<const std::vector<cd>>> g_half_tw, g_dct_tw;

std::shared_ptr<const Plan> plan_for(size_t n) {
    {
        std::lock_guard<std::mutex> lock(g_plan_mutex);
        auto it = g_plans.find(n);
        if (it != g_plans.end()) return it->second;
    }
    auto pl = build_plan(n);  // may recurse (Bluestein's inner plan): built outside the lock
    std::lock_guard<std::mutex> lock(g_plan_mutex);
    if (g_plans.size() > 64) g_plans.clear();
    return g_plans.emplace(n, pl).first->second;
}

// Table of e^{-i pi k / d} for k < count, cached by `key` (the transform length).
std::shared_ptr<const std::vector<cd>> table(std::map<size_t, std::shared_ptr<const std::vector<cd>>>& cache,
                                             size_t key, size_t count, double d) {
    std::lock_guard<std::mutex> lock(g_plan_mutex);
    auto it = cache.find(key);
    if (it != cache.end()) return it->second;
    auto t = std::make_shared<std::vector<cd>>(count);
    for (size_t k = 0; k < count; ++k) (*t)[k] = expi(-kPi * static_cast<double>(k) / d);
    if (cache.size() > 64) cache.clear();
    return cache.emplace(key, t).first->second;
}

}  // namespace

void fft_inplace(cd* x, size_t n, bool inverse) {
    if (n <= 1) return;
    auto pl = plan_for(n);
    if (is_pow2(n))
        radix2(*pl, x, inverse);
    else
        bluestein(*pl, x, inverse);
}

void rfft(const double* x, size_t n, cd* out) {
    if (n == 0) return;
    if (n % 2) {
        std::vector<cd> z(n);
        for (size_t i = 0; i < n; ++i) z[i] = cd(x[i], 0);
        fft_inplace(z.data(), n, false);
        for (size_t k = 0; k <= n / 2; ++k) out[k] = z[k];
        return;
    }
    // Pack even/odd samples as one complex signal of length h = n/2, then split.
    const size_t h = n / 2;
    std::vector<cd> z(h);
    for (size_t j = 0; j < h; ++j) z[j] = cd(x[2 * j], x[2 * j + 1]);
    fft_inplace(z.data(), h, false);
    auto w = table(g_half_tw, n, h + 1, static_cast<double>(h));  // e^{-2 pi i k / n}
    for (size_t k = 0; k <= h; ++k) {
        const cd zk = z[k % h], zc = std::conj(z[(h - k) % h]);
        const cd e = (zk + zc) * 0.5, o = (zk - zc) * 0.5;
        // o / i = -i o
        out[k] = e + mul((*w)[k], cd(o.imag(), -o.real()));
    }
}

void irfft(const cd* in, size_t n, double* out) {
    if (n == 0) return;
    if (n % 2) {
        std::vector<cd> z(n);
        for (size_t k = 0; k <= n / 2; ++k) z[k] = in[k];
        for (size_t k = n / 2 + 1; k < n; ++k) z[k] = std::conj(in[n - k]);
        z[0] = cd(in[0].real(), 0);
        fft_inplace(z.data(), n, true);
        for (size_t i = 0; i < n; ++i) out[i] = z[i].real() / static_cast<double>(n);
        return;
    }
    const size_t h = n / 2;
    auto w = table(g_half_tw, n, h + 1, static_cast<double>(h));
    std::vector<cd> z(h);
    const cd x0(in[0].real(), 0), xh(in[h].real(), 0);
    for (size_t k = 0; k < h; ++k) {
        const cd xk = k == 0 ? x0 : in[k];
        const cd xc = std::conj(k == 0 ? xh : in[h - k]);
        const cd e = (xk + xc) * 0.5, o = mul((xk - xc) * 0.5, std::conj((*w)[k]));
        z[k] = e + cd(-o.imag(), o.real());  // e + i o
    }
    fft_inplace(z.data(), h, true);
    const double inv = 1.0 / static_cast<double>(h);
    for (size_t j = 0; j < h; ++j) {
        out[2 * j] = z[j].real() * inv;
        out[2 * j + 1] = z[j].imag() * inv;
    }
}

void dct2_ortho(const double* x, size_t n, double* out) {
    if (n == 0) return;
    std::vector<double> v(n);
    for (size_t j = 0; 2 * j < n; ++j) v[j] = x[2 * j];
    for (size_t j = 0; 2 * j + 1 < n; ++j) v[n - 1 - j] = x[2 * j + 1];
    std::vector<cd> spec(n / 2 + 1);
    rfft(v.data(), n, spec.data());
    auto w = table(g_dct_tw, n, n, 2.0 * static_cast<double>(n));  // e^{-i pi k / (2n)}
    const double f0 = std::sqrt(1.0 / static_cast<double>(n)), f = std::sqrt(2.0 / static_cast<double>(n));
    for (size_t k = 0; k < n; ++k) {
        const cd vk = k <= n / 2 ? spec[k] : std::conj(spec[n - k]);
        out[k] = mul((*w)[k], vk).real() * (k ? f : f0);
    }
}

void dct3_ortho(const double* x, size_t n, double* out) {
    if (n == 0) return;
    auto w = table(g_dct_tw, n, n, 2.0 * static_cast<double>(n));
    const double f0 = std::sqrt(static_cast<double>(n)), f = std::sqrt(static_cast<double>(n) / 2.0);
    // Undo the orthonormal scaling: y_k = x_k / c_k; then V_k = e^{i pi k / 2n} (y_k - i y_{n-k}).
    std::vector<cd> spec(n / 2 + 1);
    for (size_t k = 0; k <= n / 2; ++k) {
        const double yk = x[k] * (k ? f : f0);
        const double ynk = k ? x[n - k] * f : 0.0;
        spec[k] = mul(std::conj((*w)[k]), cd(yk, -ynk));
    }
    std::vector<double> v(n);
    irfft(spec.data(), n, v.data());
    for (size_t j = 0; 2 * j < n; ++j) out[2 * j] = v[j];
    for (size_t j = 0; 2 * j + 1 < n; ++j) out[2 * j + 1] = v[n - 1 - j];
}

}  // namespace gradsparse
