// gradsparse — CUDA engine: what the selection kernels share (tiles, segments, scoring,
// the device state of one selection). Device code only; the host side is engine.hpp.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>
#include <type_traits>

#include "core/bits.hpp"
#include "select/keys.hpp"
#include "engine.hpp"

namespace gradsparse {
namespace cuda {
namespace detail {

constexpr int kThreads = 256;                  // threads per tile block
constexpr int kRounds = 16;                    // elements per thread in one tile
constexpr int64_t kTile = kThreads * kRounds;  // elements per tile
constexpr int kSample = kThreads * kRounds;    // sampled keys (one block sorts them)
constexpr int64_t kSmall = 65536;              // at most this many elements: no sample

/// One non-empty segment as the kernels see it.
struct SegDesc {
    const void* data;
    const void* cost;
    int64_t n;
    int64_t offset;      // global index of its first element
    int64_t tile_start;  // its first tile
    double cost_pow;     // scalar cost^alpha
    double cost_scalar;  // scalar cost (energy budgets)
};

/// The segments of one selection: inline for one segment, else a device table.
struct View {
    SegDesc one;
    const SegDesc* table;  // nseg entries in device memory (nseg > 1)
    int nseg;
    int64_t total;
    int64_t ntiles;
};

/// The device state of one selection.
struct State {
    unsigned long long lo, hi;  // the sampled bracket (zero-extended keys)
    unsigned long long kstar;   // the k-th key
    unsigned long long prefix;  // radix selection: the key bits fixed so far
    unsigned long long rem;     // radix: rank still to find; after: ties at kstar to keep
    unsigned long long sure;    // keys > hi
    unsigned long long band;    // keys in [lo, hi] (may exceed the buffer)
    unsigned long long kept;    // elements kept in all
    unsigned long long bad;     // scatter_mean: 1 + first bad position, 0 if none
    int path;                   // 1: the bracket held (band); 2: all keys
    int pad;
    unsigned long long hist[256];
};

constexpr int kPathBand = 1;
constexpr int kPathFull = 2;

__device__ inline const SegDesc& seg_of_tile(const View& v, int64_t t) {
    if (v.nseg == 1) return v.one;
    int lo = 0, hi = v.nseg - 1;  // the last segment whose first tile is <= t
    while (lo < hi) {
        int mid = (lo + hi + 1) / 2;
        if (v.table[mid].tile_start <= t) lo = mid; else hi = mid - 1;
    }
    return v.table[lo];
}

__device__ inline const SegDesc& seg_of_index(const View& v, int64_t g) {
    if (v.nseg == 1) return v.one;
    int lo = 0, hi = v.nseg - 1;  // the last segment whose offset is <= g
    while (lo < hi) {
        int mid = (lo + hi + 1) / 2;
        if (v.table[mid].offset <= g) lo = mid; else hi = mid - 1;
    }
    return v.table[lo];
}

template <class F>
__device__ inline double abs_of(typename F::uint b) {
    if constexpr (std::is_same<F, keys::F32>::value) return fabs(static_cast<double>(bits_f32(b)));
    else if constexpr (std::is_same<F, keys::F64>::value) return fabs(keys::key_to_score(b));
    else if constexpr (std::is_same<F, keys::F16>::value) return fabs(static_cast<double>(keys::half_to_float(b)));
    else return fabs(static_cast<double>(keys::bf16_to_float(b)));
}

/// The order key of one element: native (keys.hpp) or the CWMP score key, computed with
/// the CPU's operations in the CPU's order (ScoredSegment::score_of).
template <class F, bool Native>
struct Scorer {
    using Raw = typename F::uint;
    using Key = typename std::conditional<Native, Raw, unsigned long long>::type;
    KeyMode mode;
    int q, alpha;
    CostKind cost_kind;
    bool cost_f64;

    __device__ Key key(Raw b, const SegDesc& s, int64_t local) const {
        if constexpr (Native) {
            return keys::key<F>(mode, b);
        } else {
            const double a = abs_of<F>(b);
            const double num = q == 2 ? a * a : a;
            double score = num;
            if (cost_kind == CostKind::Array) {
                const double c = cost_f64 ? static_cast<const double*>(s.cost)[local]
                                          : static_cast<double>(static_cast<const float*>(s.cost)[local]);
                score = num / (alpha == 1 ? c : 1.0);
            } else if (cost_kind == CostKind::Scalar) {
                score = num / s.cost_pow;
            }
            return keys::score_key(score);
        }
    }
};

template <class K>
__device__ inline K key_max() {
    return static_cast<K>(~K(0));
}

}  // namespace detail
}  // namespace cuda
}  // namespace gradsparse
