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
#include <cmath>
#include <string>

#include "energy.cuh"
#include "plan.cuh"

namespace gradsparse {
namespace cuda {

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
                float* vals = bf16_values ? ws_at<float>(ws, p.lay.acc) : static_cast<float*>(out_val);
                run_write<F, N>(p, s, ws, stream, out_idx, reinterpret_cast<uint32_t*>(vals));
                GS_LAUNCH(static_cast<unsigned>(ceil_div(p.k, 256)), 256, stream, k_feedback_finish)(
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
            float* vals = bf16_values ? ws_at<float>(ws, p.lay.acc) : static_cast<float*>(out_val);
            run_write<F, N>(p, s, ws, stream, out_idx, reinterpret_cast<uint32_t*>(vals));
            GS_LAUNCH(static_cast<unsigned>(ceil_div(count, 256)), 256, stream, k_feedback_finish)(
                e, out_idx, vals, bf16_values ? static_cast<uint16_t*>(out_val) : nullptr, count);
            throw_on(cudaGetLastError(), "feedback launch");
        }
    });
}

}  // namespace cuda
}  // namespace gradsparse
