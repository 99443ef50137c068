// gradsparse — CUDA engine: the host side of a selection: the workspace layout, the plan (tiles, the
// sample's ranks, the band buffer) and the launch sequences.
// Included by select.cu only (one translation unit holds every selection kernel).
#pragma once

#include <cub/device/device_radix_sort.cuh>

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "launch.hpp"
#include "workspace.hpp"
#include "pipeline.cuh"

namespace gradsparse {
namespace cuda {
namespace detail {
namespace {

using ull = unsigned long long;

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

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
    Carver carve;
    carve.put(L.state, sizeof(State));
    if (p.view.nseg > 1) carve.put(L.table, sizeof(SegDesc) * p.table.size());
    if (budget.kind == Budget::Energy) {
        GS_CHECK(!feedback, "budget: error feedback on CUDA takes a count or a threshold");
        carve.put(L.keys_a, p.key_bytes * static_cast<size_t>(total));
        carve.put(L.keys_b, p.key_bytes * static_cast<size_t>(total));
        carve.put(L.idx_a, sizeof(int64_t) * static_cast<size_t>(total));
        carve.put(L.idx_b, sizeof(int64_t) * static_cast<size_t>(total));
        L.temp_bytes = p.key_bytes == 2   ? energy_temp<uint16_t>(total)
                       : p.key_bytes == 4 ? energy_temp<uint32_t>(total)
                                          : energy_temp<ull>(total);
        carve.put(L.temp, L.temp_bytes);
        L.bytes = carve.bytes;
        return p;
    }
    carve.put(L.blk_gt, sizeof(unsigned) * static_cast<size_t>(tiles));
    carve.put(L.blk_eq, sizeof(unsigned) * static_cast<size_t>(tiles));
    carve.put(L.take_eq, sizeof(unsigned) * static_cast<size_t>(tiles));
    carve.put(L.out_off, sizeof(int64_t) * static_cast<size_t>(tiles));
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
        carve.put(L.band_key, p.key_bytes * static_cast<size_t>(p.cap));
        carve.put(L.band_tile, sizeof(unsigned) * static_cast<size_t>(p.cap));
        if (feedback) carve.put(L.acc, sizeof(float) * static_cast<size_t>(p.k));
    } else if (feedback) {
        carve.put(L.acc, sizeof(float) * static_cast<size_t>(total));  // threshold: up to every element
    }
    L.bytes = carve.bytes;
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

// The count pipeline (stages 1-5) for one key type; g: accumulate e += g on the way.
template <class F, bool Native>
void run_count(const Plan& p, const Scorer<F, Native>& sc, void* ws, cudaStream_t stream, const float* g) {
    using Key = typename Scorer<F, Native>::Key;
    const Layout& L = p.lay;
    State* st = ws_at<State>(ws, L.state);
    unsigned* blk_gt = ws_at<unsigned>(ws, L.blk_gt);
    unsigned* blk_eq = ws_at<unsigned>(ws, L.blk_eq);
    Key* band_key = ws_at<Key>(ws, L.band_key);
    unsigned* band_tile = ws_at<unsigned>(ws, L.band_tile);
    const unsigned tiles = static_cast<unsigned>(p.view.ntiles);
    const unsigned band_blocks = static_cast<unsigned>(ceil_div(p.cap, kTile));
    const unsigned grid = std::max(tiles, band_blocks);
    GS_LAUNCH(1, kThreads, stream, k_sample<F, Native>)(p.view, sc, st, p.hi_rank, p.lo_rank, g);
    GS_LAUNCH(tiles, kThreads, stream, k_band<F, Native>)(p.view, sc, st, blk_gt, blk_eq, band_key, band_tile, p.cap, g);
    GS_LAUNCH(1, 1, stream, k_check)(st, static_cast<ull>(p.k), p.cap);
    constexpr int bits = 8 * sizeof(Key);
    for (int pass = 0; pass < bits / 8; ++pass) {
        GS_LAUNCH(grid, kThreads, stream, k_hist<F, Native>)(p.view, sc, st, band_key, p.cap, pass);
        GS_LAUNCH(1, 256, stream, k_step)(st, pass, bits);
    }
    GS_LAUNCH(grid, kThreads, stream, k_counts<F, Native>)(p.view, sc, st, band_key, band_tile, blk_gt, blk_eq,
                                                       nullptr);
    GS_LAUNCH(1, 1024, stream, k_scan)(st, blk_gt, blk_eq, ws_at<unsigned>(ws, L.take_eq), ws_at<int64_t>(ws, L.out_off),
                                   p.view.ntiles);
    throw_on(cudaGetLastError(), "selection launch");
}

// Threshold plan: every key >= tkey is kept (stages 5 only); g: accumulate.
template <class F, bool Native>
void run_threshold(const Plan& p, const Scorer<F, Native>& sc, ull tkey, void* ws, cudaStream_t stream,
                   const float* g) {
    const Layout& L = p.lay;
    State* st = ws_at<State>(ws, L.state);
    // keep key > tkey - 1; tkey == 0 keeps everything (every key == 0 is a tie, all kept)
    GS_LAUNCH(1, 1, stream, k_fixed)(st, tkey == 0 ? 0 : tkey - 1, tkey == 0 ? ~ull(0) : 0);
    unsigned* blk_gt = ws_at<unsigned>(ws, L.blk_gt);
    unsigned* blk_eq = ws_at<unsigned>(ws, L.blk_eq);
    using Key = typename Scorer<F, Native>::Key;
    GS_LAUNCH(static_cast<unsigned>(p.view.ntiles), kThreads, stream, k_counts<F, Native>)(
        p.view, sc, st, static_cast<const Key*>(nullptr), nullptr, blk_gt, blk_eq, g);
    GS_LAUNCH(1, 1024, stream, k_scan)(st, blk_gt, blk_eq, ws_at<unsigned>(ws, L.take_eq), ws_at<int64_t>(ws, L.out_off),
                                   p.view.ntiles);
    throw_on(cudaGetLastError(), "threshold launch");
}

template <class F, bool Native, class Idx>
void run_write(const Plan& p, const Scorer<F, Native>& sc, void* ws, cudaStream_t stream, Idx* out_idx,
               typename F::uint* out_val) {
    const Layout& L = p.lay;
    GS_LAUNCH(static_cast<unsigned>(p.view.ntiles), kThreads, stream, k_write<F, Native, Idx>)(
        p.view, sc, ws_at<State>(ws, L.state), ws_at<unsigned>(ws, L.blk_gt), ws_at<unsigned>(ws, L.take_eq),
        ws_at<int64_t>(ws, L.out_off), out_idx, out_val);
    throw_on(cudaGetLastError(), "write launch");
}

int64_t read_kept(void* ws, const Plan& p, cudaStream_t stream) {
    ull kept = 0;
    throw_on(cudaMemcpyAsync(&kept, &ws_at<State>(ws, p.lay.state)->kept, sizeof(kept), cudaMemcpyDeviceToHost, stream),
             "count copy");
    throw_on(cudaStreamSynchronize(stream), "selection");
    return static_cast<int64_t>(kept);
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
}  // namespace cuda
}  // namespace gradsparse
