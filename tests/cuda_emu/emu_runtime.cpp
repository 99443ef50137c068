// gradsparse CUDA emulation — the block scheduler (emu/emu_sched.hpp): blocks one at a
// time; the threads of a block are fibers on their own stacks, resumed in rounds (in order,
// or in a seeded random order), each running until it waits at a barrier or returns. A
// barrier releases when every thread that has not returned waits at it.
//
// Fibers switch with a few lines of assembly on x86-64 (no system call: the kernels'
// barriers switch millions of times) and with ucontext elsewhere. Under AddressSanitizer
// every switch is announced (__sanitizer_start/finish_switch_fiber).
#include <sys/mman.h>
#include <ucontext.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <map>
#include <memory>
#include <string>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <vector>

#include "cuda_runtime.h"

uint3 threadIdx{0, 0, 0};
uint3 blockIdx{0, 0, 0};
dim3 blockDim{1, 1, 1};
dim3 gridDim{1, 1, 1};

#if defined(__SANITIZE_ADDRESS__)
#define EMU_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define EMU_ASAN 1
#endif
#endif

#ifdef EMU_ASAN
extern "C" void __sanitizer_start_switch_fiber(void** fake_stack_save, const void* bottom, size_t size);
extern "C" void __sanitizer_finish_switch_fiber(void* fake_stack_save, const void** bottom_old, size_t* size_old);
#endif

#if defined(__x86_64__) && !defined(EMU_UCONTEXT)
#define EMU_ASM_SWITCH 1
// gs_emu_switch(save, load): saves the callee-saved registers, MXCSR and the x87 control
// word on the current stack, stores the stack pointer to *save, and continues on the stack
// `load` (which was saved the same way, or prepared by prepare_stack below).
asm(R"(
    .text
    .globl gs_emu_switch
    .type gs_emu_switch,@function
    .p2align 4
gs_emu_switch:
    pushq %rbp
    pushq %rbx
    pushq %r12
    pushq %r13
    pushq %r14
    pushq %r15
    subq $8, %rsp
    stmxcsr (%rsp)
    fnstcw 4(%rsp)
    movq %rsp, (%rdi)
    movq %rsi, %rsp
    ldmxcsr (%rsp)
    fldcw 4(%rsp)
    addq $8, %rsp
    popq %r15
    popq %r14
    popq %r13
    popq %r12
    popq %rbx
    popq %rbp
    ret
    .size gs_emu_switch, .-gs_emu_switch
)");
extern "C" void gs_emu_switch(void** save, void* load);
#endif

