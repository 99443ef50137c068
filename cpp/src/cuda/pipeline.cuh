// gradsparse — CUDA engine: the kernels of count and threshold selection (stages 1-6 of select.cu) and of
// the error-feedback residual update.
// Included by select.cu only (one translation unit holds every selection kernel).
#pragma once

#include <cub/block/block_radix_sort.cuh>
#include <cub/block/block_reduce.cuh>
#include <cub/block/block_scan.cuh>

#include "kernels.cuh"

namespace gradsparse {
namespace cuda {
namespace detail {
namespace {

using ull = unsigned long long;

// ------------------------------------------------------------------ element access

// Raw bits of element `local` of segment s; with g, the accumulated e + g (float32).
template <class F>
__device__ inline typename F::uint raw_at(const SegDesc& s, int64_t local, const float* g) {
    using Raw = typename F::uint;
    if constexpr (std::is_same<F, keys::F32>::value) {
        if (g) return f32_bits(static_cast<const float*>(s.data)[local] + g[local]);
    }
    return static_cast<const Raw*>(s.data)[local];
}

// ------------------------------------------------------------------ 1. sample

template <class F, bool Native>
__global__ void __launch_bounds__(kThreads) k_sample(View v, Scorer<F, Native> sc, State* st, int64_t hi_rank,
                                                     int64_t lo_rank, const float* g) {
    using Key = typename Scorer<F, Native>::Key;
    using Sort = cub::BlockRadixSort<Key, kThreads, kRounds>;
    __shared__ typename Sort::TempStorage tmp;
    Key keys[kRounds];
    for (int i = 0; i < kRounds; ++i) {
        const int64_t j = static_cast<int64_t>(threadIdx.x) * kRounds + i;
        const int64_t p = ((2 * j + 1) * v.total) / (2 * static_cast<int64_t>(kSample));
        const SegDesc& s = seg_of_index(v, p);
        const int64_t local = p - s.offset;
        keys[i] = sc.key(raw_at<F>(s, local, g), s, local);
    }
    Sort(tmp).SortDescending(keys);
    for (int i = 0; i < kRounds; ++i) {
        const int64_t rank = static_cast<int64_t>(threadIdx.x) * kRounds + i;
        if (rank == hi_rank) st->hi = keys[i];
        if (rank == lo_rank) st->lo = keys[i];
    }
    st->hist[threadIdx.x] = 0;
    if (threadIdx.x == 0) {
        if (hi_rank < 0) st->hi = key_max<Key>();
        if (lo_rank >= kSample) st->lo = 0;
        st->sure = 0;
        st->band = 0;
        st->prefix = 0;
    }
}

// ------------------------------------------------------------------ 2. band pass

template <class F, bool Native>
__global__ void __launch_bounds__(kThreads)
    k_band(View v, Scorer<F, Native> sc, State* st, unsigned* blk_gt, unsigned* blk_eq,
           typename Scorer<F, Native>::Key* band_key, unsigned* band_tile, int64_t cap, const float* g) {
    using Key = typename Scorer<F, Native>::Key;
    using Reduce = cub::BlockReduce<unsigned, kThreads>;
    using Scan = cub::BlockScan<unsigned, kThreads>;
    __shared__ union {
        typename Reduce::TempStorage reduce;
        typename Scan::TempStorage scan;
    } tmp;
    __shared__ ull base;
    const int64_t t = blockIdx.x;
    const SegDesc& s = seg_of_tile(v, t);
    const int64_t lb = (t - s.tile_start) * kTile;
    const int64_t len = s.n - lb < kTile ? s.n - lb : kTile;
    const Key hi = static_cast<Key>(st->hi), lo = static_cast<Key>(st->lo);
    Key kv[kRounds];
    unsigned nsure = 0, nband = 0;
    for (int i = 0; i < kRounds; ++i) {
        const int64_t j = static_cast<int64_t>(i) * kThreads + threadIdx.x;
        kv[i] = 0;
        if (j < len) {
            const int64_t local = lb + j;
            typename F::uint b = raw_at<F>(s, local, g);
            if constexpr (std::is_same<F, keys::F32>::value) {
                if (g) static_cast<float*>(const_cast<void*>(s.data))[local] = bits_f32(b);
            }
            const Key k = sc.key(b, s, local);
            kv[i] = k;
            nsure += k > hi;
            nband += (k >= lo && k <= hi);
        }
    }
    const unsigned sure = Reduce(tmp.reduce).Sum(nsure);
    __syncthreads();
    unsigned off = 0, total = 0;
    Scan(tmp.scan).ExclusiveSum(nband, off, total);
    if (threadIdx.x == 0) {
        blk_gt[t] = sure;
        blk_eq[t] = 0;
        if (sure) atomicAdd(&st->sure, static_cast<ull>(sure));
        base = total ? atomicAdd(&st->band, static_cast<ull>(total)) : 0;
    }
    __syncthreads();
    if (nband == 0) return;
    ull pos = base + off;
    for (int i = 0; i < kRounds; ++i) {
        const int64_t j = static_cast<int64_t>(i) * kThreads + threadIdx.x;
        if (j < len && kv[i] >= lo && kv[i] <= hi) {
            if (pos < static_cast<ull>(cap)) {
                band_key[pos] = kv[i];
                band_tile[pos] = static_cast<unsigned>(t);
            }
            ++pos;
        }
    }
}

// ------------------------------------------------------------------ 3. the check

__global__ void k_check(State* st, ull k, int64_t cap) {
    const ull sure = st->sure, band = st->band;
    const bool ok = sure < k && sure + band >= k && band <= static_cast<ull>(cap);
    st->path = ok ? kPathBand : kPathFull;
    st->rem = ok ? k - sure : k;
    st->prefix = 0;
}

// Threshold and energy plans: every key is a candidate, the keep rule given directly.
__global__ void k_fixed(State* st, ull kstar, ull ties) {
    st->path = kPathFull;
    st->kstar = kstar;
    st->rem = ties;
    st->prefix = 0;
    st->kept = 0;
}

// ------------------------------------------------------------------ 4. radix selection

template <class F, bool Native>
__global__ void __launch_bounds__(kThreads)
    k_hist(View v, Scorer<F, Native> sc, State* st, const typename Scorer<F, Native>::Key* band_key, int64_t cap,
           int pass) {
    using Key = typename Scorer<F, Native>::Key;
    constexpr int bits = 8 * sizeof(Key);
    __shared__ unsigned h[256];
    h[threadIdx.x] = 0;
    __syncthreads();
    const int shift = bits - 8 * (pass + 1);
    const Key prefix = static_cast<Key>(st->prefix);
    auto count = [&](Key k) {
        if (pass == 0 || (k >> (shift + 8)) == (prefix >> (shift + 8)))
            atomicAdd(&h[(k >> shift) & 255u], 1u);
    };
    const int64_t b = blockIdx.x;
    if (st->path == kPathBand) {
        const ull nb = st->band < static_cast<ull>(cap) ? st->band : static_cast<ull>(cap);
        const int64_t end = (b + 1) * kTile < static_cast<int64_t>(nb) ? (b + 1) * kTile : static_cast<int64_t>(nb);
        for (int64_t j = b * kTile + threadIdx.x; j < end; j += kThreads) count(band_key[j]);
    } else if (b < v.ntiles) {
        const SegDesc& s = seg_of_tile(v, b);
        const int64_t lb = (b - s.tile_start) * kTile;
        const int64_t len = s.n - lb < kTile ? s.n - lb : kTile;
        for (int64_t j = threadIdx.x; j < len; j += kThreads) count(sc.key(raw_at<F>(s, lb + j, nullptr), s, lb + j));
    }
    __syncthreads();
    if (h[threadIdx.x]) atomicAdd(&st->hist[threadIdx.x], static_cast<ull>(h[threadIdx.x]));
}

// Fixes the next 8 bits of K*: the digit whose bin holds the rem-th largest key.
__global__ void __launch_bounds__(256) k_step(State* st, int pass, int bits) {
    using Scan = cub::BlockScan<ull, 256>;
    __shared__ typename Scan::TempStorage tmp;
    const int bin = 255 - static_cast<int>(threadIdx.x);  // thread 0 takes the top bin
    const ull count = st->hist[bin];
    const ull rem = st->rem;
    const ull prefix = st->prefix;
    ull above = 0;
    Scan(tmp).ExclusiveSum(count, above);  // keys in higher bins
    __syncthreads();
    st->hist[bin] = 0;
    const int shift = bits - 8 * (pass + 1);
    if (above < rem && rem <= above + count) {
        const ull p = prefix | (static_cast<ull>(bin) << shift);
        st->prefix = p;
        st->rem = rem - above;
        if (shift == 0) st->kstar = p;
    }
}

// ------------------------------------------------------------------ 5. per-tile counts

template <class F, bool Native>
__global__ void __launch_bounds__(kThreads)
    k_counts(View v, Scorer<F, Native> sc, State* st, const typename Scorer<F, Native>::Key* band_key,
             const unsigned* band_tile, unsigned* blk_gt, unsigned* blk_eq, const float* g) {
    using Key = typename Scorer<F, Native>::Key;
    using Reduce = cub::BlockReduce<unsigned, kThreads>;
    __shared__ typename Reduce::TempStorage tmp;
    const Key T = static_cast<Key>(st->kstar);
    const int64_t b = blockIdx.x;
    if (st->path == kPathBand) {
        const ull nb = st->band;  // <= cap on this path
        const int64_t end = (b + 1) * kTile < static_cast<int64_t>(nb) ? (b + 1) * kTile : static_cast<int64_t>(nb);
        for (int64_t j = b * kTile + threadIdx.x; j < end; j += kThreads) {
            const Key k = band_key[j];
            if (k > T) atomicAdd(&blk_gt[band_tile[j]], 1u);
            else if (k == T) atomicAdd(&blk_eq[band_tile[j]], 1u);
        }
        return;
    }
    if (b >= v.ntiles) return;
    const SegDesc& s = seg_of_tile(v, b);
    const int64_t lb = (b - s.tile_start) * kTile;
    const int64_t len = s.n - lb < kTile ? s.n - lb : kTile;
    unsigned gt = 0, eq = 0;
    for (int64_t j = threadIdx.x; j < len; j += kThreads) {
        typename F::uint raw = raw_at<F>(s, lb + j, g);
        if constexpr (std::is_same<F, keys::F32>::value) {
            if (g) static_cast<float*>(const_cast<void*>(s.data))[lb + j] = bits_f32(raw);
        }
        const Key k = sc.key(raw, s, lb + j);
        gt += k > T;
        eq += k == T;
    }
    const unsigned sgt = Reduce(tmp).Sum(gt);
    __syncthreads();
    const unsigned seq = Reduce(tmp).Sum(eq);
    if (threadIdx.x == 0) {
        blk_gt[b] = sgt;
        blk_eq[b] = seq;
    }
}

// One block: the ties each tile keeps (the first rem ties in tile order) and each tile's
// output offset.
__global__ void __launch_bounds__(1024) k_scan(State* st, const unsigned* blk_gt, const unsigned* blk_eq,
                                               unsigned* take_eq, int64_t* out_off, int64_t ntiles) {
    using Scan = cub::BlockScan<ull, 1024>;
    __shared__ typename Scan::TempStorage tmp;
    const ull need = st->rem;
    ull carry_eq = 0, carry_out = 0;
    for (int64_t base = 0; base < ntiles; base += 1024) {
        const int64_t t = base + threadIdx.x;
        const ull eq = t < ntiles ? blk_eq[t] : 0, gt = t < ntiles ? blk_gt[t] : 0;
        ull eq_before = 0, eq_total = 0;
        Scan(tmp).ExclusiveSum(eq, eq_before, eq_total);
        __syncthreads();
        const ull before = carry_eq + eq_before;
        const ull take = before >= need ? 0 : (need - before < eq ? need - before : eq);
        ull off = 0, sel_total = 0;
        Scan(tmp).ExclusiveSum(gt + take, off, sel_total);
        __syncthreads();
        if (t < ntiles) {
            take_eq[t] = static_cast<unsigned>(take);
            out_off[t] = static_cast<int64_t>(carry_out + off);
        }
        carry_eq += eq_total;
        carry_out += sel_total;
    }
    if (threadIdx.x == 0) st->kept = carry_out;
}

// ------------------------------------------------------------------ 6. write pass

template <class F, bool Native, class Idx>
__global__ void __launch_bounds__(kThreads)
    k_write(View v, Scorer<F, Native> sc, const State* st, const unsigned* blk_gt, const unsigned* take_eq,
            const int64_t* out_off, Idx* out_idx, typename F::uint* out_val) {
    using Key = typename Scorer<F, Native>::Key;
    using Scan = cub::BlockScan<unsigned, kThreads>;
    __shared__ typename Scan::TempStorage tmp;
    const int64_t t = blockIdx.x;
    const unsigned teq = take_eq[t];
    const unsigned want = blk_gt[t] + teq;
    if (want == 0) return;
    const Key T = static_cast<Key>(st->kstar);
    const SegDesc& s = seg_of_tile(v, t);
    const int64_t lb = (t - s.tile_start) * kTile;
    const int64_t len = s.n - lb < kTile ? s.n - lb : kTile;
    const int64_t o = out_off[t];
    unsigned written = 0, eq_seen = 0;
    for (int i = 0; i < kRounds && written < want; ++i) {
        const int64_t j = static_cast<int64_t>(i) * kThreads + threadIdx.x;
        typename F::uint raw = 0;
        bool gt = false, eq = false;
        if (j < len) {
            raw = raw_at<F>(s, lb + j, nullptr);
            const Key k = sc.key(raw, s, lb + j);
            gt = k > T;
            eq = k == T;
        }
        bool take = gt;
        if (teq > 0) {  // the same for the whole block
            unsigned rank = 0, ties = 0;
            Scan(tmp).ExclusiveSum(eq ? 1u : 0u, rank, ties);
            __syncthreads();
            take = gt || (eq && eq_seen + rank < teq);
            eq_seen += ties;
        }
        unsigned pos = 0, taken = 0;
        Scan(tmp).ExclusiveSum(take ? 1u : 0u, pos, taken);
        __syncthreads();
        if (take) {
            const int64_t at = o + written + pos;
            out_idx[at] = static_cast<Idx>(s.offset + lb + j);
            if (out_val) out_val[at] = raw;
        }
        written += taken;
    }
}

// ------------------------------------------------------------------ error feedback: residuals

// e[i] = acc - sent at the kept indices; bf16: values rounded from the float32 accumulations.
__global__ void k_feedback_finish(float* e, const int32_t* idx, const float* acc, uint16_t* bf16_out, int64_t count) {
    const int64_t j = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
    if (j >= count) return;
    const int32_t i = idx[j];
    if (bf16_out) {
        const float a = acc[j];
        const uint16_t h = to_bf16_saturated(f32_bits(a));
        bf16_out[j] = h;
        e[i] = isfinite(a) ? a - bits_f32(static_cast<uint32_t>(h) << 16) : 0.0f;
    } else {
        e[i] = 0.0f;
    }
}

}  // namespace
}  // namespace detail
}  // namespace cuda
}  // namespace gradsparse
