// gradsparse — scratch buffer pool (see scratch.hpp).
#include "scratch.hpp"

#include <algorithm>
#include <cstdlib>

#if defined(__unix__) || defined(__APPLE__)
#include <pthread.h>
#include <unistd.h>
#define GS_HAVE_ATFORK 1
#endif
#if defined(__GLIBC__)
#include <malloc.h>
#endif

namespace gradsparse {
namespace {

constexpr size_t kKeep = 32;                          // buffers kept for reuse
constexpr size_t kDefaultLimit = size_t(256) << 20;  // at most this much memory kept in all

// The default limit: GRADSPARSE_POOL_BYTES if it is a byte count, else 256 MiB, but at most
// 1/16 of physical memory. 256 MiB covers the scratch of repeated selections of ~10M
// elements (about 100 MB kept) with room to spare, while a training job keeps most of the
// machine; a larger buffer is allocated per call and freed after it.
size_t default_limit() {
    if (const char* env = std::getenv("GRADSPARSE_POOL_BYTES")) {
        char* end = nullptr;
        const unsigned long long v = std::strtoull(env, &end, 10);
        if (end != env && *end == '\0' && env[0] != '-') return static_cast<size_t>(v);
    }
    size_t limit = kDefaultLimit;
#if defined(_SC_PHYS_PAGES) && defined(_SC_PAGESIZE)
    const long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGESIZE);
    if (pages > 0 && page > 0) limit = std::min(limit, static_cast<size_t>(pages) / 16 * static_cast<size_t>(page));
#endif
    return limit;
}

struct Pool {
    std::mutex mu;
    std::vector<std::pair<uint8_t*, size_t>> free;
    size_t held = 0;
    size_t limit = default_limit();

    // Frees kept buffers, smallest first, until `bytes` more fit in the limit and in kKeep
    // entries. Caller holds mu.
    void trim(size_t bytes) {
        while (!free.empty() && (free.size() + (bytes ? 1 : 0) > kKeep || held + bytes > limit)) {
            size_t small = 0;
            for (size_t i = 1; i < free.size(); ++i)
                if (free[i].second < free[small].second) small = i;
            held -= free[small].second;
            delete[] free[small].first;
            free.erase(free.begin() + static_cast<std::ptrdiff_t>(small));
        }
    }
};

Pool& pool() {
    static Pool* p = new Pool;  // never destroyed: buffers may return during interpreter exit
    return *p;
}

#if GS_HAVE_ATFORK
// fork() while another thread holds the pool's lock would leave it locked for good in the
// child (the holder does not exist there). The forking thread takes it first and both
// processes release it after the fork.
void lock_for_fork() { pool().mu.lock(); }
void unlock_after_fork() { pool().mu.unlock(); }

bool prepare_pool() {
    pool();  // created while the library loads (one thread), so the handlers find it made
    pthread_atfork(lock_for_fork, unlock_after_fork, unlock_after_fork);
    return true;
}
#else
bool prepare_pool() {
    pool();
    return true;
}
#endif

[[maybe_unused]] const bool pool_ready = prepare_pool();

}  // namespace

void ScratchPool::Release::operator()(uint8_t* p) const {
    if (p) ScratchPool::give_back(p, bytes);
}

ScratchPool::Buffer ScratchPool::acquire(size_t bytes) {
    if (bytes == 0) bytes = 1;
    Pool& pl = pool();
    {
        std::lock_guard<std::mutex> lock(pl.mu);
        size_t best = pl.free.size();
        for (size_t i = 0; i < pl.free.size(); ++i)
            if (pl.free[i].second >= bytes && pl.free[i].second <= 2 * bytes + (size_t(1) << 20) && (best == pl.free.size() || pl.free[i].second < pl.free[best].second))
                best = i;
        if (best != pl.free.size()) {
            auto f = pl.free[best];
            pl.free.erase(pl.free.begin() + static_cast<std::ptrdiff_t>(best));
            pl.held -= f.second;
            return Buffer(f.first, Release{f.second});
        }
    }
    return Buffer(new uint8_t[bytes], Release{bytes});
}

void ScratchPool::give_back(uint8_t* p, size_t bytes) {
    Pool& pl = pool();
    {
        std::lock_guard<std::mutex> lock(pl.mu);
        if (bytes <= pl.limit) {
            pl.trim(bytes);
            pl.free.emplace_back(p, bytes);
            pl.held += bytes;
            return;
        }
    }
    delete[] p;  // larger than the whole pool: not kept
}

size_t ScratchPool::held_bytes() {
    Pool& pl = pool();
    std::lock_guard<std::mutex> lock(pl.mu);
    return pl.held;
}

size_t ScratchPool::limit() {
    Pool& pl = pool();
    std::lock_guard<std::mutex> lock(pl.mu);
    return pl.limit;
}

void ScratchPool::set_limit(size_t bytes) {
    Pool& pl = pool();
    std::lock_guard<std::mutex> lock(pl.mu);
    pl.limit = bytes;
    pl.trim(0);
}

void ScratchPool::release() {
    Pool& pl = pool();
    std::vector<std::pair<uint8_t*, size_t>> drop;
    {
        std::lock_guard<std::mutex> lock(pl.mu);
        drop.swap(pl.free);
        pl.held = 0;
    }
    for (auto& f : drop) delete[] f.first;
#if defined(__GLIBC__)
    malloc_trim(0);  // hand freed heap pages back to the system too
#endif
}

}  // namespace gradsparse
