// gradsparse CUDA emulation — what the emulated block-wide CUB primitives share: the check
// that a TempStorage is not reused before every thread has read the previous result, and
// that the block is the size the primitive was instantiated for.
#pragma once

#include <cuda_runtime.h>

#include <cstring>

namespace cub {
namespace emu_detail {

/// Threads that entered a collective on this storage since its last barrier released.
struct Guard {
    unsigned entered;
    unsigned pad;
};

inline unsigned enter(Guard& g, int threads, const char* what) {
    if (!::emu::in_kernel()) ::emu::fail_because(what, "called outside a kernel");
    if (static_cast<int>(blockDim.x * blockDim.y * blockDim.z) != threads)
        ::emu::fail_because(what, "the block size differs from the primitive's BLOCK_DIM");
    ++g.entered;
    return threadIdx.x + blockDim.x * (threadIdx.y + blockDim.y * threadIdx.z);
}

inline void released(Guard& g) { g.entered = 0; }

/// After the barrier: another thread already started a new collective on the same storage
/// (no __syncthreads() between the two), so this thread's result may be overwritten.
inline void leave(Guard& g, const char* what) {
    if (g.entered != 0)
        ::emu::fail_because(what, "TempStorage reused before every thread read its result (a __syncthreads() is missing)");
}

/// Bytes that are surely not the answer (what a thread other than 0 gets from BlockReduce).
template <class T>
T garbage() {
    T v;
    unsigned char b[sizeof(T)];
    static const unsigned char pat[4] = {0xEF, 0xBE, 0xAD, 0xDE};  // 0xDEADBEEF, little endian
    for (size_t i = 0; i < sizeof(T); ++i) b[i] = pat[i % 4];
    std::memcpy(&v, b, sizeof(T));
    return v;
}

}  // namespace emu_detail
}  // namespace cub
