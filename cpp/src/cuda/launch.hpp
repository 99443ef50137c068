// gradsparse — CUDA engine: turning a CUDA error into an exception (host side).
#pragma once

#include <cuda_runtime.h>

#include <stdexcept>
#include <string>

/// Launches a kernel: GS_LAUNCH(grid, block, stream, kernel<T...>)(arguments). One macro so
/// that the CUDA-emulation build of the tests (tests/cuda_emu) can run the same kernels on
/// the CPU; it defines GS_LAUNCH itself.
#ifndef GS_LAUNCH
#define GS_LAUNCH(grid, block, stream, ...) __VA_ARGS__<<<(grid), (block), 0, (stream)>>>
#endif

namespace gradsparse {
namespace cuda {
namespace detail {

/// Throws std::runtime_error naming `what` and the CUDA error when `e` is not cudaSuccess.
inline void throw_on(cudaError_t e, const char* what) {
    if (e != cudaSuccess)
        throw std::runtime_error(std::string("CUDA error in ") + what + ": " + cudaGetErrorName(e) + " (" +
                                 cudaGetErrorString(e) + ")");
}

}  // namespace detail
}  // namespace cuda
}  // namespace gradsparse
