// gradsparse — CUDA engine: one caller-owned workspace carved into aligned pieces (host side).
#pragma once

#include <cstddef>

namespace gradsparse {
namespace cuda {
namespace detail {

/// Lays pieces out one after another, each at a 256-byte boundary: put(field, n) records
/// the piece's offset in `field`; `bytes` is the workspace size so far.
struct Carver {
    size_t bytes = 0;
    void put(size_t& field, size_t n) {
        field = bytes;
        bytes += (n + 255) & ~size_t(255);
    }
};

/// The piece at byte offset `off` of the workspace, as a T*.
template <class T>
T* ws_at(void* ws, size_t off) {
    return reinterpret_cast<T*>(static_cast<char*>(ws) + off);
}

}  // namespace detail
}  // namespace cuda
}  // namespace gradsparse
