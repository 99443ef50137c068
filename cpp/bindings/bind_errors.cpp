// gradsparse._core — exception classes and the C++ -> Python translation of argument errors.
#include <Python.h>

#include <exception>
#include <stdexcept>

#include "errors.hpp"
#include "gradsparse/common.hpp"

namespace {

// Owned for the life of the process (the extension is never unloaded).
PyObject* g_argument = nullptr;
PyObject* g_type = nullptr;
PyObject* g_dim = nullptr;

PyObject* make_class(py::module_& m, const char* name, py::tuple bases, const char* doc) {
    py::dict ns;
    ns["__module__"] = py::str("gradsparse.errors");
    ns["__doc__"] = py::str(doc);
    py::object cls = py::reinterpret_borrow<py::object>(reinterpret_cast<PyObject*>(&PyType_Type))(name, bases, ns);
    m.attr(name) = cls;
    return cls.release().ptr();
}

}  // namespace

void register_errors(py::module_& m) {
    g_argument = make_class(m, "ArgumentError",
                            py::make_tuple(py::handle(PyExc_ValueError), py::handle(PyExc_RuntimeError)),
                            "A bad argument value (a ValueError and a RuntimeError); the message names the argument.");
    g_type = make_class(m, "ArgumentTypeError",
                        py::make_tuple(py::handle(PyExc_TypeError), py::handle(PyExc_RuntimeError)),
                        "A bad argument type or dtype (a TypeError and a RuntimeError); the message names the argument.");
    g_dim = make_class(m, "DimensionError", py::make_tuple(py::handle(g_argument), py::handle(PyExc_IndexError)),
                       "A dimension out of range (an ArgumentError, hence a ValueError and a RuntimeError, and an IndexError).");
    py::register_exception_translator([](std::exception_ptr p) {
        try {
            if (p) std::rethrow_exception(p);
        } catch (const py::index_error& e) {
            PyErr_SetString(g_dim, e.what());
        } catch (const py::type_error& e) {
            PyErr_SetString(g_type, e.what());
        } catch (const py::value_error& e) {
            PyErr_SetString(g_argument, e.what());
        } catch (const std::invalid_argument& e) {  // gradsparse::ArgumentError and the like
            PyErr_SetString(g_argument, e.what());
        }
    });
}
