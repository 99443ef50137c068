// gradsparse._core — selection entry points. Arguments are checked with the GIL held;
// planning and writing the output run with it released.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cstring>
#include <memory>
#include <vector>

#include "gradsparse/parallel.hpp"
#include "gradsparse/select.hpp"
#include "core/scratch.hpp"
#include "select/kernels.hpp"
#include "gil.hpp"
#include "pooled.hpp"

namespace py = pybind11;
using namespace gradsparse;

namespace {

// Whether a cost array's dtype is T's (native byte order). Not identity alone: numpy 1.x
// makes a new dtype object for every unpickled array, numpy 2 returns the canonical one.
template <typename T>
bool dtype_is(const py::dtype& d) {
    const py::dtype want = py::dtype::of<T>();
    return d.is(want) || d.equal(want);
}

DType to_dtype(int code) {
    if (code < 0 || code > 3) throw py::type_error("dtype: unsupported dtype code " + std::to_string(code));
    return static_cast<DType>(code);
}

// A C-contiguous array whose item size matches `dtype`.
const void* data_of(const py::array& a, DType dtype, const char* name) {
    if (!(a.flags() & py::array::c_style))
        throw py::value_error(std::string(name) + ": array must be C-contiguous");
    if (static_cast<size_t>(a.itemsize()) != dtype_size(dtype))
        throw py::type_error(std::string(name) + ": item size does not match dtype " + dtype_name(dtype));
    return a.data();
}

// Costs checked once and kept, immutable, for repeated selections (gradsparse.PreparedCost):
// a private copy (so later writes to the caller's array cannot invalidate the check) and,
// for float32 costs, the one-byte lower bounds of the cost filter's pre-test.
struct PreparedCost {
    DType dtype = DType::F32;
    std::vector<float> f32;
    std::vector<double> f64;
    std::unique_ptr<uint8_t[]> code;  // one per float32 cost (not zero-filled first)
    uint32_t base = 0, shift = 0;