namespace emu {
namespace {

enum class FState { Ready, Waiting, Done };

struct Fiber {
    char* mem = nullptr;  // guard page + stack
    size_t mem_bytes = 0;
    char* stack = nullptr;  // usable stack (lowest address)
    size_t stack_bytes = 0;
#ifdef EMU_ASM_SWITCH
    void* sp = nullptr;  // saved stack pointer
#else
    ucontext_t uc;  // saved context
#endif
    FState state = FState::Done;
    uint3 tid{0, 0, 0};
    // the barrier it waits at
    const char* file = nullptr;
    int line = 0;
    OnRelease on_release = nullptr;
    void* arg = nullptr;
    bool whole = false;
    void* fake_stack = nullptr;  // AddressSanitizer's fake stack of this fiber
    ~Fiber() {
        if (mem) munmap(mem, mem_bytes);
    }
};

std::vector<std::unique_ptr<Fiber>> g_fibers;  // fiber t runs thread t of every block
Fiber* g_current = nullptr;
#ifdef EMU_ASM_SWITCH
void* g_sched_sp = nullptr;
#else
ucontext_t g_sched_uc;
#endif
Body g_body = nullptr;
void* g_ctx = nullptr;
uint64_t g_seed = 0;
std::mt19937_64 g_rng;
Stats g_stats{0, 0, 0};
uint64_t g_block_serial = 0;
#ifdef EMU_ASAN
const void* g_sched_bottom = nullptr;
size_t g_sched_size = 0;
#endif

size_t stack_bytes() {
    if (const char* s = std::getenv("EMU_STACK_KIB")) return static_cast<size_t>(std::atol(s)) * 1024;
#ifdef EMU_ASAN
    return 512 * 1024;
#else
    return 64 * 1024;
#endif
}

// Back to the scheduler from fiber f (which waits or has returned).
void to_scheduler(Fiber* f) {
    ++g_stats.switches;
#ifdef EMU_ASAN
    __sanitizer_start_switch_fiber(&f->fake_stack, g_sched_bottom, g_sched_size);
#endif
#ifdef EMU_ASM_SWITCH
    gs_emu_switch(&f->sp, g_sched_sp);
#else
    swapcontext(&f->uc, &g_sched_uc);
#endif
#ifdef EMU_ASAN
    __sanitizer_finish_switch_fiber(f->fake_stack, nullptr, nullptr);
#endif
}

[[noreturn]] void trampoline() {
#ifdef EMU_ASAN
    __sanitizer_finish_switch_fiber(nullptr, &g_sched_bottom, &g_sched_size);
#endif
    Fiber* self = g_current;
    for (;;) {
        g_body(g_ctx);
        self->state = FState::Done;
        to_scheduler(self);
    }
}

std::unique_ptr<Fiber> make_fiber() {
    std::unique_ptr<Fiber> f(new Fiber());
    const size_t page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
    f->stack_bytes = (stack_bytes() + page - 1) / page * page;
    f->mem_bytes = f->stack_bytes + page;
    void* m = mmap(nullptr, f->mem_bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (m == MAP_FAILED) fail("cannot map a fiber stack");
    f->mem = static_cast<char*>(m);
    mprotect(f->mem, page, PROT_NONE);  // a stack overflow faults instead of corrupting memory
    f->stack = f->mem + page;
#ifdef EMU_ASM_SWITCH
    // The frame gs_emu_switch pops: MXCSR + x87 control word, six registers, then the
    // return address (the trampoline), entered as if called (rsp + 8 aligned to 16).
    uintptr_t top = reinterpret_cast<uintptr_t>(f->stack + f->stack_bytes) & ~uintptr_t(15);
    uint64_t* sp = reinterpret_cast<uint64_t*>(top);
    *--sp = 0;                                              // the trampoline's return address (never used)
    *--sp = reinterpret_cast<uint64_t>(&trampoline);        // where `ret` goes
    for (int i = 0; i < 6; ++i) *--sp = 0;                  // rbp, rbx, r12-r15
    *--sp = 0x1F80ull | (uint64_t(0x037F) << 32);           // MXCSR default, x87 control word default
    f->sp = sp;
#else
    getcontext(&f->uc);
    f->uc.uc_stack.ss_sp = f->stack;
    f->uc.uc_stack.ss_size = f->stack_bytes;
    f->uc.uc_link = nullptr;
    makecontext(&f->uc, reinterpret_cast<void (*)()>(&trampoline), 0);
#endif
    return f;
}

void resume(Fiber* f) {
    g_current = f;
    threadIdx = f->tid;
    ++g_stats.switches;
#ifdef EMU_ASAN
    void* fake = nullptr;
    __sanitizer_start_switch_fiber(&fake, f->stack, f->stack_bytes);
#endif
#ifdef EMU_ASM_SWITCH
    gs_emu_switch(&g_sched_sp, f->sp);
#else
    swapcontext(&g_sched_uc, &f->uc);
#endif
#ifdef EMU_ASAN
    __sanitizer_finish_switch_fiber(fake, nullptr, nullptr);
#endif
    g_current = nullptr;
}

void run_block(unsigned n) {
    std::vector<unsigned> order(n);
    for (unsigned t = 0; t < n; ++t) {
        Fiber* f = g_fibers[t].get();
        f->state = FState::Ready;
        f->tid = uint3{t % blockDim.x, (t / blockDim.x) % blockDim.y, t / (blockDim.x * blockDim.y)};
        order[t] = t;
    }
    for (;;) {
        if (g_seed) std::shuffle(order.begin(), order.end(), g_rng);
        for (unsigned t : order)
            if (g_fibers[t]->state == FState::Ready) resume(g_fibers[t].get());
        // every fiber now waits at a barrier or has returned
        Fiber* first = nullptr;
        unsigned waiting = 0;
        for (unsigned t = 0; t < n; ++t) {
            Fiber* f = g_fibers[t].get();
            if (f->state != FState::Waiting) continue;
            ++waiting;
            if (!first) {
                first = f;
                continue;
            }
            if (f->line != first->line || std::strcmp(f->file, first->file) != 0 || f->on_release != first->on_release ||
                f->arg != first->arg) {
                std::fprintf(stderr, "emu: block (%u,%u,%u): thread %u waits at %s:%d, thread %u at %s:%d\n",
                             blockIdx.x, blockIdx.y, blockIdx.z, first->tid.x, first->file, first->line, f->tid.x,
                             f->file, f->line);
                fail("divergent barriers: threads of one block wait at different __syncthreads() or collectives");
            }
        }
        if (!first) return;
        for (unsigned t = 0; t < n; ++t)
            if (g_fibers[t]->state == FState::Waiting && g_fibers[t]->whole && waiting != n)
                fail("a collective (CUB block primitive or __shfl_sync) reached by only some threads of the block",
                     first->file, first->line);
        if (first->on_release) first->on_release(first->arg);
        for (unsigned t = 0; t < n; ++t)
            if (g_fibers[t]->state == FState::Waiting) g_fibers[t]->state = FState::Ready;
    }
}

}  // namespace

cudaError_t& last_error() {
    static cudaError_t e = cudaSuccess;
    return e;
}

int& device_count() {
    static int n = 1;
    return n;
}

void set_schedule_seed(uint64_t seed) {
    g_seed = seed;
    g_rng.seed(seed);
}

Stats stats() { return g_stats; }

bool in_kernel() { return g_current != nullptr; }

uint64_t block_serial() { return g_block_serial; }

void fail(const char* what, const char* file, int line) {
    if (file)
        std::fprintf(stderr, "CUDA EMULATION ERROR: %s (%s:%d)\n", what, file, line);
    else
        std::fprintf(stderr, "CUDA EMULATION ERROR: %s\n", what);
    if (g_current)
        std::fprintf(stderr, "  in block (%u,%u,%u) thread (%u,%u,%u) of grid (%u,%u,%u) x (%u,%u,%u)\n", blockIdx.x,
                     blockIdx.y, blockIdx.z, threadIdx.x, threadIdx.y, threadIdx.z, gridDim.x, gridDim.y, gridDim.z,
                     blockDim.x, blockDim.y, blockDim.z);
    std::fflush(stderr);
    std::_Exit(70);
}

void fail_because(const char* who, const char* why) {
    std::fprintf(stderr, "CUDA EMULATION ERROR: %s: %s\n", who, why);
    fail("(see above)");
}

void barrier(const char* file, int line, OnRelease on_release, void* arg, bool whole) {
    Fiber* f = g_current;
    if (!f) fail("__syncthreads() outside a kernel", file, line);
    f->state = FState::Waiting;
    f->file = file;
    f->line = line;
    f->on_release = on_release;
    f->arg = arg;
    f->whole = whole;
    to_scheduler(f);
}

namespace {

struct Profile {
    struct Row {
        uint64_t launches = 0, blocks = 0, switches = 0;
        double seconds = 0;
    };
    std::map<std::string, Row> rows;
    bool on = std::getenv("EMU_PROFILE") != nullptr;
    ~Profile() {
        if (!on) return;
        std::vector<std::pair<std::string, Row>> v(rows.begin(), rows.end());
        std::sort(v.begin(), v.end(), [](const auto& a, const auto& b) { return a.second.seconds > b.second.seconds; });
        std::fprintf(stderr, "emu profile: kernel, launches, blocks, fiber switches, seconds\n");
        for (const auto& [name, r] : v)
            std::fprintf(stderr, "  %-32s %9llu %10llu %13llu %8.2f\n", name.c_str(), (unsigned long long)r.launches,
                         (unsigned long long)r.blocks, (unsigned long long)r.switches, r.seconds);
    }
};
Profile g_profile;

}  // namespace

void run_grid(dim3 grid, dim3 block, Body body, void* ctx, const char* name) {
    const auto t0 = std::chrono::steady_clock::now();
    const Stats s0 = g_stats;
    const unsigned n = block.x * block.y * block.z;
    while (g_fibers.size() < n) g_fibers.push_back(make_fiber());
    gridDim = grid;
    blockDim = block;
    g_body = body;
    g_ctx = ctx;
    ++g_stats.launches;
    const uint64_t nblocks = uint64_t(grid.x) * grid.y * grid.z;
    std::vector<uint64_t> order(nblocks);
    for (uint64_t b = 0; b < nblocks; ++b) order[b] = b;
    if (g_seed) std::shuffle(order.begin(), order.end(), g_rng);
    for (uint64_t b : order) {
        blockIdx = uint3{static_cast<unsigned>(b % grid.x), static_cast<unsigned>((b / grid.x) % grid.y),
                         static_cast<unsigned>(b / (uint64_t(grid.x) * grid.y))};
        ++g_stats.blocks;
        ++g_block_serial;
        run_block(n);
    }
    threadIdx = uint3{0, 0, 0};
    if (g_profile.on) {
        Profile::Row& r = g_profile.rows[name];
        ++r.launches;
        r.blocks += g_stats.blocks - s0.blocks;
        r.switches += g_stats.switches - s0.switches;
        r.seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    }
}

}  // namespace emu
