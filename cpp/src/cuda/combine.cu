// gradsparse — CUDA engine: the combine of sparse payloads (scatter_mean), the device twin
// of select/feedback.cpp's. Payloads are applied one after another, in rank order.
#include <string>

#include "kernels.cuh"
#include "launch.hpp"

namespace gradsparse {
namespace cuda {
namespace detail {
namespace {

// bad <- min(bad, 1 + position of an index outside [-1, n)): the first bad position.
__global__ void k_check_idx(const int32_t* idx, int64_t len, int64_t n, int64_t base, unsigned long long* bad) {
    const int64_t j = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
    if (j >= len) return;
    const int32_t i = idx[j];
    if (i < -1 || i >= n) atomicMin(bad, static_cast<unsigned long long>(base + j + 1));
}

__global__ void k_clear(float* out, const int32_t* clear, int64_t nclear) {
    const int64_t j = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
    if (j < nclear && clear[j] >= 0) out[clear[j]] = 0.0f;
}

// One payload: out[i] += v / world (an atomic add, so repeated indices in a hostile payload
// still add up; the order of such repeats is then unspecified).
__global__ void k_add(float* out, const int32_t* idx, const void* vals, int64_t len, bool bf16, float world) {
    const int64_t j = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
    if (j >= len) return;
    const int32_t i = idx[j];
    if (i < 0) return;
    const float v = bf16 ? bits_f32(static_cast<uint32_t>(static_cast<const uint16_t*>(vals)[j]) << 16)
                         : static_cast<const float*>(vals)[j];
    atomicAdd(out + i, v / world);
}

unsigned blocks(int64_t n) { return static_cast<unsigned>((n + 255) / 256); }

}  // namespace
}  // namespace detail

using namespace detail;

size_t scatter_workspace() { return sizeof(unsigned long long); }

void scatter_mean(float* out, int64_t n, const int32_t* clear, int64_t nclear, const std::vector<const void*>& vals,
                  const std::vector<const int32_t*>& idx, int64_t len, bool bf16_values, float world, void* ws,
                  size_t ws_bytes, void* stream_ptr) {
    cudaStream_t stream = static_cast<cudaStream_t>(stream_ptr);
    GS_CHECK(n >= 0 && n < (int64_t(1) << 31), "out: scatter_mean takes at most 2^31 - 1 elements (int32 indices)");
    GS_CHECK(vals.size() == idx.size(), "parts: values and indices differ in number");
    GS_CHECK(std::isfinite(world) && world > 0.0f, "world: must be finite and > 0");
    GS_CHECK(ws != nullptr && ws_bytes >= scatter_workspace(), "workspace: too small for scatter_mean");
    GS_CHECK(nclear == 0 || clear != nullptr, "clear: null device address");
    for (size_t p = 0; p < idx.size(); ++p)
        GS_CHECK(len == 0 || (vals[p] != nullptr && idx[p] != nullptr), "parts: null buffer");
    unsigned long long* bad = static_cast<unsigned long long*>(ws);
    const unsigned long long none = ~0ull;
    throw_on(cudaMemcpyAsync(bad, &none, sizeof(none), cudaMemcpyHostToDevice, stream), "scatter check");
    if (nclear > 0) GS_LAUNCH(blocks(nclear), 256, stream, k_check_idx)(clear, nclear, n, 0, bad);
    for (size_t p = 0; p < idx.size(); ++p)
        if (len > 0)
            GS_LAUNCH(blocks(len), 256, stream, k_check_idx)(idx[p], len, n, nclear + static_cast<int64_t>(p) * len, bad);
    throw_on(cudaGetLastError(), "scatter check launch");
    unsigned long long first = none;
    throw_on(cudaMemcpyAsync(&first, bad, sizeof(first), cudaMemcpyDeviceToHost, stream), "scatter check");
    throw_on(cudaStreamSynchronize(stream), "scatter check");
    if (first != none) {
        const int64_t pos = static_cast<int64_t>(first - 1);
        if (pos < nclear) GS_CHECK(false, "clear: an index at " + std::to_string(pos) + " is outside [0, " + std::to_string(n) + ")");
        const int64_t p = (pos - nclear) / len, j = (pos - nclear) % len;
        GS_CHECK(false, "payload: an index of part " + std::to_string(p) + " at " + std::to_string(j) +
                            " is outside [0, " + std::to_string(n) + ")");
    }
    if (nclear > 0) GS_LAUNCH(blocks(nclear), 256, stream, k_clear)(out, clear, nclear);
    for (size_t p = 0; p < idx.size(); ++p)
        if (len > 0) GS_LAUNCH(blocks(len), 256, stream, k_add)(out, idx[p], vals[p], len, bf16_values, world);
    throw_on(cudaGetLastError(), "scatter launch");
}

}  // namespace cuda
}  // namespace gradsparse
