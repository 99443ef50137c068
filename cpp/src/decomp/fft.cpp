// Complex FFT for any length and the real FFT (numpy.fft.rfft/irfft) and orthonormal
// DCT-II/III built on it.
//
// Complex transforms run on split data (real and imaginary parts in separate arrays) as a
// sequence of decimation-in-frequency Stockham passes (out of place, no bit reversal,
// natural order out) of radix 4, 2, 3, 5 and any odd radix; a length whose largest prime
// factor is large goes through Bluestein's chirp-z transform on a 2,3,5-smooth length.
// Inverse transforms swap the real and imaginary arrays (IDFT(x) = swap(DFT(swap(x)))).
// Plans (factors, twiddle tables, Bluestein chirps) are built once per length, immutable
// and shared between threads. The real FFT of even n is the n/2-point complex FFT of the
// even/odd samples packed as z_j = x_{2j} + i x_{2j+1}, then split; odd n runs the complex
// transform of length n. The DCT uses Makhoul's permutation (IEEE TASSP 1980).
//
// The passes and O(n) steps are the kernels of fft_kernels.hpp, one table per SIMD level,
// chosen once per call; every level gives bit-identical results.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <map>
#include <memory>
#include <mutex>
#include <utility>
#include <vector>

#include "core/dispatch.hpp"
#include "core/scratch.hpp"
#include "decomp/fft_kernels.hpp"
#include "gradsparse/common.hpp"
#include "gradsparse/decomp.hpp"

#if defined(__unix__) || defined(__APPLE__)
#include <pthread.h>
#endif

