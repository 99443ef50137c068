// gradsparse — thread count and fork-join execution.
#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <exception>
#include <mutex>
#include <thread>
#include <vector>

#include "gradsparse/common.hpp"
#include "gradsparse/parallel.hpp"

namespace gradsparse {
namespace {

int default_threads() {
    if (const char* env = std::getenv("GRADSPARSE_NUM_THREADS")) {
        char* end = nullptr;
        long v = std::strtol(env, &end, 10);
        if (end != env && *end == '\0' && v >= 1 && v <= 1024) return static_cast<int>(v);
    }
    unsigned hw = std::thread::hardware_concurrency();
    return hw == 0 ? 1 : static_cast<int>(std::min(hw, 1024u));
}

std::atomic<int>& thread_slot() {
    static std::atomic<int> slot{default_threads()};
    return slot;
}

}  // namespace

int get_num_threads() { return thread_slot().load(); }

void set_num_threads(int n) {
    GS_CHECK(n >= 1 && n <= 1024, "n: thread count must be in [1, 1024], got " + std::to_string(n));
    thread_slot().store(n);
}

int threads_for(size_t work, size_t min_per_thread) {
    size_t by_work = std::max<size_t>(1, work / std::max<size_t>(1, min_per_thread));
    return static_cast<int>(std::min<size_t>(static_cast<size_t>(get_num_threads()), by_work));
}

void parallel_run(int nthreads, const std::function<void(int)>& body) {
    if (nthreads <= 1) {
        body(0);
        return;
    }
    std::vector<std::exception_ptr> errors(static_cast<size_t>(nthreads));
    std::vector<std::thread> workers;
    workers.reserve(static_cast<size_t>(nthreads - 1));
    for (int t = 1; t < nthreads; ++t) {
        workers.emplace_back([&, t] {
            try {
                body(t);
            } catch (...) {
                errors[static_cast<size_t>(t)] = std::current_exception();
            }
        });
    }
    try {
        body(0);
    } catch (...) {
        errors[0] = std::current_exception();
    }
    for (auto& w : workers) w.join();
    for (auto& e : errors)
        if (e) std::rethrow_exception(e);
}

}  // namespace gradsparse
