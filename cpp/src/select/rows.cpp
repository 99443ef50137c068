// gradsparse — top-k along one axis of a (outer, n, inner) array (topk_axis).
//
// Every row x[o, :, i] is selected on its own, rows in parallel; a row never uses the
// whole-vector engine's sample. Per row:
//  - small k (k * 32 <= n): a threshold scan. The candidates seen so far are kept; once
//    there are enough, the k best of them give the threshold (the k-th best key) and the
//    rest of the row goes through the filter kernel (SIMD for the float types), which
//    passes only the few elements whose key beats it;
//  - otherwise a radix select: the row's keys are stored while a histogram of their top
//    byte is counted, then only the bucket holding the k-th key is refined, byte by byte;
//    one pass then emits the winners in ascending index order.
// Sorted results are the winners sorted by (key desc, index asc): std::sort for a few,
// a stable LSD radix sort of (key, index) pairs for many. Columns of an array with
// inner > 1 are gathered 16 at a time into contiguous rows. A few very long float rows
// (the 1-D case) use the whole-vector engine select(), parallel within the row.
// Results are exact: independent of the thread count and of the SIMD level.
#include <algorithm>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include "core/scratch.hpp"
#include "gradsparse/parallel.hpp"
#include "gradsparse/select.hpp"
#include "rows_types.hpp"

namespace gradsparse {
namespace rows {
namespace {

constexpr size_t kChunk = 1024;       // filter call length in the threshold scan
constexpr size_t kFew = 32;           // few_select up to this k
constexpr size_t kWide = 256;         // columns read in place at once for a few winners
constexpr size_t kTile = 16;          // columns gathered at once when inner > 1
constexpr size_t kSortRadixMin = 512;  // winners sorted by radix sort from here on
constexpr size_t kLongRow = size_t(1) << 16;  // float rows this long may use select()

/// Typed scratch carved from one pooled buffer.
class Arena {
  public:
    explicit Arena(size_t bytes) : buf_(ScratchPool::acquire(bytes + 64)), used_(0) {}
    template <class V>
    V* take(size_t count) {
        used_ = (used_ + 63) & ~size_t(63);
        V* p = reinterpret_cast<V*>(buf_.get() + used_);
        used_ += count * sizeof(V);
        return p;
    }

