// gradsparse._core — ATOMO: probabilities, sampling, transforms, SVD, QSGD/TernGrad.
// Shapes and dtypes are checked with the GIL held; the compute runs with it released, and
// value errors found there (NaN, budget) come back as ArgumentError -> ValueError.
#include <pybind11/complex.h>
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cmath>
#include <cstring>

#include "gradsparse/atomo.hpp"
#include "gradsparse/common.hpp"
#include "gradsparse/decomp.hpp"
#include "gil.hpp"

namespace py = pybind11;
using namespace gradsparse;

namespace {

template <class T>
using carray = py::array_t<T, py::array::c_style | py::array::forcecast>;

template <class T>
py::array_t<T> to_array(const std::vector<T>& v) {
    py::array_t<T> out(static_cast<py::ssize_t>(v.size()));
    if (!v.empty()) std::memcpy(out.mutable_data(), v.data(), v.size() * sizeof(T));
    return out;
}

template <class T>
py::array_t<T> to_matrix(const std::vector<T>& v, size_t r, size_t c) {
    py::array_t<T> out({static_cast<py::ssize_t>(r), static_cast<py::ssize_t>(c)});
    if (!v.empty()) std::memcpy(out.mutable_data(), v.data(), v.size() * sizeof(T));
    return out;
}

void need_1d(const py::array& a, const char* name) {
    if (a.ndim() != 1) throw py::value_error(std::string(name) + ": expected a 1-D array, got " + std::to_string(a.ndim()) + "-D");
}

py::array_t<double> probabilities_py(const carray<double>& lam, double budget) {
    need_1d(lam, "lam");
    const size_t n = static_cast<size_t>(lam.size());
    py::array_t<double> p(static_cast<py::ssize_t>(n));
    const double* lp = lam.data();
    double* pp = p.mutable_data();
    GilRelease release;
    atomo_probabilities(lp, n, budget, pp);
    return p;
}

py::tuple sample_py(const carray<float>& lam, double budget, uint64_t seed, uint64_t stream) {
    need_1d(lam, "lam");
    const float* lp = lam.data();
    const size_t n = static_cast<size_t>(lam.size());
    SampledAtoms s;
    {
        GilRelease release;
        s = atomo_sample_f32(lp, n, budget, seed, stream);
    }
    return py::make_tuple(to_array(s.indices), to_array(s.values), to_array(s.p));
}

py::array_t<int64_t> bernoulli_py(const carray<double>& p, uint64_t seed, uint64_t stream) {
    need_1d(p, "p");
    const double* pp = p.data();
    const size_t n = static_cast<size_t>(p.size());
    std::vector<int64_t> idx;
    {
        GilRelease release;
        idx = bernoulli_sample(pp, n, seed, stream);
    }
    return to_array(idx);
}

py::array_t<std::complex<double>> rfft_py(const carray<double>& x) {
    need_1d(x, "x");
    const size_t n = static_cast<size_t>(x.size());
    if (n == 0) throw py::value_error("x: must be non-empty");
    py::array_t<std::complex<double>> out(static_cast<py::ssize_t>(n / 2 + 1));
    const double* xp = x.data();
    auto* op = out.mutable_data();
    GilRelease release;
    rfft(xp, n, op);
    return out;
}

py::array_t<double> irfft_py(const carray<std::complex<double>>& X, size_t n) {
    need_1d(X, "x");
    if (n == 0) throw py::value_error("n: must be >= 1");
    if (static_cast<size_t>(X.size()) != n / 2 + 1)
        throw py::value_error("x: expected n // 2 + 1 = " + std::to_string(n / 2 + 1) + " coefficients");
    py::array_t<double> out(static_cast<py::ssize_t>(n));
    const auto* xp = X.data();
    double* op = out.mutable_data();
    GilRelease release;
    irfft(xp, n, op);
    return out;
}

py::array_t<double> dct_py(const carray<double>& x, bool inverse) {
    need_1d(x, "x");
    const size_t n = static_cast<size_t>(x.size());
    if (n == 0) throw py::value_error("x: must be non-empty");
    py::array_t<double> out(static_cast<py::ssize_t>(n));
    const double* xp = x.data();
    double* op = out.mutable_data();
    GilRelease release;
    if (inverse)
        dct3_ortho(xp, n, op);
    else
        dct2_ortho(xp, n, op);
    return out;
}

py::tuple svd_result(const Svd& s) {
    return py::make_tuple(to_matrix(s.u, s.m, s.k), to_array(s.s), to_matrix(s.vt, s.k, s.n));
}

void need_2d(const py::array& a) {
    if (a.ndim() != 2) throw py::value_error("x: expected a 2-D matrix, got " + std::to_string(a.ndim()) + "-D");
}

py::tuple svd_py(const carray<float>& a) {
    need_2d(a);
    const float* ap = a.data();
    const size_t m = static_cast<size_t>(a.shape(0)), n = static_cast<size_t>(a.shape(1));
    Svd s;
    {
        GilRelease release;
        s = svd_thin(ap, m, n);
    }
    return svd_result(s);
}

py::tuple svd_randomized_py(const carray<float>& a, size_t rank, size_t oversample, int power_iters, uint64_t seed) {
    need_2d(a);
    const float* ap = a.data();
    const size_t m = static_cast<size_t>(a.shape(0)), n = static_cast<size_t>(a.shape(1));
    Svd s;
    {
        GilRelease release;
        s = svd_randomized(ap, m, n, rank, oversample, power_iters, seed);
    }
    return svd_result(s);
}

// Spectral ATOMO without the full SVD (svd_atoms): probabilities from all singular values
// (rounded to float32, as svd() returns them), Bernoulli sampling on `stream`, singular
// vectors of the kept atoms only. Returns (index, u[:, index], s'/p, vt[index], S, p) with
// s' = ||A^T u|| of each kept atom (E[estimate] = sum_i u_i u_i^T A = A).
py::tuple svd_atomo_py(const carray<float>& a, double budget, uint64_t seed, uint64_t stream) {
    need_2d(a);
    const float* ap = a.data();
    const size_t m = static_cast<size_t>(a.shape(0)), n = static_cast<size_t>(a.shape(1));
    SvdAtoms r;
    std::vector<double> p;
    std::vector<float> values, sigma;
    {
        GilRelease release;
        r = svd_atoms(ap, m, n, [&](const std::vector<double>& sig) {
            std::vector<double> s32(sig.size());
            for (size_t i = 0; i < sig.size(); ++i) {
                s32[i] = static_cast<double>(static_cast<float>(sig[i]));
                GS_CHECK(std::isfinite(s32[i]), "x: a singular value overflows float32 (scale x down)");
            }
            p.resize(sig.size());
            atomo_probabilities(s32.data(), s32.size(), budget, p.data());
            return bernoulli_sample(p.data(), p.size(), seed, stream);
        });
        values.resize(r.k);
        for (size_t o = 0; o < r.k; ++o) values[o] = static_cast<float>(r.s[o] / p[static_cast<size_t>(r.index[o])]);
        sigma.resize(r.sigma.size());
        for (size_t i = 0; i < sigma.size(); ++i) sigma[i] = static_cast<float>(r.sigma[i]);
    }
    return py::make_tuple(to_array(r.index), to_matrix(r.u, m, r.k), to_array(values), to_matrix(r.vt, r.k, n),
                          to_array(sigma), to_array(p));
}

py::array_t<float> svd_values_py(const carray<float>& a) {
    need_2d(a);
    const float* ap = a.data();
    const size_t m = static_cast<size_t>(a.shape(0)), n = static_cast<size_t>(a.shape(1));
    std::vector<float> sigma;
    {
        GilRelease release;
        SvdAtoms r = svd_atoms(ap, m, n, [](const std::vector<double>&) { return std::vector<int64_t>(); });
        sigma.resize(r.sigma.size());
        for (size_t i = 0; i < sigma.size(); ++i) sigma[i] = static_cast<float>(r.sigma[i]);
    }
    return to_array(sigma);
}

py::tuple qsgd_py(const carray<float>& x, int levels, uint64_t seed) {
    need_1d(x, "x");
    const size_t n = static_cast<size_t>(x.size());
    py::array_t<int32_t> out(static_cast<py::ssize_t>(n));
    const float* xp = x.data();
    int32_t* op = out.mutable_data();
    float norm;
    {
        GilRelease release;
        norm = qsgd_f32(xp, n, levels, seed, op);
    }
    return py::make_tuple(out, norm);
}

py::tuple terngrad_py(const carray<float>& x, uint64_t seed) {
    need_1d(x, "x");
    const size_t n = static_cast<size_t>(x.size());
    py::array_t<int8_t> out(static_cast<py::ssize_t>(n));
    const float* xp = x.data();
    int8_t* op = out.mutable_data();
    float scale;
    {
        GilRelease release;
        scale = terngrad_f32(xp, n, seed, op);
    }
    return py::make_tuple(out, scale);
}

}  // namespace

