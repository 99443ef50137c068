// gradsparse._cuda — the CUDA engine's bindings (built with GRADSPARSE_CUDA=ON only).
//
// Thin by design: device addresses, sizes and stream handles come in as integers from the
// tensor layer (python/gradsparse/cuda/_ops.py), which checks devices, dtypes and layouts
// and allocates every output and workspace. Nothing here includes torch or allocates device
// memory. Argument errors raise gradsparse.errors.ArgumentError (imported from _core).
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

#include "cuda/engine.hpp"

namespace py = pybind11;
namespace gc = gradsparse::cuda;
using gradsparse::Budget;
using gradsparse::CostKind;
using gradsparse::DType;
using gradsparse::KeyMode;

#ifndef GRADSPARSE_CUDA_ARCHS
#define GRADSPARSE_CUDA_ARCHS "unknown"
#endif

namespace {

/// What to select and how to rank: one object per call, built by the tensor layer.
struct Spec {
    gc::Scoring scoring;
    Budget budget;
};

void* ptr(uint64_t a) { return reinterpret_cast<void*>(static_cast<uintptr_t>(a)); }

std::vector<gc::DevSegment> segments(const std::vector<uint64_t>& data, const std::vector<int64_t>& sizes,
                                     const std::vector<uint64_t>& cost, const std::vector<double>& cost_scalar,
                                     const std::vector<double>& cost_pow) {
    GS_CHECK(data.size() == sizes.size() && cost.size() == sizes.size() && cost_scalar.size() == sizes.size() &&
                 cost_pow.size() == sizes.size(),
             "xs: one address, size and cost per tensor");
    std::vector<gc::DevSegment> out(sizes.size());
    for (size_t i = 0; i < sizes.size(); ++i) {
        out[i].data = ptr(data[i]);
        out[i].n = sizes[i];
        out[i].cost = ptr(cost[i]);
        out[i].cost_scalar = cost_scalar[i];
        out[i].cost_pow = cost_pow[i];
    }
    return out;
}

/// The cost fields of a feedback call (its data and size are the residual's).
gc::DevSegment cost_of(uint64_t cost, double cost_scalar, double cost_pow) {
    gc::DevSegment c;
    c.cost = ptr(cost);
    c.cost_scalar = cost_scalar;
    c.cost_pow = cost_pow;
    return c;
}

DType dtype_of(int code) {
    GS_CHECK(code >= 0 && code <= 3, "dtype: the CUDA engine takes float32, float64, float16 or bfloat16");
    return static_cast<DType>(code);
}

}  // namespace

