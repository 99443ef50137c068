// gradsparse CUDA emulation — error feedback fused with the selection (count and threshold,
// float32 and bfloat16 values, costs, saturation and non-finite accumulations) over several
// steps: outputs and residuals against the CPU's feedback_select with one region.
#include <cmath>

#include "core/bits.hpp"
#include "cuda/kernels.cuh"  // detail::kPathFull
#include "harness.hpp"

namespace check {
namespace {

// ------------------------------------------------------------------ 3. error feedback

struct FbResult {
    std::vector<int32_t> idx;
    std::vector<uint32_t> val;  // float32 bits or bfloat16 bits
    std::vector<float> e;
    std::string error;
};

void fill_g(std::vector<float>& g, Rng& r, int flavour) {
    for (float& v : g) {
        v = static_cast<float>(r.normal());
        if (flavour == 1) {  // near the bfloat16 maximum: saturation and overflow to inf
            const uint64_t u = r.below(10);
            if (u == 0) v = (r.coin(0.5) ? -1.0f : 1.0f) * 3.39e38f;
            else if (u == 1) v = (r.coin(0.5) ? -1.0f : 1.0f) * 3.3895e38f;
            else if (u == 2) v = 1.7e38f;
        } else if (flavour == 2) {  // non-finite accumulations
            const uint64_t u = r.below(50);
            if (u == 0) v = bits_f32(0x7FC00000u | static_cast<uint32_t>(r.below(1000)));
            else if (u == 1) v = r.coin(0.5) ? INFINITY : -INFINITY;
        }
    }
}

void check_feedback(size_t n, int steps) {
    Group g(fmt("feedback n=%zu", n));
    Rng r(555 + n);
    struct Variant {
        const char* name;
        CostKind ck;
        double q, alpha;
        KeyMode mode;
        bool cost_f32 = false;  // float32 cost array (else float64)
    };
    const Variant variants[] = {{"magnitude", CostKind::None, 2, 1, KeyMode::Magnitude},
                                {"largest", CostKind::None, 2, 1, KeyMode::Largest},
                                {"smallest", CostKind::None, 2, 1, KeyMode::Smallest},
                                {"scalar-cost", CostKind::Scalar, 2, 1, KeyMode::Magnitude},
                                {"array-q2-a1", CostKind::Array, 2, 1, KeyMode::Magnitude},
                                {"array-q1-a0", CostKind::Array, 1, 0, KeyMode::Magnitude},
                                {"array-f32", CostKind::Array, 2, 1, KeyMode::Magnitude, true}};
    std::vector<double> costs(n);
    for (double& c : costs) c = r.below(3) == 0 ? 1.0 : static_cast<double>(static_cast<float>(0.5 + 3 * r.uniform()));
    std::vector<float> costs32(costs.begin(), costs.end());  // the same values
    for (int flavour = 0; flavour < 3; ++flavour)
        for (bool bf16 : {false, true})
            for (const Variant& v : variants)
                for (int kind = 0; kind < 2; ++kind) {  // 0: count, 1: threshold
                    if (kind == 1 && v.ck != CostKind::None) continue;
                    if (kind == 1 && v.mode != KeyMode::Magnitude) continue;
                    std::vector<float> e_cpu(n, 0.0f), e_gpu(n, 0.0f);
                    for (int step = 0; step < steps; ++step) {
                        std::vector<float> gr(n);
                        fill_g(gr, r, flavour);
                        Budget b;
                        if (kind == 0) {
                            b.kind = Budget::Count;
                            b.k = step == 0 ? std::max<size_t>(1, n / 100) : (step == 1 ? 1 : (step == 2 ? n : n / 10 + 1));
                        } else {
                            b.kind = Budget::Threshold;
                            b.tau = step == 0 ? 1.5 : (step == 1 ? 0.0 : (step == 2 ? 3.0e38 : 0.7));
                        }
                        // CPU
                        FbResult a, d;
                        {
                            Segment cost;
                            cost.cost_kind = kind == 1 ? CostKind::None : v.ck;
                            cost.cost = 2.5;
                            cost.cost_data = v.cost_f32 ? static_cast<const void*>(costs32.data()) : costs.data();
                            cost.cost_dtype = v.cost_f32 ? DType::F32 : DType::F64;
                            const size_t cap = kind == 0 ? b.k : n;
                            std::vector<int32_t> oi(cap);
                            std::vector<uint32_t> ov(cap);
                            std::vector<uint16_t> ov16(cap);
                            FeedbackOut out;
                            out.regions = 1;
                            out.cap = cap;
                            out.value_dtype = bf16 ? DType::BF16 : DType::F32;
                            out.values = bf16 ? static_cast<void*>(ov16.data()) : static_cast<void*>(ov.data());
                            out.vstride = cap;
                            out.indices = oi.data();
                            out.istride = cap;
                            try {
                                const std::vector<size_t> cnt =
                                    feedback_select(gr.data(), e_cpu.data(), n, cost,
                                                    ScoreSpec{v.mode, kind == 1 ? 1.0 : v.q, v.alpha}, b, out);
                                for (size_t j = 0; j < cnt[0]; ++j) {
                                    a.idx.push_back(oi[j]);
                                    a.val.push_back(bf16 ? ov16[j] : ov[j]);
                                }
                            } catch (const std::exception& ex) {
                                a.error = ex.what();
                            }
                            a.e = e_cpu;
                        }
                        // device
                        try {
                            gc::Scoring sc;
                            sc.dtype = DType::F32;
                            sc.mode = v.mode;
                            gc::DevSegment cost;
                            std::vector<double> dev_costs = costs;
                            std::vector<float> dev_costs32 = costs32;
                            if (kind == 1) {
                                sc.native = false;
                                sc.q = 1;
                                sc.alpha = 1;
                                sc.cost_kind = CostKind::None;
                            } else {
                                const bool native = v.ck != CostKind::Array;
                                sc.native = native;
                                sc.q = native ? 2 : static_cast<int>(v.q);
                                sc.alpha = (!native && v.ck == CostKind::Array) ? static_cast<int>(v.alpha) : 1;
                                sc.cost_kind = v.ck;
                                sc.cost_dtype = v.cost_f32 ? DType::F32 : DType::F64;
                                cost.cost = v.ck != CostKind::Array ? nullptr
                                            : v.cost_f32        ? static_cast<const void*>(dev_costs32.data())
                                                                : static_cast<const void*>(dev_costs.data());
                                cost.cost_scalar = v.ck == CostKind::Scalar ? 2.5 : 1.0;
                                cost.cost_pow = cost.cost_scalar;
                            }
                            const size_t wsb = gc::feedback_workspace(static_cast<int64_t>(n), sc, b);
                            Buf ws(wsb);
                            if (kind == 0) {
                                Buf oi(b.k * 4), ov(b.k * (bf16 ? 2 : 4));
                                gc::feedback_select(gr.data(), e_gpu.data(), static_cast<int64_t>(n), cost, sc, b, bf16,
                                                    ws.p(), wsb, oi.as<int32_t>(), ov.p(), nullptr);
                                for (size_t j = 0; j < b.k; ++j) {
                                    d.idx.push_back(oi.as<int32_t>()[j]);
                                    d.val.push_back(bf16 ? ov.as<uint16_t>()[j] : ov.as<uint32_t>()[j]);
                                }
                            } else {
                                const int64_t cnt = gc::feedback_select(gr.data(), e_gpu.data(), static_cast<int64_t>(n),
                                                                        cost, sc, b, bf16, ws.p(), wsb, nullptr, nullptr,
                                                                        nullptr);
                                Buf oi(static_cast<size_t>(cnt) * 4), ov(static_cast<size_t>(cnt) * (bf16 ? 2 : 4));
                                gc::feedback_emit(e_gpu.data(), static_cast<int64_t>(n), cost, sc, b, bf16, ws.p(), wsb,
                                                  cnt, oi.as<int32_t>(), ov.p(), nullptr);
                                for (int64_t j = 0; j < cnt; ++j) {
                                    d.idx.push_back(oi.as<int32_t>()[j]);
                                    d.val.push_back(bf16 ? ov.as<uint16_t>()[j] : ov.as<uint32_t>()[j]);
                                }
                            }
                        } catch (const std::exception& ex) {
                            d.error = ex.what();
                        }
                        d.e = e_gpu;
                        ++g_cases;
                        const std::string what =
                            fmt("feedback n=%zu %s %s %s flavour=%d step=%d %s=%g", n, bf16 ? "bf16" : "f32", v.name,
                                kind == 0 ? "count" : "threshold", flavour, step, kind == 0 ? "k" : "tau",
                                kind == 0 ? static_cast<double>(b.k) : b.tau);
                        if (!a.error.empty() || !d.error.empty()) {
                            failure(what + ": cpu '" + a.error + "', gpu '" + d.error + "'");
                            break;
                        }
                        bool ok = a.idx.size() == d.idx.size();
                        if (!ok) failure(what + fmt(": cpu kept %zu, gpu %zu", a.idx.size(), d.idx.size()));
                        for (size_t j = 0; ok && j < a.idx.size(); ++j)
                            if (a.idx[j] != d.idx[j] || a.val[j] != d.val[j]) {
                                failure(what + fmt(": output %zu: cpu (%d, 0x%x), gpu (%d, 0x%x)", j, a.idx[j], a.val[j],
                                                   d.idx[j], d.val[j]));
                                ok = false;
                            }
                        for (size_t i = 0; ok && i < n; ++i)
                            if (f32_bits(a.e[i]) != f32_bits(d.e[i])) {
                                failure(what + fmt(": residual %zu: cpu %.9g [0x%08x], gpu %.9g [0x%08x]", i, a.e[i],
                                                   f32_bits(a.e[i]), d.e[i], f32_bits(d.e[i])));
                                ok = false;
                            }
                        if (!ok) break;  // the next steps would only repeat it
                    }
                }
}

/// Feedback where e + g puts large values only away from the sampled positions.
void check_feedback_miss(size_t n) {
    Group g("feedback sample misses");
    std::vector<char> sampled(n, 0);
    for (int64_t j = 0; j < 4096; ++j) sampled[static_cast<size_t>(((2 * j + 1) * static_cast<int64_t>(n)) / 8192)] = 1;
    Rng r(31);
    std::vector<float> e0(n), gr(n);
    for (size_t i = 0; i < n; ++i) {
        e0[i] = sampled[i] ? 0.0f : 50.0f;
        gr[i] = sampled[i] ? static_cast<float>(r.uniform()) : static_cast<float>(r.uniform()) + 50.0f;
    }
    for (bool bf16 : {false, true}) {
        const size_t k = 777;
        std::vector<float> ec = e0, eg = e0;
        std::vector<int32_t> ci(k);
        std::vector<uint32_t> cv(k);
        FeedbackOut out;
        out.cap = k;
        out.value_dtype = bf16 ? DType::BF16 : DType::F32;
        out.values = cv.data();
        out.vstride = k;
        out.indices = ci.data();
        out.istride = k;
        Budget b;
        b.k = k;
        feedback_select(gr.data(), ec.data(), n, Segment(), ScoreSpec{}, b, out);
        gc::Scoring sc;
        const size_t wsb = gc::feedback_workspace(static_cast<int64_t>(n), sc, b);
        Buf ws(wsb), oi(k * 4), ov(k * 4);
        gc::feedback_select(gr.data(), eg.data(), static_cast<int64_t>(n), gc::DevSegment(), sc, b, bf16, ws.p(), wsb,
                            oi.as<int32_t>(), ov.p(), nullptr);
        ++g_cases;
        const int path = reinterpret_cast<const gc::detail::State*>(ws.p())->path;
        if (path != gc::detail::kPathFull) failure("feedback sample misses: the device did not take the full path");
        const size_t vb = bf16 ? 2 : 4;
        if (std::memcmp(ci.data(), oi.p(), k * 4) != 0 ||
            std::memcmp(cv.data(), ov.p(), k * vb) != 0 ||
            std::memcmp(ec.data(), eg.data(), n * 4) != 0)
            failure(fmt("feedback sample misses %s: outputs or residuals differ", bf16 ? "bf16" : "f32"));
    }
}

}  // namespace

void run_feedback_checks(Size size) {
    check_feedback(1000, 4);
    check_feedback(70000, size == Size::Quick ? 2 : 3);
    if (size == Size::Full) check_feedback(300000, 2);
    check_feedback_miss(70000);
}

}  // namespace check
