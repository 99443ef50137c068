// gradsparse CUDA emulation — check_engine: the CUDA engine (cpp/src/cuda, compiled as C++
// against emu/ and run on the CPU by the block scheduler) compared bit for bit with the CPU
// engine (gradsparse/select.hpp) on the same inputs.
//
//   check_engine [--seed N] [--quick | --full] [--only count|many|feedback|other]
//
// --seed: the order in which blocks and the threads of a block are resumed (0: in order;
// default 1: a seeded shuffle). --quick: the smaller sizes only; --full: every combination
// at every size (several minutes). Prints one line per group
// and ends with "N cases, all equal", or lists the first mismatches and exits 1. An emulation
// error (a kernel's misuse of CUDA: a divergent barrier, a TempStorage reused too early, ...)
// stops it at once with exit status 70.
#include <chrono>
#include <cinttypes>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "emu_sched.hpp"
#include "harness.hpp"

int main(int argc, char** argv) {
    using namespace check;
    uint64_t seed = 1;
    Size size = Size::Default;
    std::string only;
    for (int i = 1; i < argc; ++i) {
        const std::string a = argv[i];
        if (a == "--quick") size = Size::Quick;
        else if (a == "--full") size = Size::Full;
        else if (a == "--seed" && i + 1 < argc) seed = std::strtoull(argv[++i], nullptr, 10);
        else if (a == "--only" && i + 1 < argc) only = argv[++i];
        else {
            std::fprintf(stderr, "usage: check_engine [--seed N] [--quick | --full] [--only count|many|feedback|other]\n");
            return 2;
        }
    }
    emu::set_schedule_seed(seed);
    const auto t0 = std::chrono::steady_clock::now();
    std::printf("CUDA engine (emulated, schedule seed %" PRIu64 ") vs CPU engine\n", seed);
    auto want = [&](const char* group) { return only.empty() || only == group; };
    if (want("count")) run_count_checks(size);
    if (want("many")) run_many_checks(size);
    if (want("feedback")) run_feedback_checks(size);
    if (want("other")) run_other_checks(size);
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    const emu::Stats st = emu::stats();
    std::printf("emulation: %" PRIu64 " launches, %" PRIu64 " blocks, %" PRIu64 " fiber switches, %.1f s\n",
                st.launches, st.blocks, st.switches, s);
    if (g_failed) {
        std::printf("%zu cases, %zu MISMATCHES; the first:\n", g_cases, g_failed);
        report_failures();
        return 1;
    }
    std::printf("%zu cases, all equal\n", g_cases);
    return 0;
}
