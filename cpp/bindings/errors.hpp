// gradsparse._core — the exception classes every argument error surfaces as.
//
// gradsparse follows Python's convention (ValueError / TypeError naming the argument) and
// torch's at the same time: ArgumentError derives from ValueError and RuntimeError,
// ArgumentTypeError from TypeError and RuntimeError, DimensionError (a dim out of range)
// from ArgumentError and IndexError, so an `except ValueError` written for gradsparse and an
// `except RuntimeError` / `except IndexError` written for torch.topk both catch them.
#pragma once

#include <pybind11/pybind11.h>

namespace py = pybind11;

/// Creates the classes on `m` and routes C++ argument errors (gradsparse::ArgumentError,
/// std::invalid_argument, py::value_error, py::type_error, py::index_error) to them.
void register_errors(py::module_& m);