PYBIND11_MODULE(_cuda, m) {
    m.doc() = "gradsparse CUDA engine (exact selection on device memory; see docs/cuda.md)";
    // Argument errors: the classes of gradsparse._core, so callers catch one ArgumentError.
    py::object core = py::module_::import("gradsparse._core");
    static PyObject* argument_error = py::object(core.attr("ArgumentError")).release().ptr();
    py::register_exception_translator([](std::exception_ptr p) {
        try {
            if (p) std::rethrow_exception(p);
        } catch (const std::invalid_argument& e) {
            PyErr_SetString(argument_error, e.what());
        }
    });

    m.def("device_count", &gc::device_count, "CUDA devices usable (0 without a driver or a device).");
    m.def("device_error", &gc::device_error, "Why device_count() is 0 ('' otherwise).");
    m.def("runtime_version", &gc::runtime_version);
    m.def("driver_version", &gc::driver_version);
    m.def("archs", [] { return std::string(GRADSPARSE_CUDA_ARCHS); }, "The GPU architectures compiled in.");

    py::class_<Spec>(m, "Spec")
        .def(py::init([](int dtype, int mode, bool native, int q, int alpha, int cost_kind, int cost_dtype, int kind,
                         int64_t k, double energy, double tau) {
                 GS_CHECK(mode >= 0 && mode <= 3, "mode: unknown ranking mode");
                 GS_CHECK(cost_kind >= 0 && cost_kind <= 2, "cost: unknown cost kind");
                 GS_CHECK(kind >= 0 && kind <= 2, "budget: unknown budget kind");
                 GS_CHECK(k >= 0, "k: must be >= 0");
                 Spec s;
                 s.scoring.dtype = dtype_of(dtype);
                 s.scoring.mode = static_cast<KeyMode>(mode);
                 s.scoring.native = native;
                 s.scoring.q = q;
                 s.scoring.alpha = alpha;
                 s.scoring.cost_kind = static_cast<CostKind>(cost_kind);
                 s.scoring.cost_dtype = dtype_of(cost_dtype);
                 s.budget.kind = static_cast<Budget::Kind>(kind);
                 s.budget.k = static_cast<size_t>(k);
                 s.budget.energy = energy;
                 s.budget.tau = tau;
                 return s;
             }),
             py::arg("dtype"), py::arg("mode"), py::arg("native"), py::arg("q"), py::arg("alpha"), py::arg("cost_kind"),
             py::arg("cost_dtype"), py::arg("kind"), py::arg("k"), py::arg("energy"), py::arg("tau"));

    m.def("select_workspace", [](const std::vector<int64_t>& sizes, const Spec& s) {
        return gc::select_workspace(sizes, s.scoring, s.budget);
    });
    m.def("select", [](const Spec& s, const std::vector<uint64_t>& data, const std::vector<int64_t>& sizes,
                       const std::vector<uint64_t>& cost, const std::vector<double>& cost_scalar,
                       const std::vector<double>& cost_pow, uint64_t ws, size_t ws_bytes, uint64_t out_idx,
                       uint64_t out_val, uint64_t stream) {
        auto segs = segments(data, sizes, cost, cost_scalar, cost_pow);
        py::gil_scoped_release release;
        return gc::select(segs, s.scoring, s.budget, ptr(ws), ws_bytes, static_cast<int64_t*>(ptr(out_idx)),
                          ptr(out_val), ptr(stream));
    });
    m.def("emit", [](const Spec& s, const std::vector<uint64_t>& data, const std::vector<int64_t>& sizes,
                     const std::vector<uint64_t>& cost, const std::vector<double>& cost_scalar,
                     const std::vector<double>& cost_pow, uint64_t ws, size_t ws_bytes, int64_t count, uint64_t out_idx,
                     uint64_t out_val, uint64_t stream) {
        auto segs = segments(data, sizes, cost, cost_scalar, cost_pow);
        py::gil_scoped_release release;
        gc::emit(segs, s.scoring, s.budget, ptr(ws), ws_bytes, count, static_cast<int64_t*>(ptr(out_idx)),
                 ptr(out_val), ptr(stream));
    });
    m.def("feedback_workspace", [](int64_t n, const Spec& s) {
        return gc::feedback_workspace(n, s.scoring, s.budget);
    });
    m.def("feedback_select", [](const Spec& s, uint64_t g, uint64_t e, int64_t n, uint64_t cost, double cost_scalar,
                                double cost_pow, bool bf16_values, uint64_t ws, size_t ws_bytes, uint64_t out_idx,
                                uint64_t out_val, uint64_t stream) {
        const gc::DevSegment c = cost_of(cost, cost_scalar, cost_pow);
        py::gil_scoped_release release;
        return gc::feedback_select(static_cast<const float*>(ptr(g)), static_cast<float*>(ptr(e)), n, c, s.scoring,
                                   s.budget, bf16_values, ptr(ws), ws_bytes, static_cast<int32_t*>(ptr(out_idx)),
                                   ptr(out_val), ptr(stream));
    });
    m.def("feedback_emit", [](const Spec& s, uint64_t e, int64_t n, uint64_t cost, double cost_scalar, double cost_pow,
                              bool bf16_values, uint64_t ws, size_t ws_bytes, int64_t count, uint64_t out_idx,
                              uint64_t out_val, uint64_t stream) {
        const gc::DevSegment c = cost_of(cost, cost_scalar, cost_pow);
        py::gil_scoped_release release;
        gc::feedback_emit(static_cast<float*>(ptr(e)), n, c, s.scoring, s.budget, bf16_values, ptr(ws), ws_bytes,
                          count, static_cast<int32_t*>(ptr(out_idx)), ptr(out_val), ptr(stream));
    });
    m.def("rows_workspace", [](int64_t rows, int64_t n, int64_t k, int dtype, bool sorted) {
        return gc::rows_workspace(rows, n, k, dtype_of(dtype), sorted);
    });
    m.def("topk_rows", [](uint64_t x, int64_t rows, int64_t n, int64_t k, int dtype, int mode, bool sorted,
                          uint64_t out_val, uint64_t out_idx, uint64_t ws, size_t ws_bytes, uint64_t stream) {
        GS_CHECK(mode >= 0 && mode <= 3, "mode: unknown ranking mode");
        py::gil_scoped_release release;
        gc::topk_rows(ptr(x), rows, n, k, dtype_of(dtype), static_cast<KeyMode>(mode), sorted, ptr(out_val),
                      static_cast<int64_t*>(ptr(out_idx)), ptr(ws), ws_bytes, ptr(stream));
    });
    m.def("rank_workspace", [](int64_t k, int dtype) { return gc::rank_workspace(k, dtype_of(dtype)); });
    m.def("rank_order", [](uint64_t val, uint64_t idx, int64_t k, int dtype, int mode, uint64_t out_val,
                           uint64_t out_idx, uint64_t ws, size_t ws_bytes, uint64_t stream) {
        GS_CHECK(mode >= 0 && mode <= 3, "mode: unknown ranking mode");
        py::gil_scoped_release release;
        gc::rank_order(ptr(val), static_cast<const int64_t*>(ptr(idx)), k, dtype_of(dtype), static_cast<KeyMode>(mode),
                       ptr(out_val), static_cast<int64_t*>(ptr(out_idx)), ptr(ws), ws_bytes, ptr(stream));
    });
    m.def("scatter_workspace", &gc::scatter_workspace);
    m.def("scatter_mean", [](uint64_t out, int64_t n, uint64_t clear, int64_t nclear, const std::vector<uint64_t>& vals,
                             const std::vector<uint64_t>& idx, int64_t len, bool bf16_values, float world, uint64_t ws,
                             size_t ws_bytes, uint64_t stream) {
        std::vector<const void*> v;
        std::vector<const int32_t*> ix;
        for (uint64_t a : vals) v.push_back(ptr(a));
        for (uint64_t a : idx) ix.push_back(static_cast<const int32_t*>(ptr(a)));
        py::gil_scoped_release release;
        gc::scatter_mean(static_cast<float*>(ptr(out)), n, static_cast<const int32_t*>(ptr(clear)), nclear, v, ix, len,
                         bf16_values, world, ptr(ws), ws_bytes, ptr(stream));
    });
}
