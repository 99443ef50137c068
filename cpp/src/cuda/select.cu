// gradsparse — CUDA engine: exact count, threshold and energy selection, and the fused
// error-feedback step.
//
// Count budgets follow the CPU engine's plan, with every decision taken on the device (no
// host round trip):
//   1. sample: 4096 keys at fixed strided positions, sorted in one block; the keys at rank
//      r -/+ margin (r = k * 4096 / total) bracket the k-th key: [lo, hi];
//   2. band pass (read 1): per tile, the count of keys > hi; every key in [lo, hi] is
//      appended (key, tile) to the band buffer;
//   3. check: the bracket held if #(> hi) < k <= #(> hi) + #band and the band fit; else
//      the radix passes below run over all keys instead (the "full" path);
//   4. radix selection, 8 bits per pass, over the band (or all keys): the exact k-th key
//      K* and the number of ties at K* to keep (the first ones in global order);
//   5. per-tile counts of keys > K* and == K*, one scan over the tiles;
//   6. write pass (read 2): each tile writes its kept (index, value) pairs in ascending
//      index order; ties at K* go to the lowest indices.
// Results are integers all the way (counts, keys, ranks): deterministic for any stream,
// launch order of blocks, or device.
#include <cub/block/block_radix_sort.cuh>
#include <cub/block/block_reduce.cuh>
#include <cub/block/block_scan.cuh>
#include <cub/device/device_radix_sort.cuh>

#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <string>

#include "kernels.cuh"
#include "launch.hpp"

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
             const unsigned* band_tile, int64_t cap, unsigned* blk_gt, unsigned* blk_eq, const float* g) {
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

// ------------------------------------------------------------------ energy budgets

template <class F, bool Native>
__global__ void __launch_bounds__(kThreads) k_keys(View v, Scorer<F, Native> sc,
                                                   typename Scorer<F, Native>::Key* keys_out, int64_t* idx_out) {
    const int64_t t = blockIdx.x;
    const SegDesc& s = seg_of_tile(v, t);
    const int64_t lb = (t - s.tile_start) * kTile;
    const int64_t len = s.n - lb < kTile ? s.n - lb : kTile;
    for (int64_t j = threadIdx.x; j < len; j += kThreads) {
        const int64_t gi = s.offset + lb + j;
        keys_out[gi] = sc.key(raw_at<F>(s, lb + j, nullptr), s, lb + j);
        idx_out[gi] = gi;
    }
}

__device__ inline double cost_at(const View& v, CostKind kind, bool f64, int64_t gi) {
    const SegDesc& s = seg_of_index(v, gi);
    if (kind == CostKind::Array) {
        const int64_t local = gi - s.offset;
        return f64 ? static_cast<const double*>(s.cost)[local] : static_cast<double>(static_cast<const float*>(s.cost)[local]);
    }
    return kind == CostKind::Scalar ? s.cost_scalar : 1.0;
}

// One warp: the CPU's sequential float64 sum of the costs in rank order (every lane runs
// the same additions in the same order, so all agree where it stops).
__global__ void k_energy(View v, CostKind kind, bool f64, const int64_t* ranked, double budget, State* st) {
    const unsigned lane = threadIdx.x;
    double cum = 0.0;
    ull kept = 0;
    bool stop = false;
    for (int64_t base = 0; base < v.total && !stop; base += 32) {
        const int64_t j = base + lane;
        const double mine = j < v.total ? cost_at(v, kind, f64, ranked[j]) : 0.0;
        for (int l = 0; l < 32; ++l) {
            const double c = __shfl_sync(0xFFFFFFFFu, mine, l);
            if (!stop && base + l < v.total) {
                const double next = cum + c;
                if (next > budget) stop = true;
                else { cum = next; ++kept; }
            }
        }
    }
    if (lane == 0) st->kept = kept;
}

template <class F>
__global__ void k_gather(View v, const int64_t* idx, int64_t count, int64_t* out_idx, typename F::uint* out_val) {
    const int64_t j = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
    if (j >= count) return;
    const int64_t gi = idx[j];
    out_idx[j] = gi;
    if (out_val) {
        const SegDesc& s = seg_of_index(v, gi);
        out_val[j] = static_cast<const typename F::uint*>(s.data)[gi - s.offset];
    }
}

}  // namespace

