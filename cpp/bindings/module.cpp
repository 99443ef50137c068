// gradsparse._core — wires the per-concept bindings together; nothing else lives here.
#include <pybind11/pybind11.h>

#include "errors.hpp"

namespace py = pybind11;

void register_config(py::module_& m);
void register_select(py::module_& m);
void register_wire(py::module_& m);
void register_atomo(py::module_& m);
void register_evofed(py::module_& m);

PYBIND11_MODULE(_core, m) {
    m.doc() = "gradsparse C++ core (selection engine, wire format, ATOMO, EvoFed, SIMD dispatch, threads)";
    register_errors(m);
    register_config(m);
    register_select(m);
    register_wire(m);
    register_atomo(m);
    register_evofed(m);
}
