// gradsparse CUDA emulation — the parts of the CUDA runtime and of CUDA C++ that the engine
// (cpp/src/cuda) uses, for compiling its .cu files as plain C++ and running their kernels on
// the CPU (tests/cuda_emu). Device memory is host memory; launches run at once, in order.
#pragma once

#ifndef GS_CUDA_EMULATION
#error "tests/cuda_emu/emu is the CUDA emulation: compile with -DGS_CUDA_EMULATION"
#endif

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <tuple>
#include <type_traits>
#include <utility>

#include "emu_sched.hpp"

// ---------------------------------------------------------------- keywords

#define __global__
#define __device__
#define __host__
#define __forceinline__
#define __launch_bounds__(...)
// Blocks run one at a time: a static is the one block's shared memory.
#define __shared__ static

// ---------------------------------------------------------------- runtime API

struct CUstream_st;
typedef CUstream_st* cudaStream_t;

enum cudaError_t {
    cudaSuccess = 0,
    cudaErrorInvalidValue = 1,
    cudaErrorInvalidConfiguration = 9,
    cudaErrorNoDevice = 100,
};

enum cudaMemcpyKind {
    cudaMemcpyHostToHost = 0,
    cudaMemcpyHostToDevice = 1,
    cudaMemcpyDeviceToHost = 2,
    cudaMemcpyDeviceToDevice = 3,
    cudaMemcpyDefault = 4,
};

namespace emu {
/// The error cudaGetLastError() returns next (set by a bad launch, cleared when read).
cudaError_t& last_error();
/// Device count the emulated runtime reports (device.cu; default 1).
int& device_count();
}  // namespace emu

inline cudaError_t cudaGetLastError() {
    cudaError_t e = emu::last_error();
    emu::last_error() = cudaSuccess;
    return e;
}
inline cudaError_t cudaPeekAtLastError() { return emu::last_error(); }

inline const char* cudaGetErrorName(cudaError_t e) {
    switch (e) {
        case cudaSuccess: return "cudaSuccess";
        case cudaErrorInvalidValue: return "cudaErrorInvalidValue";
        case cudaErrorInvalidConfiguration: return "cudaErrorInvalidConfiguration";
        case cudaErrorNoDevice: return "cudaErrorNoDevice";
    }
    return "cudaErrorUnknown";
}

inline const char* cudaGetErrorString(cudaError_t e) {
    switch (e) {
        case cudaSuccess: return "no error";
        case cudaErrorInvalidValue: return "invalid argument";
        case cudaErrorInvalidConfiguration: return "invalid configuration argument";
        case cudaErrorNoDevice: return "no CUDA-capable device is detected";
    }
    return "unknown error";
}

inline cudaError_t cudaMemcpyAsync(void* dst, const void* src, size_t bytes, cudaMemcpyKind, cudaStream_t = nullptr) {
    if (emu::in_kernel()) emu::fail("cudaMemcpyAsync called inside a kernel");
    if (bytes && (!dst || !src)) return cudaErrorInvalidValue;
    if (bytes) std::memmove(dst, src, bytes);
    return cudaSuccess;
}

inline cudaError_t cudaMemcpy(void* dst, const void* src, size_t bytes, cudaMemcpyKind kind) {
    return cudaMemcpyAsync(dst, src, bytes, kind, nullptr);
}

inline cudaError_t cudaStreamSynchronize(cudaStream_t) { return cudaSuccess; }
inline cudaError_t cudaDeviceSynchronize() { return cudaSuccess; }

inline cudaError_t cudaGetDeviceCount(int* n) {
    *n = emu::device_count();
    return *n > 0 ? cudaSuccess : cudaErrorNoDevice;
}
inline cudaError_t cudaRuntimeGetVersion(int* v) {
    *v = 13000;
    return cudaSuccess;
}
inline cudaError_t cudaDriverGetVersion(int* v) {
    *v = 13000;
    return cudaSuccess;
}

// ---------------------------------------------------------------- device functions

#define __syncthreads() ::emu::barrier(__FILE__, __LINE__)

using std::fabs;
using std::isfinite;