// ------------------------------------------------------------------ host side

namespace {

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }
size_t align(size_t x) { return (x + 255) & ~size_t(255); }

/// Where everything lives in the workspace.
struct Layout {
    size_t state = 0, table = 0, blk_gt = 0, blk_eq = 0, take_eq = 0, out_off = 0, band_key = 0, band_tile = 0,
           acc = 0, keys_a = 0, keys_b = 0, idx_a = 0, idx_b = 0, temp = 0, temp_bytes = 0, bytes = 0;
};

/// The plan of one selection: segments, tiles, the sample's ranks and the band buffer.
struct Plan {
    View view{};
    std::vector<SegDesc> table;
    int64_t k = 0;
    int64_t hi_rank = -1, lo_rank = kSample, cap = 0;
    size_t key_bytes = 4;
    Layout lay;
};

size_t key_bytes_of(const Scoring& sc) { return sc.native ? dtype_size(sc.dtype) : 8; }

void check_scoring(const Scoring& sc) {
    GS_CHECK(dtype_is_float(sc.dtype), "x: the CUDA engine takes float32, float64, float16 or bfloat16");
    GS_CHECK(!sc.native ? (sc.q == 1 || sc.q == 2) : true, "q: the CUDA engine computes q = 1 or 2 only");
    GS_CHECK(sc.alpha == 0 || sc.alpha == 1, "alpha: the CUDA engine computes alpha = 0 or 1 only for cost arrays");
    GS_CHECK(sc.native || sc.mode == KeyMode::Magnitude, "mode: score keys rank by magnitude");
    GS_CHECK(sc.cost_dtype == DType::F32 || sc.cost_dtype == DType::F64, "cost: float32 or float64 costs");
}

// The sorts of an energy plan: temp bytes of the two radix sorts (a query; no launch).
template <class Key>
size_t energy_temp(int64_t total) {
    size_t a = 0, b = 0;
    Key* kn = nullptr;
    int64_t* in = nullptr;
    throw_on(cub::DeviceRadixSort::SortPairsDescending(nullptr, a, kn, kn, in, in, total), "energy sort size");
    throw_on(cub::DeviceRadixSort::SortKeys(nullptr, b, in, in, total), "energy sort size");
    return std::max(a, b);
}

