// gradsparse — CUDA engine: what the driver and the runtime report (never throws).
#include <cuda_runtime.h>

#include <string>

#include "engine.hpp"

namespace gradsparse {
namespace cuda {

int device_count() {
    int n = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess) {
        cudaGetLastError();  // clear the sticky-free error so later calls start clean
        return 0;
    }
    return n;
}

std::string device_error() {
    int n = 0;
    cudaError_t e = cudaGetDeviceCount(&n);
    if (e != cudaSuccess) {
        cudaGetLastError();
        return std::string(cudaGetErrorName(e)) + ": " + cudaGetErrorString(e);
    }
    return n > 0 ? std::string() : std::string("the driver reports no CUDA device");
}

int runtime_version() {
    int v = 0;
    return cudaRuntimeGetVersion(&v) == cudaSuccess ? v : 0;
}

int driver_version() {
    int v = 0;
    return cudaDriverGetVersion(&v) == cudaSuccess ? v : 0;
}

}  // namespace cuda
}  // namespace gradsparse
