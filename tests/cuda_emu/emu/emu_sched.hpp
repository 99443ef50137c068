// gradsparse CUDA emulation — the block scheduler: every block of a grid runs on the CPU,
// one block at a time, its threads as cooperative fibers (barriers are real). Used by the
// emulated cuda_runtime.h and cub headers only; see tests/cuda_emu/README.md.
#pragma once

#include <cstdint>
#include <cstdio>
#include <cstdlib>

struct uint3 {
    unsigned x, y, z;
};

struct dim3 {
    unsigned x, y, z;
    constexpr dim3(unsigned vx = 1, unsigned vy = 1, unsigned vz = 1) : x(vx), y(vy), z(vz) {}
};

// The built-in variables: set by the scheduler before it resumes a fiber.
extern uint3 threadIdx;
extern uint3 blockIdx;
extern dim3 blockDim;
extern dim3 gridDim;

namespace emu {

/// A block body: runs the kernel for the thread in threadIdx.
using Body = void (*)(void* ctx);
/// Runs once when a barrier releases (by the scheduler, before any waiter resumes).
using OnRelease = void (*)(void* arg);

/// Runs `body` for every thread of every block (blocks one at a time); `name` for the
/// profile (EMU_PROFILE=1 prints one at exit).
void run_grid(dim3 grid, dim3 block, Body body, void* ctx, const char* name = "kernel");

/// __syncthreads(): waits until every thread of the block that has not returned waits at a
/// barrier. on_release(arg), when given, runs once at the release. `whole`: every thread of
/// the block must still be running (a warp shuffle), else the emulation stops with an error.
void barrier(const char* file, int line, OnRelease on_release = nullptr, void* arg = nullptr, bool whole = false);

/// Whether the caller runs inside a kernel (a fiber).
bool in_kernel();

/// Seeds the order in which blocks and the fibers of a block are resumed (0: in order).
void set_schedule_seed(uint64_t seed);

/// Statistics: kernel launches, blocks, fiber switches.
struct Stats {
    uint64_t launches, blocks, switches;
};
Stats stats();

/// Stops the program: an emulation error is a bug in a kernel (or in its use of CUDA).
[[noreturn]] void fail(const char* what, const char* file = nullptr, int line = 0);
[[noreturn]] void fail_because(const char* who, const char* why);

}  // namespace emu