Plan make_plan(const std::vector<int64_t>& sizes, const Scoring& sc, const Budget& budget, bool feedback) {
    check_scoring(sc);
    Plan p;
    int64_t total = 0, tiles = 0;
    for (int64_t n : sizes) {
        GS_CHECK(n >= 0, "x: negative size");
        if (n == 0) {
            total += 0;
            continue;
        }
        SegDesc d{};
        d.n = n;
        d.offset = total;
        d.tile_start = tiles;
        p.table.push_back(d);
        total += n;
        tiles += ceil_div(n, kTile);
    }
    GS_CHECK(total > 0, "x: input is empty");
    GS_CHECK(tiles < (int64_t(1) << 31), "x: too many elements for one CUDA selection");
    p.view.total = total;
    p.view.ntiles = tiles;
    p.view.nseg = static_cast<int>(p.table.size());
    p.key_bytes = key_bytes_of(sc);
    Layout& L = p.lay;
    size_t at = 0;
    auto put = [&](size_t& field, size_t bytes) {
        field = at;
        at += align(bytes);
    };
    put(L.state, sizeof(State));
    if (p.view.nseg > 1) put(L.table, sizeof(SegDesc) * p.table.size());
    if (budget.kind == Budget::Energy) {
        GS_CHECK(!feedback, "budget: error feedback on CUDA takes a count or a threshold");
        put(L.keys_a, p.key_bytes * static_cast<size_t>(total));
        put(L.keys_b, p.key_bytes * static_cast<size_t>(total));
        put(L.idx_a, sizeof(int64_t) * static_cast<size_t>(total));
        put(L.idx_b, sizeof(int64_t) * static_cast<size_t>(total));
        L.temp_bytes = p.key_bytes == 2   ? energy_temp<uint16_t>(total)
                       : p.key_bytes == 4 ? energy_temp<uint32_t>(total)
                                          : energy_temp<ull>(total);
        put(L.temp, L.temp_bytes);
        L.bytes = at;
        return p;
    }
    put(L.blk_gt, sizeof(unsigned) * static_cast<size_t>(tiles));
    put(L.blk_eq, sizeof(unsigned) * static_cast<size_t>(tiles));
    put(L.take_eq, sizeof(unsigned) * static_cast<size_t>(tiles));
    put(L.out_off, sizeof(int64_t) * static_cast<size_t>(tiles));
    if (budget.kind == Budget::Count) {
        GS_CHECK(budget.k >= 1 && static_cast<int64_t>(budget.k) <= total,
                 "k: must be in [1, " + std::to_string(total) + "], got " + std::to_string(budget.k));
        p.k = static_cast<int64_t>(budget.k);
        if (total <= kSmall) {
            p.hi_rank = -1;
            p.lo_rank = kSample;
            p.cap = total;
        } else {
            const double r = static_cast<double>(p.k) * kSample / static_cast<double>(total);
            const int64_t margin = static_cast<int64_t>(std::ceil(4.0 * std::sqrt(r + 1.0))) + 8;
            p.hi_rank = static_cast<int64_t>(std::floor(r)) - margin;
            if (p.hi_rank < 0) p.hi_rank = -1;
            p.lo_rank = static_cast<int64_t>(std::ceil(r)) + margin;
            const int64_t top = std::min<int64_t>(p.lo_rank, kSample), bottom = std::max<int64_t>(p.hi_rank, 0);
            const double frac = static_cast<double>(top - bottom + 1) / kSample;
            p.cap = std::min<int64_t>(total, static_cast<int64_t>(1.5 * frac * static_cast<double>(total)) + 4096);
        }
        put(L.band_key, p.key_bytes * static_cast<size_t>(p.cap));
        put(L.band_tile, sizeof(unsigned) * static_cast<size_t>(p.cap));
        if (feedback) put(L.acc, sizeof(float) * static_cast<size_t>(p.k));
    } else if (feedback) {
        put(L.acc, sizeof(float) * static_cast<size_t>(total));  // threshold: up to every element
    }
    L.bytes = at;
    return p;
}

// Binds the plan to the segments' addresses and the workspace; copies the segment table.
void bind(Plan& p, const std::vector<DevSegment>& segs, void* ws, size_t ws_bytes, cudaStream_t stream) {
    GS_CHECK(ws != nullptr && ws_bytes >= p.lay.bytes,
             "workspace: needs " + std::to_string(p.lay.bytes) + " bytes, got " + std::to_string(ws_bytes));
    size_t j = 0;
    for (const DevSegment& s : segs) {
        if (s.n == 0) continue;
        GS_CHECK(s.data != nullptr, "x: null device address");
        SegDesc& d = p.table[j++];
        d.data = s.data;
        d.cost = s.cost;
        d.cost_pow = s.cost_pow;
        d.cost_scalar = s.cost_scalar;
    }
    p.view.one = p.table[0];
    p.view.table = nullptr;
    if (p.view.nseg > 1) {
        SegDesc* dev = reinterpret_cast<SegDesc*>(static_cast<char*>(ws) + p.lay.table);
        throw_on(cudaMemcpyAsync(dev, p.table.data(), sizeof(SegDesc) * p.table.size(), cudaMemcpyHostToDevice, stream),
                 "segment table");
        p.view.table = dev;
    }
}

