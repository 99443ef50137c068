// gradsparse._core — output arrays backed by the scratch pool (shared by the bindings).
#pragma once

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <vector>

#include "core/scratch.hpp"

namespace gradsparse {

// A 1-D array for `count` items. Large ones borrow pooled memory that goes back to the pool
// when the array is freed, so a training loop selecting every step does not page-fault.
inline pybind11::array output_array(const pybind11::dtype& dt, size_t count) {
    const size_t bytes = count * static_cast<size_t>(dt.itemsize());
    if (bytes < (size_t(1) << 16)) return pybind11::array(dt, std::vector<pybind11::ssize_t>{static_cast<pybind11::ssize_t>(count)});
    auto* buf = new ScratchPool::Buffer(ScratchPool::acquire(bytes));
    pybind11::capsule owner(buf, [](void* p) { delete static_cast<ScratchPool::Buffer*>(p); });
    return pybind11::array(dt, std::vector<pybind11::ssize_t>{static_cast<pybind11::ssize_t>(count)},
                     std::vector<pybind11::ssize_t>{dt.itemsize()}, buf->get(), owner);
}

}  // namespace gradsparse
