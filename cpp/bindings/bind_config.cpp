// gradsparse._core — SIMD level, thread count and build facts.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include "core/scratch.hpp"
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
    m.def("get_num_threads", &get_num_threads, "Threads the engine may use in the calling thread.");
    m.def("set_num_threads", &set_num_threads, py::arg("n"), "Sets the process-wide thread count (>= 1).");

    // The calling thread's own SIMD level and thread count (gradsparse.simd_level() and
    // gradsparse.num_threads()): None / 0 follows the process-wide setting.
    m.def("get_thread_simd_level", []() -> py::object {
              const int own = get_thread_simd_level();
              if (own < 0) return py::none();
              return py::str(simd_level_name(static_cast<SimdLevel>(own)));
          });
    m.def("set_thread_simd_level", [](const py::object& level) {
              set_thread_simd_level(level.is_none() ? -1 : static_cast<int>(parse_simd_level(level.cast<std::string>())));
          },
          py::arg("level"));
    m.def("get_thread_num_threads", &get_thread_num_threads);
    m.def("set_thread_num_threads", &set_thread_num_threads, py::arg("n"));

    m.def("pool_bytes", &ScratchPool::held_bytes, "Bytes the scratch/output pool keeps for reuse now.");
    m.def("get_pool_limit", &ScratchPool::limit, "The most bytes the scratch/output pool keeps.");
    m.def("set_pool_limit", &ScratchPool::set_limit, py::arg("nbytes"),
          "Sets the most bytes the scratch/output pool keeps; frees kept buffers beyond it.");
    m.def("release_memory", &ScratchPool::release, "Frees every buffer the scratch/output pool keeps.");
}