template <class T>
T* at(void* ws, size_t off) {
    return reinterpret_cast<T*>(static_cast<char*>(ws) + off);
}

// The count pipeline (stages 1-5) for one key type; g: accumulate e += g on the way.
template <class F, bool Native>
void run_count(const Plan& p, const Scorer<F, Native>& sc, void* ws, cudaStream_t stream, const float* g) {
    using Key = typename Scorer<F, Native>::Key;
    const Layout& L = p.lay;
    State* st = at<State>(ws, L.state);
    unsigned* blk_gt = at<unsigned>(ws, L.blk_gt);
    unsigned* blk_eq = at<unsigned>(ws, L.blk_eq);
    Key* band_key = at<Key>(ws, L.band_key);
    unsigned* band_tile = at<unsigned>(ws, L.band_tile);
    const unsigned tiles = static_cast<unsigned>(p.view.ntiles);
    const unsigned band_blocks = static_cast<unsigned>(ceil_div(p.cap, kTile));
    const unsigned grid = std::max(tiles, band_blocks);
    k_sample<F, Native><<<1, kThreads, 0, stream>>>(p.view, sc, st, p.hi_rank, p.lo_rank, g);
    k_band<F, Native><<<tiles, kThreads, 0, stream>>>(p.view, sc, st, blk_gt, blk_eq, band_key, band_tile, p.cap, g);
    k_check<<<1, 1, 0, stream>>>(st, static_cast<ull>(p.k), p.cap);
    constexpr int bits = 8 * sizeof(Key);
    for (int pass = 0; pass < bits / 8; ++pass) {
        k_hist<F, Native><<<grid, kThreads, 0, stream>>>(p.view, sc, st, band_key, p.cap, pass);
        k_step<<<1, 256, 0, stream>>>(st, pass, bits);
    }
    k_counts<F, Native><<<grid, kThreads, 0, stream>>>(p.view, sc, st, band_key, band_tile, p.cap, blk_gt, blk_eq,
                                                       nullptr);
    k_scan<<<1, 1024, 0, stream>>>(st, blk_gt, blk_eq, at<unsigned>(ws, L.take_eq), at<int64_t>(ws, L.out_off),
                                   p.view.ntiles);
    throw_on(cudaGetLastError(), "selection launch");
}

// Threshold plan: every key >= tkey is kept (stages 5 only); g: accumulate.
template <class F, bool Native>
void run_threshold(const Plan& p, const Scorer<F, Native>& sc, ull tkey, void* ws, cudaStream_t stream,
                   const float* g) {
    const Layout& L = p.lay;
    State* st = at<State>(ws, L.state);
    // keep key > tkey - 1; tkey == 0 keeps everything (every key == 0 is a tie, all kept)
    k_fixed<<<1, 1, 0, stream>>>(st, tkey == 0 ? 0 : tkey - 1, tkey == 0 ? ~ull(0) : 0);
    unsigned* blk_gt = at<unsigned>(ws, L.blk_gt);
    unsigned* blk_eq = at<unsigned>(ws, L.blk_eq);
    using Key = typename Scorer<F, Native>::Key;
    k_counts<F, Native><<<static_cast<unsigned>(p.view.ntiles), kThreads, 0, stream>>>(
        p.view, sc, st, static_cast<const Key*>(nullptr), nullptr, 0, blk_gt, blk_eq, g);
    k_scan<<<1, 1024, 0, stream>>>(st, blk_gt, blk_eq, at<unsigned>(ws, L.take_eq), at<int64_t>(ws, L.out_off),
                                   p.view.ntiles);
    throw_on(cudaGetLastError(), "threshold launch");
}