namespace gradsparse {

namespace fft {

const FftKernels& active_fft_kernels() {
    static const Levels<FftKernels> levels{&fft_kernels_scalar, GS_IF_AVX2(fft_kernels_avx2),
                                           GS_IF_AVX512(fft_kernels_avx512), nullptr};
    return dispatch(levels);
}

}  // namespace fft

namespace {

using cd = std::complex<double>;
using fft::FftKernels;
constexpr double kPi = 3.14159265358979323846;
// Prime factors above this go through Bluestein (an odd-radix pass costs O(p) per point).
constexpr size_t kMaxDirectPrime = 61;

// cos / sin of 2 pi r / L for 0 <= r < L, reduced to an angle in [0, pi/4] for accuracy.
void unit_root(size_t r, size_t len, double* c, double* s) {
    const size_t r8 = 8 * r, oct = r8 / len, rem = r8 % len;  // theta = (oct + rem / len) pi / 4
    auto angle = [&](size_t num) { return 2.0 * kPi * static_cast<double>(num) / (8.0 * static_cast<double>(len)); };
    double x, y;
    size_t quarter;
    if (oct % 2 == 0) {  // theta = quarter pi/2 + a
        const double a = angle(rem);
        x = std::cos(a);
        y = std::sin(a);
        quarter = oct / 2;
    } else {  // theta = quarter pi/2 - b
        const double b = angle(len - rem);
        x = std::cos(b);
        y = -std::sin(b);
        quarter = ((oct + 1) / 2) % 4;
    }
    switch (quarter) {  // rotate (x, y) by quarter * pi/2
        case 0: *c = x; *s = y; break;
        case 1: *c = -y; *s = x; break;
        case 2: *c = -x; *s = -y; break;
        default: *c = y; *s = -x; break;
    }
}

struct Pass {
    size_t p, s, m;
    size_t tw;    // offset into twr/twi
    size_t trig;  // offset into trig (odd radix > 5)
};

struct CPlan {
    size_t n = 0;
    std::vector<Pass> passes;
    std::vector<double> twr, twi, trig;
    // Bluestein: inner length M, chirp w_k = e^{-i pi k^2 / n} (k < n) and the DFT of the
    // wrapped conjugate chirp, divided by M.
    bool bluestein = false;
    size_t big = 0;
    std::shared_ptr<const CPlan> inner;
    std::vector<double> chr, chi, bhr, bhi;
};

std::shared_ptr<const CPlan> cplan_for(size_t n);

// Radices for n: 4s, a 2, 3s, 5s, then other odd primes; empty when n has a prime factor
// above kMaxDirectPrime (Bluestein).
bool factorize(size_t n, std::vector<size_t>& f) {
    f.clear();
    while (n % 4 == 0) { f.push_back(4); n /= 4; }
    if (n % 2 == 0) { f.push_back(2); n /= 2; }
    for (size_t p = 3; p * p <= n || p <= n; p += 2) {
        if (n == 1) break;
        if (p * p > n) p = n;  // n is prime now
        while (n % p == 0) {
            if (p > kMaxDirectPrime) return false;
            f.push_back(p);
            n /= p;
        }
    }
    return true;
}

// Smallest 2^a 3^b 5^c >= n.
size_t good_size(size_t n) {
    size_t best = 1;
    while (best < n) best <<= 1;
    for (size_t f5 = 1; f5 < best; f5 *= 5)
        for (size_t f35 = f5; f35 < best; f35 *= 3) {
            size_t x = f35;
            while (x < n) x <<= 1;
            best = std::min(best, x);
        }
    return best;
}

std::pair<double*, double*> exec(const CPlan& pl, const FftKernels& k, double* re, double* im, double* tr, double* ti);

std::shared_ptr<CPlan> build_cplan(size_t n) {
    auto pl = std::make_shared<CPlan>();
    pl->n = n;
    std::vector<size_t> f;
    if (n <= 1 || factorize(n, f)) {
        size_t s = 1;
        for (size_t p : f) {
            const size_t m = n / (s * p), len = p * m;
            Pass ps{p, s, m, pl->twr.size(), pl->trig.size()};
            for (size_t k = 1; k < p; ++k)
                for (size_t j1 = 0; j1 < m; ++j1) {
                    double c, sn;
                    unit_root(j1 * k, len, &c, &sn);
                    pl->twr.push_back(c);
                    pl->twi.push_back(-sn);
                }
            if (p > 5) {
                for (size_t r = 0; r < p; ++r) {
                    double c, sn;
                    unit_root(r, p, &c, &sn);
                    pl->trig.push_back(c);
                }
                for (size_t r = 0; r < p; ++r) {
                    double c, sn;
                    unit_root(r, p, &c, &sn);
                    pl->trig.push_back(sn);
                }
            }
            pl->passes.push_back(ps);
            s *= p;
        }
        return pl;
    }
    pl->bluestein = true;
    const size_t big = good_size(2 * n - 1);
    pl->big = big;
    pl->inner = cplan_for(big);
    pl->chr.resize(n);
    pl->chi.resize(n);
    for (size_t k = 0; k < n; ++k) {
        // k^2 mod 2n keeps the angle exact for large k: e^{-i pi k^2 / n} = e^{-2 pi i (k^2 mod 2n) / 2n}.
        const unsigned __int128 k2 = static_cast<unsigned __int128>(k) * k % (2 * static_cast<unsigned __int128>(n));
        double c, sn;
        unit_root(static_cast<size_t>(k2), 2 * n, &c, &sn);
        pl->chr[k] = c;
        pl->chi[k] = -sn;
    }
    std::vector<double> br(big, 0.0), bi(big, 0.0), tr(big), ti(big);
    const double inv = 1.0 / static_cast<double>(big);
    br[0] = pl->chr[0] * inv;
    bi[0] = -pl->chi[0] * inv;
    for (size_t k = 1; k < n; ++k) {
        br[k] = br[big - k] = pl->chr[k] * inv;
        bi[k] = bi[big - k] = -pl->chi[k] * inv;
    }
    auto res = exec(*pl->inner, fft::fft_kernels_scalar(), br.data(), bi.data(), tr.data(), ti.data());
    pl->bhr.assign(res.first, res.first + big);
    pl->bhi.assign(res.second, res.second + big);
    return pl;
}

// Plans are immutable once built and shared between threads.
std::mutex g_plan_mutex;

#if defined(__unix__) || defined(__APPLE__)
// A fork() while another thread holds the plan lock would leave it locked for good in the
// child: the forking thread takes it first and both processes release it after the fork.
void lock_plans_for_fork() { g_plan_mutex.lock(); }
void unlock_plans_after_fork() { g_plan_mutex.unlock(); }
[[maybe_unused]] const bool plans_fork_safe =
    pthread_atfork(lock_plans_for_fork, unlock_plans_after_fork, unlock_plans_after_fork) == 0;
#endif
std::map<size_t, std::shared_ptr<const CPlan>> g_cplans;

std::shared_ptr<const CPlan> cplan_for(size_t n) {
    {
        std::lock_guard<std::mutex> lock(g_plan_mutex);
        auto it = g_cplans.find(n);
        if (it != g_cplans.end()) return it->second;
    }
    auto pl = build_cplan(n);  // may recurse (Bluestein's inner plan): built outside the lock
    std::lock_guard<std::mutex> lock(g_plan_mutex);
    if (g_cplans.size() > 64) g_cplans.clear();
    return g_cplans.emplace(n, pl).first->second;
}

// Forward DFT of (re, im) (destroyed); (tr, ti) are scratch of the same length. Returns the
// pair of arrays holding the result: (re, im) or (tr, ti).
std::pair<double*, double*> exec(const CPlan& pl, const FftKernels& k, double* re, double* im, double* tr, double* ti) {
    if (pl.bluestein) {
        const size_t n = pl.n, big = pl.big;
        auto buf = ScratchPool::acquire(4 * big * sizeof(double));
        double* ar = reinterpret_cast<double*>(buf.get());
        double* ai = ar + big;
        double* br = ai + big;
        double* bi = br + big;
        k.cmul_to(re, im, pl.chr.data(), pl.chi.data(), n, ar, ai);
        std::fill(ar + n, ar + big, 0.0);
        std::fill(ai + n, ai + big, 0.0);
        auto y = exec(*pl.inner, k, ar, ai, br, bi);
        k.cmul(y.first, y.second, pl.bhr.data(), pl.bhi.data(), big);
        double* other_r = y.first == ar ? br : ar;
        double* other_i = y.first == ar ? bi : ai;
        auto z = exec(*pl.inner, k, y.second, y.first, other_i, other_r);  // inverse: swapped
        k.cmul_to(z.second, z.first, pl.chr.data(), pl.chi.data(), n, re, im);
        return {re, im};
    }
    double *cr = re, *ci = im, *nr = tr, *ni = ti;
    for (const Pass& ps : pl.passes) {
        const fft::PassArgs args{ps.p, ps.s, ps.m, cr, ci, nr, ni, pl.twr.data() + ps.tw, pl.twi.data() + ps.tw,
                                 pl.trig.data() + ps.trig};
        switch (ps.p) {
            case 2: k.pass2(args); break;
            case 3: k.pass3(args); break;
            case 4: k.pass4(args); break;
            case 5: k.pass5(args); break;
            default: k.pass_odd(args); break;
        }
        std::swap(cr, nr);
        std::swap(ci, ni);
    }
    return {cr, ci};
}

// Real transforms of even length n: the n/2-point complex plan and w_k = e^{-2 pi i k / n}.
struct RPlan {
    std::shared_ptr<const CPlan> half;
    std::vector<double> wr, wi;
};

std::map<size_t, std::shared_ptr<const RPlan>> g_rplans;

std::shared_ptr<const RPlan> rplan_for(size_t n) {
    {
        std::lock_guard<std::mutex> lock(g_plan_mutex);
        auto it = g_rplans.find(n);
        if (it != g_rplans.end()) return it->second;
    }
    auto pl = std::make_shared<RPlan>();
    const size_t h = n / 2;
    pl->half = cplan_for(h);
    pl->wr.resize(h + 1);
    pl->wi.resize(h + 1);
    for (size_t k = 0; k <= h; ++k) {
        double c, s;
        unit_root(k % n, n, &c, &s);
        pl->wr[k] = c;
        pl->wi[k] = -s;
    }
    std::lock_guard<std::mutex> lock(g_plan_mutex);
    if (g_rplans.size() > 64) g_rplans.clear();
    return g_rplans.emplace(n, pl).first->second;
}

double* doubles(ScratchPool::Buffer& b) { return reinterpret_cast<double*>(b.get()); }

// Table of e^{-i pi k / (2n)} for k < n (the DCT's), cached by n.
std::map<size_t, std::shared_ptr<const std::vector<cd>>> g_dct_tw;

std::shared_ptr<const std::vector<cd>> dct_table(size_t n) {
    std::lock_guard<std::mutex> lock(g_plan_mutex);
    auto it = g_dct_tw.find(n);
    if (it != g_dct_tw.end()) return it->second;
    auto t = std::make_shared<std::vector<cd>>(n);
    for (size_t k = 0; k < n; ++k) {
        double c, s;
        unit_root(k, 4 * n, &c, &s);
        (*t)[k] = cd(c, -s);
    }
    if (g_dct_tw.size() > 64) g_dct_tw.clear();
    return g_dct_tw.emplace(n, t).first->second;
}

inline cd mul(cd a, cd b) {
    return {a.real() * b.real() - a.imag() * b.imag(), a.real() * b.imag() + a.imag() * b.real()};
}

}  // namespace

void fft_inplace(cd* x, size_t n, bool inverse) {
    if (n <= 1) return;
    const FftKernels& k = fft::active_fft_kernels();
    auto pl = cplan_for(n);
    auto buf = ScratchPool::acquire(4 * n * sizeof(double));
    double* re = doubles(buf);
    double *im = re + n, *tr = im + n, *ti = tr + n;
    double* xd = reinterpret_cast<double*>(x);
    k.deinterleave(xd, n, re, im);
    if (inverse) {
        auto z = exec(*pl, k, im, re, ti, tr);
        k.interleave(z.second, z.first, n, 1.0, xd);
    } else {
        auto z = exec(*pl, k, re, im, tr, ti);
        k.interleave(z.first, z.second, n, 1.0, xd);
    }
}

void rfft(const double* x, size_t n, cd* out) {
    if (n == 0) return;
    const FftKernels& k = fft::active_fft_kernels();
    double* od = reinterpret_cast<double*>(out);
    if (n % 2) {
        auto pl = cplan_for(n);
        auto buf = ScratchPool::acquire(4 * n * sizeof(double));
        double* re = doubles(buf);
        double *im = re + n, *tr = im + n, *ti = tr + n;
        std::memcpy(re, x, n * sizeof(double));
        std::fill(im, im + n, 0.0);
        auto z = exec(*pl, k, re, im, tr, ti);
        k.interleave(z.first, z.second, n / 2 + 1, 1.0, od);
        return;
    }
    const size_t h = n / 2;
    auto rp = rplan_for(n);
    auto buf = ScratchPool::acquire(4 * (h + 1) * sizeof(double));
    double* re = doubles(buf);
    double *im = re + h + 1, *tr = im + h + 1, *ti = tr + h + 1;  // h + 1 each: the split output
    k.deinterleave(x, h, re, im);
    auto z = exec(*rp->half, k, re, im, tr, ti);
    double* sr = z.first == re ? tr : re;
    double* si = z.first == re ? ti : im;
    k.real_split(z.first, z.second, h, rp->wr.data(), rp->wi.data(), sr, si);
    k.interleave(sr, si, h + 1, 1.0, od);
}

void irfft(const cd* in, size_t n, double* out) {
    if (n == 0) return;
    const FftKernels& k = fft::active_fft_kernels();
    const double* id = reinterpret_cast<const double*>(in);
    if (n % 2) {
        auto pl = cplan_for(n);
        auto buf = ScratchPool::acquire(4 * n * sizeof(double));
        double* re = doubles(buf);
        double *im = re + n, *tr = im + n, *ti = tr + n;
        for (size_t j = 0; j <= n / 2; ++j) {
            re[j] = in[j].real();
            im[j] = in[j].imag();
        }
        for (size_t j = n / 2 + 1; j < n; ++j) {
            re[j] = in[n - j].real();
            im[j] = -in[n - j].imag();
        }
        im[0] = 0.0;
        auto z = exec(*pl, k, im, re, ti, tr);  // inverse: swapped
        const double inv = 1.0 / static_cast<double>(n);
        for (size_t j = 0; j < n; ++j) out[j] = z.second[j] * inv;
        return;
    }
    const size_t h = n / 2;
    auto rp = rplan_for(n);
    auto buf = ScratchPool::acquire(4 * h * sizeof(double));
    double* re = doubles(buf);
    double *im = re + h, *tr = im + h, *ti = tr + h;
    k.real_merge(id, h, rp->wr.data(), rp->wi.data(), re, im);
    auto z = exec(*rp->half, k, im, re, ti, tr);  // inverse: swapped
    k.interleave(z.second, z.first, h, 1.0 / static_cast<double>(h), out);
}

// The DCTs' work arrays come from the scratch pool (no allocation and page faults per call).
void dct2_ortho(const double* x, size_t n, double* out) {
    if (n == 0) return;
    auto vbuf = ScratchPool::acquire(n * sizeof(double));
    auto sbuf = ScratchPool::acquire((n / 2 + 1) * sizeof(cd));
    double* v = doubles(vbuf);
    cd* spec = reinterpret_cast<cd*>(sbuf.get());
    for (size_t j = 0; 2 * j < n; ++j) v[j] = x[2 * j];
    for (size_t j = 0; 2 * j + 1 < n; ++j) v[n - 1 - j] = x[2 * j + 1];
    rfft(v, n, spec);
    auto w = dct_table(n);  // e^{-i pi k / (2n)}
    const double f0 = std::sqrt(1.0 / static_cast<double>(n)), f = std::sqrt(2.0 / static_cast<double>(n));
    for (size_t k = 0; k < n; ++k) {
        const cd vk = k <= n / 2 ? spec[k] : std::conj(spec[n - k]);
        out[k] = mul((*w)[k], vk).real() * (k ? f : f0);
    }
}

void dct3_ortho(const double* x, size_t n, double* out) {
    if (n == 0) return;
    auto w = dct_table(n);
    const double f0 = std::sqrt(static_cast<double>(n)), f = std::sqrt(static_cast<double>(n) / 2.0);
    // Undo the orthonormal scaling: y_k = x_k / c_k; then V_k = e^{i pi k / 2n} (y_k - i y_{n-k}).
    auto sbuf = ScratchPool::acquire((n / 2 + 1) * sizeof(cd));
    auto vbuf = ScratchPool::acquire(n * sizeof(double));
    cd* spec = reinterpret_cast<cd*>(sbuf.get());
    double* v = doubles(vbuf);
    for (size_t k = 0; k <= n / 2; ++k) {
        const double yk = x[k] * (k ? f : f0);
        const double ynk = k ? x[n - k] * f : 0.0;
        spec[k] = mul(std::conj((*w)[k]), cd(yk, -ynk));
    }
    irfft(spec, n, v);
    for (size_t j = 0; 2 * j < n; ++j) out[2 * j] = v[j];
    for (size_t j = 0; 2 * j + 1 < n; ++j) out[2 * j + 1] = v[n - 1 - j];
}

}  // namespace gradsparse
