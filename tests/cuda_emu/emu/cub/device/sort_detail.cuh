// gradsparse CUDA emulation — what the emulated device-wide sorts share: stable sorts of
// integer keys by a bit range (signed keys in numeric order, as CUB twiddles them), the
// temporary-storage protocol (a size query with a null pointer; a call with too little
// storage fails) and checks that no two ranges overlap (CUB sorts are not in place).
#pragma once

#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <numeric>
#include <type_traits>
#include <vector>

namespace cub {
namespace emu_detail {

/// The value type of a keys-only sort.
struct NoValue {};

inline size_t align256(size_t x) { return (x + 255) & ~size_t(255); }

/// Temporary bytes of a sort of n items (keys, and values when value_bytes > 0): a double
/// buffer, as CUB's non-DoubleBuffer interface needs.
inline size_t sort_temp_bytes(int64_t n, size_t key_bytes, size_t value_bytes) {
    const size_t m = n > 0 ? static_cast<size_t>(n) : 0;
    return 512 + align256(m * key_bytes) + align256(m * value_bytes);
}

struct Range {
    const void* p;
    size_t bytes;
};

inline void check_disjoint(const char* who, std::initializer_list<Range> rs) {
    std::vector<Range> v(rs);
    for (size_t i = 0; i < v.size(); ++i)
        for (size_t j = i + 1; j < v.size(); ++j) {
            if (!v[i].bytes || !v[j].bytes) continue;
            const auto a = reinterpret_cast<uintptr_t>(v[i].p), b = reinterpret_cast<uintptr_t>(v[j].p);
            if (a < b + v[j].bytes && b < a + v[i].bytes)
                ::emu::fail_because(who, "two of its ranges (keys, values, temporary storage) overlap");
        }
}

/// Starts a sort call: the size query (returns true: done), or the checks of a real call.
inline bool temp_protocol(const char* who, void* temp, size_t& temp_bytes, size_t need, cudaError_t& err) {
    if (::emu::in_kernel()) ::emu::fail_because(who, "called inside a kernel");
    err = cudaSuccess;
    if (temp == nullptr) {
        temp_bytes = need;
        return true;
    }
    if (temp_bytes < need) {
        err = cudaErrorInvalidValue;
        return true;
    }
    return false;
}

/// What CUB leaves in its temporary storage: nothing a caller may rely on.
inline void scribble(void* temp, size_t bytes) { std::memset(temp, 0xA5, bytes); }

/// The radix digits of key k in bits [begin, end) (signed keys: sign bit flipped first).
template <class K>
uint64_t digits(K k, int begin, int end) {
    static_assert(std::is_integral<K>::value, "emulated radix sorts: integer keys only (what the engine sorts)");
    using U = typename std::make_unsigned<K>::type;
    U u;
    std::memcpy(&u, &k, sizeof(U));
    if (std::is_signed<K>::value) u = static_cast<U>(u ^ (U(1) << (8 * sizeof(U) - 1)));
    uint64_t x = static_cast<uint64_t>(u) >> begin;
    const int w = end - begin;
    return w >= 64 ? x : (x & ((uint64_t(1) << w) - 1));
}

template <class K>
void check_bits(const char* who, int begin, int end) {
    if (begin < 0 || end > static_cast<int>(8 * sizeof(K)) || begin >= end)
        ::emu::fail_because(who, "bad begin_bit/end_bit");
}

/// The stable order of keys[0, n) by their digits: ascending, or descending (equal digits
/// keep their input order either way, as CUB's radix sorts do).
template <class K>
std::vector<int64_t> stable_order(const K* keys, int64_t n, int begin, int end, bool descending) {
    std::vector<uint64_t> d(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) d[static_cast<size_t>(i)] = digits(keys[i], begin, end);
    std::vector<int64_t> order(static_cast<size_t>(n));
    std::iota(order.begin(), order.end(), int64_t(0));
    if (descending)
        std::stable_sort(order.begin(), order.end(), [&](int64_t a, int64_t b) { return d[a] > d[b]; });
    else
        std::stable_sort(order.begin(), order.end(), [&](int64_t a, int64_t b) { return d[a] < d[b]; });
    return order;
}

template <class K, class V>
void sort_range(const K* kin, K* kout, const V* vin, V* vout, int64_t begin_i, int64_t end_i, int begin, int end,
                bool descending) {
    const int64_t n = end_i - begin_i;
    if (n <= 0) return;
    const std::vector<int64_t> order = stable_order(kin + begin_i, n, begin, end, descending);
    // through copies: kin and kout are disjoint (checked), but keep the reads first anyway
    std::vector<K> ks(static_cast<size_t>(n));
    for (int64_t j = 0; j < n; ++j) ks[static_cast<size_t>(j)] = kin[begin_i + order[static_cast<size_t>(j)]];
    if (vin) {
        std::vector<V> vs(static_cast<size_t>(n));
        for (int64_t j = 0; j < n; ++j) vs[static_cast<size_t>(j)] = vin[begin_i + order[static_cast<size_t>(j)]];
        std::copy(vs.begin(), vs.end(), vout + begin_i);
    }
    std::copy(ks.begin(), ks.end(), kout + begin_i);
}

}  // namespace emu_detail
}  // namespace cub