template <class F, bool Native, class Idx>
void run_write(const Plan& p, const Scorer<F, Native>& sc, void* ws, cudaStream_t stream, Idx* out_idx,
               typename F::uint* out_val) {
    const Layout& L = p.lay;
    k_write<F, Native, Idx><<<static_cast<unsigned>(p.view.ntiles), kThreads, 0, stream>>>(
        p.view, sc, at<State>(ws, L.state), at<unsigned>(ws, L.blk_gt), at<unsigned>(ws, L.take_eq),
        at<int64_t>(ws, L.out_off), out_idx, out_val);
    throw_on(cudaGetLastError(), "write launch");
}

int64_t read_kept(void* ws, const Plan& p, cudaStream_t stream) {
    ull kept = 0;
    throw_on(cudaMemcpyAsync(&kept, &at<State>(ws, p.lay.state)->kept, sizeof(kept), cudaMemcpyDeviceToHost, stream),
             "count copy");
    throw_on(cudaStreamSynchronize(stream), "selection");
    return static_cast<int64_t>(kept);
}

template <class F, bool Native>
int64_t run_energy(const Plan& p, const Scorer<F, Native>& sc, double energy, void* ws, cudaStream_t stream) {
    using Key = typename Scorer<F, Native>::Key;
    const Layout& L = p.lay;
    Key* ka = at<Key>(ws, L.keys_a);
    Key* kb = at<Key>(ws, L.keys_b);
    int64_t* ia = at<int64_t>(ws, L.idx_a);
    int64_t* ib = at<int64_t>(ws, L.idx_b);
    k_keys<F, Native><<<static_cast<unsigned>(p.view.ntiles), kThreads, 0, stream>>>(p.view, sc, ka, ia);
    size_t temp = L.temp_bytes;
    // stable: equal keys keep ascending global order, the CPU's tie rule
    throw_on(cub::DeviceRadixSort::SortPairsDescending(at<void>(ws, L.temp), temp, ka, kb, ia, ib, p.view.total, 0,
                                                        static_cast<int>(8 * sizeof(Key)), stream),
             "energy sort");
    k_energy<<<1, 32, 0, stream>>>(p.view, sc.cost_kind, sc.cost_f64, ib, energy, at<State>(ws, L.state));
    throw_on(cudaGetLastError(), "energy launch");
    return read_kept(ws, p, stream);
}

template <class F>
void emit_energy(const Plan& p, void* ws, int64_t count, int64_t* out_idx, void* out_val, cudaStream_t stream) {
    const Layout& L = p.lay;
    if (count == 0) return;
    size_t temp = L.temp_bytes;
    int64_t* ib = at<int64_t>(ws, L.idx_b);
    int64_t* ia = at<int64_t>(ws, L.idx_a);
    throw_on(cub::DeviceRadixSort::SortKeys(at<void>(ws, L.temp), temp, ib, ia, count, 0, 64, stream), "energy order");
    k_gather<F><<<static_cast<unsigned>(ceil_div(count, 256)), 256, 0, stream>>>(
        p.view, ia, count, out_idx, static_cast<typename F::uint*>(out_val));
    throw_on(cudaGetLastError(), "energy gather");
}

// Calls fn(F-tag, Native-tag) for the scoring's element format and key space.
template <class Fn>
void dispatch(const Scoring& sc, Fn&& fn) {
    auto with = [&](auto f) {
        using F = decltype(f);
        if (sc.native) fn(F{}, std::true_type{});
        else fn(F{}, std::false_type{});
    };
    switch (sc.dtype) {
        case DType::F32: with(keys::F32{}); break;
        case DType::F64: with(keys::F64{}); break;
        case DType::F16: with(keys::F16{}); break;
        default: with(keys::BF16{}); break;
    }
}

template <class F, bool Native>
Scorer<F, Native> scorer(const Scoring& s) {
    return Scorer<F, Native>{s.mode, s.q, s.alpha, s.cost_kind, s.cost_dtype == DType::F64};
}