    size_t size() const { return dtype == DType::F32 ? f32.size() : f64.size(); }
    const void* data() const {
        return dtype == DType::F32 ? static_cast<const void*>(f32.data()) : static_cast<const void*>(f64.data());
    }
};

PreparedCost* prepare_cost(const py::array& c) {
    if (!(c.flags() & py::array::c_style)) throw py::value_error("cost: array must be C-contiguous");
    auto* p = new PreparedCost;
    std::unique_ptr<PreparedCost> owner(p);
    const size_t n = static_cast<size_t>(c.size());
    if (dtype_is<float>(c.dtype())) {
        const float* src = static_cast<const float*>(c.data());
        GilRelease release;
        p->f32.assign(src, src + n);
        p->code.reset(new uint8_t[n > 0 ? n : 1]);
        encode_cost_bounds(p->f32.data(), n, p->code.get(), &p->base, &p->shift);
    } else if (dtype_is<double>(c.dtype())) {
        p->dtype = DType::F64;
        const double* src = static_cast<const double*>(c.data());
        GilRelease release;
        p->f64.assign(src, src + n);
        check_costs_f64(p->f64.data(), n);
    } else {
        throw py::type_error("cost: cost arrays must be float32 or float64");
    }
    return owner.release();
}

Segment make_segment(const py::array& x, int code, const py::object& cost) {
    Segment s;
    s.dtype = to_dtype(code);
    s.data = data_of(x, s.dtype, "x");
    s.n = static_cast<size_t>(x.size());
    if (cost.is_none()) {
        s.cost_kind = CostKind::None;
    } else if (py::isinstance<py::float_>(cost) || py::isinstance<py::int_>(cost)) {
        s.cost_kind = CostKind::Scalar;
        s.cost = cost.cast<double>();
    } else if (py::isinstance<PreparedCost>(cost)) {
        const PreparedCost& p = cost.cast<const PreparedCost&>();
        if (p.size() != s.n)
            throw py::value_error("cost: has " + std::to_string(p.size()) + " elements, x has " + std::to_string(s.n));
        s.cost_kind = CostKind::Array;
        s.cost_dtype = p.dtype;
        s.cost_data = p.data();
        s.cost_checked = true;
        if (p.code) {
            s.cost_code = p.code.get();
            s.code_base = p.base;
            s.code_shift = p.shift;
        }
    } else {
        py::array c = cost.cast<py::array>();
        if (dtype_is<float>(c.dtype()))
            s.cost_dtype = DType::F32;
        else if (dtype_is<double>(c.dtype()))
            s.cost_dtype = DType::F64;
        else
            throw py::type_error("cost: cost arrays must be float32 or float64");
        if (static_cast<size_t>(c.size()) != s.n)
            throw py::value_error("cost: has " + std::to_string(c.size()) + " elements, x has " + std::to_string(s.n));
        s.cost_data = data_of(c, s.cost_dtype, "cost");
        s.cost_kind = CostKind::Array;
    }
    return s;
}

Budget make_budget(int kind, size_t k, double energy, double tau) {
    Budget b;
    if (kind < 0 || kind > 2) throw py::value_error("budget: unknown budget kind");
    b.kind = static_cast<Budget::Kind>(kind);
    b.k = k;
    b.energy = energy;
    b.tau = tau;
    return b;
}

// One (indices, values) pair per input array.
py::list select_py(const py::list& xs, const std::vector<int>& codes, const py::list& costs, int mode,
                   double q, double alpha, int kind, size_t k, double energy, double tau) {
    const size_t n = xs.size();
    if (codes.size() != n || costs.size() != n) throw py::value_error("xs: lengths of xs, dtypes and costs differ");
    std::vector<py::array> arrays;
    std::vector<Segment> segs;
    for (size_t j = 0; j < n; ++j) {
        arrays.push_back(xs[j].cast<py::array>());
        segs.push_back(make_segment(arrays.back(), codes[j], costs[j]));
    }
    if (mode < 0 || mode > 2) throw py::value_error("mode: unknown ranking mode");
    ScoreSpec spec{static_cast<KeyMode>(mode), q, alpha};
    Budget budget = make_budget(kind, k, energy, tau);
    Selection sel;
    {
        GilRelease release;
        sel = select(segs, spec, budget);
    }
    std::vector<py::array> idx, vals;
    std::vector<int64_t*> ip(n);
    std::vector<void*> vp(n);
    for (size_t j = 0; j < n; ++j) {
        idx.push_back(output_array(py::dtype::of<int64_t>(), sel.counts()[j]));
        vals.push_back(output_array(arrays[j].dtype(), sel.counts()[j]));
        ip[j] = static_cast<int64_t*>(idx.back().mutable_data());
        vp[j] = vals.back().mutable_data();
    }
    {
        GilRelease release;
        sel.emit(ip.data(), vp.data());
    }
    py::list out;
    for (size_t j = 0; j < n; ++j) out.append(py::make_tuple(idx[j], vals[j]));
    return out;
}

// Checks one output of topk_axis: a writable C-contiguous (outer, k, inner) array.
void check_axis_out(const py::array& a, const char* name, size_t outer, size_t k, size_t inner) {
    if (a.ndim() != 3 || static_cast<size_t>(a.shape(0)) != outer || static_cast<size_t>(a.shape(1)) != k ||
        static_cast<size_t>(a.shape(2)) != inner)
        throw py::value_error(std::string(name) + ": must have shape (" + std::to_string(outer) + ", " +
                              std::to_string(k) + ", " + std::to_string(inner) + ")");
    if (!(a.flags() & py::array::c_style)) throw py::value_error(std::string(name) + ": array must be C-contiguous");
    if (!a.writeable()) throw py::value_error(std::string(name) + ": array must be writable");
}

// Top-k along axis 1 of a C-contiguous (outer, n, inner) array into preallocated
// (outer, k, inner) outputs.
void topk_axis_py(const py::array& x, int code, int64_t k, int mode, bool sorted, py::array& values,
                  py::array& indices) {
    if (!dtype_code_valid(code)) throw py::type_error("code: unsupported dtype code " + std::to_string(code));
    const DType dtype = static_cast<DType>(code);
    if (x.ndim() != 3) throw py::value_error("x: expected a 3-D (outer, n, inner) array, got " + std::to_string(x.ndim()) + "-D");
    const void* xp = data_of(x, dtype, "x");
    const size_t outer = static_cast<size_t>(x.shape(0)), n = static_cast<size_t>(x.shape(1)),
                 inner = static_cast<size_t>(x.shape(2));
    if (mode < 0 || mode > 3) throw py::value_error("mode: unknown ranking mode " + std::to_string(mode));
    if (k < 0 || static_cast<uint64_t>(k) > n)
        throw py::value_error("k: must be in [0, " + std::to_string(n) + "], got " + std::to_string(k));
    const size_t kk = static_cast<size_t>(k);
    check_axis_out(values, "values", outer, kk, inner);
    if (values.itemsize() != x.itemsize())
        throw py::type_error(std::string("values: item size does not match dtype ") + dtype_name(dtype));
    check_axis_out(indices, "indices", outer, kk, inner);
    if (!dtype_is<int64_t>(indices.dtype())) throw py::type_error("indices: must be an int64 array");
    void* vp = values.mutable_data();
    int64_t* ip = static_cast<int64_t*>(indices.mutable_data());
    GilRelease release;
    topk_axis(dtype, static_cast<KeyMode>(mode), xp, outer, n, inner, kk, sorted, vp, ip);
}

py::array_t<int64_t> random_k_py(size_t n, size_t k, uint64_t seed) {
    std::vector<int64_t> v;
    {
        GilRelease release;
        v = random_k(n, k, seed);
    }
    py::array_t<int64_t> out(static_cast<py::ssize_t>(v.size()));
    std::memcpy(out.mutable_data(), v.data(), v.size() * sizeof(int64_t));
    return out;
}

// A writable C-contiguous 1-D output buffer of at least `need` items; returns its data.
void* output_buffer(py::array& a, const char* name, size_t need) {
    if (!(a.flags() & py::array::c_style)) throw py::value_error(std::string(name) + ": array must be C-contiguous");
    if (!a.writeable()) throw py::value_error(std::string(name) + ": array must be writable");
    if (static_cast<size_t>(a.size()) < need)
        throw py::value_error(std::string(name) + ": has " + std::to_string(a.size()) + " elements, needs " +
                              std::to_string(need));
    return a.mutable_data();
}

// The value dtype of a payload buffer: float32, or bfloat16 bits held as (u)int16.
DType value_dtype_of(const py::array& a, const char* name) {
    if (dtype_is<float>(a.dtype())) return DType::F32;
    if (dtype_is<uint16_t>(a.dtype()) || dtype_is<int16_t>(a.dtype())) return DType::BF16;
    throw py::type_error(std::string(name) + ": values must be float32 or bfloat16 bits (uint16/int16), got " +
                         std::string(py::str(a.dtype())));
}

// Error feedback fused with selection into caller-owned buffers (feedback_select).
std::vector<size_t> feedback_select_py(const py::array& g, py::array& e, const py::object& cost, double q,
                                       double alpha, int kind, size_t k, double energy, double tau, size_t regions,
                                       size_t cap, py::array& values, size_t vstride, py::array& indices,
                                       size_t istride, int threads) {
    if (!dtype_is<float>(g.dtype()) || !dtype_is<float>(e.dtype()))
        throw py::type_error("x: feedback_select takes float32 x and residual");
    if (g.size() != e.size())
        throw py::value_error("residual: has " + std::to_string(e.size()) + " elements, x has " +
                              std::to_string(g.size()));
    if (!e.writeable()) throw py::value_error("residual: array must be writable");
    if (threads < 0) throw py::value_error("threads: must be >= 0");
    if (regions < 1) throw py::value_error("regions: must be >= 1");
    const float* gp = static_cast<const float*>(data_of(g, DType::F32, "x"));
    Segment seg = make_segment(e, static_cast<int>(DType::F32), cost);
    FeedbackOut out;
    out.regions = regions;
    out.cap = cap;
    out.value_dtype = value_dtype_of(values, "values");
    if (!dtype_is<int32_t>(indices.dtype())) throw py::type_error("indices: must be an int32 array");
    if (vstride < cap || istride < cap) throw py::value_error("cap: region strides must be >= cap");
    out.vstride = vstride;
    out.istride = istride;
    out.values = output_buffer(values, "values", cap ? (regions - 1) * vstride + cap : 0);
    out.indices = static_cast<int32_t*>(output_buffer(indices, "indices", cap ? (regions - 1) * istride + cap : 0));
    ScoreSpec spec{KeyMode::Magnitude, q, alpha};
    Budget budget = make_budget(kind, k, energy, tau);
    float* ep = static_cast<float*>(e.mutable_data());
    GilRelease release;
    return feedback_select(gp, ep, static_cast<size_t>(g.size()), seg, spec, budget, out, threads);
}

// The combine (scatter_mean): out is zeroed at `clear`, then every part is added / world.
void scatter_mean_py(py::array& out, const py::object& clear, const py::list& values, const py::list& indices,
                     double world) {
    if (!dtype_is<float>(out.dtype())) throw py::type_error("out: must be a float32 array");
    float* op = static_cast<float*>(output_buffer(out, "out", 0));
    const int32_t* cp = nullptr;
    size_t nclear = 0;
    py::array clear_arr;
    if (!clear.is_none()) {
        clear_arr = clear.cast<py::array>();
        if (!dtype_is<int32_t>(clear_arr.dtype())) throw py::type_error("clear: must be an int32 array");
        cp = static_cast<const int32_t*>(data_of(clear_arr, DType::F32, "clear"));  // 4-byte items
        nclear = static_cast<size_t>(clear_arr.size());
    }
    if (values.size() != indices.size()) throw py::value_error("parts: as many value arrays as index arrays");
    std::vector<py::array> keep;
    std::vector<const void*> vp;
    std::vector<const int32_t*> ip;
    DType vd = DType::F32;
    size_t len = 0;
    for (size_t p = 0; p < values.size(); ++p) {
        py::array v = values[p].cast<py::array>(), i = indices[p].cast<py::array>();
        const std::string vn = "parts[" + std::to_string(p) + "] values", in = "parts[" + std::to_string(p) + "] indices";
        const DType d = value_dtype_of(v, vn.c_str());
        if (!dtype_is<int32_t>(i.dtype())) throw py::type_error(in + ": must be an int32 array");
        if (p == 0) {
            vd = d;
            len = static_cast<size_t>(i.size());
        }
        if (d != vd) throw py::type_error(vn + ": every part must have the same value dtype");
        if (static_cast<size_t>(v.size()) != len || static_cast<size_t>(i.size()) != len)
            throw py::value_error("parts: every part must have " + std::to_string(len) + " values and indices");
        vp.push_back(data_of(v, d, vn.c_str()));
        ip.push_back(static_cast<const int32_t*>(data_of(i, DType::F32, in.c_str())));
        keep.push_back(v);
        keep.push_back(i);
    }
    const size_t n = static_cast<size_t>(out.size());
    const float w = static_cast<float>(world);
    GilRelease release;
    scatter_mean(op, n, cp, nclear, vp, ip, len, vd, w);
}

}  // namespace

