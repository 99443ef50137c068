// gradsparse — thread count and a fork-join loop over contiguous ranges.
#pragma once

#include <cstddef>
#include <functional>

namespace gradsparse {

/// Threads the engine may use in the calling thread: its own count if it set one
/// (set_thread_num_threads), else the process-wide count.
int get_num_threads();
/// Sets the process-wide thread count (default: hardware threads, or
/// GRADSPARSE_NUM_THREADS); n >= 1.
void set_num_threads(int n);
/// The calling thread's own thread count, or 0 when it follows the process-wide count.
int get_thread_num_threads();
/// Sets (n >= 1) or clears (n = 0) the calling thread's own thread count. Engine threads
/// that parallel_run starts for a call inherit it, and the caller's SIMD level.
void set_thread_num_threads(int n);

/// Runs body(t) for every t in [0, nthreads), t = 0 on the caller and the others on up to
/// nthreads - 1 new threads, which inherit the caller's own thread count and SIMD level.
/// If a thread cannot be started (thread limit, memory) the shares of the missing threads
/// run on the threads that did start (at worst all on the caller), so every body(t) still
/// runs exactly once. Rethrows the first exception (lowest t) on the caller once every
/// share has finished. The engine's only fork-join primitive.
void parallel_run(int nthreads, const std::function<void(int)>& body);

/// Part t of [0, n) split into `parts` contiguous ranges of near-equal size, [begin, end);
/// inner boundaries are rounded down to multiples of `align` (a power of two), so parts may
/// be empty. The engine's one way of splitting a range.
struct RangePart {
    size_t begin, end;
};
RangePart split_range(size_t n, int parts, int t, size_t align = 1);

/// parallel_run over the parts of split_range: body(t, begin, end) for t in [0, parts).
void parallel_for(size_t n, int parts, const std::function<void(int, size_t, size_t)>& body, size_t align = 1);

/// Threads to use for `work` elements with at least `min_per_thread` elements each.
int threads_for(size_t work, size_t min_per_thread);

}  // namespace gradsparse