std::vector<int64_t> sizes_of(const std::vector<DevSegment>& segs) {
    std::vector<int64_t> n;
    for (const DevSegment& s : segs) n.push_back(s.n);
    return n;
}

// The threshold's score key: tau as a score (q = 1, no cost), CPU's score_key.
ull threshold_key(const Budget& b) {
    GS_CHECK(b.tau >= 0.0 && !std::isnan(b.tau), "tau: must be >= 0 and not NaN");
    return keys::score_key(b.tau);
}

}  // namespace
}  // namespace detail

using namespace detail;

size_t select_workspace(const std::vector<int64_t>& sizes, const Scoring& sc, const Budget& budget) {
    return make_plan(sizes, sc, budget, false).lay.bytes;
}

int64_t select(const std::vector<DevSegment>& segs, const Scoring& sc, const Budget& budget, void* ws,
               size_t ws_bytes, int64_t* out_idx, void* out_val, void* stream_ptr) {
    cudaStream_t stream = static_cast<cudaStream_t>(stream_ptr);
    Plan p = make_plan(sizes_of(segs), sc, budget, false);
    bind(p, segs, ws, ws_bytes, stream);
    int64_t result = 0;
    dispatch(sc, [&](auto f, auto native) {
        using F = decltype(f);
        constexpr bool N = decltype(native)::value;
        const auto s = scorer<F, N>(sc);
        if (budget.kind == Budget::Count) {
            GS_CHECK(out_idx != nullptr, "indices: null output");
            run_count<F, N>(p, s, ws, stream, nullptr);
            run_write<F, N>(p, s, ws, stream, out_idx, static_cast<typename F::uint*>(out_val));
            result = p.k;
        } else if (budget.kind == Budget::Threshold) {
            GS_CHECK(!sc.native && sc.q == 1 && sc.cost_kind == CostKind::None,
                     "tau: a threshold ranks by the score |x| (q = 1, no cost)");
            run_threshold<F, N>(p, s, threshold_key(budget), ws, stream, nullptr);
            result = read_kept(ws, p, stream);
        } else {
            GS_CHECK(std::isfinite(budget.energy) && budget.energy > 0.0, "budget: must be finite and > 0");
            result = run_energy<F, N>(p, s, budget.energy, ws, stream);
        }
    });
    return result;
}

void emit(const std::vector<DevSegment>& segs, const Scoring& sc, const Budget& budget, void* ws, size_t ws_bytes,
          int64_t count, int64_t* out_idx, void* out_val, void* stream_ptr) {
    cudaStream_t stream = static_cast<cudaStream_t>(stream_ptr);
    GS_CHECK(budget.kind != Budget::Count, "emit: a count selection writes its output in select()");
    GS_CHECK(count == 0 || out_idx != nullptr, "indices: null output");
    Plan p = make_plan(sizes_of(segs), sc, budget, false);
    bind(p, segs, ws, ws_bytes, stream);
    if (count == 0) return;
    dispatch(sc, [&](auto f, auto native) {
        using F = decltype(f);
        constexpr bool N = decltype(native)::value;
        if (budget.kind == Budget::Threshold)
            run_write<F, N>(p, scorer<F, N>(sc), ws, stream, out_idx, static_cast<typename F::uint*>(out_val));
        else
            emit_energy<F>(p, ws, count, out_idx, out_val, stream);
    });
}

namespace {

void check_feedback(int64_t n, const Scoring& sc, const Budget& budget) {
    GS_CHECK(sc.dtype == DType::F32, "x: error feedback on CUDA takes float32 buffers");
    GS_CHECK(n >= 1 && n < (int64_t(1) << 31),
             "x: feedback_select takes 1 to 2^31 - 1 elements (int32 indices), got " + std::to_string(n));
    GS_CHECK(budget.kind != Budget::Energy, "budget: error feedback on CUDA takes a count or a threshold");
}

}  // namespace

