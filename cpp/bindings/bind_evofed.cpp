// gradsparse._core — EvoFed: the population's noise, fitness statistics and the update.
// Shapes and dtypes are checked with the GIL held; the compute runs with it released.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <string>

#include "gradsparse/common.hpp"
#include "gradsparse/evofed.hpp"
#include "gil.hpp"

namespace py = pybind11;
using namespace gradsparse;

namespace {

using f32array = py::array_t<float, py::array::c_style>;
using f64array = py::array_t<double, py::array::c_style>;

void need_writable_f32(const py::array& a, const char* name, int ndim) {
    if (!py::isinstance<f32array>(a) || !(a.flags() & py::array::c_style))
        throw py::type_error(std::string(name) + ": expected a C-contiguous float32 numpy array");
    if (a.ndim() != ndim)
        throw py::value_error(std::string(name) + ": expected a " + std::to_string(ndim) + "-D array, got " +
                              std::to_string(a.ndim()) + "-D");
}

NoiseSpec spec_of(uint64_t seed, uint64_t round, size_t half, size_t partitions, bool shared) {
    NoiseSpec s;
    s.seed = seed;
    s.round = round;
    s.half = half;
    s.partitions = partitions;
    s.shared = shared;
    return s;
}

void noise_py(uint64_t seed, uint64_t round, uint64_t member, uint64_t start, py::array out) {
    need_writable_f32(out, "out", 1);
    if (!out.writeable()) throw py::value_error("out: array is read-only");
    float* o = static_cast<float*>(out.mutable_data());
    const size_t n = static_cast<size_t>(out.size());
    GilRelease release;
    evofed_noise(seed, round, member, start, n, o);
}

py::tuple stats_py(py::array deltas, py::object theta, uint64_t seed, uint64_t round, size_t half, size_t partitions,
                   bool shared) {
    need_writable_f32(deltas, "deltas", 2);
    const size_t k = static_cast<size_t>(deltas.shape(0)), d = static_cast<size_t>(deltas.shape(1));
    const float* th = nullptr;
    py::array tha;
    if (!theta.is_none()) {
        tha = py::reinterpret_borrow<py::array>(theta);
        if (!py::isinstance<py::array>(theta)) throw py::type_error("theta: expected a float32 numpy array or None");
        need_writable_f32(tha, "theta", 1);
        if (static_cast<size_t>(tha.size()) != d)
            throw py::value_error("theta: has " + std::to_string(tha.size()) + " elements, deltas have " + std::to_string(d));
        th = static_cast<const float*>(tha.data());
    }
    if (partitions == 0 || partitions > d)
        throw ArgumentError("partitions: must be in [1, d = " + std::to_string(d) + "], got " + std::to_string(partitions));
    if (half == 0 || half > (size_t(1) << 31)) throw ArgumentError("half: must be in [1, 2^31]");
    const auto P = static_cast<py::ssize_t>(partitions), H = static_cast<py::ssize_t>(half), K = static_cast<py::ssize_t>(k);
    f64array zd({K, P, H}), zz({P, H}), dd({K, P});
    py::object zt = py::none(), tt = py::none();
    double* ztp = nullptr;
    double* ttp = nullptr;
    if (th) {
        f64array a({P, H}), b(std::vector<py::ssize_t>{P});
        ztp = a.mutable_data();
        ttp = b.mutable_data();
        zt = a;
        tt = b;
    }
    const float* dp = static_cast<const float*>(deltas.data());
    double *zdp = zd.mutable_data(), *zzp = zz.mutable_data(), *ddp = dd.mutable_data();
    {
        GilRelease release;
        evofed_stats(dp, k, th, d, spec_of(seed, round, half, partitions, shared), zdp, zzp, ztp, ddp, ttp);
    }
    return py::make_tuple(zd, zz, zt, dd, tt);
}

void update_py(py::array coef, size_t d, uint64_t seed, uint64_t round, size_t partitions, bool shared, py::array out) {
    if (!py::isinstance<f64array>(coef) || !(coef.flags() & py::array::c_style) || coef.ndim() != 2)
        throw py::type_error("coef: expected a C-contiguous 2-D float64 numpy array (partitions, half)");
    need_writable_f32(out, "out", 1);
    if (!out.writeable()) throw py::value_error("out: array is read-only");
    if (static_cast<size_t>(out.size()) != d)
        throw py::value_error("out: has " + std::to_string(out.size()) + " elements, d is " + std::to_string(d));
    if (static_cast<size_t>(coef.shape(0)) != partitions)
        throw py::value_error("coef: has " + std::to_string(coef.shape(0)) + " rows, partitions is " + std::to_string(partitions));
    const size_t half = static_cast<size_t>(coef.shape(1));
    const double* cp = static_cast<const double*>(coef.data());
    float* o = static_cast<float*>(out.mutable_data());
    GilRelease release;
    evofed_update(cp, d, spec_of(seed, round, half, partitions, shared), o);
}

}  // namespace

void register_evofed(py::module_& m) {
    m.def("evofed_noise", &noise_py, py::arg("seed"), py::arg("round"), py::arg("member"), py::arg("start"),
          py::arg("out"), "Fills out (float32) with z(seed, round, member, start + n).");
    m.def("evofed_stats", &stats_py, py::arg("deltas"), py::arg("theta"), py::arg("seed"), py::arg("round"),
          py::arg("half"), py::arg("partitions"), py::arg("shared_noise"),
          "Fitness statistics (zd, zz, zt, dd, tt) of (K, d) float32 updates against the population.");
    m.def("evofed_update", &update_py, py::arg("coef"), py::arg("d"), py::arg("seed"), py::arg("round"),
          py::arg("partitions"), py::arg("shared_noise"), py::arg("out"),
          "out[t] = sum_j float(coef[c(t), j]) * z_j(t), written into float32 out.");
}
