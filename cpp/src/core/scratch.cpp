// gradsparse — scratch buffer pool (see scratch.hpp).
#include "scratch.hpp"

namespace gradsparse {
namespace {

constexpr size_t kKeep = 32;                   // buffers kept for reuse
constexpr size_t kKeepBytes = size_t(1) << 30; // at most this much memory kept in all

struct Pool {
    std::mutex mu;
    std::vector<std::pair<uint8_t*, size_t>> free;
    size_t held = 0;
    ~Pool() {
        for (auto& f : free) delete[] f.first;
    }
};

Pool& pool() {
    static Pool* p = new Pool;  // never destroyed: buffers may return during interpreter exit
    return *p;
}

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
    std::lock_guard<std::mutex> lock(pl.mu);
    while (!pl.free.empty() && (pl.free.size() >= kKeep || pl.held + bytes > kKeepBytes)) {
        // drop the smallest kept buffer
        size_t small = 0;
        for (size_t i = 1; i < pl.free.size(); ++i)
            if (pl.free[i].second < pl.free[small].second) small = i;
        pl.held -= pl.free[small].second;
        delete[] pl.free[small].first;
        pl.free.erase(pl.free.begin() + static_cast<std::ptrdiff_t>(small));
    }
    if (bytes > kKeepBytes) {
        delete[] p;
        return;
    }
    pl.free.emplace_back(p, bytes);
    pl.held += bytes;
}

}  // namespace gradsparse
