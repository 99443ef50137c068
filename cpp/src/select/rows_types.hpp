// gradsparse — element types of top-k along an axis (rows.cpp): the storage type, the
// order key and, for the float types, the filter kernel of each DType; and the
// (key, index) candidates with their rank order and a stable radix sort.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <type_traits>
#include <vector>

#include "gradsparse/common.hpp"
#include "gradsparse/parallel.hpp"
#include "kernels.hpp"
#include "keys.hpp"

namespace gradsparse {
namespace rows {

/// A float type F (keys.hpp) stored as its bit patterns; key = the keys.hpp key.
template <class F, DType D>
struct FloatType {
    using S = typename F::uint;  // storage
    using K = S;                 // order key
    static constexpr DType dtype = D;
    static constexpr bool has_filter = true;
    /// The keys.hpp key (keys::key<F>), computed without branches: rows of random signs
    /// would mispredict every other element.
    template <KeyMode M>
    static K key(S b) {
        constexpr unsigned top = 8 * sizeof(S) - 1;
        const S a = static_cast<S>(b & F::abs_mask);
        const S nan = static_cast<S>(S(0) - static_cast<S>(a > F::inf));  // all ones for NaN
        if (M == KeyMode::Magnitude || M == KeyMode::SmallestMagnitude) {
            const S mag = static_cast<S>((a & static_cast<S>(~nan)) | (F::nan_key & nan));
            return M == KeyMode::Magnitude ? mag : static_cast<S>(~mag);
        }
        const S neg = static_cast<S>(S(0) - static_cast<S>(b >> top));  // all ones when negative
        S v = static_cast<S>(b ^ (neg | F::sign));
        const S zero = static_cast<S>(S(0) - static_cast<S>(a == 0));  // -0 and +0
        v = static_cast<S>((v & static_cast<S>(~zero)) | (F::sign & zero) | nan);
        return M == KeyMode::Largest ? v : static_cast<S>(~v);
    }
    /// The kernel table's filter: positions and bits of the elements with key >= thr.
    static size_t filter(const Kernels& kern, const S* bits, size_t n, KeyMode m, K thr, uint32_t* out, S* vals,
                         size_t cap) {
        if constexpr (D == DType::F32) {
            return kern.filter_f32(bits, n, m, thr, out, vals, cap);
        } else if constexpr (D == DType::F64) {
            return kern.filter_f64(bits, n, m, thr, out, vals, cap);
        } else {
            return kern.filter_h16(bits, n, m, D == DType::BF16, thr, out, vals, cap);
        }
    }
};

/// An integer type T stored as its unsigned twin; key = keys::int_key.
template <typename T, DType D>
struct IntType {
    using S = typename std::make_unsigned<T>::type;
    using K = S;
    static constexpr DType dtype = D;
    static constexpr bool has_filter = false;
    /// keys::int_key, without branches.
    template <KeyMode M>
    static K key(S b) {
        constexpr unsigned top = 8 * sizeof(S) - 1;
        const S sign = static_cast<S>(S(1) << top);
        const S neg = std::is_signed<T>::value ? static_cast<S>(S(0) - static_cast<S>(b >> top)) : S(0);
        if (M == KeyMode::Magnitude || M == KeyMode::SmallestMagnitude) {
            const S mag = static_cast<S>((b ^ neg) - neg);  // |x|, INT_MIN -> 2^(w-1)
            return M == KeyMode::Magnitude ? mag : static_cast<S>(~mag);
        }
        const S v = std::is_signed<T>::value ? static_cast<S>(b ^ sign) : b;
        return M == KeyMode::Largest ? v : static_cast<S>(~v);
    }
    static size_t filter(const Kernels&, const S*, size_t, KeyMode, K, uint32_t*, S*, size_t) { return 0; }
};

/// Calls fn with the element type of `t` (one instantiation each).
template <class Fn>
void with_type(DType t, Fn&& fn) {
    switch (t) {
        case DType::F32: fn(FloatType<keys::F32, DType::F32>{}); break;
        case DType::F64: fn(FloatType<keys::F64, DType::F64>{}); break;
        case DType::F16: fn(FloatType<keys::F16, DType::F16>{}); break;
        case DType::BF16: fn(FloatType<keys::BF16, DType::BF16>{}); break;
        case DType::I8: fn(IntType<int8_t, DType::I8>{}); break;
        case DType::U8: fn(IntType<uint8_t, DType::U8>{}); break;
        case DType::I16: fn(IntType<int16_t, DType::I16>{}); break;
        case DType::I32: fn(IntType<int32_t, DType::I32>{}); break;
        case DType::I64: fn(IntType<int64_t, DType::I64>{}); break;
        case DType::U16: fn(IntType<uint16_t, DType::U16>{}); break;
        case DType::U32: fn(IntType<uint32_t, DType::U32>{}); break;
        default: fn(IntType<uint64_t, DType::U64>{}); break;
    }
}

/// Calls fn with the ranking mode as a compile-time constant.
template <class Fn>
void with_mode(KeyMode mode, Fn&& fn) {
    switch (mode) {
        case KeyMode::Magnitude: fn(std::integral_constant<KeyMode, KeyMode::Magnitude>{}); break;
        case KeyMode::Largest: fn(std::integral_constant<KeyMode, KeyMode::Largest>{}); break;
        case KeyMode::Smallest: fn(std::integral_constant<KeyMode, KeyMode::Smallest>{}); break;
        default: fn(std::integral_constant<KeyMode, KeyMode::SmallestMagnitude>{}); break;
    }
}

/// One candidate: its order key and its index in the row.
template <class K>
struct Cand {
    K key;
    uint32_t idx;
};

/// Rank order: larger key first, equal keys by the lower index.
template <class K>
struct Better {
    bool operator()(const Cand<K>& a, const Cand<K>& b) const { return a.key != b.key ? a.key > b.key : a.idx < b.idx; }
};

template <class T>
using K_of = typename T::K;

/// Sorts a[0, m) by descending key, stably (equal keys keep their order), with tmp (m
/// slots) as the second buffer: an LSD radix sort on the key's bytes, skipping bytes that
/// all candidates share. Parallel over nthreads (stable for every thread count: each
/// thread scatters its own contiguous part, parts in order; a part's digit counts are
/// taken from what the part holds in that pass).
template <class K>
void radix_sort_desc(Cand<K>* a, Cand<K>* tmp, size_t m, int nthreads) {
    constexpr int kBytes = static_cast<int>(sizeof(K));
    if (m < 2) return;
    const int nt = std::max(1, std::min(nthreads, threads_for(m, size_t(1) << 16)));
    // hist[t][byte][digit], digits of ~key (so ascending digits = descending keys)
    std::vector<size_t> hist(static_cast<size_t>(nt) * kBytes * 256, 0);
    parallel_for(m, nt, [&](int t, size_t lo, size_t hi) {
        size_t* h = hist.data() + static_cast<size_t>(t) * kBytes * 256;
        for (size_t i = lo; i < hi; ++i) {
            const K v = static_cast<K>(~a[i].key);
            for (int b = 0; b < kBytes; ++b) ++h[b * 256 + ((v >> (8 * b)) & 0xFF)];
        }
    });
    Cand<K>* src = a;
    Cand<K>* dst = tmp;
    std::vector<size_t> offs(static_cast<size_t>(nt) * 256);
    bool moved = false;  // a pass has permuted the elements since the counts were taken
    for (int b = 0; b < kBytes; ++b) {
        bool trivial = false;
        for (int d = 0; d < 256 && !trivial; ++d) {
            size_t c = 0;
            for (int t = 0; t < nt; ++t) c += hist[(static_cast<size_t>(t) * kBytes + b) * 256 + d];
            trivial = c == m;
        }
        if (trivial) continue;
        if (nt > 1 && moved) {
            // the parts of src hold other elements than in the first pass: count them again
            parallel_for(m, nt, [&](int t, size_t lo, size_t hi) {
                size_t* h = hist.data() + (static_cast<size_t>(t) * kBytes + b) * 256;
                std::fill(h, h + 256, size_t(0));
                const int shift = 8 * b;
                for (size_t i = lo; i < hi; ++i) ++h[(static_cast<K>(~src[i].key) >> shift) & 0xFF];
            });
        }
        size_t run = 0;
        for (int d = 0; d < 256; ++d)
            for (int t = 0; t < nt; ++t) {
                offs[static_cast<size_t>(t) * 256 + d] = run;
                run += hist[(static_cast<size_t>(t) * kBytes + b) * 256 + d];
            }
        parallel_for(m, nt, [&](int t, size_t lo, size_t hi) {
            size_t* o = offs.data() + static_cast<size_t>(t) * 256;
            const int shift = 8 * b;
            for (size_t i = lo; i < hi; ++i) {
                const Cand<K> c = src[i];
                dst[o[(static_cast<K>(~c.key) >> shift) & 0xFF]++] = c;
            }
        });
        std::swap(src, dst);
        moved = true;
    }
    if (src != a) std::memcpy(static_cast<void*>(a), src, m * sizeof(Cand<K>));
}

}  // namespace rows
}  // namespace gradsparse