// Atomics: a fiber runs alone until it waits at a barrier or returns, so a plain
// read-modify-write is atomic here.
inline unsigned atomicAdd(unsigned* p, unsigned v) {
    unsigned old = *p;
    *p = old + v;
    return old;
}
inline unsigned long long atomicAdd(unsigned long long* p, unsigned long long v) {
    unsigned long long old = *p;
    *p = old + v;
    return old;
}
inline float atomicAdd(float* p, float v) {
    float old = *p;
    *p = old + v;
    return old;
}
inline unsigned long long atomicMin(unsigned long long* p, unsigned long long v) {
    unsigned long long old = *p;
    if (v < old) *p = v;
    return old;
}

namespace emu {

/// A number that changes with every block run (per-thread state of the emulation resets
/// when it changes).
uint64_t block_serial();

template <class T>
struct ShuffleBuffer {
    T v[2][1024];             // two buffers, used alternately
    uint64_t serial[1024];    // the block each thread's count belongs to
    unsigned count[1024];     // shuffles this thread made in its block
};

}  // namespace emu

/// __shfl_sync(mask, v, lane) over full warps: every thread of the block writes its value,
/// a block barrier, every thread reads its lane's value. Shuffles alternate between two
/// buffers, so one barrier per shuffle suffices (a thread can only overwrite a buffer after
/// the next shuffle's barrier, which every reader of the buffer has passed). Exact for blocks
/// whose threads all take part in every shuffle (the engine's one warp kernel); a thread
/// missing is an emulation error.
template <class T>
inline T emu_shfl_sync(unsigned mask, T v, int lane, const char* file, int line) {
    static_assert(std::is_trivially_copyable<T>::value, "__shfl_sync: a trivially copyable value");
    static emu::ShuffleBuffer<T> buf;
    if (mask != 0xFFFFFFFFu) emu::fail("__shfl_sync: the emulation takes a full mask only", file, line);
    if (blockDim.x % 32 != 0 || blockDim.y * blockDim.z != 1)
        emu::fail("__shfl_sync: the emulation takes 1-D blocks of whole warps", file, line);
    const unsigned me = threadIdx.x;
    const uint64_t serial = emu::block_serial();
    if (buf.serial[me] != serial) {
        buf.serial[me] = serial;
        buf.count[me] = 0;
    }
    const unsigned which = buf.count[me]++ & 1u;
    buf.v[which][me] = v;
    emu::barrier(file, line, nullptr, nullptr, true);
    return buf.v[which][(me & ~31u) + (static_cast<unsigned>(lane) & 31u)];
}
#define __shfl_sync(mask, v, lane) emu_shfl_sync((mask), (v), (lane), __FILE__, __LINE__)

// ---------------------------------------------------------------- launches

namespace emu {

template <class... P>
struct LaunchCtx {
    void (*kernel)(P...);
    std::tuple<P...> args;
};

template <class... P>
void run_thread(void* c) {
    auto* ctx = static_cast<LaunchCtx<P...>*>(c);
    // Every thread gets its own copies of the parameters, as on the device.
    std::apply(ctx->kernel, ctx->args);
}

template <class... P>
struct Launch {
    dim3 grid, block;
    const char* name;
    void (*kernel)(P...);

    template <class... A>
    void operator()(A&&... a) const {
        static_assert(sizeof...(A) == sizeof...(P), "kernel launch: wrong number of arguments");
        if (in_kernel()) fail("a kernel launched from a kernel");
        // implicit conversions to the parameter types only, as in a <<<...>>> launch
        LaunchCtx<P...> ctx{kernel, std::tuple<P...>(std::forward<A>(a)...)};
        const uint64_t threads = uint64_t(block.x) * block.y * block.z;
        if (grid.x == 0 || grid.y == 0 || grid.z == 0 || grid.x > 0x7FFFFFFFu || grid.y > 65535 || grid.z > 65535 ||
            threads == 0 || threads > 1024 || block.z > 64) {
            last_error() = cudaErrorInvalidConfiguration;
            return;
        }
        run_grid(grid, block, &run_thread<P...>, &ctx, name);
    }
};

template <class... P>
Launch<P...> launch(dim3 grid, dim3 block, cudaStream_t, const char* name, void (*kernel)(P...)) {
    return Launch<P...>{grid, block, name, kernel};
}

}  // namespace emu

/// The engine's launch macro (cpp/src/cuda/launch.hpp uses this definition when it exists).
#define GS_LAUNCH(grid, block, stream, ...) ::emu::launch((grid), (block), (stream), #__VA_ARGS__, __VA_ARGS__)
