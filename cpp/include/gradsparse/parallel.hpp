// gradsparse — thread count and a fork-join loop over contiguous ranges.
#pragma once

#include <cstddef>
#include <functional>

namespace gradsparse {

/// Threads the engine may use (default: hardware threads, or GRADSPARSE_NUM_THREADS).
int get_num_threads();
/// Sets the thread count; n >= 1.
void set_num_threads(int n);

/// Runs body(t) for t in [0, nthreads) on nthreads threads (t = 0 on the caller) and
/// rethrows the first exception on the caller once every thread has finished.
void parallel_run(int nthreads, const std::function<void(int)>& body);

/// Threads to use for `work` elements with at least `min_per_thread` elements each.
int threads_for(size_t work, size_t min_per_thread);

}  // namespace gradsparse
