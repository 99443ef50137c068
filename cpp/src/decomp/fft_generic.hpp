// gradsparse — portable FFT kernels (see fft_kernels.hpp). Header-only: each instruction-set
// unit compiles its own copy with its own -m flags, so the compiler vectorises the loops
// below for that unit's vector width. The loops are written so that each lane does exactly
// the scalar operations: the results do not depend on the width.
#pragma once

#include <cstddef>

#include "fft_kernels.hpp"

namespace gradsparse {
namespace fft {
namespace generic {
// Internal linkage: no ODR merging of code built with different -m flags.
namespace {

// ---- butterflies: the P-point forward DFT of (xr, xi) into (yr, yi) ----------------------

struct Bf2 {
    static constexpr size_t P = 2;
    static inline void run(const double* xr, const double* xi, double* yr, double* yi) {
        yr[0] = xr[0] + xr[1];
        yi[0] = xi[0] + xi[1];
        yr[1] = xr[0] - xr[1];
        yi[1] = xi[0] - xi[1];
    }
};

struct Bf3 {
    static constexpr size_t P = 3;
    static inline void run(const double* xr, const double* xi, double* yr, double* yi) {
        constexpr double c = 0.86602540378443864676;  // sin(2 pi / 3)
        const double tr = xr[1] + xr[2], ti = xi[1] + xi[2];
        const double dr = xr[1] - xr[2], di = xi[1] - xi[2];
        yr[0] = xr[0] + tr;
        yi[0] = xi[0] + ti;
        const double mr = xr[0] - 0.5 * tr, mi = xi[0] - 0.5 * ti;
        // -i c d
        const double nr = c * di, ni = -(c * dr);
        yr[1] = mr + nr;
        yi[1] = mi + ni;
        yr[2] = mr - nr;
        yi[2] = mi - ni;
    }
};

struct Bf4 {
    static constexpr size_t P = 4;
    static inline void run(const double* xr, const double* xi, double* yr, double* yi) {
        const double t0r = xr[0] + xr[2], t0i = xi[0] + xi[2];
        const double t1r = xr[0] - xr[2], t1i = xi[0] - xi[2];
        const double t2r = xr[1] + xr[3], t2i = xi[1] + xi[3];
        const double t3r = xr[1] - xr[3], t3i = xi[1] - xi[3];
        yr[0] = t0r + t2r;
        yi[0] = t0i + t2i;
        yr[2] = t0r - t2r;
        yi[2] = t0i - t2i;
        // y1 = t1 - i t3, y3 = t1 + i t3
        yr[1] = t1r + t3i;
        yi[1] = t1i - t3r;
        yr[3] = t1r - t3i;
        yi[3] = t1i + t3r;
    }
};

struct Bf5 {
    static constexpr size_t P = 5;
    static inline void run(const double* xr, const double* xi, double* yr, double* yi) {
        constexpr double c1 = 0.30901699437494742410;   // cos(2 pi / 5)
        constexpr double c2 = -0.80901699437494742410;  // cos(4 pi / 5)
        constexpr double s1 = 0.95105651629515357212;   // sin(2 pi / 5)
        constexpr double s2 = 0.58778525229247312917;   // sin(4 pi / 5)
        const double t1r = xr[1] + xr[4], t1i = xi[1] + xi[4];
        const double t2r = xr[2] + xr[3], t2i = xi[2] + xi[3];
        const double t3r = xr[1] - xr[4], t3i = xi[1] - xi[4];
        const double t4r = xr[2] - xr[3], t4i = xi[2] - xi[3];
        yr[0] = xr[0] + (t1r + t2r);
        yi[0] = xi[0] + (t1i + t2i);
        const double a1r = xr[0] + (c1 * t1r + c2 * t2r), a1i = xi[0] + (c1 * t1i + c2 * t2i);
        const double a2r = xr[0] + (c2 * t1r + c1 * t2r), a2i = xi[0] + (c2 * t1i + c1 * t2i);
        // b1 = -i (s1 t3 + s2 t4), b2 = -i (s2 t3 - s1 t4)
        const double u1r = s1 * t3r + s2 * t4r, u1i = s1 * t3i + s2 * t4i;
        const double u2r = s2 * t3r - s1 * t4r, u2i = s2 * t3i - s1 * t4i;
        yr[1] = a1r + u1i;
        yi[1] = a1i - u1r;
        yr[4] = a1r - u1i;
        yi[4] = a1i + u1r;
        yr[2] = a2r + u2i;
        yi[2] = a2i - u2r;
        yr[3] = a2r - u2i;
        yi[3] = a2i + u2r;
    }
};

// ---- fixed-radix pass --------------------------------------------------------------------

template <class B>
void pass_fixed(const PassArgs& a) {
    constexpr size_t P = B::P;
    const size_t s = a.s, m = a.m;
    const double* __restrict ar = a.ar;
    const double* __restrict ai = a.ai;
    double* __restrict br = a.br;
    double* __restrict bi = a.bi;
    if (s == 1) {
        // One sequence: vectorise over j1 (contiguous inputs, outputs P apart).
        for (size_t j1 = 0; j1 < m; ++j1) {
            double xr[P], xi[P], yr[P], yi[P];
            for (size_t j = 0; j < P; ++j) {
                xr[j] = ar[j1 + m * j];
                xi[j] = ai[j1 + m * j];
            }
            B::run(xr, xi, yr, yi);
            br[P * j1] = yr[0];
            bi[P * j1] = yi[0];
            for (size_t k = 1; k < P; ++k) {
                const double wr = a.twr[(k - 1) * m + j1], wi = a.twi[(k - 1) * m + j1];
                br[k + P * j1] = yr[k] * wr - yi[k] * wi;
                bi[k + P * j1] = yr[k] * wi + yi[k] * wr;
            }
        }
        return;
    }
    for (size_t j1 = 0; j1 < m; ++j1) {
        const double* __restrict inr = ar + s * j1;
        const double* __restrict ini = ai + s * j1;
        double* __restrict outr = br + s * P * j1;
        double* __restrict outi = bi + s * P * j1;
        const size_t is = s * m;
        if (j1 == 0) {
            for (size_t q = 0; q < s; ++q) {
                double xr[P], xi[P], yr[P], yi[P];
                for (size_t j = 0; j < P; ++j) {
                    xr[j] = inr[q + is * j];
                    xi[j] = ini[q + is * j];
                }
                B::run(xr, xi, yr, yi);
                for (size_t k = 0; k < P; ++k) {
                    outr[q + s * k] = yr[k];
                    outi[q + s * k] = yi[k];
                }
            }
            continue;
        }
        double wr[P], wi[P];
        for (size_t k = 1; k < P; ++k) {
            wr[k] = a.twr[(k - 1) * m + j1];
            wi[k] = a.twi[(k - 1) * m + j1];
        }
        for (size_t q = 0; q < s; ++q) {
            double xr[P], xi[P], yr[P], yi[P];
            for (size_t j = 0; j < P; ++j) {
                xr[j] = inr[q + is * j];
                xi[j] = ini[q + is * j];
            }
            B::run(xr, xi, yr, yi);
            outr[q] = yr[0];
            outi[q] = yi[0];
            for (size_t k = 1; k < P; ++k) {
                outr[q + s * k] = yr[k] * wr[k] - yi[k] * wi[k];
                outi[q + s * k] = yr[k] * wi[k] + yi[k] * wr[k];
            }
        }
    }
}

void pass2(const PassArgs& a) { pass_fixed<Bf2>(a); }
void pass3(const PassArgs& a) { pass_fixed<Bf3>(a); }
void pass4(const PassArgs& a) { pass_fixed<Bf4>(a); }
void pass5(const PassArgs& a) { pass_fixed<Bf5>(a); }

// ---- any odd radix: y_k = x_0 + sum_{j=1}^{h} [c_{jk} (x_j + x_{p-j}) - i s_{jk} (x_j - x_{p-j})],
// y_{p-k} the same with +i, h = (p - 1) / 2; accumulated row by row so that q stays innermost.
void pass_odd(const PassArgs& a) {
    const size_t p = a.p, s = a.s, m = a.m, h = (p - 1) / 2, is = s * m;
    const double* cs = a.trig;      // cos(2 pi r / p)
    const double* sn = a.trig + p;  // sin(2 pi r / p)
    for (size_t j1 = 0; j1 < m; ++j1) {
        const double* __restrict inr = a.ar + s * j1;
        const double* __restrict ini = a.ai + s * j1;
        double* __restrict outr = a.br + s * p * j1;
        double* __restrict outi = a.bi + s * p * j1;
        // y_0
        for (size_t q = 0; q < s; ++q) {
            outr[q] = inr[q];
            outi[q] = ini[q];
        }
        for (size_t j = 1; j < p; ++j)
            for (size_t q = 0; q < s; ++q) {
                outr[q] += inr[q + is * j];
                outi[q] += ini[q + is * j];
            }
        for (size_t k = 1; k <= h; ++k) {
            double* __restrict ur = outr + s * k;  // a_k accumulates here
            double* __restrict ui = outi + s * k;
            double* __restrict vr = outr + s * (p - k);  // b_k = sum s_{jk} (x_j - x_{p-j})
            double* __restrict vi = outi + s * (p - k);
            for (size_t q = 0; q < s; ++q) {
                ur[q] = inr[q];
                ui[q] = ini[q];
                vr[q] = 0.0;
                vi[q] = 0.0;
            }
            for (size_t j = 1; j <= h; ++j) {
                const size_t r = (j * k) % p;
                const double c = cs[r], sv = sn[r];
                const double* __restrict x1r = inr + is * j;
                const double* __restrict x1i = ini + is * j;
                const double* __restrict x2r = inr + is * (p - j);
                const double* __restrict x2i = ini + is * (p - j);
                for (size_t q = 0; q < s; ++q) {
                    ur[q] += c * (x1r[q] + x2r[q]);
                    ui[q] += c * (x1i[q] + x2i[q]);
                    vr[q] += sv * (x1r[q] - x2r[q]);
                    vi[q] += sv * (x1i[q] - x2i[q]);
                }
            }
            // y_k = u - i v, y_{p-k} = u + i v
            for (size_t q = 0; q < s; ++q) {
                const double u_r = ur[q], u_i = ui[q], v_r = vr[q], v_i = vi[q];
                ur[q] = u_r + v_i;
                ui[q] = u_i - v_r;
                vr[q] = u_r - v_i;
                vi[q] = u_i + v_r;
            }
        }
        if (j1 == 0) continue;
        for (size_t k = 1; k < p; ++k) {
            const double wr = a.twr[(k - 1) * m + j1], wi = a.twi[(k - 1) * m + j1];
            double* __restrict yr = outr + s * k;
            double* __restrict yi = outi + s * k;
            for (size_t q = 0; q < s; ++q) {
                const double r = yr[q], i = yi[q];
                yr[q] = r * wr - i * wi;
                yi[q] = r * wi + i * wr;
            }
        }
    }
}

// ---- O(n) steps ----------------------------------------------------------------------------

void deinterleave(const double* __restrict x, size_t h, double* __restrict re, double* __restrict im) {
    for (size_t j = 0; j < h; ++j) {
        re[j] = x[2 * j];
        im[j] = x[2 * j + 1];
    }
}

void interleave(const double* __restrict re, const double* __restrict im, size_t h, double scale,
                double* __restrict x) {
    for (size_t j = 0; j < h; ++j) {
        x[2 * j] = re[j] * scale;
        x[2 * j + 1] = im[j] * scale;
    }
}

// Split output (separate real and imaginary arrays, h + 1 each): stored interleaved, gcc 12's
// SLP vectoriser turns this loop into fmsubadd instructions despite -ffp-contract=off, and
// the SIMD levels would no longer agree with the scalar twin to the bit.
void real_split(const double* __restrict zr, const double* __restrict zi, size_t h, const double* __restrict wr,
                const double* __restrict wi, double* __restrict outr, double* __restrict outi) {
    const double z0r = zr[0], z0i = zi[0];
    for (size_t k = 1; k < h; ++k) {
        const double ar = zr[k], ai = zi[k], cr = zr[h - k], ci = -zi[h - k];  // z_k, conj(z_{h-k})
        const double er = (ar + cr) * 0.5, ei = (ai + ci) * 0.5;
        const double orr = (ar - cr) * 0.5, oi = (ai - ci) * 0.5;
        outr[k] = er + (wr[k] * oi + wi[k] * orr);
        outi[k] = ei + (wi[k] * oi - wr[k] * orr);
    }
    outr[0] = z0r + z0i;
    outi[0] = 0.0;
    outr[h] = z0r - z0i;
    outi[h] = 0.0;
}

void real_merge(const double* __restrict in, size_t h, const double* __restrict wr, const double* __restrict wi,
                double* __restrict zr, double* __restrict zi) {
    {
        // k = 0: x_0 = Re in[0], conj x_h = Re in[h]; w_0 = 1
        const double a = in[0], c = in[2 * h];
        const double er = (a + c) * 0.5, orr = (a - c) * 0.5;
        zr[0] = er;
        zi[0] = orr;
    }
    for (size_t k = 1; k < h; ++k) {
        const double ar = in[2 * k], ai = in[2 * k + 1], cr = in[2 * (h - k)], ci = -in[2 * (h - k) + 1];
        const double er = (ar + cr) * 0.5, ei = (ai + ci) * 0.5;
        const double dr = (ar - cr) * 0.5, di = (ai - ci) * 0.5;
        // o = d conj(w); z = e + i o
        const double orr = dr * wr[k] + di * wi[k], oi = di * wr[k] - dr * wi[k];
        zr[k] = er - oi;
        zi[k] = ei + orr;
    }
}

void cmul(double* __restrict xr, double* __restrict xi, const double* __restrict wr, const double* __restrict wi,
          size_t n) {
    for (size_t k = 0; k < n; ++k) {
        const double r = xr[k], i = xi[k];
        xr[k] = r * wr[k] - i * wi[k];
        xi[k] = r * wi[k] + i * wr[k];
    }
}

void cmul_to(const double* __restrict xr, const double* __restrict xi, const double* __restrict wr,
             const double* __restrict wi, size_t n, double* __restrict outr, double* __restrict outi) {
    for (size_t k = 0; k < n; ++k) {
        outr[k] = xr[k] * wr[k] - xi[k] * wi[k];
        outi[k] = xr[k] * wi[k] + xi[k] * wr[k];
    }
}

constexpr FftKernels make_table() {
    return FftKernels{pass2,        pass3,      pass4,      pass5, pass_odd, deinterleave,
                      interleave,   real_split, real_merge, cmul,  cmul_to};
}

}  // namespace
}  // namespace generic
}  // namespace fft
}  // namespace gradsparse