void register_atomo(py::module_& m) {
    m.def("atomo_probabilities", &probabilities_py, py::arg("lam"), py::arg("budget"),
          "ATOMO Algorithm 1 sampling probabilities (float64) for coefficients lam.");
    m.def("atomo_sample", &sample_py, py::arg("lam"), py::arg("budget"), py::arg("seed"), py::arg("stream"),
          "Element-wise ATOMO on float32 lam: (indices, lam/p at them, p at them).");
    m.def("bernoulli_sample", &bernoulli_py, py::arg("p"), py::arg("seed"), py::arg("stream"),
          "Ascending indices i with philox_uniform(seed, stream, i) < p[i].");
    m.def("philox4x32", &philox4x32, py::arg("counter"), py::arg("key"),
          "Philox-4x32-10 block: four 32-bit words for a 4-word counter and 64-bit key.");
    m.def("philox_uniform", &philox_uniform, py::arg("seed"), py::arg("stream"), py::arg("i"),
          "The uniform in [0, 1) the samplers use for item i.");
    m.def("rfft", &rfft_py, py::arg("x"), "numpy.fft.rfft of a 1-D float64 array (any length).");
    m.def("irfft", &irfft_py, py::arg("x"), py::arg("n"), "numpy.fft.irfft(x, n).");
    m.def("dct", [](const carray<double>& x) { return dct_py(x, false); }, py::arg("x"),
          "Orthonormal DCT-II (scipy.fft.dct(x, norm='ortho')).");
    m.def("idct", [](const carray<double>& x) { return dct_py(x, true); }, py::arg("x"),
          "Orthonormal DCT-III, the inverse of dct.");
    m.def("svd", &svd_py, py::arg("x"), "Thin SVD (U, S, Vt) of a float32 matrix, S descending.");
    m.def("svd_randomized", &svd_randomized_py, py::arg("x"), py::arg("rank"), py::arg("oversample"),
          py::arg("power_iters"), py::arg("seed"), "Randomized rank-r SVD (U, S, Vt).");
    m.def("svd_atomo", &svd_atomo_py, py::arg("x"), py::arg("budget"), py::arg("seed"), py::arg("stream"),
          "Spectral ATOMO without the full SVD: (index, U[:, index], s/p, Vt[index], S, p); only the kept "
          "atoms' singular vectors are computed.");
    m.def("svd_values", &svd_values_py, py::arg("x"),
          "All singular values of a float32 matrix, descending (no singular vectors).");
    m.def("qsgd", &qsgd_py, py::arg("x"), py::arg("levels"), py::arg("seed"),
          "QSGD: (signed levels int32, float32 norm).");
    m.def("terngrad", &terngrad_py, py::arg("x"), py::arg("seed"), "TernGrad: (int8 in {-1,0,1}, float32 scale).");
}
