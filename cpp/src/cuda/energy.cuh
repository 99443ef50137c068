// gradsparse — CUDA engine: energy budgets: every key sorted (stable: ties in index order), then the
// CPU's sequential float64 sum of the costs in rank order.
// Included by select.cu only (one translation unit holds every selection kernel).
#pragma once

#include <cub/device/device_radix_sort.cuh>

#include "plan.cuh"

namespace gradsparse {
namespace cuda {
namespace detail {
namespace {

using ull = unsigned long long;

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


template <class F, bool Native>
int64_t run_energy(const Plan& p, const Scorer<F, Native>& sc, double energy, void* ws, cudaStream_t stream) {
    using Key = typename Scorer<F, Native>::Key;
    const Layout& L = p.lay;
    Key* ka = ws_at<Key>(ws, L.keys_a);
    Key* kb = ws_at<Key>(ws, L.keys_b);
    int64_t* ia = ws_at<int64_t>(ws, L.idx_a);
    int64_t* ib = ws_at<int64_t>(ws, L.idx_b);
    GS_LAUNCH(static_cast<unsigned>(p.view.ntiles), kThreads, stream, k_keys<F, Native>)(p.view, sc, ka, ia);
    size_t temp = L.temp_bytes;
    // stable: equal keys keep ascending global order, the CPU's tie rule
    throw_on(cub::DeviceRadixSort::SortPairsDescending(ws_at<void>(ws, L.temp), temp, ka, kb, ia, ib, p.view.total, 0,
                                                        static_cast<int>(8 * sizeof(Key)), stream),
             "energy sort");
    GS_LAUNCH(1, 32, stream, k_energy)(p.view, sc.cost_kind, sc.cost_f64, ib, energy, ws_at<State>(ws, L.state));
    throw_on(cudaGetLastError(), "energy launch");
    return read_kept(ws, p, stream);
}

template <class F>
void emit_energy(const Plan& p, void* ws, int64_t count, int64_t* out_idx, void* out_val, cudaStream_t stream) {
    const Layout& L = p.lay;
    if (count == 0) return;
    size_t temp = L.temp_bytes;
    int64_t* ib = ws_at<int64_t>(ws, L.idx_b);
    int64_t* ia = ws_at<int64_t>(ws, L.idx_a);
    throw_on(cub::DeviceRadixSort::SortKeys(ws_at<void>(ws, L.temp), temp, ib, ia, count, 0, 64, stream), "energy order");
    GS_LAUNCH(static_cast<unsigned>(ceil_div(count, 256)), 256, stream, k_gather<F>)(
        p.view, ia, count, out_idx, static_cast<typename F::uint*>(out_val));
    throw_on(cudaGetLastError(), "energy gather");
}

}  // namespace
}  // namespace detail
}  // namespace cuda
}  // namespace gradsparse