size_t feedback_workspace(int64_t n, const Scoring& sc, const Budget& budget) {
    check_feedback(n, sc, budget);
    return make_plan({n}, sc, budget, true).lay.bytes;
}

int64_t feedback_select(const float* g, float* e, int64_t n, const DevSegment& cost, const Scoring& sc,
                        const Budget& budget, bool bf16_values, void* ws, size_t ws_bytes, int32_t* out_idx,
                        void* out_val, void* stream_ptr) {
    cudaStream_t stream = static_cast<cudaStream_t>(stream_ptr);
    check_feedback(n, sc, budget);
    GS_CHECK(g != nullptr && e != nullptr, "x: null device address");
    Plan p = make_plan({n}, sc, budget, true);
    DevSegment seg = cost;
    seg.data = e;
    seg.n = n;
    bind(p, {seg}, ws, ws_bytes, stream);
    int64_t result = 0;
    dispatch(sc, [&](auto f, auto native) {
        using F = decltype(f);
        constexpr bool N = decltype(native)::value;
        if constexpr (std::is_same<F, keys::F32>::value) {
            const auto s = scorer<F, N>(sc);
            if (budget.kind == Budget::Count) {
                GS_CHECK(out_idx != nullptr && out_val != nullptr, "indices: null output");
                run_count<F, N>(p, s, ws, stream, g);
                float* vals = bf16_values ? at<float>(ws, p.lay.acc) : static_cast<float*>(out_val);
                run_write<F, N>(p, s, ws, stream, out_idx, reinterpret_cast<uint32_t*>(vals));
                k_feedback_finish<<<static_cast<unsigned>(ceil_div(p.k, 256)), 256, 0, stream>>>(
                    e, out_idx, vals, bf16_values ? static_cast<uint16_t*>(out_val) : nullptr, p.k);
                throw_on(cudaGetLastError(), "feedback launch");
                result = p.k;
            } else {
                GS_CHECK(!sc.native && sc.q == 1 && sc.cost_kind == CostKind::None,
                         "tau: a threshold ranks by the score |x| (q = 1, no cost)");
                run_threshold<F, N>(p, s, threshold_key(budget), ws, stream, g);
                result = read_kept(ws, p, stream);
            }
        }
    });
    return result;
}

void feedback_emit(float* e, int64_t n, const DevSegment& cost, const Scoring& sc, const Budget& budget,
                   bool bf16_values, void* ws, size_t ws_bytes, int64_t count, int32_t* out_idx, void* out_val,
                   void* stream_ptr) {
    cudaStream_t stream = static_cast<cudaStream_t>(stream_ptr);
    check_feedback(n, sc, budget);
    GS_CHECK(budget.kind == Budget::Threshold, "emit: a count selection writes its output in feedback_select()");
    GS_CHECK(count == 0 || (out_idx != nullptr && out_val != nullptr), "indices: null output");
    Plan p = make_plan({n}, sc, budget, true);
    DevSegment seg = cost;
    seg.data = e;
    seg.n = n;
    bind(p, {seg}, ws, ws_bytes, stream);
    if (count == 0) return;
    dispatch(sc, [&](auto f, auto native) {
        using F = decltype(f);
        constexpr bool N = decltype(native)::value;
        if constexpr (std::is_same<F, keys::F32>::value) {
            const auto s = scorer<F, N>(sc);
            float* vals = bf16_values ? at<float>(ws, p.lay.acc) : static_cast<float*>(out_val);
            run_write<F, N>(p, s, ws, stream, out_idx, reinterpret_cast<uint32_t*>(vals));
            k_feedback_finish<<<static_cast<unsigned>(ceil_div(count, 256)), 256, 0, stream>>>(
                e, out_idx, vals, bf16_values ? static_cast<uint16_t*>(out_val) : nullptr, count);
            throw_on(cudaGetLastError(), "feedback launch");
        }
    });
}

}  // namespace cuda
}  // namespace gradsparse
