// gradsparse._core — SIMD level, thread count and build facts.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include "gradsparse/parallel.hpp"
#include "gradsparse/simd.hpp"

namespace py = pybind11;
using namespace gradsparse;

namespace {
std::vector<std::string> names(const std::vector<SimdLevel>& levels) {
    std::vector<std::string> out;
    for (SimdLevel l : levels) out.emplace_back(simd_level_name(l));
    return out;
}
}  // namespace

void register_config(py::module_& m) {
    m.attr("__version__") = GRADSPARSE_VERSION;
    m.attr("cuda_built") = static_cast<bool>(GRADSPARSE_CUDA_BUILT);
    m.def("compiled_simd_levels", [] { return names(compiled_simd_levels()); },
          "SIMD levels this build has kernels for.");
    m.def("available_simd_levels", [] { return names(available_simd_levels()); },
          "SIMD levels compiled in and supported by this CPU and OS.");
    m.def("get_simd_level", [] { return std::string(simd_level_name(current_simd_level())); },
          "The SIMD level kernels are dispatched to.");
    m.def("set_simd_level", [](const std::string& level) { set_simd_level(parse_simd_level(level)); },
          py::arg("level"), "Forces a SIMD level ('scalar', 'avx2', 'avx512', 'neon').");
    m.def("reset_simd_level", &reset_simd_level, "Returns to the best available SIMD level.");
    m.def("get_num_threads", &get_num_threads, "Threads the engine may use.");
    m.def("set_num_threads", &set_num_threads, py::arg("n"), "Sets the thread count (>= 1).");
}
