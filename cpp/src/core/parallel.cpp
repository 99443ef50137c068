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
#include "gradsparse/simd.hpp"

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

// Initialised while the library loads (one thread), so no fork can find the
// initialisation half done.
[[maybe_unused]] const bool threads_ready = (thread_slot(), true);

thread_local int thread_count = 0;  // the calling thread's own count, 0: none

}  // namespace

int get_num_threads() {
    const int own = thread_count;
    return own > 0 ? own : thread_slot().load();
}

void set_num_threads(int n) {
    GS_CHECK(n >= 1 && n <= 1024, "n: thread count must be in [1, 1024], got " + std::to_string(n));
    thread_slot().store(n);
}

int get_thread_num_threads() { return thread_count; }

void set_thread_num_threads(int n) {
    GS_CHECK(n >= 0 && n <= 1024, "n: thread count must be in [1, 1024], got " + std::to_string(n));
    thread_count = n;
}

int threads_for(size_t work, size_t min_per_thread) {
    size_t by_work = std::max<size_t>(1, work / std::max<size_t>(1, min_per_thread));
    return static_cast<int>(std::min<size_t>(static_cast<size_t>(get_num_threads()), by_work));
}

RangePart split_range(size_t n, int parts, int t, size_t align) {
    const auto bound = [&](int j) -> size_t {
        if (j <= 0) return 0;
        if (j >= parts) return n;
        // n * j / parts without overflow (n may be near 2^62)
        const size_t b = static_cast<size_t>(static_cast<unsigned __int128>(n) * static_cast<unsigned>(j) /
                                             static_cast<unsigned>(parts));
        return b & ~(align - 1);
    };
    return {bound(t), bound(t + 1)};
}

void parallel_for(size_t n, int parts, const std::function<void(int, size_t, size_t)>& body, size_t align) {
    parts = parts < 1 ? 1 : parts;
    parallel_run(parts, [&](int t) {
        const RangePart r = split_range(n, parts, t, align);
        body(t, r.begin, r.end);
    });
}

void parallel_run(int nthreads, const std::function<void(int)>& body) {
    if (nthreads <= 1) {
        body(0);
        return;
    }
    std::vector<std::exception_ptr> errors(static_cast<size_t>(nthreads));
    auto run = [&](int t) {
        try {
            body(t);
        } catch (...) {
            errors[static_cast<size_t>(t)] = std::current_exception();
        }
    };
    // Shares [spare, nthreads) have no thread of their own: whoever is done takes the next.
    std::atomic<int> spare{nthreads};
    auto run_spare = [&] {
        for (int t = spare.fetch_add(1); t < nthreads; t = spare.fetch_add(1)) run(t);
    };
    const int own_count = get_thread_num_threads(), own_level = get_thread_simd_level();
    std::vector<std::thread> workers;
    int started = 1;
    try {
        workers.reserve(static_cast<size_t>(nthreads - 1));
        for (; started < nthreads; ++started) {
            workers.emplace_back([&, t = started] {
                set_thread_num_threads(own_count);
                set_thread_simd_level(own_level);  // was available on the caller: cannot throw
                run(t);
                run_spare();
            });
        }
    } catch (const std::exception&) {
        // std::system_error (thread or process limit) or std::bad_alloc: go on with the
        // threads that started; joinable threads must not be destroyed (std::terminate)
    }
    spare.store(started);
    run(0);
    run_spare();
    for (auto& w : workers) w.join();
    for (auto& e : errors)
        if (e) std::rethrow_exception(e);
}

}  // namespace gradsparse