  private:
    ScratchPool::Buffer buf_;
    size_t used_;
};

/// Row stride of the gathered columns: n rounded up to 64 bytes plus 64 bytes, so that the
/// 16 rows of a tile do not map to the same cache sets (n = 1024 floats would).
template <class S>
size_t tile_stride(size_t n) {
    const size_t line = 64 / sizeof(S);
    return (n + line - 1) / line * line + line;
}

/// Per-thread buffers of one element type; sized for rows of n with k winners.
template <class T>
struct Scratch {
    using S = typename T::S;
    using K = typename T::K;
    static size_t bytes(size_t n, size_t k, size_t tile) {
        const size_t cand = std::max(2 * k, size_t(64)) + kChunk + k + kFilterSlack;
        return (n + 1) * sizeof(K) * 2 + 2 * cand * sizeof(Cand<K>) + (kChunk + kFilterSlack) * (4 + sizeof(S)) +
               tile * tile_stride<S>(n) * sizeof(S) + (n + 1) * sizeof(Cand<K>) + cand * 8 +
               (tile ? kWide * (kFew * sizeof(Cand<K>) + sizeof(K)) : 0) + 12 * 64;
    }
    Scratch(Arena& a, size_t n, size_t k, size_t tile) {
        const size_t cand_n = std::max(2 * k, size_t(64)) + kChunk + k + kFilterSlack;
        keys = a.take<K>(n + 1);
        sub = a.take<K>(n + 1);
        cand = a.take<Cand<K>>(cand_n);
        cand2 = a.take<Cand<K>>(cand_n);
        fout = a.take<uint32_t>(kChunk + kFilterSlack);
        fvals = a.take<S>(kChunk + kFilterSlack);
        tilebuf = a.take<S>(tile * tile_stride<S>(n));
        bucket = a.take<Cand<K>>(n + 1);
        comp = a.take<uint64_t>(cand_n);
        wide = a.take<Cand<K>>(tile ? kWide * kFew : 0);
        thr = a.take<K>(tile ? kWide : 0);
    }
    Cand<K>* wide;
    K* thr;
    Cand<K>* bucket;
    uint64_t* comp;
    K* keys;
    K* sub;
    Cand<K>* cand;
    Cand<K>* cand2;
    uint32_t* fout;
    S* fvals;
    S* tilebuf;
};

/// The elements of x[0, len) whose key is >= t1: their positions in s.fout and values in
/// s.fvals, in order; returns how many (the SIMD filter kernels where the type has them).
template <class T, KeyMode M>
size_t filter_chunk(const typename T::S* x, size_t len, typename T::K t1, Scratch<T>& s, const Kernels& kern) {
    if constexpr (T::has_filter && M != KeyMode::SmallestMagnitude) {
        return T::filter(kern, x, len, M, t1, s.fout, s.fvals, len);
    } else {
        (void)kern;
        size_t got = 0;
        for (size_t j = 0; j < len; ++j) {
            const typename T::S v = x[j];
            s.fout[got] = static_cast<uint32_t>(j);
            s.fvals[got] = v;
            got += T::template key<M>(v) >= t1;
        }
        return got;
    }
}

/// Threshold scan: the k best of x[0, n) (1 <= k, k * 32 <= n) to s.cand[0, k), unordered.
template <class T, KeyMode M>
void scan_select(const typename T::S* x, size_t n, size_t k, Scratch<T>& s, const Kernels& kern) {
    using K = typename T::K;
    Cand<K>* cand = s.cand;
    const size_t hi = std::max(2 * k, size_t(64));
    const size_t first = std::min(n, std::max(2 * k, size_t(32)));
    size_t m = 0;
    for (size_t i = 0; i < first; ++i) cand[m++] = Cand<K>{T::template key<M>(x[i]), static_cast<uint32_t>(i)};
    K thr = 0;
    auto reduce = [&] {
        std::nth_element(cand, cand + (k - 1), cand + m, Better<K>{});
        m = k;
        thr = cand[k - 1].key;
    };
    if (m > k) reduce();
    for (size_t pos = first; pos < n;) {
        if (thr == std::numeric_limits<K>::max()) break;  // nothing can beat the k held
        // chunks grow with the part scanned: the threshold of the first few elements is
        // weak, so a long first chunk would pass many of them
        const size_t len = std::min(std::min(kChunk, std::max(pos, size_t(64))), n - pos);
        const K t1 = static_cast<K>(thr + 1);
        const size_t got = filter_chunk<T, M>(x + pos, len, t1, s, kern);
        for (size_t j = 0; j < got; ++j)
            cand[m++] = Cand<K>{T::template key<M>(s.fvals[j]), static_cast<uint32_t>(pos + s.fout[j])};
        pos += len;
        if (m >= hi) reduce();
    }
    if (m > k) reduce();
}

/// Threshold scan for a few winners (1 <= k <= kFew, 16 k <= n): the k best so far are kept in
/// rank order in s.cand[0, k) and the k-th key is the filter's threshold; an element
/// enters if its key beats it (a tie loses: its index is higher).
template <class T, KeyMode M>
void few_select(const typename T::S* x, size_t n, size_t k, Scratch<T>& s, const Kernels& kern) {
    using K = typename T::K;
    Cand<K>* held = s.cand;
    for (size_t i = 0; i < k; ++i) held[i] = Cand<K>{T::template key<M>(x[i]), static_cast<uint32_t>(i)};
    std::sort(held, held + k, Better<K>{});
    K thr = held[k - 1].key;
    for (size_t pos = k; pos < n;) {
        if (thr == std::numeric_limits<K>::max()) break;
        const size_t len = std::min(std::min(kChunk, std::max(pos, size_t(64))), n - pos);
        const K t1 = static_cast<K>(thr + 1);
        const size_t got = filter_chunk<T, M>(x + pos, len, t1, s, kern);
        for (size_t j = 0; j < got; ++j) {
            const K v = T::template key<M>(s.fvals[j]);
            if (v <= thr) continue;
            size_t p = k - 1;
            while (p > 0 && held[p - 1].key < v) {
                held[p] = held[p - 1];
                --p;
            }
            held[p] = Cand<K>{v, static_cast<uint32_t>(pos + s.fout[j])};
            thr = held[k - 1].key;
        }
        pos += len;
    }
}

/// Radix select: the winners of x[0, n) (1 <= k <= n) in ascending index order (keys >
/// k-th key, then the lowest-index ties); returns where they are (s.cand or s.cand2).
template <class T, KeyMode M>
Cand<K_of<T>>* radix_select(const typename T::S* x, size_t n, size_t k, Scratch<T>& s) {
    using K = typename T::K;
    constexpr int kBits = 8 * static_cast<int>(sizeof(K));
    K* kb = s.keys;
    // first digit: the top 11 bits (8 for one-byte keys and short rows), then 8 bits at a time
    const int first = kBits == 8 || n < 768 ? 8 : 11;
    uint32_t hist[1 << 11];
    std::memset(hist, 0, sizeof(uint32_t) << first);
    int shift = kBits - first;
    for (size_t i = 0; i < n; ++i) {
        const K v = T::template key<M>(x[i]);
        kb[i] = v;
        ++hist[v >> shift];
    }
    // Find the digit holding the k-th key; `want` of its keys are winners.
    size_t want = k;
    auto pick = [&](const uint32_t* h, int top) {
        int d = top;
        for (; d > 0 && h[d] < want; --d) want -= h[d];
        return d;
    };
    int d = pick(hist, (1 << first) - 1);
    K kstar = 0;
    size_t take_eq = 0;
    Cand<K>* cand = s.cand;
    if constexpr (kBits == 8) {
        kstar = static_cast<K>(d);
        take_eq = want;
    } else {
        // One pass: the keys above the bucket win (to cand, in order), the bucket's
        // elements go to s.bucket and their keys to s.sub, which is refined one digit at
        // a time.
        Cand<K>* bucket = s.bucket;
        K* sub = s.sub;
        size_t above = 0, cnt = 0;
        const K pd = static_cast<K>(d);
        for (size_t i = 0; i < n; ++i) {
            const K v = kb[i];
            const K dig = static_cast<K>(v >> shift);
            const Cand<K> c{v, static_cast<uint32_t>(i)};
            cand[above] = c;
            bucket[cnt] = c;
            sub[cnt] = v;
            above += dig > pd;
            cnt += dig == pd;
        }
        const size_t in_bucket = cnt;
        K prefix = pd;
        for (;;) {
            if (want == cnt) {  // the whole (sub)bucket wins: kstar is its smallest key
                K lo = sub[0];
                for (size_t i = 1; i < cnt; ++i) lo = std::min(lo, sub[i]);
                size_t eq = 0;
                for (size_t i = 0; i < cnt; ++i) eq += sub[i] == lo;
                kstar = lo;
                take_eq = eq;
                break;
            }
            const int step = std::min(8, shift);
            shift -= step;
            const K mask = static_cast<K>((1u << step) - 1);
            std::memset(hist, 0, 256 * sizeof(uint32_t));
            for (size_t i = 0; i < cnt; ++i) ++hist[(sub[i] >> shift) & mask];
            d = pick(hist, static_cast<int>(mask));
            prefix = static_cast<K>((prefix << step) | static_cast<K>(d));
            if (shift == 0) {
                kstar = prefix;
                take_eq = want;
                break;
            }
            size_t c2 = 0;
            for (size_t i = 0; i < cnt; ++i) {
                sub[c2] = sub[i];
                c2 += static_cast<K>(sub[i] >> shift) == prefix;
            }
            cnt = c2;
        }
        // the bucket's winners, in order, then merged with those above by index
        size_t w = 0, eq = 0;
        for (size_t i = 0; i < in_bucket; ++i) {
            const K v = bucket[i].key;
            const bool e = v == kstar;
            bucket[w] = bucket[i];
            w += v > kstar || (e && eq < take_eq);
            eq += e;
        }
        Cand<K>* out = s.cand2;
        std::merge(cand, cand + above, bucket, bucket + w, out,
                   [](const Cand<K>& a, const Cand<K>& b) { return a.idx < b.idx; });
        return out;
    }
    size_t j = 0, eq = 0;
    for (size_t i = 0; i < n; ++i) {
        const K v = kb[i];
        const bool e = v == kstar;
        const bool take = v > kstar || (e && eq < take_eq);
        eq += e;
        cand[j] = Cand<K>{v, static_cast<uint32_t>(i)};
        j += take;
    }
    return cand;
}

/// Sorts a few candidates by rank; keys of up to 32 bits through one 64-bit composite
/// (key, ~index) each, comp having k slots.
template <class K>
void sort_rank(Cand<K>* c, size_t k, uint64_t* comp) {
    if constexpr (sizeof(K) <= 4) {
        for (size_t j = 0; j < k; ++j) comp[j] = (static_cast<uint64_t>(c[j].key) << 32) | static_cast<uint32_t>(~c[j].idx);
        std::sort(comp, comp + k, [](uint64_t a, uint64_t b) { return a > b; });
        for (size_t j = 0; j < k; ++j)
            c[j] = Cand<K>{static_cast<K>(comp[j] >> 32), static_cast<uint32_t>(~static_cast<uint32_t>(comp[j]))};
    } else {
        (void)comp;
        std::sort(c, c + k, Better<K>{});
    }
}

/// Top-k of one contiguous row; output j goes to vout[j * os], iout[j * os].
template <class T, KeyMode M>
void row_topk(const typename T::S* x, size_t n, size_t k, bool sorted, typename T::S* vout, int64_t* iout,
              size_t os, Scratch<T>& s, const Kernels& kern) {
    using K = typename T::K;
    Cand<K>* cand = s.cand;
    if (k <= kFew && k * 16 <= n) {
        few_select<T, M>(x, n, k, s, kern);  // held in rank order
        if (!sorted) std::sort(cand, cand + k, [](const Cand<K>& a, const Cand<K>& b) { return a.idx < b.idx; });
    } else if (k * 32 <= n) {
        scan_select<T, M>(x, n, k, s, kern);
        if (sorted)
            sort_rank(cand, k, s.comp);
        else
            std::sort(cand, cand + k, [](const Cand<K>& a, const Cand<K>& b) { return a.idx < b.idx; });
    } else {
        cand = radix_select<T, M>(x, n, k, s);
        if (sorted) {
            if (k >= kSortRadixMin)
                radix_sort_desc<K>(cand, cand == s.cand ? s.cand2 : s.cand, k, 1);
            else
                sort_rank(cand, k, s.comp);
        }
    }
    for (size_t j = 0; j < k; ++j) {
        vout[j * os] = x[cand[j].idx];
        iout[j * os] = static_cast<int64_t>(cand[j].idx);
    }
}

/// Few winners (k <= kFew, 16 k <= n) of w <= kWide adjacent columns read in place: element j
/// of column t is src[j * inner + t], so every row of the block is one contiguous read.
/// Per column the k best so far are kept in rank order and the k-th key is its threshold;
/// 16 columns of a row are one vector comparison against their thresholds (the loop over
/// them vectorises), and only columns that pass insert.
template <class T, KeyMode M>
void wide_few(const typename T::S* src, size_t n, size_t inner, size_t w, size_t k, bool sorted,
              typename T::S* vout, int64_t* iout, Scratch<T>& s) {
    using K = typename T::K;
    Cand<K>* held = s.wide;  // w * k <= kWide * kFew slots
    K* thr = s.thr;          // kWide slots
    for (size_t t = 0; t < w; ++t) {
        Cand<K>* h = held + t * k;
        for (size_t j = 0; j < k; ++j) h[j] = Cand<K>{T::template key<M>(src[j * inner + t]), static_cast<uint32_t>(j)};
        std::sort(h, h + k, Better<K>{});
        thr[t] = h[k - 1].key;
    }
    auto insert = [&](size_t t, K v, size_t j) {
        Cand<K>* h = held + t * k;
        size_t p = k - 1;
        while (p > 0 && h[p - 1].key < v) {
            h[p] = h[p - 1];
            --p;
        }
        h[p] = Cand<K>{v, static_cast<uint32_t>(j)};
        thr[t] = h[k - 1].key;
    };
    for (size_t j = k; j < n; ++j) {
        const typename T::S* row = src + j * inner;
        for (size_t t0 = 0; t0 < w; t0 += 16) {
            K kk[16];
            uint8_t pass[16];
            uint8_t any = 0;
            if (w - t0 >= 16) {
                for (size_t t = 0; t < 16; ++t) {
                    kk[t] = T::template key<M>(row[t0 + t]);
                    pass[t] = kk[t] > thr[t0 + t];
                    any |= pass[t];
                }
            } else {
                for (size_t t = 0; t < w - t0; ++t) {
                    kk[t] = T::template key<M>(row[t0 + t]);
                    pass[t] = kk[t] > thr[t0 + t];
                    any |= pass[t];
                }
            }
            if (!any) continue;
            const size_t tw = std::min<size_t>(16, w - t0);
            uint32_t mask = 0;
            for (size_t t = 0; t < tw; ++t) mask |= static_cast<uint32_t>(pass[t]) << t;
            for (; mask; mask &= mask - 1) {  // one branch per passing column
                const size_t t = static_cast<size_t>(__builtin_ctz(mask));
                insert(t0 + t, kk[t], j);
            }
        }
    }
    for (size_t t = 0; t < w; ++t) {
        Cand<K>* h = held + t * k;
        if (!sorted) std::sort(h, h + k, [](const Cand<K>& a, const Cand<K>& b) { return a.idx < b.idx; });
        for (size_t j = 0; j < k; ++j) {
            vout[j * inner + t] = src[static_cast<size_t>(h[j].idx) * inner + t];
            iout[j * inner + t] = static_cast<int64_t>(h[j].idx);
        }
    }
}

/// Sorts k (value, index) pairs in ascending index order by rank (best first).
template <class T, KeyMode M>
void sort_emitted(typename T::S* values, int64_t* indices, size_t k, int nthreads) {
    using K = typename T::K;
    using S = typename T::S;
    Arena a(2 * k * sizeof(Cand<K>) + k * (sizeof(S) + sizeof(int64_t)) + 4 * 64);
    Cand<K>* c = a.take<Cand<K>>(k);
    Cand<K>* tmp = a.take<Cand<K>>(k);
    S* vt = a.take<S>(k);
    int64_t* it = a.take<int64_t>(k);
    const int nt = std::max(1, std::min(nthreads, threads_for(k, size_t(1) << 16)));
    parallel_for(k, nt, [&](int, size_t lo, size_t hi) {
        for (size_t j = lo; j < hi; ++j) c[j] = Cand<K>{T::template key<M>(values[j]), static_cast<uint32_t>(j)};
    });
    radix_sort_desc<K>(c, tmp, k, nt);
    // gather everything first, then write back: a part reads entries of every other part
    parallel_for(k, nt, [&](int, size_t lo, size_t hi) {
        for (size_t j = lo; j < hi; ++j) {
            vt[j] = values[c[j].idx];
            it[j] = indices[c[j].idx];
        }
    });
    parallel_for(k, nt, [&](int, size_t lo, size_t hi) {
        std::memcpy(values + lo, vt + lo, (hi - lo) * sizeof(S));
        std::memcpy(indices + lo, it + lo, (hi - lo) * sizeof(int64_t));
    });
}

template <class T, KeyMode M>
void run(const void* xv, size_t outer, size_t n, size_t inner, size_t k, bool sorted, void* vv, int64_t* iout,
         int nthreads) {
    using S = typename T::S;
    const S* x = static_cast<const S*>(xv);
    S* vout = static_cast<S*>(vv);
    const size_t rows = outer * inner;
    // a few long float rows: the whole-vector engine, parallel within each row
    constexpr bool engine_ok = T::dtype == DType::F32 || T::dtype == DType::F64 || T::dtype == DType::F16 ||
                               T::dtype == DType::BF16;
    if (engine_ok && M != KeyMode::SmallestMagnitude && inner == 1 && n >= kLongRow &&
        (outer == 1 || outer < static_cast<size_t>(nthreads))) {
        ScoreSpec spec{M, 2.0, 1.0};
        Budget budget;
        budget.k = k;
        for (size_t o = 0; o < outer; ++o) {
            Segment seg;
            seg.data = x + o * n;
            seg.n = n;
            seg.dtype = T::dtype;
            Selection sel = select({seg}, spec, budget, nthreads);
            int64_t* ip = iout + o * k;
            void* vp = vout + o * k;
            sel.emit(&ip, &vp);
            if (sorted && k < (size_t(1) << 32))
                sort_emitted<T, M>(vout + o * k, iout + o * k, k, nthreads);
            else if (sorted)  // positions no longer fit the radix sort's 32-bit slots
                order_by_rank(T::dtype, M, vout + o * k, iout + o * k, k);
        }
        return;
    }
    GS_CHECK(n < (size_t(1) << 32), "input: a dimension of 2^32 or more elements along dim is not supported");
    const Kernels& kern = active_kernels();
    const size_t tile = inner == 1 ? 0 : kTile;
    // columns per unit when inner > 1: a few winners read the columns in place, kWide at a
    // time; otherwise kTile columns are gathered into contiguous rows
    const bool few = k <= kFew && k * 16 <= n;
    int nt = std::min(nthreads, threads_for(rows * n, size_t(1) << 14));
    size_t block = few ? kWide : kTile;
    while (few && block > 16 && outer * ((inner + block - 1) / block) < static_cast<size_t>(nt)) block /= 2;
    const size_t blocks_per_o = inner == 1 ? 1 : (inner + block - 1) / block;
    const size_t units = inner == 1 ? outer : outer * blocks_per_o;
    nt = static_cast<int>(std::max<size_t>(1, std::min<size_t>(static_cast<size_t>(nt), units)));
    parallel_for(units, nt, [&](int, size_t lo, size_t hi) {
        if (lo >= hi) return;
        Arena arena(Scratch<T>::bytes(n, k, tile));
        Scratch<T> s(arena, n, k, tile);
        for (size_t u = lo; u < hi; ++u) {
            if (inner == 1) {
                row_topk<T, M>(x + u * n, n, k, sorted, vout + u * k, iout + u * k, 1, s, kern);
                continue;
            }
            const size_t o = u / blocks_per_o;
            const size_t i0 = (u % blocks_per_o) * block;
            const size_t w = std::min(block, inner - i0);
            const S* src = x + o * n * inner + i0;
            if (few) {
                wide_few<T, M>(src, n, inner, w, k, sorted, vout + o * k * inner + i0, iout + o * k * inner + i0, s);
                continue;
            }
            const size_t ts = tile_stride<S>(n);
            for (size_t j = 0; j < n; ++j, src += inner)
                for (size_t t = 0; t < w; ++t) s.tilebuf[t * ts + j] = src[t];
            for (size_t t = 0; t < w; ++t)
                row_topk<T, M>(s.tilebuf + t * ts, n, k, sorted, vout + o * k * inner + i0 + t,
                               iout + o * k * inner + i0 + t, inner, s, kern);
        }
    });
}

}  // namespace
}  // namespace rows

void topk_axis(DType dtype, KeyMode mode, const void* x, size_t outer, size_t n, size_t inner, size_t k,
               bool sorted, void* values, int64_t* indices, int nthreads) {
    GS_CHECK(dtype_code_valid(static_cast<int>(dtype)),
             "dtype: unsupported dtype code " + std::to_string(static_cast<int>(dtype)));
    const int m = static_cast<int>(mode);
    GS_CHECK(m >= 0 && m <= 3, "mode: unknown ranking mode " + std::to_string(m));
    GS_CHECK(k <= n, "k: must be in [0, " + std::to_string(n) + "], got " + std::to_string(k));
    if (k == 0 || outer == 0 || inner == 0) return;
    const int nt = nthreads > 0 ? nthreads : get_num_threads();
    rows::with_type(dtype, [&](auto tt) {
        using T = decltype(tt);
        rows::with_mode(mode, [&](auto mm) {
            rows::run<T, decltype(mm)::value>(x, outer, n, inner, k, sorted, values, indices, nt);
        });
    });
}

}  // namespace gradsparse
