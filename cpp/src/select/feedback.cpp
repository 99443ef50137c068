// gradsparse — error feedback fused with exact selection into caller-owned buffers, and the
// combine of such payloads (scatter_mean). The selection of each region is the engine's
// (select_accumulating: e += g done chunk by chunk inside its first filter pass, so e is
// filtered while the chunk is still in cache); this file adds the output and residual pass.
#include <string>

#include "core/bits.hpp"
#include "gradsparse/parallel.hpp"
#include "select_state.hpp"

namespace gradsparse {

using namespace detail;

namespace {

// Checks everything select() would refuse for one region, before e changes.
void check_arguments(float* e, size_t n, const Segment& cost, const ScoreSpec& spec, const Budget& budget,
                     const FeedbackOut& out) {
    GS_CHECK(n < (size_t(1) << 31), "x: feedback_select takes at most 2^31 - 1 elements (int32 indices), got " +
                                        std::to_string(n));
    GS_CHECK(out.regions >= 1, "regions: must be >= 1");
    GS_CHECK(out.value_dtype == DType::F32 || out.value_dtype == DType::BF16,
             "value_dtype: must be float32 or bfloat16");
    GS_CHECK(out.vstride >= out.cap && out.istride >= out.cap, "cap: region strides must be >= cap");
    GS_CHECK(out.cap == 0 || (out.values != nullptr && out.indices != nullptr), "values: null output buffer");
    Segment whole = cost;
    whole.data = e;
    whole.n = n;
    whole.dtype = DType::F32;
    prepare({whole}, spec, budget);  // q, alpha, mode and the scalar cost
    check_budget(budget, SIZE_MAX);  // k may exceed a region: each keeps min(k, its length)
    if (budget.kind == Budget::Count) {
        const size_t m = (n + out.regions - 1) / out.regions;
        GS_CHECK(out.cap >= std::min(budget.k, m), "cap: " + std::to_string(out.cap) +
                                                       " slots cannot hold k = " + std::to_string(budget.k));
    }
    if (cost.cost_kind == CostKind::Array && !cost.cost_checked && budget.kind != Budget::Threshold) {
        if (cost.cost_dtype == DType::F32)
            check_costs_f32(static_cast<const float*>(cost.cost_data), n);
        else
            check_costs_f64(static_cast<const double*>(cost.cost_data), n);
    }
}

// The region's segment: its slice of e and of the costs.
Segment region_segment(const Segment& cost, float* e, size_t lo, size_t len) {
    Segment s = cost;
    s.data = e + lo;
    s.n = len;
    s.dtype = DType::F32;
    if (s.cost_kind == CostKind::Array) {
        s.cost_data = static_cast<const uint8_t*>(s.cost_data) + lo * dtype_size(s.cost_dtype);
        s.cost_checked = true;  // checked above, or prepared
        if (s.cost_code) s.cost_code += lo;
    }
    return s;
}

}  // namespace

std::vector<size_t> feedback_select(const float* g, float* e, size_t n, const Segment& cost, const ScoreSpec& spec,
                                    const Budget& budget, const FeedbackOut& out, int nthreads) {
    GS_CHECK(n == 0 || (g != nullptr && e != nullptr), "x: null data pointer");
    check_arguments(e, n, cost, spec, budget, out);
    const size_t regions = out.regions, cap = out.cap;
    const size_t m = (n + regions - 1) / regions;
    const bool bf16 = out.value_dtype == DType::BF16;
    std::vector<size_t> counts(regions, 0);
    const size_t most = std::max<size_t>(1, std::min(cap, m));  // the most a region writes
    ScratchPool::Buffer local = ScratchPool::acquire(most * sizeof(int64_t));
    ScratchPool::Buffer acc_buf = bf16 ? ScratchPool::acquire(most * sizeof(float)) : ScratchPool::Buffer();
    int64_t* local_idx = reinterpret_cast<int64_t*>(local.get());
    for (size_t r = 0; r < regions; ++r) {
        const size_t lo = std::min(n, r * m), hi = std::min(n, lo + m), len = hi - lo;
        int32_t* io = out.indices + r * out.istride;
        float* vo32 = bf16 ? reinterpret_cast<float*>(acc_buf.get()) : static_cast<float*>(out.values) + r * out.vstride;
        size_t kept = 0;
        if (len > 0) {
            Budget b = budget;
            if (b.kind == Budget::Count) b.k = std::min(b.k, len);
            // e += g fused into the selection's filter pass (done first where it cannot be)
            Selection sel = select_accumulating(region_segment(cost, e, lo, len), e + lo, g + lo, spec, b, nthreads);
            counts[r] = sel.counts()[0];
            if (counts[r] <= cap) {
                int64_t* ip[1] = {local_idx};
                void* vp[1] = {vo32};
                sel.emit(ip, vp);  // the accumulated values: no second read of e
                kept = counts[r];
            }
        }
        for (size_t j = 0; j < kept; ++j) io[j] = static_cast<int32_t>(lo + static_cast<size_t>(local_idx[j]));
        if (bf16) {
            uint16_t* vo = static_cast<uint16_t*>(out.values) + r * out.vstride;
            for (size_t j = 0; j < kept; ++j) {
                const float a = vo32[j];
                const uint16_t h = to_bf16_saturated(f32_bits(a));
                vo[j] = h;
                // acc - sent is exact in float32 (sent is acc rounded to 8 significand bits)
                e[io[j]] = std::isfinite(a) ? a - bits_f32(static_cast<uint32_t>(h) << 16) : 0.0f;
            }
            std::fill(vo + kept, vo + cap, uint16_t(0));
        } else {
            for (size_t j = 0; j < kept; ++j) e[io[j]] = 0.0f;
            std::fill(vo32 + kept, vo32 + cap, 0.0f);
        }
        std::fill(io + kept, io + cap, int32_t(-1));
    }
    return counts;
}

void scatter_mean(float* out, size_t n, const int32_t* clear, size_t nclear, const std::vector<const void*>& vals,
                  const std::vector<const int32_t*>& idx, size_t len, DType value_dtype, float world) {
    GS_CHECK(n < (size_t(1) << 31), "out: scatter_mean takes at most 2^31 - 1 elements (int32 indices)");
    GS_CHECK(vals.size() == idx.size(), "parts: values and indices differ in number");
    GS_CHECK(value_dtype == DType::F32 || value_dtype == DType::BF16, "parts: values must be float32 or bfloat16");
    GS_CHECK(std::isfinite(world) && world > 0.0f, "world: must be finite and > 0");
    const int64_t limit = static_cast<int64_t>(n);
    for (size_t j = 0; j < nclear; ++j)
        GS_CHECK(clear[j] == -1 || (clear[j] >= 0 && clear[j] < limit),
                 "clear: index " + std::to_string(clear[j]) + " at " + std::to_string(j) + " is outside [0, " +
                     std::to_string(n) + ")");
    for (size_t p = 0; p < idx.size(); ++p) {
        GS_CHECK(len == 0 || (vals[p] != nullptr && idx[p] != nullptr), "parts: null buffer");
        for (size_t j = 0; j < len; ++j) {
            const int32_t i = idx[p][j];
            GS_CHECK(i == -1 || (i >= 0 && i < limit), "payload: index " + std::to_string(i) + " of part " +
                                                            std::to_string(p) + " at " + std::to_string(j) +
                                                            " is outside [0, " + std::to_string(n) + ")");
        }
    }
    for (size_t j = 0; j < nclear; ++j)
        if (clear[j] >= 0) out[clear[j]] = 0.0f;
    for (size_t p = 0; p < idx.size(); ++p) {
        const int32_t* ip = idx[p];
        if (value_dtype == DType::BF16) {
            const uint16_t* vp = static_cast<const uint16_t*>(vals[p]);
            for (size_t j = 0; j < len; ++j)
                if (ip[j] >= 0) out[ip[j]] += bits_f32(static_cast<uint32_t>(vp[j]) << 16) / world;
        } else {
            const float* vp = static_cast<const float*>(vals[p]);
            for (size_t j = 0; j < len; ++j)
                if (ip[j] >= 0) out[ip[j]] += vp[j] / world;
        }
    }
}

}  // namespace gradsparse