void register_select(py::module_& m) {
    m.def("select", &select_py, py::arg("xs"), py::arg("dtypes"), py::arg("costs"), py::arg("mode"),
          py::arg("q"), py::arg("alpha"), py::arg("kind"), py::arg("k"), py::arg("energy"), py::arg("tau"),
          "Exact selection over 1-D contiguous arrays; returns [(indices, values)] per array.");
    m.def("topk_axis", &topk_axis_py, py::arg("x"), py::arg("code"), py::arg("k"), py::arg("mode"),
          py::arg("sorted"), py::arg("values"), py::arg("indices"),
          "Top-k along axis 1 of a C-contiguous (outer, n, inner) array into (outer, k, inner) outputs.");
    m.def("random_k", &random_k_py, py::arg("n"), py::arg("k"), py::arg("seed"),
          "k distinct ascending indices of [0, n), uniform, reproducible for a seed.");
    m.def("add_f32", [](py::array_t<float, 0>& e, const py::array_t<float, 0>& x) {
              if (!(e.flags() & py::array::c_style) || !(x.flags() & py::array::c_style) || !e.writeable())
                  throw py::value_error("residual: must be writable and C-contiguous");
              if (e.size() != x.size()) throw py::value_error("residual: size differs from x");
              float* ep = e.mutable_data();
              const float* xp = x.data();
              size_t n = static_cast<size_t>(e.size());
              GilRelease release;
              add_inplace_f32(ep, xp, n);
          },
          py::arg("residual"), py::arg("x"), "residual += x (float32, in place).");

    m.def("feedback_select", &feedback_select_py, py::arg("x"), py::arg("residual"), py::arg("cost"), py::arg("q"),
          py::arg("alpha"), py::arg("kind"), py::arg("k"), py::arg("energy"), py::arg("tau"), py::arg("regions"),
          py::arg("cap"), py::arg("values"), py::arg("vstride"), py::arg("indices"), py::arg("istride"),
          py::arg("threads"),
          "residual += x, then per region the exact selection into the caller's values/indices buffers; "
          "returns the count per region.");
    m.def("scatter_mean", &scatter_mean_py, py::arg("out"), py::arg("clear"), py::arg("values"), py::arg("indices"),
          py::arg("world"), "out[clear] = 0, then out[idx] += v / world for every part in order (-1: padding).");

    // Test hooks (tests/test_cost_kernels.py): one call of the active level's cost kernels.
    using F32In = py::array_t<float, py::array::c_style | py::array::forcecast>;
    m.def("_filter_cost_f32", [](const F32In& x, const F32In& c, uint64_t t) {
              const size_t n = static_cast<size_t>(x.size());
              if (static_cast<size_t>(c.size()) != n) throw py::value_error("c: size differs from x");
              if (n >= (size_t(1) << 31)) throw py::value_error("x: too large");
              py::array_t<uint32_t> idx(static_cast<py::ssize_t>(n + kFilterSlack));
              py::array_t<uint32_t> vals(static_cast<py::ssize_t>(n + kFilterSlack));
              py::array_t<uint64_t> keys(static_cast<py::ssize_t>(n + kFilterSlack));
              bool bad = false;
              const size_t got = active_kernels().filter_cost_f32(x.data(), c.data(), n, t, idx.mutable_data(),
                                                                  vals.mutable_data(), keys.mutable_data(), n, &bad);
              const py::slice part(0, static_cast<py::ssize_t>(got), 1);
              return py::make_tuple(idx[part], vals[part], keys[part], bad);
          },
          py::arg("x"), py::arg("c"), py::arg("t"));
    m.def("_filter_cost_bound_f32", [](const F32In& x, const PreparedCost& p, uint64_t t, uint64_t t_sure) {
              const size_t n = static_cast<size_t>(x.size());
              if (p.dtype != DType::F32 || p.size() != n) throw py::value_error("cost: float32 costs of x's size");
              if (n >= (size_t(1) << 31)) throw py::value_error("x: too large");
              py::array_t<uint32_t> idx(static_cast<py::ssize_t>(n + kFilterSlack));
              py::array_t<uint32_t> vals(static_cast<py::ssize_t>(n + kFilterSlack));
              py::array_t<uint64_t> keys(static_cast<py::ssize_t>(n + kFilterSlack));
              const size_t got = active_kernels().filter_cost_bound_f32(
                  x.data(), p.f32.data(), p.code.get(), p.base, p.shift, n, t, t_sure, idx.mutable_data(),
                  vals.mutable_data(), keys.mutable_data(), n);
              const py::slice part(0, static_cast<py::ssize_t>(got), 1);
              return py::make_tuple(idx[part], vals[part], keys[part]);
          },
          py::arg("x"), py::arg("cost"), py::arg("t"), py::arg("t_sure"));
    m.def("_cost_keys_f32", [](const F32In& x, const F32In& c) {
              const size_t n = static_cast<size_t>(x.size());
              if (static_cast<size_t>(c.size()) != n) throw py::value_error("c: size differs from x");
              py::array_t<uint64_t> keys(static_cast<py::ssize_t>(n));
              active_kernels().cost_keys_f32(x.data(), c.data(), n, keys.mutable_data());
              return keys;
          },
          py::arg("x"), py::arg("c"));

    m.def("check_costs", [](const py::array& c) {
              if (!(c.flags() & py::array::c_style)) throw py::value_error("cost: array must be C-contiguous");
              const size_t n = static_cast<size_t>(c.size());
              if (dtype_is<float>(c.dtype())) {
                  const float* p = static_cast<const float*>(c.data());
                  GilRelease release;
                  check_costs_f32(p, n);
              } else if (dtype_is<double>(c.dtype())) {
                  const double* p = static_cast<const double*>(c.data());
                  GilRelease release;
                  check_costs_f64(p, n);
              } else {
                  throw py::type_error("cost: cost arrays must be float32 or float64");
              }
          },
          py::arg("cost"), "Raises ValueError naming the first cost that is not finite and > 0.");

    py::class_<PreparedCost>(m, "PreparedCost", py::buffer_protocol())
        .def(py::init(&prepare_cost), py::arg("cost"),
             "Checks a 1-D C-contiguous float32/float64 cost array and keeps a private copy.")
        .def_buffer([](const PreparedCost& p) {  // read-only: the check must stay true
            const py::ssize_t w = static_cast<py::ssize_t>(dtype_size(p.dtype));
            return py::buffer_info(const_cast<void*>(p.data()), w,
                                   p.dtype == DType::F32 ? py::format_descriptor<float>::format()
                                                         : py::format_descriptor<double>::format(),
                                   1, {static_cast<py::ssize_t>(p.size())}, {w}, /*readonly=*/true);
        })
        .def_property_readonly("size", &PreparedCost::size)
        .def_property_readonly("nbytes", [](const PreparedCost& p) {
            return p.size() * dtype_size(p.dtype) + (p.code ? p.size() : 0);
        })
        .def_property_readonly("dtype", [](const PreparedCost& p) { return std::string(dtype_name(p.dtype)); })
        .def_property_readonly("bounds", [](py::object self) -> py::object {
            // (codes, base, shift) of float32 costs, for tests; None for float64
            const PreparedCost& p = self.cast<const PreparedCost&>();
            if (p.dtype != DType::F32) return py::none();
            py::array codes(py::dtype::of<uint8_t>(), {static_cast<py::ssize_t>(p.size())}, {1}, p.code.get(), self);
            py::detail::array_proxy(codes.ptr())->flags &= ~py::detail::npy_api::NPY_ARRAY_WRITEABLE_;
            return py::make_tuple(codes, p.base, p.shift);
        });

    py::class_<StreamingSelector>(m, "StreamingCore")
        .def(py::init([](int kind, size_t k, double energy, double q, double alpha) {
                 return new StreamingSelector(make_budget(kind, k, energy, 0.0), q, alpha);
             }),
             py::arg("kind"), py::arg("k"), py::arg("energy"), py::arg("q"), py::arg("alpha"))
        .def("push",
             [](StreamingSelector& s, const py::array& x, int code, const py::object& cost) {
                 Segment seg = make_segment(x, code, cost);
                 GilRelease release;
                 s.push(seg);
             },
             py::arg("x"), py::arg("dtype"), py::arg("cost"))
        .def("chunks", &StreamingSelector::chunks)
        .def("buffered", &StreamingSelector::buffered)
        .def("finish", [](StreamingSelector& s) {
            std::vector<StreamingSelector::ChunkResult> res;
            {
                GilRelease release;
                res = s.finish();
            }
            py::list out;
            for (auto& r : res) {
                py::array_t<int64_t> idx(static_cast<py::ssize_t>(r.indices.size()));
                std::memcpy(idx.mutable_data(), r.indices.data(), r.indices.size() * sizeof(int64_t));
                py::array_t<uint8_t> vals(static_cast<py::ssize_t>(r.values.size()));
                std::memcpy(vals.mutable_data(), r.values.data(), r.values.size());
                out.append(py::make_tuple(idx, vals));
            }
            return out;
        });
}
